"""Synapse error responses: one exception type per status, rendered as ErrorResponse JSON."""

from __future__ import annotations


class SynapseError(Exception):
    """An error answered to the client as ``{"concreteType": ErrorResponse, "reason": ...}``."""

    status = 500

    def __init__(self, reason: str, status: int | None = None, error_code: str | None = None):
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        self.error_code = error_code

    def body(self) -> dict:
        out = {"concreteType": "org.sagebionetworks.repo.model.ErrorResponse", "reason": self.reason}
        if self.error_code:
            out["errorCode"] = self.error_code
        return out


def _status_error(name: str, status: int) -> type[SynapseError]:
    """A ``SynapseError`` subclass that answers ``status``."""
    return type(name, (SynapseError,), {"status": status, "__module__": __name__,
                                        "__qualname__": name})


BadRequest = _status_error("BadRequest", 400)
Unauthorized = _status_error("Unauthorized", 401)
Forbidden = _status_error("Forbidden", 403)
NotFound = _status_error("NotFound", 404)
Conflict = _status_error("Conflict", 409)
PreconditionFailed = _status_error("PreconditionFailed", 412)
TooLarge = _status_error("TooLarge", 413)
Unavailable = _status_error("Unavailable", 503)


class Throttled(SynapseError):
    """429: the body is a bare ``{"reason": ...}`` like production's throttle filter."""

    status = 429

    def body(self) -> dict:
        return {"reason": self.reason}
