"""Asynchronous table jobs (no routes): the job rows and the four kinds of job the clients
start (synapse-views.md §1.5, §2): ``query`` (QueryBundleRequest), ``nextPage``
(QueryNextPageToken, as an object or a bare string), ``csv`` (DownloadFromTableRequest: the
answer is written to S3 as a CSV with a file handle the caller owns) and ``transaction``
(TableUpdateTransactionRequest with TableSchemaChangeRequests).

A job stays PROCESSING for the ``table_job_s`` fault knob's seconds, then runs when it is first
read: its answer or its error (re-raised with the original status, as Synapse does) is kept.
Only the user who started a job may read it.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import time
import uuid

from . import acl, columns, context, storage, table_query, view_schema, views
from .db import Store, new_etag, parse_syn_id, synapse_date, syn_id
from .entity_core import touch
from .errors import BadRequest, Forbidden, NotFound, SynapseError
from .handles import insert_s3_handle

T = "org.sagebionetworks.repo.model.table."
KINDS = ("query", "nextPage", "csv", "transaction")
DEFAULT_PART_MASK = 0x1FF
PROGRESS = "Waiting for the table index to become available..."


# ---- job rows ------------------------------------------------------------------------------
def start(user, kind: str, request) -> dict:
    faults = context.state().faults
    with context.store().tx() as c:
        job_id = Store.next_id(c, "async_job")
        c.execute("INSERT INTO async_jobs(id, user_id, kind, request, started_on, ready_at, state)"
                  " VALUES (?, ?, ?, ?, ?, ?, 'PROCESSING')",
                  (job_id, user.id, kind, json.dumps(request), synapse_date(),
                   time.time() + float(faults.table_job_s or 0)))
    return {"token": str(job_id)}


def load(c, user, token, kind: str | None = None):
    """The job row (404 unknown token or wrong kind, 403 someone else's job)."""
    row = c.execute("SELECT * FROM async_jobs WHERE id = ?",
                    (int(token) if str(token).isdigit() else -1,)).fetchone()
    if row is None or (kind is not None and row["kind"] != kind):
        raise NotFound(f"Asynchronous job with jobId: {token} does not exist")
    if user is None or row["user_id"] != user.id:
        raise Forbidden("Only the user that created a job can access the job's status.")
    return row


def status_json(row, state: str | None = None) -> dict:
    state = state or row["state"]
    out = {"jobState": state, "jobCanceling": False, "requestBody": json.loads(row["request"]),
           "etag": new_etag(), "jobId": str(row["id"]), "startedByUserId": row["user_id"],
           "startedOn": row["started_on"], "changedOn": synapse_date(),
           "progressMessage": PROGRESS if state == "PROCESSING" else "",
           "progressCurrent": 0 if state == "PROCESSING" else 100, "progressTotal": 100,
           "runtimeMS": 0}
    if state == "COMPLETE":
        out["responseBody"] = json.loads(row["response"])
    if state == "FAILED":
        out.update(errorMessage=row["error_reason"], errorDetails=row["error_reason"],
                   exception="org.sagebionetworks.repo.model.table.TableFailedException")
    return out


def advance(user, token, kind: str | None = None):
    """(state, job row): runs a job that is due; the row is re-read afterwards."""
    store = context.store()
    with store.tx() as c:
        row = load(c, user, token, kind)
    if row["state"] == "PROCESSING" and time.time() >= row["ready_at"]:
        request = json.loads(row["request"])
        try:
            response = RUNNERS[row["kind"]](user, request, row["id"])
        except SynapseError as err:
            with store.tx() as c:
                c.execute("UPDATE async_jobs SET state = 'FAILED', error_status = ?,"
                          " error_reason = ? WHERE id = ?", (err.status, err.reason, row["id"]))
        else:
            with store.tx() as c:
                c.execute("UPDATE async_jobs SET state = 'COMPLETE', response = ? WHERE id = ?",
                          (json.dumps(response), row["id"]))
        with store.tx() as c:
            row = load(c, user, token, kind)
    return row["state"], row


# ---- queries ---------------------------------------------------------------------------------
def run_query(user, sql, *, offset=None, limit=None, sort=None) -> dict:
    """Everything a query answers, before paging: view, schema, headers, window rows."""
    parsed = table_query.parse(sql)
    faults = context.state().faults
    with context.store().tx() as c:
        view_row, fields = views.get_view(c, parsed.table_id)
        acl.require(c, user, parsed.table_id, "READ")
        schema = columns.schema(c, fields["column_ids"])
        rows = views.refresh(c, parsed.table_id, fields, float(faults.view_lag_s or 0),
                             int(time.time() * 1000))
        rows = views.readable_rows(c, user, rows)
    out = {"view": view_row, "schema": schema, "headers": [], "rows": [], "parsed": parsed,
           "by_id": {r["id"]: r for r in rows}}
    if not schema:
        return out
    conn = views.materialise(schema, rows)
    try:
        names, result = table_query.execute(conn, table_query.build(parsed, schema, sort))
    finally:
        conn.close()
    start_at = offset if offset is not None else (parsed.offset or 0)
    count = limit if limit is not None else parsed.limit
    result = result[start_at:None if count is None else start_at + count]
    skip = 0 if parsed.aggregated else 3
    values = [r[skip:] for r in result]
    out["headers"] = table_query.select_columns(names[skip:], values, schema)
    types = [h["columnType"] for h in out["headers"]]
    out["rows"] = [{"ids": r[:skip],
                    "values": [table_query.encode(t, v) for t, v in zip(types, r[skip:])]}
                   for r in result]
    return out


def _row_json(row: dict, include_etag: bool) -> dict:
    ids = row["ids"]
    out = {}
    if ids:
        out.update(rowId=ids[0], versionNumber=ids[1])
        if include_etag:
            out["etag"] = ids[2]
    out["values"] = row["values"]
    return out


def _token(state: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def _untoken(text) -> dict:
    try:
        state = json.loads(base64.urlsafe_b64decode(str(text).encode()))
        assert isinstance(state, dict) and isinstance(state["sql"], str)
        return state
    except (ValueError, TypeError, KeyError, AssertionError, binascii.Error):
        raise BadRequest(f"Invalid next page token: {text}") from None


def _page(user, state: dict) -> tuple[dict, dict]:
    """(QueryResult, the run) for the page ``state["page"]`` of a query."""
    run = run_query(user, state["sql"], offset=state.get("offset"), limit=state.get("limit"),
                    sort=state.get("sort"))
    rows_per_page = context.state().faults.table_page_rows or \
        table_query.max_rows_per_page(run["headers"], run["schema"])
    first = state.get("page", 0)
    page = run["rows"][first:first + rows_per_page]
    view_id = run["view"]["id"]
    result = {"concreteType": T + "QueryResult", "queryResults": {
        "concreteType": T + "RowSet", "tableId": syn_id(view_id), "etag": run["view"]["etag"],
        "headers": run["headers"],
        "rows": [_row_json(r, bool(state.get("etag"))) for r in page]}}
    if len(page) == rows_per_page:
        result["nextPageToken"] = {"concreteType": T + "QueryNextPageToken",
                                   "entityId": syn_id(view_id),
                                   "token": _token(dict(state, page=first + rows_per_page))}
    run["rows_per_page"] = rows_per_page
    return result, run


def run_bundle(user, request: dict, _job_id=None) -> dict:
    query = request.get("query")
    if not isinstance(query, dict):
        raise BadRequest("query is required.")
    mask = request.get("partMask")
    mask = DEFAULT_PART_MASK if mask is None else int(mask)
    state = {"sql": query.get("sql"), "offset": query.get("offset"), "limit": query.get("limit"),
             "sort": query.get("sort"), "etag": bool(query.get("includeEntityEtag")), "page": 0}
    result, run = _page(user, state)
    out = {"concreteType": T + "QueryResultBundle"}
    if mask & 0x1:
        out["queryResult"] = result
    if mask & 0x2:
        out["queryCount"] = len(run["rows"])
    if mask & 0x4:
        out["selectColumns"] = run["headers"]
    if mask & 0x8:
        out["maxRowsPerPage"] = run["rows_per_page"]
    if mask & 0x10:
        out["columnModels"] = run["schema"]
    if mask & 0x20:
        out["facets"] = []
    if mask & 0x40:
        total = sum(run["by_id"].get(r["ids"][0], {}).get("dataFileSizeBytes") or 0
                    for r in run["rows"] if r["ids"])
        out["sumFileSizes"] = {"sumFileSizesBytes": total, "greaterThan": False}
    if mask & 0x80:
        out["lastUpdatedOn"] = synapse_date()
    if mask & 0x100:
        out["combinedSql"] = state["sql"]
    if mask & 0x200:
        out["actionsRequired"] = []
    return out


def run_next_page(user, request, _job_id=None) -> dict:
    token = request.get("token") if isinstance(request, dict) else request
    result, _run = _page(user, _untoken(token))
    return dict(result, queryResult=dict(result))


# ---- CSV download ----------------------------------------------------------------------------
def run_csv(user, request: dict, job_id) -> dict:
    run = run_query(user, request.get("sql"), offset=request.get("offset"),
                    limit=request.get("limit"), sort=request.get("sort"))
    desc = request.get("csvTableDescriptor") or {}
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=desc.get("separator") or ",",
                        quotechar=desc.get("quoteCharacter") or '"',
                        escapechar=desc.get("escapeCharacter") or "\\", doublequote=False,
                        lineterminator=desc.get("lineEnd") or "\n")
    with_ids = request.get("includeRowIdAndRowVersion", True) is not False \
        and not run["parsed"].aggregated
    with_etag = with_ids and bool(request.get("includeEntityEtag"))
    extra = (["ROW_ID", "ROW_VERSION"] if with_ids else []) + (["ROW_ETAG"] if with_etag else [])
    if request.get("writeHeader", True) is not False:
        writer.writerow(extra + [h["name"] for h in run["headers"]])
    for row in run["rows"]:
        ids = list(row["ids"][:len(extra)])
        writer.writerow(ids + ["" if v is None else v for v in row["values"]])
    data = buf.getvalue().encode()
    s3 = context.s3()
    key = f"tables/{user.id}/{uuid.uuid4()}/Job-{job_id}.csv"
    s3.admin_client().put_object(Bucket=s3.SYNAPSE_BUCKET, Key=key, Body=data,
                                 ContentType="text/csv")
    with context.store().tx() as c:
        fh_id = insert_s3_handle(c, user.id, s3.SYNAPSE_BUCKET, key,
                                 request.get("fileName") or f"Job-{job_id}.csv", "text/csv",
                                 hashlib.md5(data).hexdigest(), len(data), storage.DEFAULT_ID)
    return {"concreteType": T + "DownloadFromTableResult", "resultsFileHandleId": str(fh_id),
            "tableId": syn_id(run["view"]["id"]), "etag": run["view"]["etag"],
            "headers": run["headers"]}


# ---- schema transactions ---------------------------------------------------------------------
def _apply_schema_change(c, view_id: int, fields: dict, change: dict) -> list[dict]:
    ordered = change.get("orderedColumnIds")
    if ordered is None:
        ordered = list(fields["column_ids"])
        for item in change.get("changes") or []:
            old, new = item.get("oldColumnId"), item.get("newColumnId")
            old = int(old) if old is not None else None
            new = int(new) if new is not None else None
            if old is None and new is not None and new not in ordered:
                ordered.append(new)
            elif old is not None and new is None and old in ordered:
                ordered.remove(old)
            elif old is not None and new is not None and old in ordered:
                ordered[ordered.index(old)] = new
    checked = view_schema.parse(c, {"viewTypeMask": fields["mask"], "columnIds": ordered})
    view_schema.set_columns(c, view_id, checked["column_ids"])
    return columns.schema(c, checked["column_ids"])


def run_transaction(user, request: dict, _job_id=None) -> dict:
    view_id = parse_syn_id(request.get("entityId"))
    if view_id is None:
        raise BadRequest("TableUpdateTransactionRequest.entityId is required.")
    results = []
    with context.store().tx() as c:
        _row, fields = views.get_view(c, view_id)
        acl.require(c, user, view_id, "UPDATE")
        for change in request.get("changes") or []:
            kind = str(change.get("concreteType", "")).rsplit(".", 1)[-1]
            if kind != "TableSchemaChangeRequest":
                raise BadRequest(f"The emulator does not support {kind or 'this change'} in a "
                                 "TableUpdateTransactionRequest")
            schema = _apply_schema_change(c, view_id, fields, change)
            fields = view_schema.load(c, view_id)
            results.append({"concreteType": T + "TableSchemaChangeResponse", "schema": schema})
        touch(c, view_id, user.id)
    return {"concreteType": T + "TableUpdateTransactionResponse", "results": results}


RUNNERS = {"query": run_bundle, "nextPage": run_next_page, "csv": run_csv,
           "transaction": run_transaction}
