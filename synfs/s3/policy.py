"""How every synfs S3 request reads S3's answers: which codes mean retry, not found, or
"these credentials are no longer good", and when a rejected credential set earns a fresh one.

Owns the one rule shared by the reader, the lister and the uploader (``RequestCredentials``):

* a rejection of the credentials (``ExpiredToken``, ``InvalidToken``, ``InvalidAccessKeyId``,
  ``TokenRefreshRequired``, or any 403 once the set's reported expiration has passed:
  SeaweedFS's codes differ from AWS's) drops the set from the ``CredentialStore`` and retries
  the request with a fresh one;
* a fresh set that S3 rejects while its own reported expiration has not passed is a real
  refusal (``PermissionDenied``): asking again would only loop;
* a fresh set that expires in its turn while the request is still being retried (a long 5xx
  outage with short-lived credentials) is refreshed again, at most ``MAX_REFRESHES`` times
  per request.

Blocking and thread-safe as its callers; credentials never appear in a message.
"""

from __future__ import annotations

import botocore.exceptions
import urllib3.exceptions

from synfs.errors import PermissionDenied
from synfs.synapse.models import StsCredentials

REFRESH_CODES = frozenset({"ExpiredToken", "InvalidToken", "InvalidAccessKeyId",
                           "TokenRefreshRequired"})
RETRY_CODES = frozenset({"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout",
                         "RequestTimeTooSkewed", "Throttling", "ThrottlingException",
                         "BadGateway", "GatewayTimeout"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSPORT_ERRORS = (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError,
                    botocore.exceptions.IncompleteReadError, urllib3.exceptions.HTTPError,
                    ConnectionError, TimeoutError)

MAX_REFRESHES = 4


def client_error(exc: botocore.exceptions.ClientError) -> tuple[str, int, str]:
    """``(code, HTTP status, message)`` of a botocore ClientError."""
    err = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return str(err.get("Code", "")), status, str(err.get("Message", ""))


def retryable(code: str, status: int) -> bool:
    """A server-side condition worth another try inside the retry budget."""
    return status in RETRY_STATUSES or status >= 500 or code in RETRY_CODES


class RequestCredentials:
    """The credential set one S3 request (with its retries) uses."""

    def __init__(self, store, storage_location_id: int, entity_id: int, permission: str,
                 stats=None):
        self.store = store
        self.storage_location_id = storage_location_id
        self.entity_id = entity_id
        self.permission = permission
        self.stats = stats
        self.refreshes = 0
        self.creds: StsCredentials = store.get(storage_location_id, entity_id, permission)

    def refresh_after(self, code: str, status: int, what: str, entity: str | None = None) -> bool:
        """Did S3 reject the credentials? Then fetch a fresh set and return True (the caller
        retries at once), or raise ``PermissionDenied`` when a fresh, unexpired set was
        refused. False when the answer is not about the credentials."""
        expired = self.store.expired(self.creds)
        if not (code in REFRESH_CODES or (status == 403 and expired)):
            return False
        if self.refreshes and (not expired or self.refreshes >= MAX_REFRESHES):
            raise PermissionDenied(f"{what} with fresh credentials", entity=entity)
        self.refreshes += 1
        if self.stats is not None:
            self.stats.incr("s3 refresh")
        self.store.invalidate(self.storage_location_id, self.permission, self.creds)
        self.creds = self.store.get(self.storage_location_id, self.entity_id, self.permission)
        return True
