"""The async facade over the seams: ``facade.Remote`` runs Synapse and S3 calls in worker
threads (separate capacity limiters) and picks STS or pre-signed reads; ``writer`` does the
same for saves (upload, file handle, entity). The seams' clients are handed in, not imported.

May import ``synapse``, ``s3`` and the foundation.
Imported by ``write`` and ``service``.
"""
