"""The table REST API used by file views (synapse-views.md): column models (``POST /column``,
``POST /column/batch``, ``GET /column/{id}``, ``GET /column/tableview/defaults``,
``GET /entity/{id}/column``), the asynchronous table jobs
``/entity/{id}/table/{query|query/nextPage|download/csv|transaction}/async/start|get/{token}``
(201 with the token; the get answers 202 with an AsynchronousJobStatus while the job runs, then
201 with the result, or the job's error) and ``GET /asynchronous/job/{token}``.
"""

from __future__ import annotations

import json

from flask import Blueprint, jsonify, request

from . import columns, context, table_jobs, view_schema
from .db import parse_syn_id
from .entity_core import checked_entity
from .errors import BadRequest, SynapseError

repo = Blueprint("table_api", __name__)
BLUEPRINTS = [(repo, "/repo/v1")]

LIST_WRAPPER = "org.sagebionetworks.repo.model.ListWrapper"
VIEW_ENTITY_TYPES = ("entityview", "submissionview", "dataset", "datasetcollection")
DEPRECATED_VIEW_TYPES = {"file": 0x01, "project": 0x02, "file_and_table": 0x05}
JOB_PATHS = {"query": "query", "nextPage": "query/nextPage", "csv": "download/csv",
             "transaction": "transaction"}


# ---- column models ---------------------------------------------------------------------------
@repo.post("/column")
@context.scopes("view", "modify")
def create_column():
    context.require_user()
    data = context.body()
    with context.store().tx() as c:
        out = columns.create(c, data)
    return jsonify(out), 201


@repo.post("/column/batch")
@context.scopes("view", "modify")
def create_columns():
    context.require_user()
    items = context.body().get("list")
    if not isinstance(items, list):
        raise BadRequest("list is required.")
    with context.store().tx() as c:  # all or none
        out = [columns.create(c, item) for item in items]
    return jsonify({"concreteType": LIST_WRAPPER, "list": out}), 201


@repo.get("/column/<col_id>")
@context.scopes("view")
def get_column(col_id: str):
    with context.store().tx() as c:
        out = columns.require(c, col_id)
    return jsonify(out)


def _defaults(mask):
    with context.store().tx() as c:
        out = columns.defaults(c, mask)
    return jsonify({"concreteType": LIST_WRAPPER, "list": out})


@repo.get("/column/tableview/defaults")
@context.scopes("view")
def default_columns():
    kind = request.args.get("viewEntityType") or "entityview"
    if kind not in VIEW_ENTITY_TYPES:
        raise BadRequest(f"Invalid viewEntityType: {kind}")
    raw = request.args.get("viewTypeMask")
    if raw is None and kind == "entityview":
        raise BadRequest("viewTypeMask is required.")
    try:
        mask = int(raw) if raw is not None else 0
    except ValueError:
        raise BadRequest(f"Invalid viewTypeMask: {raw}") from None
    return _defaults(mask if kind == "entityview" else 0)


@repo.get("/column/tableview/defaults/<view_type>")
@context.scopes("view")
def default_columns_deprecated(view_type: str):
    mask = DEPRECATED_VIEW_TYPES.get(view_type.lower())
    if mask is None:
        raise BadRequest(f"Invalid view type: {view_type}")
    return _defaults(mask)


@repo.get("/entity/<raw_id>/column")
@context.scopes("view")
def entity_columns(raw_id: str):
    with checked_entity(raw_id) as (c, row):
        fields = view_schema.load(c, row["id"])
        out = columns.schema(c, fields["column_ids"]) if fields else []
    return jsonify({"results": out, "totalNumberOfResults": len(out)})


# ---- asynchronous jobs -----------------------------------------------------------------------
def _json_body():
    """The request's JSON value (an object, or a bare string for a next-page token)."""
    raw = request.get_data(cache=True)
    if not raw:
        raise BadRequest("Request body is required.")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"Could not parse JSON: {exc}") from None


def _start(kind: str, raw_id: str):
    user = context.require_user()
    if parse_syn_id(raw_id) is None:
        raise BadRequest(f"Invalid Entity ID: {raw_id}")
    body = _json_body()
    if kind == "nextPage":
        token = body.get("token") if isinstance(body, dict) else body
        if not isinstance(token, str) or not token:
            raise BadRequest("QueryNextPageToken.token is required.")
    elif not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    elif kind == "query" and not isinstance(body.get("query"), dict):
        raise BadRequest("query is required.")
    elif kind == "csv" and not body.get("sql"):
        raise BadRequest("sql is required.")
    if kind == "transaction" and isinstance(body, dict) and body.get("entityId") is None:
        body = dict(body, entityId=raw_id)
    return jsonify(table_jobs.start(user, kind, body)), 201


def _get(kind: str | None, token: str):
    user = context.require_user()
    state, row = table_jobs.advance(user, token, kind)
    if state == "PROCESSING":
        return jsonify(table_jobs.status_json(row)), 202
    if state == "FAILED":
        raise SynapseError(row["error_reason"], status=row["error_status"])
    return jsonify(json.loads(row["response"])), 201


def _routes(kind: str, path: str, scopes: tuple) -> None:
    @context.scopes(*scopes)
    def start(raw_id: str):
        return _start(kind, raw_id)

    @context.scopes(*scopes)
    def get(raw_id: str, token: str):
        return _get(kind, token)

    repo.add_url_rule(f"/entity/<raw_id>/table/{path}/async/start", f"{kind}_start", start,
                      methods=["POST"])
    repo.add_url_rule(f"/entity/<raw_id>/table/{path}/async/get/<token>", f"{kind}_get", get,
                      methods=["GET"])


for _kind, _path in JOB_PATHS.items():
    _routes(_kind, _path, ("view", "modify") if _kind == "transaction" else ("view", "download"))


@repo.get("/asynchronous/job/<token>")
@context.scopes("view")
def job_status(token: str):
    user = context.require_user()
    _state, row = table_jobs.advance(user, token)
    return jsonify(table_jobs.status_json(row))
