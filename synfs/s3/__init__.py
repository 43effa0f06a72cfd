"""The seam to object storage: ranged reads from S3 with STS credentials or pre-signed URLs,
uploads, and one boto3 client configuration. May import the foundation modules and the Synapse
seam's models and retry budget; called from worker threads via ``remote``.
"""
