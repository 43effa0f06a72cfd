"""synfs: mount Synapse folder trees as a POSIX filesystem, bytes straight from S3 via STS."""

__version__ = "0.1.0"
