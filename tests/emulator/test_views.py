"""Contract tests of file views and table queries (synapse-views.md): column models, the
EntityView entity, the asynchronous query / next-page / CSV / transaction jobs (202 then 201),
the SQL subset, paging, the row-level READ filter, the ``view_lag_s`` knob and annotations v2.

One world (a project with two folders of annotated files, one folder hidden from a second
user by its own ACL, and a view over the project) is shared by the module's tests.
"""

from __future__ import annotations

import csv
import io
import re
import time

import pytest
import requests

from tests.emulator.test_entities import file_entity, reason, upload

T = "org.sagebionetworks.repo.model.table."
VIEW = T + "EntityView"
DEFAULT_NAMES = ["id", "name", "description", "createdOn", "createdBy", "etag", "modifiedOn",
                 "modifiedBy", "path", "type", "currentVersion", "parentId", "benefactorId",
                 "projectId", "dataFileHandleId", "dataFileName", "dataFileSizeBytes",
                 "dataFileMD5Hex", "dataFileConcreteType", "dataFileBucket", "dataFileKey"]
ANNOTATED = {"a1.txt": ("rna", "brain", 1), "a2.txt": ("dna", "brain", 2),
             "a3.txt": ("rna", "liver", 3), "b1.txt": ("rna", "heart", 1),
             "b2.txt": ("wgs", "heart", 2)}


# ---- helpers ---------------------------------------------------------------------------------
def annotate(api, eid: str, values: dict) -> dict:
    cur = api.ok(api.get(f"/entity/{eid}/annotations2"), 200)
    body = {"id": eid, "etag": cur["etag"], "annotations": {
        k: {"type": "LONG" if isinstance(v, int) else "STRING", "value": [str(v)]}
        for k, v in values.items()}}
    return api.ok(api.put(f"/entity/{eid}/annotations2", body), 200)


def columns_for(api, specs) -> list[dict]:
    body = {"concreteType": "org.sagebionetworks.repo.model.ListWrapper", "list": specs}
    return api.ok(api.post("/column/batch", body), 201)["list"]


def make_view(api, parent: str, scope: list[str], extra_columns=(), name=None) -> dict:
    defaults = api.ok(api.get("/column/tableview/defaults?viewTypeMask=1"), 200)["list"]
    cols = defaults + (columns_for(api, list(extra_columns)) if extra_columns else [])
    return api.create("table.EntityView", name or f"view {time.time_ns()}", parent,
                      scopeIds=scope, viewTypeMask=1, columnIds=[c["id"] for c in cols])


def wait_job(api, path: str, token: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        resp = api.get(f"{path}/get/{token}")
        if resp.status_code != 202 or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


def start_query(api, sql: str, part_mask=None, **query):
    vid = re.search(r"syn\d+", sql).group(0)
    body = {"concreteType": T + "QueryBundleRequest", "entityId": vid,
            "query": {"sql": sql, **query}}
    if part_mask is not None:
        body["partMask"] = part_mask
    token = api.ok(api.post(f"/entity/{vid}/table/query/async/start", body), 201)["token"]
    return f"/entity/{vid}/table/query/async", token


def query_resp(api, sql: str, part_mask=None, **query):
    return wait_job(api, *start_query(api, sql, part_mask, **query))


def query(api, sql: str, part_mask=None, **query_fields) -> dict:
    resp = query_resp(api, sql, part_mask, **query_fields)
    assert resp.status_code == 201, (resp.status_code, resp.text)
    return resp.json()


def rows(bundle: dict) -> list[list]:
    return [r["values"] for r in bundle["queryResult"]["queryResults"]["rows"]]


@pytest.fixture(scope="module")
def world(emulator):
    owner, other = emulator.new_user(), emulator.new_user()
    api = owner.api
    proj = api.project()
    folder_a = api.folder(proj["id"], "A")
    folder_b = api.folder(proj["id"], "B")
    handles = {n: upload(api, f"content of {n}".encode() * (i + 1), n)
               for i, n in enumerate(ANNOTATED)}
    files = {}
    for n, (assay, tissue, rep) in ANNOTATED.items():
        parent = folder_a if n.startswith("a") else folder_b
        files[n] = file_entity(api, parent["id"], n, handles[n])
        annotate(api, files[n]["id"], {"assay": assay, "tissue": tissue, "replicate": rep})
    # the second user may read the project but not folder B (its own ACL)
    acl = api.ok(api.get(f"/entity/{proj['id']}/acl"), 200)
    acl["resourceAccess"].append({"principalId": int(other.id), "accessType": ["READ"]})
    api.ok(api.put(f"/entity/{proj['id']}/acl", acl), 200)
    api.ok(api.post(f"/entity/{folder_b['id']}/acl", {"id": folder_b["id"], "resourceAccess": [
        {"principalId": int(owner.id), "accessType": ["READ", "CHANGE_PERMISSIONS", "UPDATE"]}]}),
        201)
    extra = [{"name": "assay", "columnType": "STRING", "maximumSize": 20},
             {"name": "tissue", "columnType": "STRING", "maximumSize": 20},
             {"name": "replicate", "columnType": "INTEGER"}]
    view = make_view(api, proj["id"], [proj["id"]], extra)
    return {"owner": owner, "other": other, "project": proj, "a": folder_a, "b": folder_b,
            "files": files, "view": view}


# ---- column models and the view entity ---------------------------------------------------------
def test_default_columns_and_idempotent_column_models(emulator, user):
    api = user.api
    file_cols = api.ok(api.get("/column/tableview/defaults?viewTypeMask=1"), 200)
    assert file_cols["concreteType"] == "org.sagebionetworks.repo.model.ListWrapper"
    assert [c["name"] for c in file_cols["list"]] == DEFAULT_NAMES
    assert all(c["id"].isdigit() for c in file_cols["list"])
    by_name = {c["name"]: c for c in file_cols["list"]}
    assert by_name["id"]["columnType"] == "ENTITYID"
    assert by_name["name"]["maximumSize"] == 256
    assert by_name["createdOn"]["facetType"] == "range"
    folder_cols = api.ok(api.get("/column/tableview/defaults?viewEntityType=entityview"
                                 "&viewTypeMask=8"), 200)["list"]
    assert [c["name"] for c in folder_cols] == DEFAULT_NAMES[:9]
    assert folder_cols[0]["id"] == by_name["id"]["id"]
    resp = api.get("/column/tableview/defaults")
    assert resp.status_code == 400
    spec = {"concreteType": T + "ColumnModel", "name": "assay", "columnType": "STRING"}
    first = api.ok(api.post("/column", spec), 201)
    assert first["maximumSize"] == 50
    other = emulator.new_user()
    assert other.api.ok(other.api.post("/column", spec), 201)["id"] == first["id"]
    batch = columns_for(api, [spec, {"name": "n", "columnType": "INTEGER"}, spec])
    assert [b["id"] for b in batch] == [first["id"], batch[1]["id"], first["id"]]
    assert api.ok(api.get(f"/column/{first['id']}"), 200)["name"] == "assay"
    assert api.get("/column/999999999").status_code == 404
    bad = api.post("/column", {"name": "x", "columnType": "NOPE"})
    assert bad.status_code == 400


def test_view_entity_shape_and_columns(world):
    api = world["owner"].api
    view = world["view"]
    assert view["concreteType"] == VIEW and view["viewTypeMask"] == 1
    assert view["scopeIds"] == [world["project"]["id"][3:]]
    assert view["versionNumber"] == 1 and len(view["columnIds"]) == 24
    got = api.ok(api.get(f"/entity/{view['id']}"), 200)
    assert got["columnIds"] == view["columnIds"]
    cols = api.ok(api.get(f"/entity/{view['id']}/column"), 200)["results"]
    assert [c["id"] for c in cols] == view["columnIds"]
    assert cols[-1]["name"] == "replicate"
    mixed = api.post("/entity", {"name": "bad view", "concreteType": VIEW, "viewTypeMask": 3,
                                 "parentId": world["project"]["id"], "scopeIds": []})
    assert mixed.status_code == 400
    assert reason(mixed) == "The Project type cannot be combined with any other type."


# ---- query jobs --------------------------------------------------------------------------------
def test_query_job_is_202_then_201_with_the_bundle(emulator, world):
    owner, view = world["owner"], world["view"]
    emulator.set_faults(table_job_s=1.5)
    path, token = start_query(owner.api, f"SELECT * FROM {view['id']}")
    early = owner.api.get(f"{path}/get/{token}")
    assert early.status_code == 202
    assert early.json()["jobState"] == "PROCESSING"
    assert world["other"].api.get(f"{path}/get/{token}").status_code == 403
    assert owner.api.get(f"{path}/get/987654321").status_code == 404
    done = wait_job(owner.api, path, token)             # 202 while the job runs, then 201
    assert done.status_code == 201
    bundle = done.json()
    assert bundle["concreteType"] == T + "QueryResultBundle"
    status = owner.api.ok(owner.api.get(f"/asynchronous/job/{token}"), 200)
    assert status["jobState"] == "COMPLETE" and status["responseBody"] == bundle
    result = bundle["queryResult"]["queryResults"]
    assert result["tableId"] == view["id"]
    assert [h["name"] for h in result["headers"]] == DEFAULT_NAMES + ["assay", "tissue",
                                                                       "replicate"]
    assert bundle["queryCount"] == len(result["rows"]) == 5
    assert bundle["selectColumns"] == result["headers"]
    assert bundle["maxRowsPerPage"] >= 5 and "nextPageToken" not in bundle["queryResult"]
    assert [c["id"] for c in bundle["columnModels"]] == view["columnIds"]
    assert bundle["lastUpdatedOn"].endswith("Z")
    files = world["files"]
    by_name = {r["values"][1]: r for r in result["rows"]}
    row = by_name["a1.txt"]
    assert row["rowId"] == int(files["a1.txt"]["id"][3:]) and row["versionNumber"] == 1
    cell = dict(zip(DEFAULT_NAMES + ["assay", "tissue", "replicate"], row["values"]))
    assert cell["id"] == files["a1.txt"]["id"] and cell["parentId"] == world["a"]["id"]
    assert cell["projectId"] == world["project"]["id"] and cell["type"] == "file"
    assert cell["benefactorId"] == world["project"]["id"]
    assert by_name["b1.txt"]["values"][12] == world["b"]["id"]  # folder B has its own ACL
    assert cell["currentVersion"] == "1"
    assert cell["etag"] == owner.api.ok(owner.api.get(f"/entity/{cell['id']}"), 200)["etag"]
    assert cell["createdOn"].isdigit()
    assert cell["dataFileSizeBytes"] == str(len(b"content of a1.txt"))
    assert cell["dataFileBucket"] and cell["dataFileKey"].endswith("a1.txt")
    assert (cell["assay"], cell["tissue"], cell["replicate"]) == ("rna", "brain", "1")
    assert all(v is None or isinstance(v, str) for r in result["rows"] for v in r["values"])


def test_part_mask_selects_the_parts(world):
    api, vid = world["owner"].api, world["view"]["id"]
    only_count = query(api, f"SELECT id FROM {vid}", part_mask=0x2)
    assert set(only_count) == {"concreteType", "queryCount"} and only_count["queryCount"] == 5
    results = query(api, f"SELECT id FROM {vid}", part_mask=0x1 | 0x10)
    assert set(results) == {"concreteType", "queryResult", "columnModels"}
    assert "etag" not in results["queryResult"]["queryResults"]["rows"][0]
    with_etag = query(api, f"SELECT id FROM {vid}", part_mask=0x1, includeEntityEtag=True)
    assert len(with_etag["queryResult"]["queryResults"]["rows"][0]["etag"]) == 36


@pytest.mark.parametrize("where,expected", [
    ("assay = 'rna'", {"a1.txt", "a3.txt", "b1.txt"}),
    ("assay <> 'rna'", {"a2.txt", "b2.txt"}),
    ("tissue IN ('liver', 'heart')", {"a3.txt", "b1.txt", "b2.txt"}),
    ("name LIKE 'a%'", {"a1.txt", "a2.txt", "a3.txt"}),
    ("assay = 'rna' AND (tissue = 'brain' OR replicate = 1)", {"a1.txt", "b1.txt"}),
    ("\"replicate\" >= 2 OR name = 'a1.txt'", {"a1.txt", "a2.txt", "a3.txt", "b2.txt"}),
])
def test_sql_where_subset(world, where, expected):
    api, vid = world["owner"].api, world["view"]["id"]
    got = query(api, f"SELECT name FROM {vid} WHERE {where}")
    assert {r[0] for r in rows(got)} == expected


def test_sql_columns_order_limit_offset_and_entity_ids(world):
    api, vid = world["owner"].api, world["view"]["id"]
    got = query(api, f"SELECT name, replicate FROM {vid} ORDER BY name DESC LIMIT 2 OFFSET 1")
    headers = got["queryResult"]["queryResults"]["headers"]
    assert [(h["name"], h["columnType"]) for h in headers] == [("name", "STRING"),
                                                               ("replicate", "INTEGER")]
    assert rows(got) == [["b1.txt", "1"], ["a3.txt", "3"]] and got["queryCount"] == 2
    by_parent = query(api, f"SELECT name FROM {vid} WHERE parentId = '{world['b']['id']}'"
                           " ORDER BY name")
    assert rows(by_parent) == [["b1.txt"], ["b2.txt"]]
    agg = query(api, f"SELECT assay, COUNT(*) FROM {vid} GROUP BY assay ORDER BY assay")
    assert rows(agg) == [["dna", "1"], ["rna", "3"], ["wgs", "1"]]
    first = agg["queryResult"]["queryResults"]["rows"][0]
    assert "rowId" not in first and "versionNumber" not in first
    assert agg["selectColumns"][1] == {"name": "COUNT(*)", "columnType": "INTEGER"}
    override = query(api, f"SELECT name FROM {vid} ORDER BY name LIMIT 1", limit=3, offset=1)
    assert rows(override) == [["a2.txt"], ["a3.txt"], ["b1.txt"]]


@pytest.mark.parametrize("sql,status,text", [
    ("SELECT * FROM {v} WHERE", 400, "ParseException"),
    ("SELECT nope FROM {v}", 400, "Unknown column 'nope'"),
    ("SELECT * FROM {v} WHERE \"nope\" = 'x'", 400, "Unknown column 'nope'"),
    ("DELETE FROM {v}", 400, "SELECT"),
    ("SELECT * FROM {v}; DROP TABLE T", 400, ""),
    ("SELECT * FROM {v} WHERE id IN (SELECT id FROM {v})", 400, "single table"),
    ("SELECT * FROM {v}, {v}", 400, "JOIN"),
    ("SELECT * FROM {v} JOIN {v}", 400, ""),
    ("SELECT * FROM {f}", 400, "is not a table or view"),
    ("SELECT * FROM syn999999999", 404, ""),
])
def test_bad_sql_fails_the_job(world, sql, status, text):
    api = world["owner"].api
    sql = sql.format(v=world["view"]["id"], f=world["a"]["id"])
    resp = query_resp(api, sql)
    assert resp.status_code == status, resp.text
    assert text in reason(resp)


def test_paging_with_next_page_tokens(emulator, world):
    api, vid = world["owner"].api, world["view"]["id"]
    emulator.set_faults(table_page_rows=2)
    first = query(api, f"SELECT name FROM {vid} ORDER BY name")
    assert first["maxRowsPerPage"] == 2 and first["queryCount"] == 5
    names = [r[0] for r in rows(first)]
    token = first["queryResult"]["nextPageToken"]
    assert token["concreteType"] == T + "QueryNextPageToken" and token["entityId"] == vid
    as_object = True
    while token is not None:
        body = token if as_object else token["token"]  # 4.14 models send a bare string
        as_object = not as_object
        start = api.ok(api.post(f"/entity/{vid}/table/query/nextPage/async/start", body), 201)
        page = wait_job(api, f"/entity/{vid}/table/query/nextPage/async", start["token"])
        assert page.status_code == 201, page.text
        page = page.json()
        assert page["concreteType"] == T + "QueryResult"
        assert page["queryResult"]["queryResults"] == page["queryResults"]
        names += [r["values"][0] for r in page["queryResults"]["rows"]]
        token = page.get("nextPageToken")
    assert names == sorted(ANNOTATED)
    bad = api.post(f"/entity/{vid}/table/query/nextPage/async/start", "garbage")
    resp = wait_job(api, f"/entity/{vid}/table/query/nextPage/async", bad.json()["token"])
    assert resp.status_code == 400


def test_rows_are_filtered_by_benefactor_read(emulator, world):
    other, vid = world["other"], world["view"]["id"]
    got = query(other.api, f"SELECT name FROM {vid}")
    assert sorted(r[0] for r in rows(got)) == ["a1.txt", "a2.txt", "a3.txt"]
    assert got["queryCount"] == 3
    # the filter applies before the user's WHERE: b1 matches but stays hidden
    assert rows(query(other.api, f"SELECT name FROM {vid} WHERE name = 'b1.txt'")) == []
    stranger = emulator.new_user()
    resp = query_resp(stranger.api, f"SELECT name FROM {vid}")
    assert resp.status_code == 403


def test_view_lag_shows_stale_rows_until_changes_age(emulator, user):
    api = user.api
    proj = api.project()
    fh1 = upload(api, b"version one", "f.txt")
    f = file_entity(api, proj["id"], "f.txt", fh1)
    view = make_view(api, proj["id"], [proj["id"]])
    sql = f"SELECT name, currentVersion, modifiedOn FROM {view['id']} ORDER BY name"
    before = rows(query(api, sql))
    assert [r[:2] for r in before] == [["f.txt", "1"]]
    emulator.set_faults(view_lag_s=2.5)
    f["dataFileHandleId"] = upload(api, b"version two", "f.txt")
    changed = time.monotonic()
    updated = api.ok(api.put(f"/entity/{f['id']}", f), 200)
    assert updated["versionNumber"] == 2
    file_entity(api, proj["id"], "g.txt", fh1)
    stale = rows(query(api, sql))
    assert stale == before  # old currentVersion and modifiedOn, and no row for g.txt yet
    deadline = time.monotonic() + 15
    while (fresh := rows(query(api, sql))) == stale and time.monotonic() < deadline:
        time.sleep(0.1)
    assert time.monotonic() - changed > 2.0          # not before the lag has passed
    assert [r[:2] for r in fresh] == [["f.txt", "2"], ["g.txt", "1"]]
    assert int(fresh[0][2]) > int(before[0][2])


def test_csv_download_job_and_file_handle_batch(world):
    api, vid = world["owner"].api, world["view"]["id"]
    body = {"concreteType": T + "DownloadFromTableRequest", "entityId": vid,
            "csvTableDescriptor": {"separator": ",", "quoteCharacter": '"',
                                   "escapeCharacter": "\\", "lineEnd": "\n",
                                   "isFirstLineHeader": True},
            "sql": f"SELECT name, assay FROM {vid} WHERE assay = 'rna' ORDER BY name",
            "writeHeader": True, "includeRowIdAndRowVersion": True, "includeEntityEtag": False}
    token = api.ok(api.post(f"/entity/{vid}/table/download/csv/async/start", body), 201)["token"]
    done = wait_job(api, f"/entity/{vid}/table/download/csv/async", token)
    assert done.status_code == 201, done.text
    result = done.json()
    assert result["concreteType"] == T + "DownloadFromTableResult" and result["tableId"] == vid
    assert [h["name"] for h in result["headers"]] == ["name", "assay"]
    batch = api.ok(api.post("/fileHandle/batch", {
        "includeFileHandles": True, "includePreSignedURLs": True, "requestedFiles": [
            {"fileHandleId": result["resultsFileHandleId"], "associateObjectId": vid,
             "associateObjectType": "TableEntity"}]}, prefix="file"), 201)
    item = batch["requestedFiles"][0]
    assert "failureCode" not in item and item["fileHandle"]["contentType"] == "text/csv"
    text = requests.get(item["preSignedURL"], timeout=30).text
    table = list(csv.reader(io.StringIO(text)))
    files = world["files"]
    assert table[0] == ["ROW_ID", "ROW_VERSION", "name", "assay"]
    assert table[1:] == [[files[n]["id"][3:], "1", n, "rna"] for n in ("a1.txt", "a3.txt",
                                                                         "b1.txt")]
    # a stranger cannot fetch the caller's CSV
    other = world["other"].api.post("/fileHandle/batch", {
        "includeFileHandles": True, "requestedFiles": [
            {"fileHandleId": result["resultsFileHandleId"], "associateObjectId": vid,
             "associateObjectType": "TableEntity"}]}, prefix="file")
    assert other.json()["requestedFiles"][0]["failureCode"] == "UNAUTHORIZED"


def test_bundle_create_and_schema_transaction(world):
    api, proj = world["owner"].api, world["project"]
    created = api.ok(api.post("/entity/bundle2/create", {"entity": {
        "name": "tx view", "parentId": proj["id"], "concreteType": VIEW, "columnIds": [],
        "viewTypeMask": 1, "scopeIds": [proj["id"][3:]]}}), 201)["entity"]
    assert created["columnIds"] == [] and created["scopeIds"] == [proj["id"][3:]]
    defaults = api.ok(api.get("/column/tableview/defaults?viewTypeMask=1"), 200)["list"]
    ids = [c["id"] for c in defaults[:3]]
    changes = [{"concreteType": T + "ColumnChange", "oldColumnId": None, "newColumnId": i}
               for i in ids + ids]  # 4.14 sends each default column twice
    req = {"concreteType": T + "TableUpdateTransactionRequest", "entityId": created["id"],
           "changes": [{"concreteType": T + "TableSchemaChangeRequest",
                        "entityId": created["id"], "changes": changes,
                        "orderedColumnIds": ids}]}
    path = f"/entity/{created['id']}/table/transaction/async"
    token = api.ok(api.post(f"{path}/start", req), 201)["token"]
    done = wait_job(api, path, token)
    assert done.status_code == 201, done.text
    result = done.json()["results"][0]
    assert result["concreteType"] == T + "TableSchemaChangeResponse"
    assert [c["name"] for c in result["schema"]] == ["id", "name", "description"]
    got = api.ok(api.get(f"/entity/{created['id']}"), 200)
    assert got["columnIds"] == ids and got["etag"] != created["etag"]
    other = world["other"].api
    denied = wait_job(other, path, other.ok(other.post(f"{path}/start", req), 201)["token"])
    assert denied.status_code == 403


def test_annotations_v2(emulator, world):
    owner = world["owner"].api
    f = world["files"]["a2.txt"]
    got = owner.ok(owner.get(f"/entity/{f['id']}/annotations2"), 200)
    assert got["annotations"]["assay"] == {"type": "STRING", "value": ["dna"]}
    assert got["annotations"]["replicate"] == {"type": "LONG", "value": ["2"]}
    stale = dict(got, etag="00000000-0000-0000-0000-000000000000")
    assert owner.put(f"/entity/{f['id']}/annotations2", stale).status_code == 412
    bad = dict(got, annotations={"n": {"type": "LONG", "value": ["x"]}})
    assert owner.put(f"/entity/{f['id']}/annotations2", bad).status_code == 400
    assert world["other"].api.put(f"/entity/{f['id']}/annotations2", got).status_code == 403
    bundle = owner.ok(owner.post(f"/entity/{f['id']}/bundle2", {"includeAnnotations": True}), 200)
    assert bundle["annotations"] == got
    entity = owner.ok(owner.get(f"/entity/{f['id']}"), 200)
    assert entity["etag"] == got["etag"]
