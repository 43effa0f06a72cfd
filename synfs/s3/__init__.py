"""The seam to object storage: ranged reads from S3 with STS credentials (a lean SigV4 GET
client) or pre-signed URLs, uploads and listings (boto3). May import the foundation modules
and the Synapse seam's models and retry budget; called from worker threads via ``remote``.
"""
