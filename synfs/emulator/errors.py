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


class BadRequest(SynapseError):
    status = 400


class Unauthorized(SynapseError):
    status = 401


class Forbidden(SynapseError):
    status = 403


class NotFound(SynapseError):
    status = 404


class Conflict(SynapseError):
    status = 409


class PreconditionFailed(SynapseError):
    status = 412


class TooLarge(SynapseError):
    status = 413


class Throttled(SynapseError):
    """429: the body is a bare ``{"reason": ...}`` like production's throttle filter."""

    status = 429

    def body(self) -> dict:
        return {"reason": self.reason}


class Unavailable(SynapseError):
    status = 503
