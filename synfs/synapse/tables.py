"""File views and table queries over the REST client: the calls ``synfs snapshot`` needs.

Owns the asynchronous query job (``POST /entity/{id}/table/query/async/start``, then
``GET .../async/get/{token}``: 202 while the job runs, 200/201 with the ``QueryResultBundle``),
its next pages (``.../table/query/nextPage/async/...`` with a ``QueryNextPageToken``), and the
entity calls around a temporary view (default columns, create, delete, an entity's path).
Rows come back as dicts keyed by column name, values as Synapse sends them (strings or None).
Blocking and thread-safe like ``SynapseClient``, whose transport (retries, throttle, typed
errors, call counting) every request goes through.
"""

from __future__ import annotations

import time

from synfs.errors import InvalidRequest, Unavailable
from synfs.synapse.models import parse_id

T = "org.sagebionetworks.repo.model.table."
VIEW_TYPE = T + "EntityView"
FILE_MASK = 0x01
JOB_TIMEOUT_S = 300.0


class Tables:
    def __init__(self, client, *, sleep=time.sleep, clock=time.monotonic):
        self.client = client
        self.sleep = sleep
        self.clock = clock

    def _call(self, method: str, path: str, **kw):
        return self.client._request(method, "repo", path, **kw)

    # ---- entities around a view ------------------------------------------------------------
    def entity_json(self, entity_id: int) -> dict:
        return self._call("GET", f"/entity/syn{entity_id}", entity_id=entity_id)

    def path_ids(self, entity_id: int) -> list[int]:
        """The entity's ancestors and itself, from the root of the hierarchy down."""
        data = self._call("GET", f"/entity/syn{entity_id}/path", entity_id=entity_id) or {}
        return [parse_id(h["id"]) for h in data.get("path") or () if h.get("id")]

    def create_file_view(self, parent_id: int, scope_id: int, name: str,
                         annotations: list[str] = ()) -> int:
        """A file view of ``scope_id`` with the default columns and a STRING column per
        annotation name (POST /column/batch)."""
        cols = (self._call("GET", "/column/tableview/defaults",
                           params={"viewTypeMask": FILE_MASK}) or {}).get("list") or []
        if annotations:
            extra = self._call("POST", "/column/batch", body={
                "concreteType": "org.sagebionetworks.repo.model.ListWrapper",
                "list": [{"name": a, "columnType": "STRING", "maximumSize": 256}
                         for a in annotations]}) or {}
            cols = cols + (extra.get("list") or [])
        body = {"concreteType": VIEW_TYPE, "name": name, "parentId": f"syn{parent_id}",
                "scopeIds": [str(scope_id)], "viewTypeMask": FILE_MASK,
                "columnIds": [str(c["id"]) for c in cols]}
        made = self._call("POST", "/entity", body=body, entity_id=parent_id)
        return parse_id(made["id"])

    def delete_entity(self, entity_id: int) -> None:
        self._call("DELETE", f"/entity/syn{entity_id}", entity_id=entity_id)

    # ---- queries ---------------------------------------------------------------------------
    def _job(self, view_id: int, kind: str, body) -> dict:
        base = f"/entity/syn{view_id}/table/{kind}/async"
        token = self._call("POST", base + "/start", body=body, entity_id=view_id)["token"]
        deadline = self.clock() + JOB_TIMEOUT_S
        delay = 0.05
        while True:
            result = self._call("GET", f"{base}/get/{token}", entity_id=view_id,
                                ok=(200, 201, 202))
            if isinstance(result, dict) and "jobState" not in result:
                return result
            if isinstance(result, dict) and result.get("jobState") == "FAILED":
                raise InvalidRequest(f"query on syn{view_id} failed: "
                                     f"{result.get('errorMessage', '')}", entity=f"syn{view_id}")
            if self.clock() > deadline:
                raise Unavailable(f"query on syn{view_id} still running after "
                                  f"{JOB_TIMEOUT_S:g}s", entity=f"syn{view_id}")
            self.sleep(delay)
            delay = min(1.0, delay * 2)

    def query(self, view_id: int, sql: str, on_page=lambda rows: None) -> list[dict]:
        """Every row of ``sql`` (all pages) as ``{column name: value}``."""
        bundle = self._job(view_id, "query", {
            "concreteType": T + "QueryBundleRequest", "entityId": f"syn{view_id}",
            "query": {"sql": sql, "includeEntityEtag": True}, "partMask": 0x1 | 0x4})
        result = bundle.get("queryResult") or {}
        rows: list[dict] = []
        seen: set[str] = set()
        while True:
            page = result.get("queryResults") or {}
            names = [h.get("name") for h in page.get("headers") or ()]
            batch = [dict(zip(names, r.get("values") or ())) for r in page.get("rows") or ()]
            rows.extend(batch)
            on_page(batch)
            nxt = result.get("nextPageToken")
            if not nxt or not nxt.get("token"):
                return rows
            if nxt["token"] in seen:
                raise Unavailable(f"query on syn{view_id}: paging loops", entity=f"syn{view_id}")
            seen.add(nxt["token"])
            result = self._job(view_id, "query/nextPage", {
                "concreteType": T + "QueryNextPageToken", "entityId": f"syn{view_id}",
                "token": nxt["token"]})
            result = result.get("queryResult", result)
