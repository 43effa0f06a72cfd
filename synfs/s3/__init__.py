"""The seam to object storage: ranged reads with STS credentials or pre-signed URLs
(``reader``, over the lean SigV4 GET client ``getclient``), how S3's answers are read and
when credentials are refreshed (``policy``), uploads (``uploader``), listings (``listing``) and
the boto3 ``clients`` those two share. Called from worker threads via ``remote``.

May import ``synapse.models``, ``synapse.client`` (its retry budget) and the foundation.
Imported by ``remote``, ``service`` and ``cli``.
"""
