"""SynapseWriter: unit tests of the 412 / lost-answer handling against a scripted HTTP server,
then integration tests against the real emulator (entities, versions, trash, storage-location
ownership, external S3 handles and Synapse's multipart upload)."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
import uuid

import pytest
import requests

from synfs.errors import (AlreadyExists, ContentChanged, InvalidRequest, NotFound,
                          PermissionDenied, StaleUpdate)
from synfs.synapse.client import Endpoints, SynapseClient
from synfs.synapse.models import CT, Kind
from synfs.synapse.writer import SynapseWriter, part_size_for
from tests.seams import FakeHttp, Reply, client_for

MiB = 1024 * 1024


# ---- unit: optimistic concurrency against a scripted server -------------------------------

@pytest.fixture
def fake():
    server = FakeHttp()
    yield server
    server.close()


def fake_writer(fake) -> SynapseWriter:
    client = SynapseClient(Endpoints(repo=fake.url + "/repo/v1", file=fake.url + "/file/v1",
                                     auth=fake.url + "/auth/v1"), "tok", retry_budget_s=3.0)
    return SynapseWriter(client)


def raw_file(handle: str, etag: str, version: int = 1) -> dict:
    return {"id": "syn9", "name": "a.txt", "parentId": "syn8", "etag": etag,
            "concreteType": CT + "FileEntity", "dataFileHandleId": handle,
            "versionNumber": version, "versionLabel": str(version)}


def test_part_size():
    assert part_size_for(1) == 8 * MiB
    assert part_size_for(20 * MiB) == 8 * MiB
    assert part_size_for(200 * 1024 * MiB) == -(-200 * 1024 * MiB // 10000)


def test_new_version_rereads_on_412_and_sends_new_version(fake):
    fake.route("GET", r"/repo/v1/entity/syn9$", Reply(200, raw_file("1", "e1")),
               Reply(200, raw_file("5", "e2", 2)))
    fake.route("PUT", r"/repo/v1/entity/syn9$", Reply(412, {"reason": "Object: syn9 was updated"}),
               Reply(200, raw_file("7", "e3", 3)))
    fake_writer(fake).new_version(9, 7)
    puts = fake.calls("PUT")
    assert len(puts) == 2 and len(fake.calls("GET")) == 2
    assert [p.json()["etag"] for p in puts] == ["e1", "e2"]
    body = puts[1].json()
    assert body["dataFileHandleId"] == "7" and "versionLabel" not in body
    assert puts[1].query == {"newVersion": ["true"]}


def test_new_version_after_a_lost_answer_is_not_repeated(fake):
    """The PUT landed but its answer was lost (503); the client's retry gets 412; re-reading
    shows our handle already current: done, without a third PUT."""
    fake.route("GET", r"/repo/v1/entity/syn9$", Reply(200, raw_file("1", "e1")),
               Reply(200, raw_file("7", "e2", 2)))
    fake.route("PUT", r"/repo/v1/entity/syn9$", Reply(503, {"reason": "lost"}),
               Reply(412, {"reason": "Object: syn9 was updated"}))
    fake_writer(fake).new_version(9, 7)
    assert len(fake.calls("PUT")) == 2 and len(fake.calls("GET")) == 2


def test_update_gives_up_after_bounded_tries(fake):
    fake.route("GET", r"/repo/v1/entity/syn9$", Reply(200, raw_file("1", "e1")))
    fake.route("PUT", r"/repo/v1/entity/syn9$", Reply(412, {"reason": "Object: syn9 was updated"}))
    with pytest.raises(StaleUpdate):
        fake_writer(fake).move(9, 10, "b.txt")
    assert len(fake.calls("PUT")) == 5


def test_new_version_of_a_folder_is_refused(fake):
    fake.route("GET", r"/repo/v1/entity/syn9$", Reply(200, {
        "id": "syn9", "name": "d", "parentId": "syn8", "etag": "e",
        "concreteType": CT + "Folder"}))
    with pytest.raises(InvalidRequest):
        fake_writer(fake).new_version(9, 7)
    assert not fake.calls("PUT")


# ---- integration: the emulator -------------------------------------------------------------

@dataclasses.dataclass
class WriteWorld:
    owner: object
    other: object                 # another user with an ACL entry on the project
    project: int
    folder: int                   # external bucket, STS-enabled, owned by ``owner``
    location: int
    bucket: str
    base_key: str


def external_world(emulator, label: str, other_access: list[str]) -> WriteWorld:
    """A project with an external-bucket STS folder owned by a new user, and another new
    user granted ``other_access`` on the project (shared with test_uploader)."""
    from synfs.cli.demo_seed import Seeder

    owner, other = emulator.new_user(), emulator.new_user()
    seeder = Seeder(emulator.info, owner.token, owner_s3=emulator.s3_admin_client())
    project = seeder.entity("Project", f"{label} {time.time_ns()}", None)
    bucket, base_key = emulator.info["externalBucket"], f"{label}-{project}"
    seeder._owner_txt(bucket, base_key)
    folder, location = seeder.sts_folder(project, "external", {
        "concreteType": CT + "project.ExternalS3StorageLocationSetting", "uploadType": "S3",
        "bucket": bucket, "baseKey": base_key, "stsEnabled": True})
    api = owner.api
    acl = api.ok(api.get(f"/entity/{project}/acl"))
    acl["resourceAccess"].append({"principalId": int(other.id), "accessType": other_access})
    api.ok(api.put(f"/entity/{project}/acl", acl))
    return WriteWorld(owner, other, int(project[3:]), int(folder[3:]), location, bucket,
                      base_key)


@pytest.fixture(scope="module")
def ww(emulator) -> WriteWorld:
    return external_world(emulator, "writer", ["READ", "DOWNLOAD", "CREATE", "UPDATE", "DELETE"])


@pytest.fixture
def writer(emulator, ww):
    client = client_for(emulator, ww.owner.token, retry_budget_s=10.0)
    yield SynapseWriter(client)
    client.close()


@pytest.fixture
def other_writer(emulator, ww):
    client = client_for(emulator, ww.other.token, retry_budget_s=10.0)
    yield SynapseWriter(client)
    client.close()


def put_object(emulator, user, ww, name: str, data: bytes) -> str:
    api = user.api
    creds = api.ok(api.get(f"/entity/syn{ww.folder}/sts?permission=read_write"))
    key = f"{creds['baseKey']}/{uuid.uuid4()}/{name}"
    emulator.s3_client(creds).put_object(Bucket=creds["bucket"], Key=key, Body=data)
    return key


def handle(emulator, writer, ww, name: str, data: bytes) -> int:
    key = put_object(emulator, ww.owner, ww, name, data)
    return writer.external_s3_handle(bucket=ww.bucket, key=key, file_name=name,
                                     md5=hashlib.md5(data).hexdigest(), size=len(data),
                                     storage_location_id=ww.location, content_type="text/plain")


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def test_create_folder(writer, ww):
    name = unique("new folder (1)")
    e = writer.create_folder(ww.folder, name)
    assert e.kind is Kind.FOLDER and e.name == name and e.parent_id == ww.folder
    assert len(e.etag) == 36 and e.created_on > 0 and e.modified_on >= e.created_on
    assert e.version is None and e.file_handle_id is None
    assert writer.client.get_entity(e.id).name == name
    with pytest.raises(AlreadyExists):
        writer.create_folder(ww.folder, name)
    for bad in ("a/b", "star*", " ", "x" * 257):
        with pytest.raises(InvalidRequest):
            writer.create_folder(ww.folder, bad)
    with pytest.raises(NotFound):
        writer.create_folder(999_999_999, "orphan")


def test_external_handle_round_trip(emulator, writer, ww):
    data = b"external bytes\n" * 100
    key = put_object(emulator, ww.owner, ww, "ext.txt", data)
    fh = writer.external_s3_handle(bucket=ww.bucket, key=key, file_name="ext.txt",
                                   md5=hashlib.md5(data).hexdigest(), size=len(data),
                                   storage_location_id=ww.location, content_type="text/plain")
    got = ww.owner.api.ok(ww.owner.api.get(f"/fileHandle/{fh}", prefix="file"))
    assert (got["bucketName"], got["key"], got["contentMd5"], int(got["contentSize"]),
            int(got["storageLocationId"]), got["fileName"], got["contentType"]) == \
        (ww.bucket, key, hashlib.md5(data).hexdigest(), len(data), ww.location, "ext.txt",
         "text/plain")
    with pytest.raises(InvalidRequest):        # outside the baseKey
        writer.external_s3_handle(bucket=ww.bucket, key="elsewhere/x", file_name="x",
                                  md5="0" * 32, size=1, storage_location_id=ww.location)


def test_create_file_and_idempotent_retry(emulator, writer, ww):
    fh = handle(emulator, writer, ww, "one.txt", b"one")
    name = unique("one") + ".txt"
    eid = writer.create_file(ww.folder, name, fh)
    e = writer.client.get_entity(eid)
    assert e.kind is Kind.FILE and e.version == 1 and e.file_handle_id == fh
    assert e.file_handle.size == 3
    # a retried create (its first answer lost) finds its own handle there: same id
    assert writer.create_file(ww.folder, name, fh) == eid
    other = handle(emulator, writer, ww, "two.txt", b"two")
    with pytest.raises(AlreadyExists):
        writer.create_file(ww.folder, name, other)


def versions(user, eid: int) -> list[dict]:
    api = user.api
    out = api.ok(api.get(f"/entity/syn{eid}/version?offset=0&limit=50"))
    return sorted(out["results"], key=lambda v: v["versionNumber"])


def test_new_version_keeps_history(emulator, writer, ww):
    h1 = handle(emulator, writer, ww, "v.txt", b"version one")
    h2 = handle(emulator, writer, ww, "v.txt", b"version two!")
    eid = writer.create_file(ww.folder, unique("v") + ".txt", h1)
    writer.new_version(eid, h2)
    e = writer.client.get_entity(eid)
    assert e.version == 2 and e.file_handle_id == h2
    vs = versions(ww.owner, eid)
    assert [v["versionNumber"] for v in vs] == [1, 2]
    assert [v["contentMd5"] for v in vs] == [hashlib.md5(b"version one").hexdigest(),
                                              hashlib.md5(b"version two!").hexdigest()]
    api = ww.owner.api
    v1 = api.ok(api.get(f"/entity/syn{eid}/version/1"))
    assert v1["dataFileHandleId"] == str(h1)
    writer.new_version(eid, h2)                 # already current: no version 3
    assert writer.client.get_entity(eid).version == 2
    # the same bytes again under a new handle still make a new version (nothing replaced)
    h3 = handle(emulator, writer, ww, "v.txt", b"version two!")
    writer.new_version(eid, h3)
    assert [v["versionNumber"] for v in versions(ww.owner, eid)] == [1, 2, 3]
    assert api.ok(api.get(f"/entity/syn{eid}/version/2"))["dataFileHandleId"] == str(h2)


class RacingClient(SynapseClient):
    """Holds each thread's first GET of the entity until both threads have read it, so both
    PUT with the same etag and one of them gets 412."""

    def __init__(self, *args, barrier: threading.Barrier, **kw):
        super().__init__(*args, **kw)
        self.barrier = barrier
        self.held = threading.local()

    def _request(self, method, prefix, path, **kw):
        out = super()._request(method, prefix, path, **kw)
        if method == "GET" and path.startswith("/entity/") and not getattr(self.held, "x", 0):
            self.held.x = 1
            self.barrier.wait(10)
        return out


def test_concurrent_new_versions_both_land(emulator, writer, ww):
    h1, h2, h3 = (handle(emulator, writer, ww, "c.txt", f"content {i}".encode())
                  for i in (1, 2, 3))
    eid = writer.create_file(ww.folder, unique("c") + ".txt", h1)
    client = RacingClient(Endpoints.from_info(emulator.info), ww.owner.token,
                          retry_budget_s=10.0, barrier=threading.Barrier(2))
    racer = SynapseWriter(client)
    errors = []

    def commit(fh):
        try:
            racer.new_version(eid, fh)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(fh,)) for fh in (h2, h3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert client.stats["PUT /entity/{id}"] == 3          # one 412, re-read, re-applied
    vs = versions(ww.owner, eid)
    assert [v["versionNumber"] for v in vs] == [1, 2, 3]
    api = ww.owner.api
    handles = [api.ok(api.get(f"/entity/syn{eid}/version/{n}"))["dataFileHandleId"]
               for n in (1, 2, 3)]
    assert handles[0] == str(h1) and sorted(handles[1:]) == sorted([str(h2), str(h3)])
    client.close()


def test_move_rename_and_name_clash(emulator, writer, ww):
    a = writer.create_folder(ww.folder, unique("a"))
    b = writer.create_folder(ww.folder, unique("b"))
    fh = handle(emulator, writer, ww, "m.txt", b"move me")
    eid = writer.create_file(a.id, "m.txt", fh)
    writer.move(eid, b.id, "moved (1).txt")
    e = writer.client.get_entity(eid)
    assert (e.parent_id, e.name, e.version) == (b.id, "moved (1).txt", 1)
    writer.move(eid, b.id, "moved (1).txt")               # already there: no PUT needed
    writer.move(a.id, ww.folder, a.name + " renamed")
    assert writer.client.get_entity(a.id).name == a.name + " renamed"
    fh2 = handle(emulator, writer, ww, "x.txt", b"x")
    writer.create_file(b.id, "taken.txt", fh2)
    with pytest.raises(AlreadyExists):
        writer.move(eid, b.id, "taken.txt")
    with pytest.raises(InvalidRequest):
        writer.move(eid, b.id, "bad/name")
    with pytest.raises(InvalidRequest):                   # under its own descendant
        writer.move(b.id, b.id, "loop")


def test_delete_moves_to_trash(emulator, writer, ww):
    fh = handle(emulator, writer, ww, "d.txt", b"delete me")
    name = unique("d") + ".txt"
    eid = writer.create_file(ww.folder, name, fh)
    writer.delete(eid)
    with pytest.raises(NotFound):
        writer.client.get_entity(eid)
    assert writer.client.child_id(ww.folder, name) is None
    api = ww.owner.api
    trash = api.ok(api.get("/trashcan/view?offset=0&limit=50"))
    assert any(r["entityId"] == f"syn{eid}" and r["entityName"] == name
               for r in trash["results"])
    writer.delete(eid)                                    # already in the trash: no error


def test_owns_storage_location(writer, other_writer, ww):
    assert writer.owns_storage_location(ww.location) is True
    assert other_writer.owns_storage_location(ww.location) is False
    assert other_writer.owns_storage_location(ww.location) is False
    assert writer.owns_storage_location(ww.location) is True
    assert writer.client.stats["GET /storageLocation/{id}"] == 1
    assert other_writer.client.stats["GET /storageLocation/{id}"] == 1


def test_upload_destination(writer, ww):
    dest = writer.upload_destination(ww.folder)
    assert dest.storage_location_id == ww.location and dest.sts_enabled
    assert dest.is_external_s3 and dest.bucket == ww.bucket and dest.base_key == ww.base_key


def test_multipart_upload_by_a_non_owner(emulator, other_writer, ww, tmp_path):
    data = (hashlib.sha256(b"seed").digest() * (20 * MiB // 32 + 1))[:20 * MiB + 12345]
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    md5 = hashlib.md5(data).hexdigest()
    w = other_writer
    with pytest.raises(PermissionDenied):                 # why non-owners need multipart
        w.external_s3_handle(bucket=ww.bucket, key=f"{ww.base_key}/x", file_name="x",
                             md5=md5, size=len(data), storage_location_id=ww.location)
    fh = w.multipart_upload(str(path), file_name="big.bin", md5=md5, size=len(data),
                            storage_location_id=ww.location)
    assert w.client.stats["PUT /file/multipart/{id}/add/{id}"] == 3
    eid = w.create_file(ww.folder, unique("big") + ".bin", fh)
    e = w.client.get_entity(eid)
    assert e.file_handle.md5 == md5 and e.file_handle.size == len(data)
    assert e.file_handle.storage_location_id == ww.location
    assert e.file_handle.key.startswith(f"{ww.base_key}/{ww.other.id}/")
    got = requests.get(w.client.presigned_url(eid, fh), timeout=60)
    assert got.status_code == 200 and got.content == data
    # the identical request again resumes the completed upload: same handle, no parts sent
    again = w.multipart_upload(str(path), file_name="big.bin", md5=md5, size=len(data),
                               storage_location_id=ww.location)
    assert again == fh and w.client.stats["PUT /file/multipart/{id}/add/{id}"] == 3


def test_multipart_upload_of_changed_bytes_is_not_completed(other_writer, ww, tmp_path):
    path = tmp_path / "small.bin"
    path.write_bytes(b"now different")
    with pytest.raises(ContentChanged):
        other_writer.multipart_upload(str(path), file_name="small.bin",
                                      md5=hashlib.md5(b"what was staged").hexdigest(), size=13,
                                      storage_location_id=ww.location)
    assert other_writer.client.stats["PUT /file/multipart/{id}/complete"] == 0
