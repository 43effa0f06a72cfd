"""S3Reader and UrlReader: unit tests against a scripted local S3-like server, then against
the emulator's SeaweedFS behind its fault-injecting proxy."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time

import pytest

from synfs.errors import NotFound, PermissionDenied, Unavailable
from synfs.s3.reader import S3Reader, UrlReader
from synfs.synapse.credentials import CredentialStore
from synfs.synapse.models import StsCredentials
from tests.harness import wait_for
from tests.seams import FakeHttp, Reply

DATA = bytes(range(256)) * 40          # 10,240 bytes


def s3_error(status: int, code: str) -> Reply:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{code} message</Message><RequestId>1</RequestId></Error>")
    return Reply(status, body, {"Content-Type": "application/xml"})


def ranged(req) -> Reply:
    m = re.match(r"bytes=(\d+)-(\d+)", req.headers.get("Range", ""))
    if not m:
        return Reply(200, DATA)
    start, end = int(m.group(1)), int(m.group(2))
    if start >= len(DATA):
        return s3_error(416, "InvalidRange")
    end = min(end, len(DATA) - 1)
    return Reply(206, DATA[start:end + 1],
                 {"Content-Range": f"bytes {start}-{end}/{len(DATA)}"})


class FakeSts:
    """Vends numbered credentials; ``lifetime`` seconds each (wall clock)."""

    def __init__(self, lifetime: float = 3600.0):
        self.lifetime = lifetime
        self.calls = 0
        self._lock = threading.Lock()

    def sts_credentials(self, entity_id, permission="read_only"):
        with self._lock:
            self.calls += 1
            n = self.calls
        return StsCredentials(
            bucket="bkt", base_key=None, access_key_id=f"AKID{n}",
            secret_access_key=f"SECRETKEY{n}xyz", session_token=f"SESSIONTOKEN{n}xyz",
            expiration=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.lifetime))


@pytest.fixture
def fake():
    server = FakeHttp()
    yield server
    server.close()


def make_reader(fake, lifetime=3600.0, budget=5.0):
    sts = FakeSts(lifetime)
    store = CredentialStore(sts)
    return S3Reader(fake.url, store, retry_budget_s=budget), sts


def access_key_of(req) -> str:
    return re.search(r"Credential=([^/]+)/", req.headers["Authorization"]).group(1)


# ---- S3Reader unit tests -------------------------------------------------------------------

def test_ranged_read_path_style_with_session_token(fake):
    fake.route("GET", r"^/bkt/", ranged)
    reader, sts = make_reader(fake)
    assert reader.read_range(5, 100, "bkt", "base/x y.bin", 10, 100) == DATA[10:110]
    req = fake.calls("GET")[0]
    assert req.path == "/bkt/base/x%20y.bin" and req.headers["Range"] == "bytes=10-109"
    assert req.headers["X-Amz-Security-Token"] == "SESSIONTOKEN1xyz"
    assert "x-amz-checksum-mode" not in {k.lower() for k in req.headers}
    assert reader.read_range(5, 100, "bkt", "k", len(DATA) - 5, 100) == DATA[-5:]
    assert reader.read_range(5, 100, "bkt", "k", len(DATA), 100) == b""
    assert reader.read_range(5, 100, "bkt", "k", 0, 0) == b""
    assert len(fake.calls("GET")) == 3 and sts.calls == 1


def test_server_ignoring_range_is_sliced(fake):
    fake.route("GET", r"^/bkt/", Reply(200, DATA))
    reader, _ = make_reader(fake)
    assert reader.read_range(5, 100, "bkt", "k", 300, 50) == DATA[300:350]


@pytest.mark.parametrize("code,status", [("ExpiredToken", 400), ("ExpiredToken", 403),
                                         ("InvalidToken", 400), ("InvalidAccessKeyId", 403)])
def test_rejected_token_refreshes_once(fake, code, status):
    fake.route("GET", r"^/bkt/", s3_error(status, code), ranged)
    reader, sts = make_reader(fake)
    assert reader.read_range(5, 100, "bkt", "k", 0, 10) == DATA[:10]
    first, second = fake.calls("GET")
    assert (access_key_of(first), access_key_of(second)) == ("AKID1", "AKID2")
    assert sts.calls == 2 and reader.stats["s3 refresh"] == 1


def test_rejected_fresh_token_is_permission_denied(fake):
    fake.route("GET", r"^/bkt/", s3_error(403, "ExpiredToken"))
    reader, sts = make_reader(fake)
    with pytest.raises(PermissionDenied):
        reader.read_range(5, 100, "bkt", "k", 0, 10)
    assert sts.calls == 2 and len(fake.calls()) == 2


def test_fresh_token_expiring_during_retries_is_refreshed_again(fake):
    """A long 5xx outage outlives the fresh set too: once that set's own reported expiry has
    passed, its rejection earns another refresh (it is not a refusal of valid credentials)."""
    sts = FakeSts(lifetime=1.0)
    issued: dict[str, float] = {}

    def script(req):
        key = access_key_of(req)
        issued.setdefault(key, time.time())
        if key == "AKID1":
            return s3_error(403, "ExpiredToken")
        if key == "AKID2":
            expired = time.time() > issued[key] + 1.2
            return s3_error(403, "ExpiredToken") if expired else s3_error(503, "SlowDown")
        return ranged(req)

    fake.route("GET", r"^/bkt/", script)
    reader = S3Reader(fake.url, CredentialStore(sts), retry_budget_s=10)
    assert reader.read_range(5, 100, "bkt", "k", 0, 10) == DATA[:10]
    keys = [access_key_of(r) for r in fake.calls("GET")]
    assert keys[0] == "AKID1" and keys[-1] == "AKID3" and "AKID2" in keys
    assert reader.stats["s3 refresh"] == 2


def test_refreshes_per_request_are_bounded(fake):
    """S3 calling every set expired, even ones whose reported expiry has passed at once (a
    skewed clock), ends in PermissionDenied after a bounded number of refreshes."""
    from synfs.s3.policy import MAX_REFRESHES
    fake.route("GET", r"^/bkt/", s3_error(403, "ExpiredToken"))
    sts = FakeSts(lifetime=-5.0)
    reader = S3Reader(fake.url, CredentialStore(sts), retry_budget_s=5)
    with pytest.raises(PermissionDenied):
        reader.read_range(5, 100, "bkt", "k", 0, 10)
    assert len(fake.calls("GET")) == MAX_REFRESHES + 1


def test_access_denied_with_valid_credentials_is_not_refreshed(fake):
    fake.route("GET", r"^/bkt/", s3_error(403, "AccessDenied"))
    reader, sts = make_reader(fake)
    with pytest.raises(PermissionDenied):
        reader.read_range(5, 100, "bkt", "k", 0, 10)
    assert sts.calls == 1 and len(fake.calls()) == 1


def test_403_after_reported_expiry_refreshes(fake):
    """A plain 403 (SeaweedFS style) for credentials whose reported expiration has passed."""
    fake.route("GET", r"^/bkt/", s3_error(403, "AccessDenied"), ranged)
    sts = FakeSts(lifetime=3600)
    stale = StsCredentials(bucket="bkt", base_key=None, access_key_id="OLD",
                           secret_access_key="s", session_token="t",
                           expiration=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))

    class Store(CredentialStore):
        def get(self, storage_location_id, entity_id, permission="read_only"):
            return stale if self.fetches == 0 and not self.invalidated else super().get(
                storage_location_id, entity_id, permission)

        def invalidate(self, *args):
            self.invalidated = True
            return super().invalidate(*args)

    store = Store(sts)
    store.invalidated = False
    reader = S3Reader(fake.url, store, retry_budget_s=5)
    assert reader.read_range(5, 100, "bkt", "k", 0, 10) == DATA[:10]
    assert [access_key_of(r) for r in fake.calls()] == ["OLD", "AKID1"]


def test_no_such_key_is_not_found(fake):
    fake.route("GET", r"^/bkt/", s3_error(404, "NoSuchKey"))
    reader, _ = make_reader(fake)
    with pytest.raises(NotFound):
        reader.read_range(5, 100, "bkt", "k", 0, 10)
    assert len(fake.calls()) == 1


def test_slowdown_and_5xx_are_retried(fake):
    fake.route("GET", r"^/bkt/", s3_error(503, "SlowDown"), s3_error(500, "InternalError"),
               Reply(drop=True), ranged)
    reader, _ = make_reader(fake)
    assert reader.read_range(5, 100, "bkt", "k", 5, 5) == DATA[5:10]
    assert len(fake.calls()) == 4


def test_5xx_forever_is_unavailable_within_budget(fake):
    fake.route("GET", r"^/bkt/", s3_error(503, "SlowDown"))
    reader, _ = make_reader(fake, budget=2.0)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="503"):
        reader.read_range(5, 100, "bkt", "k", 0, 10)
    assert 1.0 < time.monotonic() - started < 3.0


def test_connection_is_kept_alive_across_credential_sets(fake):
    """One connection per thread carries every GET, whatever the credentials (the lean
    client signs each request; nothing is built per credential set)."""
    ports = []
    fake.route("GET", r"^/bkt/", lambda req: (ports.append(req.client_port), ranged(req))[1])
    reader, sts = make_reader(fake)
    assert reader.read_range(5, 100, "bkt", "k", 0, 10) == DATA[:10]
    reader.credentials.invalidate(5, "read_only", reader.credentials.get(5, 100))
    assert reader.read_range(5, 100, "bkt", "k", 10, 10) == DATA[10:20]
    assert [access_key_of(r) for r in fake.calls("GET")] == ["AKID1", "AKID2"]
    assert len(ports) == 2 and ports[0] == ports[1]
    reader.close()


def test_concurrent_reads(fake):
    fake.route("GET", r"^/bkt/", ranged)
    reader, sts = make_reader(fake)
    results = {}

    def read(i):
        results[i] = reader.read_range(5, 100, "bkt", "k", i * 100, 100)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i] == DATA[i * 100:(i + 1) * 100] for i in range(32))
    assert sts.calls == 1


def test_secrets_never_logged(fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.route("GET", r"^/bkt/", s3_error(400, "ExpiredToken"), s3_error(503, "SlowDown"), ranged)
    reader, _ = make_reader(fake)
    reader.read_range(5, 100, "bkt", "k", 0, 10)
    for n in (1, 2):
        assert f"SECRETKEY{n}xyz" not in caplog.text
        assert f"SESSIONTOKEN{n}xyz" not in caplog.text
    assert "SECRETKEY" not in repr(reader) and "SESSIONTOKEN" not in repr(reader.credentials)


# ---- UrlReader unit tests --------------------------------------------------------------------

class Urls:
    def __init__(self, base: str):
        self.base = base
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.base}/bkt/k?X-Amz-Signature=SIG{self.n}secret"


def test_url_reader_ranges(fake):
    fake.route("GET", r"^/bkt/k$", ranged)
    urls = Urls(fake.url)
    reader = UrlReader(5.0)
    assert reader.read_range(urls, 1000, 24) == DATA[1000:1024]
    assert reader.read_range(urls, len(DATA) - 4, 24) == DATA[-4:]
    assert reader.read_range(urls, len(DATA), 24) == b""
    assert reader.read_range(urls, 0, 0) == b""
    assert urls.n == 3 and fake.calls()[0].headers["Range"] == "bytes=1000-1023"
    fake.route("GET", r"^/bkt/k$", Reply(200, DATA))
    assert reader.read_range(urls, 7, 3) == DATA[7:10]


def test_url_reader_refetches_url_once_on_403(fake):
    fake.route("GET", r"^/bkt/k$", s3_error(403, "AccessDenied"), ranged)
    urls = Urls(fake.url)
    assert UrlReader(5.0).read_range(urls, 0, 4) == DATA[:4]
    assert urls.n == 2
    assert [r.query["X-Amz-Signature"] for r in fake.calls()] == [["SIG1secret"], ["SIG2secret"]]
    fake.route("GET", r"^/bkt/k$", s3_error(403, "AccessDenied"))
    with pytest.raises(PermissionDenied):
        UrlReader(5.0).read_range(urls, 0, 4)


def test_url_reader_errors(fake, caplog):
    caplog.set_level(logging.DEBUG)
    urls = Urls(fake.url)
    fake.route("GET", r"^/bkt/k$", s3_error(404, "NoSuchKey"))
    with pytest.raises(NotFound) as info:
        UrlReader(5.0).read_range(urls, 0, 4)
    assert "secret" not in str(info.value)
    fake.route("GET", r"^/bkt/k$", s3_error(503, "SlowDown"), Reply(drop=True), ranged)
    assert UrlReader(5.0).read_range(urls, 0, 4) == DATA[:4]
    fake.route("GET", r"^/bkt/k$", s3_error(503, "SlowDown"))
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        UrlReader(2.0).read_range(urls, 0, 4)
    assert time.monotonic() - started < 3.0 and "secret" not in str(info.value)
    assert "SIG" not in caplog.text


# ---- integration: the emulator's SeaweedFS behind its fault proxy -----------------------------

from tests.seams import client_for, seed_world  # noqa: E402


@pytest.fixture
def world(emulator):
    return seed_world(emulator)


@pytest.fixture
def client(emulator, world):
    c = client_for(emulator, world.user.token, retry_budget_s=10.0)
    yield c
    c.close()


def s3_reader(emulator, client, budget=10.0, **store_kw):
    return S3Reader(emulator.info["s3Endpoint"], CredentialStore(client, **store_kw),
                    retry_budget_s=budget)


def read_file(reader, client, name, start, length):
    e = client.get_entity(name)
    fh = e.file_handle
    return reader.read_range(fh.storage_location_id, e.id, fh.bucket, fh.key, start, length)


def test_emulator_sts_reads(emulator, client, world):
    reader = s3_reader(emulator, client)
    for name in ("small.bin", "deep.txt", "ext.csv"):
        eid, data = world.files[name]
        assert read_file(reader, client, eid, 0, len(data)) == data
        assert read_file(reader, client, eid, 7, 1000) == data[7:1007]
        assert read_file(reader, client, eid, len(data) - 10, 4096) == data[-10:]
        assert read_file(reader, client, eid, len(data), 4096) == b""
    # one STS call per storage location, however many files and reads
    assert client.stats["GET /entity/{id}/sts"] == 2
    eid, _ = world.files["empty.txt"]
    assert read_file(reader, client, eid, 0, 0) == b""
    assert read_file(reader, client, eid, 0, 4096) == b""


def test_emulator_missing_key_and_other_prefix(emulator, client, world):
    reader = s3_reader(emulator, client)
    e = client.get_entity(world.files["small.bin"][0])
    fh = e.file_handle
    with pytest.raises(NotFound):
        reader.read_range(fh.storage_location_id, e.id, fh.bucket, fh.key + ".nope", 0, 10)
    # the external location's credentials are scoped to its baseKey: other keys are denied
    x = client.get_entity(world.files["ext.csv"][0])
    with pytest.raises(PermissionDenied):
        reader.read_range(x.file_handle.storage_location_id, x.id, x.file_handle.bucket,
                          "outside-the-base-key/x", 0, 10)


def test_emulator_stranger_gets_no_credentials(emulator, world):
    stranger = client_for(emulator, world.stranger.token)
    reader = s3_reader(emulator, stranger)
    with pytest.raises(PermissionDenied):
        reader.read_range(world.sts_location, world.files["small.bin"][0], "b", "k", 0, 10)


def test_emulator_sts_expiry_refreshes_proactively(emulator, client, world):
    emulator.set_faults(sts_expiration_s=3)
    reader = s3_reader(emulator, client)
    eid, data = world.files["small.bin"]
    assert read_file(reader, client, eid, 0, 100) == data[:100]
    first = reader.credentials.get(world.sts_location, eid)       # the cached set
    # past half its lifetime, still accepted by S3: the next read fetches a new set first
    wait_for(lambda: first.remaining() < 1.2, timeout=10, what="half the lifetime")
    assert read_file(reader, client, eid, 100, 100) == data[100:200]
    assert client.stats["GET /entity/{id}/sts"] == 2
    assert reader.stats["s3 refresh"] == 0


def test_emulator_expired_token_refreshes_once(emulator, client, world):
    """The store believes the credentials fresh (its wall clock lags), S3 says they expired:
    the reader invalidates them, fetches new ones and retries once."""
    emulator.set_faults(sts_expiration_s=3)
    lagging = lambda: dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=10)  # noqa: E731
    reader = s3_reader(emulator, client, wall=lagging)
    eid, data = world.files["small.bin"]
    assert read_file(reader, client, eid, 0, 100) == data[:100]
    first = reader.credentials.get(world.sts_location, eid)       # the cached set
    wait_for(lambda: first.remaining() < -0.1, timeout=10, what="expiry at the proxy")
    assert reader.credentials.get(world.sts_location, eid) is first  # the store: still fresh
    assert read_file(reader, client, eid, 100, 100) == data[100:200]
    assert reader.stats["s3 refresh"] == 1
    assert client.stats["GET /entity/{id}/sts"] == 2


@pytest.mark.parametrize("status", [503, 500])
def test_emulator_s3_errors_are_unavailable(emulator, client, world, status):
    reader = s3_reader(emulator, client, budget=2.0)
    eid, data = world.files["small.bin"]
    e = client.get_entity(eid)
    emulator.set_faults(s3_error_rate=1.0, s3_error_status=status)
    started = time.monotonic()
    with pytest.raises(Unavailable, match=str(status)):
        read_file(reader, client, eid, 0, 10)
    assert time.monotonic() - started < 4.0
    assert reader.stats["s3 GetObject"] >= 2
    emulator.set_faults(s3_error_rate=0.0)
    fh = e.file_handle
    assert reader.read_range(fh.storage_location_id, eid, fh.bucket, fh.key, 0, 10) == data[:10]


def test_emulator_presigned_reads_for_non_sts_files(emulator, client, world):
    eid, data = world.files["hello.bin"]
    e = client.get_entity(eid)
    assert e.file_handle.storage_location_id == 1
    reader = UrlReader(10.0)
    provider = lambda: client.presigned_url(eid, e.file_handle_id)  # noqa: E731
    assert reader.read_range(provider, 0, len(data)) == data
    assert reader.read_range(provider, 1000, 5000) == data[1000:6000]
    assert reader.read_range(provider, len(data) - 3, 100) == data[-3:]
    assert reader.read_range(provider, len(data), 100) == b""
    assert client.stats["POST /fileHandle/batch"] == 4


def test_emulator_secrets_never_logged(emulator, client, world, caplog):
    caplog.set_level(logging.DEBUG)
    emulator.set_faults(sts_expiration_s=3)
    lagging = lambda: dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=10)  # noqa: E731
    store = CredentialStore(client, wall=lagging)
    reader = S3Reader(emulator.info["s3Endpoint"], store, retry_budget_s=10.0)
    eid, data = world.files["small.bin"]
    seen = [store.get(world.sts_location, eid)]
    assert read_file(reader, client, eid, 0, 10) == data[:10]
    # expired at the proxy (the store's lagging clock still calls it fresh): forces a refresh
    wait_for(lambda: seen[0].remaining() < -0.1, timeout=10, what="expiry at the proxy")
    assert read_file(reader, client, eid, 0, 10) == data[:10]
    seen.append(store.get(world.sts_location, eid))
    hello, hello_data = world.files["hello.bin"]
    fh = client.get_entity(hello).file_handle_id
    urls = []
    provider = lambda: urls.append(client.presigned_url(hello, fh)) or urls[-1]  # noqa: E731
    assert UrlReader(5.0).read_range(provider, 0, 10) == hello_data[:10]
    text = caplog.text
    assert world.user.token not in text
    for creds in seen:
        assert creds.secret_access_key not in text and creds.session_token not in text
        assert creds.secret_access_key not in repr(creds) + repr(store) + repr(reader)
    for url in urls:
        assert url.split("?", 1)[1] not in text
