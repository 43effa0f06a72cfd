"""Per-request context for API modules: the emulator's state, the caller, scopes, JSON body."""

from __future__ import annotations

import dataclasses
import functools
import json

from flask import current_app, g, request

from .errors import BadRequest, Forbidden


@dataclasses.dataclass(frozen=True)
class User:
    id: int
    user_name: str
    email: str
    display_name: str
    certified: bool
    is_admin: bool

    @classmethod
    def from_row(cls, row) -> "User":
        return cls(id=row["id"], user_name=row["user_name"], email=row["email"],
                   display_name=row["display_name"] or row["user_name"],
                   certified=bool(row["certified"]), is_admin=bool(row["is_admin"]))


def state():
    """The ``EmulatorState`` (store, s3, faults) of the running app."""
    return current_app.extensions["synfs"]


def store():
    return state().store


def s3():
    return state().s3


def user() -> User | None:
    """The authenticated caller, or None for anonymous."""
    return g.get("user")


def require_user() -> User:
    u = user()
    if u is None:
        raise Forbidden("Anonymous users may not perform this action.")
    return u


def scopes(*required: str):
    """Decorator: every listed OAuth scope must be in the caller's token (403 insufficient_scope)."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            have = g.get("scopes")
            if have is not None:  # anonymous calls are not scope-checked
                missing = [s for s in required if s not in have]
                if missing:
                    names = ", ".join(missing)
                    err = Forbidden(
                        f"insufficient_scope. Request lacks scope(s) required by this service: {names}")
                    err.extra = {"error": "insufficient_scope", "error_description":
                                 f"Request lacks scope(s) required by this service: {names}"}
                    raise err
            return fn(*args, **kwargs)

        inner.required_scopes = required
        return inner

    return wrap


def body() -> dict:
    """The request's JSON object; 400 for a missing or malformed body."""
    raw = request.get_data(cache=True)
    if not raw:
        raise BadRequest("Request body is required.")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"Could not parse JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("Request body must be a JSON object.")
    return value
