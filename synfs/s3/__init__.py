"""The seam to object storage: ranged reads from S3 with STS credentials or pre-signed URLs."""
