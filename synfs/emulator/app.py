"""The emulator's Flask application: routing under the Synapse prefixes, bearer-token auth,
production-like throttling, fault injection and the JSON error boundary.

API modules each expose ``BLUEPRINTS = [(blueprint, prefix), ...]``; this module mounts them.
Every error leaves as JSON with a ``reason`` (synapseclient requires it).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import context
from .errors import SynapseError, Throttled, TooLarge, Unauthorized
from .faults import Faults, Throttle

log = logging.getLogger(__name__)

REPO = "/repo/v1"
FILE = "/file/v1"
AUTH = "/auth/v1"
ADMIN = "/admin/v1"
MAX_BODY = 2 * 1024 * 1024
API_MODULES = ("users", "entities", "acl_api", "storage_api", "sts", "filehandles", "multipart",
               "table_api", "admin")


@dataclasses.dataclass
class EmulatorState:
    store: object            # db.Store
    s3: object               # s3world.S3World (or None in tests that need no S3)
    faults: Faults
    throttle: Throttle = dataclasses.field(default_factory=Throttle)


def create_app(state: EmulatorState) -> Flask:
    app = Flask("synfs.emulator")
    app.config["MAX_CONTENT_LENGTH"] = None
    app.json.sort_keys = False
    app.extensions["synfs"] = state
    app.url_map.strict_slashes = False  # Synapse answers "/userProfile/" like "/userProfile"
    for name in API_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        for blueprint, prefix in module.BLUEPRINTS:
            app.register_blueprint(blueprint, url_prefix=prefix)

    @app.before_request
    def _before():
        g.throttle_key = None
        path = request.path
        if request.content_length and request.content_length > MAX_BODY:
            raise TooLarge("Request body exceeds the maximum size of 2 MB.")
        _authenticate()
        if path.startswith(ADMIN):
            return None
        faults = state.faults
        if faults.throttling and path.startswith((REPO, FILE)):
            u = context.user()
            if u is not None and not u.is_admin:
                reason = state.throttle.enter(u.id)
                if reason:
                    raise Throttled(reason)
                g.throttle_key = u.id
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000.0)
        status = faults.pick_error(request.method, path)
        if status is not None:
            raise SynapseError(f"Injected fault: status {status} for {request.method} {path}",
                               status=status)
        return None

    @app.teardown_request
    def _after(_exc):
        key = g.get("throttle_key")
        if key is not None:
            state.throttle.leave(key)
            g.throttle_key = None

    @app.errorhandler(SynapseError)
    def _synapse_error(err: SynapseError):
        body = err.body()
        body.update(getattr(err, "extra", {}))
        resp = jsonify(body)
        resp.status_code = err.status
        if err.status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="Synapse Repository Services"'
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        reason = err.description or err.name
        if err.code == 404:
            reason = f"Unknown URL: {request.method} {request.path}"
        resp = jsonify({"concreteType": "org.sagebionetworks.repo.model.ErrorResponse",
                        "reason": reason})
        resp.status_code = err.code or 500
        return resp

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unexpected error serving %s %s", request.method, request.path)
        resp = jsonify({"concreteType": "org.sagebionetworks.repo.model.ErrorResponse",
                        "reason": f"Internal error: {type(err).__name__}"})
        resp.status_code = 500
        return resp

    return app


def _authenticate() -> None:
    """Set ``g.user`` / ``g.scopes`` from the bearer token; 401 on a bad token."""
    g.user = None
    g.scopes = None
    header = request.headers.get("Authorization", "")
    token = None
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
    elif request.headers.get("sessionToken"):
        token = request.headers["sessionToken"].strip()
    if not token:
        return
    found = context.store().user_for_token(token)
    if found is None:
        raise Unauthorized("Invalid access token")
    row, scopes = found
    g.user = context.User.from_row(row)
    g.scopes = scopes
