"""The seam to object storage: ranged reads from S3 with STS credentials or pre-signed URLs,
uploads, listings; reads through a lean SigV4 GET client, the rest through boto3. May import the foundation modules and the Synapse
seam's models and retry budget; called from worker threads via ``remote``.
"""
