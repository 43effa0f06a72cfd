"""synapseclient 4.14, unmodified, against the emulator's file views and table queries:
``synapseclient.models.EntityView(...).store()`` / ``.query()`` / ``query_part_mask()``, the
legacy ``EntityViewSchema`` with ``syn.tableQuery(...)`` (rowset and CSV), and annotations set
through the client. Every answer is compared with what the emulator holds (its REST API as the
same user, and the files the test created).
"""

from __future__ import annotations

import time

import pytest

import synapseclient
from synapseclient import EntityViewSchema, EntityViewType
from synapseclient.models import Column, ColumnType, EntityView, ViewTypeMask

from tests.judge.conftest import new_user, unique, write_file

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SAMPLES = {"s1.txt": ("rna", "brain", 1), "s2.txt": ("dna", "brain", 2),
           "s3.txt": ("rna", "liver", 3)}


@pytest.fixture
def world(syn, tmp_path):
    """A project with a folder of three annotated files, made through the client."""
    project = syn.store(synapseclient.Project(name=unique("views")))
    folder = syn.store(synapseclient.Folder(name="samples", parent=project))
    files = {}
    for name, (assay, tissue, rep) in SAMPLES.items():
        path = write_file(tmp_path / "src", name, f"{name} {assay} {tissue}".encode())
        files[name] = syn.store(synapseclient.File(
            str(path), parent=folder, annotations={"assay": assay, "tissue": tissue,
                                                    "replicate": rep}))
    return {"project": project, "folder": folder, "files": files}


def emulator_rows(user, view_id: str, sql: str) -> list[list]:
    """The emulator's own answer to ``sql`` over REST (as the same user)."""
    api = user.api
    token = api.ok(api.post(f"/entity/{view_id}/table/query/async/start", {
        "concreteType": "org.sagebionetworks.repo.model.table.QueryBundleRequest",
        "entityId": view_id, "query": {"sql": sql}, "partMask": 1}), 201)["token"]
    for _ in range(100):
        resp = api.get(f"/entity/{view_id}/table/query/async/get/{token}")
        if resp.status_code != 202:
            break
        time.sleep(0.1)
    body = api.ok(resp, 201)
    return [r["values"] for r in body["queryResult"]["queryResults"]["rows"]]


def test_annotations_round_trip_through_the_client(syn, world, user):
    f = world["files"]["s2.txt"]
    annos = syn.get_annotations(f["id"])
    assert annos["assay"] == ["dna"] and annos["replicate"] == [2]
    raw = user.api.ok(user.api.get(f"/entity/{f['id']}/annotations2"), 200)
    assert raw["annotations"]["replicate"] == {"type": "LONG", "value": ["2"]}
    annos["tissue"] = ["cortex"]
    syn.set_annotations(annos)
    raw = user.api.ok(user.api.get(f"/entity/{f['id']}/annotations2"), 200)
    assert raw["annotations"]["tissue"]["value"] == ["cortex"]
    got = syn.get(f["id"], downloadFile=False)
    assert got.annotations["tissue"] == ["cortex"]


def test_models_entity_view_store_and_query(syn, world, user):
    project = world["project"]
    view = EntityView(name=unique("view"), parent_id=project["id"],
                      scope_ids=[project["id"]], view_type_mask=ViewTypeMask.FILE,
                      columns=[Column(name="assay", column_type=ColumnType.STRING,
                                      maximum_size=20),
                               Column(name="replicate", column_type=ColumnType.INTEGER)])
    view.store(synapse_client=syn)
    assert view.id and view.id.startswith("syn")
    held = user.api.ok(user.api.get(f"/entity/{view.id}"), 200)
    assert held["concreteType"] == "org.sagebionetworks.repo.model.table.EntityView"
    assert held["scopeIds"] == [project["id"][3:]] and held["viewTypeMask"] == 1
    names = [c["name"] for c in user.api.ok(user.api.get(f"/entity/{view.id}/column"),
                                            200)["results"]]
    assert {"id", "name", "dataFileBucket", "dataFileKey", "assay", "replicate"} <= set(names)
    assert len(names) == 23
    again = EntityView(id=view.id).get(synapse_client=syn, include_columns=True)
    assert set(again.columns) == set(names)

    sql = f"SELECT id, name, assay, replicate FROM {view.id} WHERE assay = 'rna' ORDER BY name"
    frame = EntityView.query(query=sql, synapse_client=syn)
    files = world["files"]
    assert list(frame["name"]) == ["s1.txt", "s3.txt"]
    assert list(frame["id"]) == [files["s1.txt"]["id"], files["s3.txt"]["id"]]
    assert [int(x) for x in frame["replicate"]] == [1, 3]
    assert [list(map(str, r)) for r in frame[["id", "name", "assay", "replicate"]].values] == \
        emulator_rows(user, view.id, sql)

    counted = EntityView.query_part_mask(query=f"SELECT name FROM {view.id}",
                                         part_mask=0x1 | 0x2 | 0x80, synapse_client=syn)
    assert counted.count == 3
    assert sorted(counted.result["name"]) == sorted(SAMPLES)
    assert counted.last_updated_on


def test_legacy_entity_view_schema_and_table_query(syn, world, user):
    project = world["project"]
    schema = syn.store(EntityViewSchema(
        name=unique("legacy view"), parent=project, scopes=[project],
        includeEntityTypes=[EntityViewType.FILE], addAnnotationColumns=False,
        columns=[synapseclient.Column(name="tissue", columnType="STRING", maximumSize=30)]))
    held = user.api.ok(user.api.get(f"/entity/{schema.id}"), 200)
    assert held["scopeIds"] == [project["id"][3:]] and len(held["columnIds"]) == 22
    sql = f"select name, tissue, dataFileSizeBytes from {schema.id} where tissue = 'brain'"
    result = syn.tableQuery(sql + " order by name", resultsAs="rowset")
    got = [list(r["values"]) for r in result]
    files = world["files"]
    assert [r[:2] for r in got] == [["s1.txt", "brain"], ["s2.txt", "brain"]]
    sizes = [syn.get(files[n]["id"], downloadFile=False)._file_handle["contentSize"]
             for n in ("s1.txt", "s2.txt")]
    assert [int(r[2]) for r in got] == sizes
    assert [list(map(str, r)) for r in got] == emulator_rows(user, schema.id,
                                                             sql + " order by name")
    paged = syn.tableQuery(f"select name from {schema.id}", resultsAs="rowset", limit=2,
                           offset=1)
    assert len(list(paged)) == 2
    csv_table = syn.tableQuery(f"select name, tissue from {schema.id} order by name")
    frame = csv_table.asDataFrame()
    assert list(frame["name"]) == sorted(SAMPLES)
    assert list(frame["tissue"]) == ["brain", "brain", "liver"]


def test_view_rows_follow_read_permissions(syn, clients, emulator, world, user):
    project = world["project"]
    view = EntityView(name=unique("perm view"), parent_id=project["id"],
                      scope_ids=[project["id"]], view_type_mask=ViewTypeMask.FILE)
    view.store(synapse_client=syn)
    reader = new_user(emulator)
    syn.setPermissions(project["id"], principalId=int(reader.id), accessType=["READ"])
    hidden = syn.store(synapseclient.Folder(name="private", parent=world["folder"]))
    syn.setPermissions(hidden, principalId=int(user.id),
                       accessType=["READ", "CHANGE_PERMISSIONS", "UPDATE", "CREATE"])
    syn.setPermissions(hidden, principalId=int(reader.id), accessType=[])  # copied ACL: drop
    assert syn.getPermissions(hidden, reader.id) == []
    syn.move(world["files"]["s3.txt"]["id"], hidden["id"])
    other = clients.new(reader.token)
    sql = f"SELECT name FROM {view.id} ORDER BY name"
    assert list(EntityView.query(query=sql, synapse_client=syn)["name"]) == sorted(SAMPLES)
    assert list(EntityView.query(query=sql, synapse_client=other)["name"]) == ["s1.txt",
                                                                                "s2.txt"]


def test_client_polls_pages_and_sees_the_view_lag(syn, emulator, world, user, tmp_path):
    project, files = world["project"], world["files"]
    view = EntityView(name=unique("lag view"), parent_id=project["id"],
                      scope_ids=[project["id"]], view_type_mask=ViewTypeMask.FILE)
    view.store(synapse_client=syn)
    sql = f"SELECT name, currentVersion FROM {view.id} ORDER BY name"
    # jobs answer 202 for a while: the clients poll until the 201
    emulator.set_faults(table_job_s=1.2)
    polled = EntityView.query_part_mask(query=sql, part_mask=0x1 | 0x2, synapse_client=syn)
    assert list(polled.result["name"]) == sorted(SAMPLES) and polled.count == 3
    # pages of 2 rows: the legacy client follows nextPageToken. (4.14's models code cannot
    # page past page one with pandas 2: it calls the removed Series.append.)
    emulator.set_faults(table_page_rows=2)
    legacy = [list(r["values"]) for r in syn.tableQuery(sql, resultsAs="rowset")]
    assert legacy == [[n, 1] for n in sorted(SAMPLES)]  # 3 rows: a second page was read
    # with a lag, a new version and a new file show up only once the change is old enough
    emulator.set_faults(table_job_s=0, table_page_rows=None, view_lag_s=3)
    path = write_file(tmp_path / "v2", "s1.txt", b"a second version of s1")
    syn.store(synapseclient.File(str(path), parent=world["folder"]))
    new = write_file(tmp_path / "v2", "s4.txt", b"a new sample")
    syn.store(synapseclient.File(str(new), parent=world["folder"]))
    assert user.api.ok(user.api.get(f"/entity/{files['s1.txt']['id']}"),
                       200)["versionNumber"] == 2
    stale = EntityView.query(query=sql, synapse_client=syn)
    assert list(stale["name"]) == sorted(SAMPLES)
    assert [int(v) for v in stale["currentVersion"]] == [1, 1, 1]
    deadline = time.monotonic() + 15            # until the lag has passed (3 s)
    while True:
        fresh = EntityView.query(query=sql, synapse_client=syn)
        if list(fresh["name"]) != list(stale["name"]) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert list(fresh["name"]) == sorted(SAMPLES) + ["s4.txt"]
    assert [int(v) for v in fresh["currentVersion"]] == [2, 1, 1, 1]
