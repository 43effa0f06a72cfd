"""SynapseClient: unit tests against a scripted local HTTP server, then integration tests
against the real emulator process."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
import requests

from synfs.errors import (AlreadyExists, AuthenticationFailed, InvalidRequest, NotFound,
                          PermissionDenied, StaleUpdate, Unavailable)
from synfs.synapse.client import Endpoints, SynapseClient, normalize_path
from synfs.synapse.models import CT, Kind
from tests.seams import FakeHttp, Reply

TOKEN = "tok-SECRET-abcdef0123456789"


@pytest.fixture
def fake():
    server = FakeHttp()
    yield server
    server.close()


def make_client(fake, **kw) -> SynapseClient:
    kw.setdefault("retry_budget_s", 5.0)
    return SynapseClient(Endpoints(repo=fake.url + "/repo/v1", file=fake.url + "/file/v1",
                                   auth=fake.url + "/auth/v1"), TOKEN, **kw)


def header(i: int, kind: str = "Folder") -> dict:
    return {"name": f"child-{i:04d}", "id": f"syn{1000 + i}", "type": CT + kind,
            "versionNumber": 1, "modifiedOn": "2024-05-01T12:00:00.000Z", "benefactorId": 1}


FILE_BUNDLE = {
    "entity": {"name": "a.txt", "id": "syn201", "etag": "e-1", "parentId": "syn200",
               "createdOn": "2024-05-01T12:00:00.000Z", "modifiedOn": "2024-05-02T12:00:00.000Z",
               "concreteType": CT + "FileEntity", "versionNumber": 3, "dataFileHandleId": "77"},
    "entityType": "file",
    "fileHandles": [
        {"id": "78", "concreteType": CT + "file.S3FileHandle", "contentSize": 10,
         "isPreview": True, "bucketName": "b", "key": "preview"},
        {"id": "77", "concreteType": CT + "file.S3FileHandle", "contentSize": 1234,
         "contentMd5": "0" * 32, "storageLocationId": 5, "bucketName": "bkt", "key": "k/a.txt",
         "fileName": "a.txt", "contentType": "text/plain"}],
    "permissions": {"canDownload": True, "canView": True},
    "restrictionInformation": {"hasUnmetAccessRequirement": False},
}


# ---- unit: shapes ------------------------------------------------------------------------

def test_endpoints_default_to_production_and_from_info():
    e = Endpoints()
    assert e.repo == "https://repo-prod.prod.sagebase.org/repo/v1"
    assert e.file == "https://file-prod.prod.sagebase.org/file/v1"
    assert e.auth == "https://auth-prod.prod.sagebase.org/auth/v1"
    got = Endpoints.from_info({"repoEndpoint": "http://h/repo/v1/", "fileHandleEndpoint":
                               "http://h/file/v1", "authEndpoint": "http://h/auth/v1"})
    assert got == Endpoints("http://h/repo/v1", "http://h/file/v1", "http://h/auth/v1")


def test_normalize_path():
    assert normalize_path("/entity/syn123/bundle2") == "/entity/{id}/bundle2"
    assert normalize_path("/entity/123/uploadDestination/5?x=1") == \
        "/entity/{id}/uploadDestination/{id}"
    assert normalize_path("/entity/children") == "/entity/children"


def test_get_entity_parses_bundle_and_sends_headers(fake):
    fake.route("POST", r"/repo/v1/entity/syn201/bundle2$", Reply(200, FILE_BUNDLE))
    client = make_client(fake)
    e = client.get_entity(201)
    assert (e.id, e.name, e.kind, e.parent_id, e.etag, e.version) == \
        (201, "a.txt", Kind.FILE, 200, "e-1", 3)
    assert e.file_handle_id == 77 and e.file_handle.id == 77 and e.file_handle.size == 1234
    assert e.file_handle.is_s3 and e.file_handle.storage_location_id == 5
    assert e.can_download and not e.unmet_access_requirement
    assert e.modified_on > e.created_on > 0
    req = fake.calls("POST")[0]
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["User-Agent"].startswith("synfs/")
    assert req.json() == {"includeEntity": True, "includeFileHandles": True,
                          "includePermissions": True, "includeRestrictionInformation": True}
    assert client.stats["POST /entity/{id}/bundle2"] == 1


def test_get_entity_without_download_permission(fake):
    bundle = dict(FILE_BUNDLE, fileHandles=[], permissions={"canDownload": False},
                  restrictionInformation={"hasUnmetAccessRequirement": True})
    fake.route("POST", r"/bundle2$", Reply(200, bundle))
    e = make_client(fake).get_entity(201)
    assert e.file_handle_id == 77 and e.file_handle is None
    assert not e.can_download and e.unmet_access_requirement


def test_list_children_follows_every_page(fake):
    headers = [header(i, "FileEntity" if i % 2 else "Folder") for i in range(120)]

    def page(req):
        body = req.json()
        offset = int((body["nextPageToken"] or "50a0").split("a")[1])
        out = {"page": headers[offset:offset + 50]}
        if offset + 50 < len(headers):
            out["nextPageToken"] = f"50a{offset + 50}"
        return Reply(200, out)

    fake.route("POST", r"/repo/v1/entity/children$", page)
    client = make_client(fake)
    children = client.list_children(300)
    assert [c.id for c in children] == [1000 + i for i in range(120)]
    assert children[0].kind is Kind.FOLDER and children[1].kind is Kind.FILE
    assert children[0].name == "child-0000" and children[0].modified_on > 0
    sent = [r.json() for r in fake.calls("POST", "/entity/children")]
    assert [s["nextPageToken"] for s in sent] == [None, "50a50", "50a100"]
    assert sent[0]["parentId"] == "syn300" and "file" in sent[0]["includeTypes"]
    assert client.stats["POST /entity/children"] == 3


def test_list_projects_sends_null_parent(fake):
    fake.route("POST", r"/entity/children$", Reply(200, {"page": [header(1, "Project")]}))
    children = make_client(fake).list_children(None)
    assert children[0].kind is Kind.PROJECT
    body = fake.calls("POST")[0].json()
    assert body["parentId"] is None and body["includeTypes"] == ["project"]


def test_child_id(fake):
    fake.route("POST", r"/entity/child$", Reply(200, {"id": "syn42"}))
    client = make_client(fake)
    assert client.child_id(7, "x y (1).txt") == 42
    assert fake.calls("POST")[0].json() == {"parentId": "syn7", "entityName": "x y (1).txt"}
    fake.route("POST", r"/entity/child$",
               Reply(404, {"reason": "Child not found for parent: 'syn7' with name: 'nope'"}))
    assert client.child_id(7, "nope") is None


def test_file_handle_batches_of_100_with_item_failures(fake):
    def batch(req):
        body = req.json()
        assert body["includeFileHandles"] and not body["includePreSignedURLs"]
        out = []
        for item in body["requestedFiles"]:
            fh = int(item["fileHandleId"])
            if fh % 10 == 1:
                out.append({"fileHandleId": str(fh), "failureCode": "NOT_FOUND"})
            elif fh % 10 == 2:
                out.append({"fileHandleId": str(fh), "failureCode": "UNAUTHORIZED"})
            else:
                out.append({"fileHandleId": str(fh), "fileHandle": {
                    "id": str(fh), "concreteType": CT + "file.S3FileHandle",
                    "contentSize": fh, "bucketName": "b", "key": f"k/{fh}"}})
        return Reply(201, {"requestedFiles": out})

    fake.route("POST", r"/file/v1/fileHandle/batch$", batch)
    client = make_client(fake)
    pairs = [(5000 + i, 100 + i) for i in range(250)]
    got = client.get_file_handles(pairs)
    assert len(got) == 250
    assert [len(r.json()["requestedFiles"]) for r in fake.calls("POST")] == [100, 100, 50]
    assert fake.calls("POST")[0].json()["requestedFiles"][0] == {
        "fileHandleId": "100", "associateObjectId": "syn5000", "associateObjectType": "FileEntity"}
    assert isinstance(got[101], NotFound) and isinstance(got[102], PermissionDenied)
    assert got[103].size == 103 and got[103].key == "k/103"
    assert client.stats["POST /fileHandle/batch"] == 3


def test_presigned_url(fake):
    fake.route("POST", r"/fileHandle/batch$", Reply(201, {"requestedFiles": [
        {"fileHandleId": "9", "preSignedURL": "http://s3/b/k?X-Amz-Signature=abc"}]}))
    client = make_client(fake)
    assert client.presigned_url(3, 9) == "http://s3/b/k?X-Amz-Signature=abc"
    body = fake.calls("POST")[0].json()
    assert body["includePreSignedURLs"] and not body["includeFileHandles"]
    fake.route("POST", r"/fileHandle/batch$", Reply(201, {"requestedFiles": [
        {"fileHandleId": "9", "failureCode": "UNAUTHORIZED"}]}))
    with pytest.raises(PermissionDenied):
        client.presigned_url(3, 9)


def test_sts_and_upload_destination(fake):
    fake.route("GET", r"/repo/v1/entity/syn8/sts$", Reply(200, {
        "bucket": "bkt", "baseKey": "base", "accessKeyId": "AKID", "secretAccessKey": "SECRETKEY",
        "sessionToken": "SESSIONTOKEN", "expiration": "2030-01-01T00:00:00.000Z"}))
    fake.route("GET", r"/file/v1/entity/syn8/uploadDestination/12$", Reply(200, {
        "concreteType": CT + "file.ExternalS3UploadDestination", "storageLocationId": 12,
        "uploadType": "S3", "stsEnabled": True, "bucket": "bkt", "baseKey": "base"}))
    client = make_client(fake)
    creds = client.sts_credentials(8, "read_only")
    assert fake.calls("GET", "/sts")[0].query == {"permission": ["read_only"]}
    assert (creds.bucket, creds.base_key, creds.access_key_id) == ("bkt", "base", "AKID")
    assert creds.expiration.year == 2030 and creds.expiration.tzinfo is not None
    assert "SECRETKEY" not in repr(creds) and "SESSIONTOKEN" not in repr(creds)
    dest = client.upload_destination(8, 12)
    assert dest.storage_location_id == 12 and dest.sts_enabled and dest.is_external_s3
    assert dest.bucket == "bkt" and dest.base_key == "base"


# ---- unit: errors and retries --------------------------------------------------------------

@pytest.mark.parametrize("status,exc", [
    (400, InvalidRequest), (401, AuthenticationFailed), (403, PermissionDenied),
    (404, NotFound), (409, AlreadyExists), (412, StaleUpdate), (413, InvalidRequest)])
def test_status_maps_to_typed_error_without_retry(fake, status, exc):
    fake.route("POST", r"/bundle2$", Reply(status, {"reason": f"server says {status}"}))
    client = make_client(fake)
    with pytest.raises(exc) as info:
        client.get_entity(55)
    assert f"server says {status}" in str(info.value)
    assert "syn55" in str(info.value) and info.value.entity == "syn55"
    assert len(fake.calls()) == 1


def test_trashed_entity_is_not_found(fake):
    fake.route("POST", r"/bundle2$", Reply(404, {"reason": "Entity syn5 is in trash can."}))
    with pytest.raises(NotFound, match="trash"):
        make_client(fake).get_entity(5)


def test_503_twice_then_success(fake):
    fake.route("GET", r"/userProfile$", Reply(503, {"reason": "down"}), Reply(503, {"reason": "x"}),
               Reply(200, {"ownerId": "1", "userName": "u"}))
    client = make_client(fake)
    assert client.user_profile()["userName"] == "u"
    assert client.stats["GET /userProfile"] == 3


@pytest.mark.parametrize("status", [429, 500, 502, 504])
def test_retryable_statuses(fake, status):
    fake.route("GET", r"/userProfile$", Reply(status, {"reason": "Too many concurrent requests."}),
               Reply(200, {"ownerId": "1"}))
    assert make_client(fake).user_profile() == {"ownerId": "1"}
    assert len(fake.calls()) == 2


def test_503_forever_is_unavailable_within_budget(fake):
    fake.route("GET", r"/userProfile$", Reply(503, {"reason": "Synapse is down for maintenance."}))
    client = make_client(fake, retry_budget_s=2.0)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="503"):
        client.user_profile()
    elapsed = time.monotonic() - started
    assert 1.0 < elapsed < 3.0
    assert 3 <= len(fake.calls()) <= 10


def test_read_timeout_is_retried_then_unavailable(fake):
    fake.route("GET", r"/userProfile$", Reply(200, {}, delay=5.0))
    client = make_client(fake, retry_budget_s=1.5, read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="Timeout"):
        client.user_profile()
    assert time.monotonic() - started < 4.0


def test_dropped_connection_is_retried(fake):
    fake.route("GET", r"/userProfile$", Reply(drop=True), Reply(200, {"ownerId": "2"}))
    assert make_client(fake).user_profile() == {"ownerId": "2"}


def test_connection_refused_is_unavailable():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    client = SynapseClient(Endpoints(url + "/repo/v1", url + "/file/v1", url + "/auth/v1"),
                           TOKEN, retry_budget_s=1.0, connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="ConnectionError"):
        client.user_profile()
    assert time.monotonic() - started < 3.0
    assert client.stats["GET /userProfile"] >= 2


def test_threads_share_one_client(fake):
    fake.route("GET", r"/userProfile$", Reply(200, {"ownerId": "1"}, delay=0.01))
    client = make_client(fake)
    errors = []

    def work():
        try:
            for _ in range(10):
                client.user_profile()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    sent, joined = client.stats["GET /userProfile"], client.coalesced["GET /userProfile"]
    assert sent + joined == 80 and len(fake.calls()) == sent    # identical GETs coalesce
    assert client.limiter.peak_in_flight <= 3
    client.close()


def test_token_never_in_repr_logs_or_errors(fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.route("GET", r"/userProfile$", Reply(503, {"reason": "x"}), Reply(200, {}))
    fake.route("POST", r"/bundle2$", Reply(401, {"reason": "Invalid access token"}))
    client = make_client(fake)
    client.user_profile()
    with pytest.raises(AuthenticationFailed) as info:
        client.get_entity(1)
    assert TOKEN not in repr(client) and TOKEN not in str(client)
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
    assert TOKEN not in caplog.text
    assert "GET /userProfile" in caplog.text   # our own DEBUG lines are there
    with pytest.raises(TypeError):
        __import__("pickle").dumps(client)


# ---- integration: the real emulator process ---------------------------------------------------

from tests.seams import MANY, client_for, seed_world  # noqa: E402


@pytest.fixture
def world(emulator):
    return seed_world(emulator)


@pytest.fixture
def client(emulator, world):
    c = client_for(emulator, world.user.token, retry_budget_s=10.0)
    yield c
    c.close()


def test_emulator_profile_and_bad_token(emulator, client, world):
    profile = client.user_profile()
    assert profile["userName"] == world.user.user_name
    with pytest.raises(AuthenticationFailed, match="401"):
        client_for(emulator, "not-a-token").user_profile()


def test_emulator_entities(client, world):
    project = client.get_entity(world.project)
    assert project.kind is Kind.PROJECT and project.parent_id == 4489
    folder = client.get_entity(world.sts_folder)
    assert folder.kind is Kind.FOLDER and folder.parent_id == world.project and folder.etag
    fid, data = world.files["small.bin"]
    f = client.get_entity(fid)
    assert f.kind is Kind.FILE and f.name == "small.bin" and f.version == 1
    assert f.can_download and not f.unmet_access_requirement
    assert f.file_handle.id == f.file_handle_id and f.file_handle.size == len(data)
    assert f.file_handle.is_s3 and f.file_handle.storage_location_id == world.sts_location
    assert client.stats["POST /entity/{id}/bundle2"] == 3


def test_emulator_errors(emulator, client, world):
    with pytest.raises(NotFound) as info:
        client.get_entity(987654321)
    assert info.value.entity == "syn987654321"
    stranger = client_for(emulator, world.stranger.token)
    with pytest.raises(PermissionDenied):
        stranger.get_entity(world.project)
    with pytest.raises(PermissionDenied):
        stranger.list_children(world.sts_folder)
    # trashed entities are not found
    doomed = world.user.api.folder(f"syn{world.project}", f"doomed {time.time_ns()}")["id"]
    world.user.api.ok(world.user.api.delete(f"/entity/{doomed}"), 204)
    with pytest.raises(NotFound, match="trash"):
        client.get_entity(int(doomed[3:]))
    # a name clash is 409 (through the same error mapping), used by later write paths
    with pytest.raises(AlreadyExists):
        client._request("POST", "repo", "/entity", body={
            "name": "plain", "parentId": f"syn{world.project}",
            "concreteType": CT + "Folder"})


def test_emulator_paging_over_100_children(client, world):
    children = client.list_children(world.many_folder)
    assert [c.name for c in children] == [f"d{i:03d}" for i in range(MANY)]
    assert all(c.kind is Kind.FOLDER for c in children)
    assert client.stats["POST /entity/children"] == 3       # pages of 50
    names = {c.name: c for c in client.list_children(world.project)}
    assert {"sts", "external", "plain", "many"} <= set(names)
    projects = client.list_children(None)
    assert world.project in {p.id for p in projects}
    assert all(p.kind is Kind.PROJECT for p in projects)


def test_emulator_child_id(client, world):
    assert client.child_id(world.project, "plain") == world.plain_folder
    assert client.child_id(world.project, "no such name") is None
    assert client.child_id(world.sts_folder, "small.bin") == world.files["small.bin"][0]


def test_emulator_file_handles_and_presigned_url(client, world):
    wanted = []
    for name in ("small.bin", "ext.csv", "hello.bin"):
        e = client.get_entity(world.files[name][0])
        wanted.append((e.id, e.file_handle_id))
    got = client.get_file_handles(wanted + [(world.files["small.bin"][0], wanted[2][1])])
    assert got[wanted[0][1]].size == 100_000 and got[wanted[1][1]].size == 5000
    assert got[wanted[2][1]].storage_location_id == 1
    eid, fh = wanted[2]
    url = client.presigned_url(eid, fh)
    assert "X-Amz-Expires" in url
    resp = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=30)
    assert resp.status_code == 206 and resp.content == world.files["hello.bin"][1][10:20]


def test_emulator_file_handle_failures(emulator, client, world):
    eid, _ = world.files["small.bin"]
    fh = client.get_entity(eid).file_handle_id
    stranger = client_for(emulator, world.stranger.token)
    got = stranger.get_file_handles([(eid, fh)])
    assert isinstance(got[fh], PermissionDenied)
    with pytest.raises(PermissionDenied):
        stranger.presigned_url(eid, fh)


def test_emulator_upload_destinations(client, world):
    dest = client.upload_destination(world.ext_folder)
    assert dest.sts_enabled and dest.is_external_s3 and dest.storage_location_id == \
        world.ext_location and dest.base_key
    sts = client.upload_destination(world.sts_folder, world.sts_location)
    assert sts.sts_enabled and sts.storage_location_id == world.sts_location
    plain = client.upload_destination(world.plain_folder)
    assert plain.storage_location_id == 1 and not plain.sts_enabled


def test_emulator_sts_credentials(emulator, client, world):
    creds = client.sts_credentials(world.files["small.bin"][0])
    assert creds.bucket and creds.remaining() > 3600
    with pytest.raises(InvalidRequest, match="400"):
        client.sts_credentials(world.plain_folder)
    with pytest.raises(PermissionDenied):
        client_for(emulator, world.stranger.token).sts_credentials(world.sts_folder)


def test_emulator_503_twice_then_success(emulator, client, world):
    emulator.set_faults(errors=[{"path": "/entity/children", "status": 503, "rate": 1.0,
                                 "count": 2}])
    assert len(client.list_children(world.plain_folder)) == 1
    assert client.stats["POST /entity/children"] == 3


def test_emulator_429_retried(emulator, client, world):
    emulator.set_faults(errors=[{"path": "/bundle2", "status": 429, "rate": 1.0, "count": 1}])
    assert client.get_entity(world.plain_folder).name == "plain"
    assert client.stats["POST /entity/{id}/bundle2"] == 2


def test_emulator_503_forever_is_unavailable(emulator, world):
    client = client_for(emulator, world.user.token, retry_budget_s=2.0)
    emulator.set_faults(errors=[{"path": "/entity", "status": 503, "rate": 1.0}])
    started = time.monotonic()
    with pytest.raises(Unavailable, match="503"):
        client.get_entity(world.plain_folder)
    assert time.monotonic() - started < 3.5
    assert client.stats["POST /entity/{id}/bundle2"] >= 3


def test_emulator_token_not_logged(emulator, world, caplog):
    caplog.set_level(logging.DEBUG)
    client = client_for(emulator, world.user.token, retry_budget_s=5.0)
    emulator.set_faults(errors=[{"path": "/entity/children", "status": 503, "count": 1}])
    client.list_children(world.project)
    creds = client.sts_credentials(world.sts_folder)
    assert world.user.token not in caplog.text
    assert creds.secret_access_key not in caplog.text and creds.session_token not in caplog.text
    assert world.user.token not in repr(client)

