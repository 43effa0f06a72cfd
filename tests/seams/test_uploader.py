"""S3Uploader: unit tests against a scripted S3-like server (ACL fallback, quota and size
errors, part concurrency, aborts, ETag checks, secrets), then against the emulator's SeaweedFS
behind its fault-injecting proxy (content, MD5, ACL, scoping, expiry, error budget, aborts)."""

from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import logging
import re
import threading
import time
import uuid

import pytest

from synfs.errors import PermissionDenied, Unavailable
from synfs.s3.uploader import ACL, S3Uploader
from synfs.synapse.credentials import CredentialStore
from synfs.synapse.models import StsCredentials
from tests.seams import FakeHttp, Reply, client_for
from tests.seams.test_writer import external_world

MiB = 1024 * 1024


def s3_error(status: int, code: str, message: str | None = None) -> Reply:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message or code + ' message'}</Message><RequestId>1</RequestId></Error>")
    return Reply(status, body, {"Content-Type": "application/xml"})


class FakeSts:
    """Vends numbered one-hour credentials, recording the permissions asked for."""

    def __init__(self):
        self.calls: list[str] = []

    def sts_credentials(self, entity_id, permission="read_only"):
        self.calls.append(permission)        # list.append is atomic
        n = len(self.calls)
        return StsCredentials(
            bucket="bkt", base_key="base", access_key_id=f"AKID{n}",
            secret_access_key=f"SECRETKEY{n}xyz", session_token=f"SESSIONTOKEN{n}xyz",
            expiration=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))


class FakeS3:
    """A minimal S3: PutObject, multipart, HeadObject, DeleteObject; knobs for failures."""

    def __init__(self, http: FakeHttp):
        self.http = http
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.refuse_acl = False
        self.put_reply: Reply | None = None          # answer every object/part PUT with this
        self.etag_override: str | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        http.route("*", r"^/bkt/", self.handle)

    def handle(self, req) -> Reply:
        key = req.path[len("/bkt/"):]
        q = req.query
        if self.refuse_acl and acl_of(req):
            return s3_error(400, "InvalidArgument", "Invalid canned ACL")
        if req.method == "PUT":
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return self.put(req, key, q)
            finally:
                with self._lock:
                    self.in_flight -= 1
        if req.method == "POST" and "uploadId" not in q:     # ?uploads (blank: not parsed)
            uid = uuid.uuid4().hex
            self.uploads[uid] = {}
            return Reply(200, f"<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>{key}"
                              f"</Key><UploadId>{uid}</UploadId></InitiateMultipartUploadResult>")
        if req.method == "POST" and "uploadId" in q:
            parts = self.uploads.pop(q["uploadId"][0])
            data = b"".join(parts[n] for n in sorted(parts))
            self.objects[key] = data
            etag = hashlib.md5(b"".join(hashlib.md5(parts[n]).digest()
                                        for n in sorted(parts))).hexdigest()
            return Reply(200, f"<CompleteMultipartUploadResult><Key>{key}</Key><ETag>"
                              f"&quot;{etag}-{len(parts)}&quot;</ETag>"
                              "</CompleteMultipartUploadResult>")
        if req.method == "DELETE" and "uploadId" in q:
            self.uploads.pop(q["uploadId"][0], None)
            return Reply(204)
        if req.method == "DELETE":
            self.objects.pop(key, None)
            return Reply(204)
        if req.method == "HEAD":
            if key not in self.objects:
                return Reply(404)
            return Reply(200, b"x" * len(self.objects[key]))   # HEAD: length only
        return s3_error(400, "NotImplemented")

    def put(self, req, key: str, q: dict) -> Reply:
        time.sleep(0.02)
        if self.put_reply is not None:
            return self.put_reply
        md5 = hashlib.md5(req.body)
        if acl_of(req, "content-md5") != base64.b64encode(md5.digest()).decode():
            return s3_error(400, "BadDigest")
        if "uploadId" in q:
            self.uploads[q["uploadId"][0]][int(q["partNumber"][0])] = req.body
        else:
            self.objects[key] = req.body
        return Reply(200, b"", {"ETag": f'"{self.etag_override or md5.hexdigest()}"'})


@pytest.fixture
def fake():
    server = FakeHttp()
    yield server
    server.close()


def make(fake, budget=3.0, **kw):
    s3 = FakeS3(fake)
    sts = FakeSts()
    return S3Uploader(fake.url, CredentialStore(sts), retry_budget_s=budget, **kw), s3, sts


def staged(tmp_path, size: int, name: str = "f.bin") -> tuple[str, bytes]:
    data = (hashlib.sha256(name.encode()).digest() * (size // 32 + 1))[:size]
    path = tmp_path / name
    path.write_bytes(data)
    return str(path), data


def acl_of(req, header: str = "x-amz-acl") -> str | None:
    return {k.lower(): v for k, v in req.headers.items()}.get(header)


# ---- unit ----------------------------------------------------------------------------------

def test_small_put_with_acl_md5_and_head(fake, tmp_path):
    up, s3, sts = make(fake)
    path, data = staged(tmp_path, 1000)
    assert up.upload(5, 9, "bkt", "base/u/f.bin", path) == (hashlib.md5(data).hexdigest(), 1000)
    assert s3.objects["base/u/f.bin"] == data
    put = fake.calls("PUT")[0]
    assert acl_of(put) == ACL and sts.calls == ["read_write"]
    assert [r.method for r in fake.calls()] == ["PUT", "HEAD"]
    path0, _ = staged(tmp_path, 0, "empty")
    assert up.upload(5, 9, "bkt", "base/u/empty", path0) == (hashlib.md5(b"").hexdigest(), 0)


def test_acl_refused_bucket_is_written_without_and_remembered(fake, tmp_path):
    up, s3, _ = make(fake, part_size=1024)
    s3.refuse_acl = True
    path, data = staged(tmp_path, 100)
    up.upload(5, 9, "bkt", "base/a", path)
    assert [acl_of(r) for r in fake.calls("PUT")] == [ACL, None]
    big, big_data = staged(tmp_path, 3000, "big")
    up.upload(5, 9, "bkt", "base/b", big)                 # multipart: no ACL tried again
    assert s3.objects["base/b"] == big_data
    assert all(acl_of(r) is None for r in fake.calls()[2:])


def test_multipart_parts_in_order_with_bounded_concurrency(fake, tmp_path):
    up, s3, _ = make(fake, part_size=1024, max_concurrency=3)
    path, data = staged(tmp_path, 10 * 1024 + 7)
    md5, size = up.upload(5, 9, "bkt", "base/m", path)
    assert (md5, size) == (hashlib.md5(data).hexdigest(), len(data))
    assert s3.objects["base/m"] == data and not s3.uploads
    assert len(fake.calls("PUT")) == 11 and 1 < s3.max_in_flight <= 3
    create = fake.calls("POST")[0]
    assert acl_of(create) == ACL


@pytest.mark.parametrize("code,status,err", [("QuotaExceeded", 403, errno.EDQUOT),
                                             ("EntityTooLarge", 400, errno.EFBIG),
                                             ("AccessDenied", 403, errno.EACCES)])
def test_refusals_map_to_errno(fake, tmp_path, code, status, err):
    up, s3, sts = make(fake)
    s3.put_reply = s3_error(status, code)
    path, _ = staged(tmp_path, 10)
    with pytest.raises(Exception) as info:
        up.upload(5, 9, "bkt", "base/q", path)
    assert getattr(info.value, "errno", None) == err
    assert len(fake.calls("PUT")) == 1 and len(sts.calls) == 1


def test_expired_token_refreshes_once(fake, tmp_path):
    up, s3, sts = make(fake)
    fake.route("PUT", r"^/bkt/", s3_error(400, "ExpiredToken"), s3.handle)
    path, data = staged(tmp_path, 10)
    up.upload(5, 9, "bkt", "base/e", path)
    keys = [re.search(r"Credential=([^/]+)/", r.headers["Authorization"]).group(1)
            for r in fake.calls("PUT")]
    assert keys == ["AKID1", "AKID2"] and up.stats["s3 refresh"] == 1


def test_failing_parts_abort_the_upload(fake, tmp_path):
    up, s3, _ = make(fake, budget=1.0, part_size=1024)
    path, _ = staged(tmp_path, 5000)
    s3.put_reply = s3_error(503, "SlowDown")
    started = time.monotonic()
    with pytest.raises(Unavailable, match="UploadPart"):
        up.upload(5, 9, "bkt", "base/f", path)
    assert time.monotonic() - started < 4.0
    aborts = [r for r in fake.calls("DELETE") if "uploadId" in r.query]
    assert len(aborts) == 1 and not s3.uploads and "base/f" not in s3.objects


def test_etag_mismatch_is_an_error_and_the_object_removed(fake, tmp_path):
    up, s3, _ = make(fake)
    s3.etag_override = "0" * 32
    path, _ = staged(tmp_path, 10)
    with pytest.raises(Unavailable, match="ETag"):
        up.upload(5, 9, "bkt", "base/x", path)
    assert "base/x" not in s3.objects


def test_secrets_never_logged(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    up, s3, _ = make(fake, part_size=1024)
    fake.route("PUT", r"^/bkt/", s3_error(403, "InvalidAccessKeyId"), s3.handle)
    path, _ = staged(tmp_path, 3000)
    up.upload(5, 9, "bkt", "base/s", path)
    s3.put_reply = s3_error(403, "AccessDenied")
    with pytest.raises(PermissionDenied) as info:
        up.upload(5, 9, "bkt", "base/t", path)
    for secret in ("SECRETKEY", "SESSIONTOKEN"):
        assert secret not in caplog.text and secret not in str(info.value)


# ---- integration: SeaweedFS behind the emulator's proxy ---------------------------------------

@pytest.fixture(scope="module")
def uw(emulator):
    """``owner`` owns the external STS folder; ``other`` may only READ and DOWNLOAD."""
    return external_world(emulator, "uploader", ["READ", "DOWNLOAD"])


@pytest.fixture
def client(emulator, uw):
    c = client_for(emulator, uw.owner.token, retry_budget_s=10.0)
    yield c
    c.close()


def uploader(emulator, client, budget=10.0, store=None, **kw):
    return S3Uploader(emulator.info["s3Endpoint"], store or CredentialStore(client),
                      retry_budget_s=budget, **kw)


def new_key(uw, name: str) -> str:
    return f"{uw.base_key}/{uuid.uuid4()}/{name}"


def fetch(emulator, uw, key: str) -> bytes:
    return emulator.s3_admin_client().get_object(Bucket=uw.bucket, Key=key)["Body"].read()


def leftover_uploads(emulator, uw, key: str) -> list:
    found = emulator.s3_admin_client().list_multipart_uploads(Bucket=uw.bucket, Prefix=key)
    return found.get("Uploads") or []


def test_emulator_small_and_multipart_uploads(emulator, client, uw, tmp_path):
    up = uploader(emulator, client)
    for size in (0, 1, 100_000, 20 * MiB + 3):
        path, data = staged(tmp_path, size, f"f{size}.bin")
        key = new_key(uw, f"f{size}.bin")
        assert up.upload(uw.location, uw.folder, uw.bucket, key, path) == \
            (hashlib.md5(data).hexdigest(), size)
        assert fetch(emulator, uw, key) == data
    assert (up.stats["s3 PutObject"], up.stats["s3 UploadPart"], up.stats["s3 HeadObject"],
            up.stats["s3 CompleteMultipartUpload"]) == (3, 3, 4, 1)
    assert not leftover_uploads(emulator, uw, uw.base_key)
    # the ACL was accepted (SeaweedFS knows bucket-owner-full-control): never dropped
    assert uw.bucket not in up._no_acl
    # the handle Synapse registers from it serves the same bytes
    from synfs.synapse.writer import SynapseWriter
    writer = SynapseWriter(client)
    fh = writer.external_s3_handle(bucket=uw.bucket, key=key, file_name="big.bin",
                                   md5=hashlib.md5(data).hexdigest(), size=len(data),
                                   storage_location_id=uw.location)
    eid = writer.create_file(uw.folder, f"big {uuid.uuid4().hex[:6]}.bin", fh)
    assert client.get_entity(eid).file_handle.md5 == hashlib.md5(data).hexdigest()
    orphan = new_key(uw, "orphan")                # best-effort cleanup; missing keys are fine
    up.upload(uw.location, uw.folder, uw.bucket, orphan, path)
    up.delete(uw.location, uw.folder, uw.bucket, orphan)
    up.delete(uw.location, uw.folder, uw.bucket, orphan)
    assert not emulator.s3_admin_client().list_objects_v2(
        Bucket=uw.bucket, Prefix=orphan).get("Contents")


class ReadOnlyStore(CredentialStore):
    """Hands out read_only credentials whatever is asked (a mis-scoped token)."""

    def get(self, storage_location_id, entity_id, permission="read_only"):
        return super().get(storage_location_id, entity_id, "read_only")


def test_emulator_permission_denied(emulator, client, uw, tmp_path):
    small, _ = staged(tmp_path, 10)
    big, _ = staged(tmp_path, 9 * MiB, "big")
    up = uploader(emulator, client, store=ReadOnlyStore(client))
    for path in (small, big):
        with pytest.raises(PermissionDenied):
            up.upload(uw.location, uw.folder, uw.bucket, new_key(uw, "ro"), path)
    assert up.stats["s3 refresh"] == 0
    up = uploader(emulator, client)
    for path in (small, big):                    # outside the baseKey
        with pytest.raises(PermissionDenied):
            up.upload(uw.location, uw.folder, uw.bucket, f"elsewhere/{uuid.uuid4()}/x", path)
    reader = client_for(emulator, uw.other.token)   # no UPDATE/CREATE/DELETE: no token
    with pytest.raises(PermissionDenied):
        uploader(emulator, reader).upload(uw.location, uw.folder, uw.bucket, "k", small)


def test_emulator_token_expiring_mid_multipart_is_refreshed(emulator, client, uw, tmp_path):
    """Credentials live 3 s at the proxy, parts take ~1 s each and go one at a time; the
    store's lagging clock believes them fresh, so S3's ExpiredToken triggers the refresh."""
    lagging = lambda: dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=10)  # noqa: E731
    emulator.set_faults(sts_expiration_s=3, s3_latency_ms=1000)
    up = uploader(emulator, client, store=CredentialStore(client, wall=lagging),
                  max_concurrency=1)
    path, data = staged(tmp_path, 20 * MiB + 1, "expiring.bin")
    key = new_key(uw, "expiring.bin")
    assert up.upload(uw.location, uw.folder, uw.bucket, key, path) == \
        (hashlib.md5(data).hexdigest(), len(data))
    assert up.stats["s3 refresh"] >= 1 and up.stats["s3 UploadPart"] >= 3
    emulator.reset_faults()
    assert fetch(emulator, uw, key) == data


def test_emulator_s3_down_is_unavailable_within_budget(emulator, client, uw, tmp_path):
    up = uploader(emulator, client, budget=2.0)
    path, _ = staged(tmp_path, 20 * MiB, "down.bin")
    key = new_key(uw, "down.bin")
    emulator.set_faults(s3_error_rate=1.0)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        up.upload(uw.location, uw.folder, uw.bucket, key, path)
    assert time.monotonic() - started < 4.0
    assert up.stats["s3 CreateMultipartUpload"] >= 2
    emulator.reset_faults()
    assert not leftover_uploads(emulator, uw, key)


class Hooked:
    """boto3 client: S3 fails every request after CreateMultipartUpload until the abort."""

    def __init__(self, inner, emulator):
        self.inner = inner
        self.emulator = emulator

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def create_multipart_upload(self, **kw):
        out = self.inner.create_multipart_upload(**kw)
        self.emulator.set_faults(s3_error_rate=1.0)
        return out

    def abort_multipart_upload(self, **kw):
        self.emulator.set_faults(s3_error_rate=0.0)
        return self.inner.abort_multipart_upload(**kw)


def test_emulator_failed_parts_are_aborted(emulator, client, uw, tmp_path, monkeypatch):
    up = uploader(emulator, client, budget=2.0)
    original = up._client
    monkeypatch.setattr(up, "_client", lambda creds: Hooked(original(creds), emulator))
    path, _ = staged(tmp_path, 20 * MiB, "aborted.bin")
    key = new_key(uw, "aborted.bin")
    started = time.monotonic()
    with pytest.raises(Unavailable, match="UploadPart"):
        up.upload(uw.location, uw.folder, uw.bucket, key, path)
    assert time.monotonic() - started < 6.0
    assert up.stats["s3 AbortMultipartUpload"] == 1
    assert not leftover_uploads(emulator, uw, key)
    assert not emulator.s3_admin_client().list_objects_v2(
        Bucket=uw.bucket, Prefix=key).get("Contents")


def test_emulator_secrets_never_logged(emulator, client, uw, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    store = CredentialStore(client)
    up = uploader(emulator, client, store=store)
    path, _ = staged(tmp_path, 9 * MiB, "secret.bin")
    up.upload(uw.location, uw.folder, uw.bucket, new_key(uw, "secret.bin"), path)
    creds = store.get(uw.location, uw.folder, "read_write")
    for secret in (creds.secret_access_key, creds.session_token, uw.owner.token):
        assert secret not in caplog.text
