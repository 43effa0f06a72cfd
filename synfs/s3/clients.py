"""boto3 S3 clients, one per set of STS credentials: a bounded, thread-safe LRU.

Shared by the uploader and the lister (reads go through ``synfs.s3.getclient``). A client is
created under a lock (boto3 sessions are not thread-safe) and reused while its credentials are
current; old ones are closed.
"""

from __future__ import annotations

import collections
import threading

import boto3
import botocore.config

from synfs.synapse.models import StsCredentials

MAX_CLIENTS = 16


def s3_config(connect_timeout: float, read_timeout: float, max_pool: int):
    """How every synfs S3 client talks: path-style, us-east-1, no botocore retries (the
    callers retry within their own budget), checksums only where S3 requires them."""
    return botocore.config.Config(
        region_name="us-east-1", signature_version="s3v4", s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=connect_timeout, read_timeout=read_timeout,
        max_pool_connections=max_pool, tcp_keepalive=True,
        response_checksum_validation="when_required",
        request_checksum_calculation="when_required")


class ClientCache:
    def __init__(self, endpoint_url: str | None, config, max_clients: int = MAX_CLIENTS):
        self.endpoint_url = endpoint_url
        self.config = config
        self.max_clients = max_clients
        self._session = boto3.session.Session()
        self._clients: collections.OrderedDict[tuple[str, str], object] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._clients)

    def get(self, creds: StsCredentials):
        key = (creds.access_key_id, creds.session_token)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._session.client(
                    "s3", endpoint_url=self.endpoint_url, config=self.config,
                    aws_access_key_id=creds.access_key_id,
                    aws_secret_access_key=creds.secret_access_key,
                    aws_session_token=creds.session_token)
                self._clients[key] = client
                while len(self._clients) > self.max_clients:
                    _, old = self._clients.popitem(last=False)
                    old.close()
            else:
                self._clients.move_to_end(key)
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), collections.OrderedDict()
        for client in clients:
            client.close()
