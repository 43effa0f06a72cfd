"""The lean ranged-GET client (synfs.s3.getclient) under S3Reader: SigV4 signatures that a
reference signer agrees with, region redirects (scripted, then from the emulator's S3 proxy
in front of SeaweedFS), timeouts, resets and bodies cut short, all within the retry budget."""

from __future__ import annotations

import datetime as dt
import re
import socket
import threading
import time

import pytest

from synfs.errors import Unavailable
from synfs.s3.getclient import EMPTY_SHA256, sign_get
from synfs.s3.reader import S3Reader
from synfs.synapse.credentials import CredentialStore
from synfs.synapse.models import StsCredentials
from tests.seams import FakeHttp, Reply
from tests.seams.test_reader import DATA, FakeSts, client, ranged, world  # noqa: F401 (fixtures)


@pytest.fixture
def fake():
    server = FakeHttp()
    yield server
    server.close()


def scope_region(req) -> str:
    return re.search(r"Credential=[^/]+/\d{8}/([^/]+)/s3/", req.headers["Authorization"]).group(1)


def test_signature_matches_botocore():
    """The SigV4 headers equal what botocore computes for the same request and instant."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    creds = StsCredentials(bucket="b", base_key=None, access_key_id="AKIDEXAMPLE",
                           secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                           session_token="TOKEN/+=", expiration=None)
    req = botocore.awsrequest.AWSRequest("GET", "http://127.0.0.1:9000/b/dir/a%20b~c.bin",
                                         headers={"Range": "bytes=0-99"})
    req.headers["X-Amz-Content-SHA256"] = EMPTY_SHA256
    botocore.auth.S3SigV4Auth(
        botocore.credentials.Credentials("AKIDEXAMPLE", creds.secret_access_key, "TOKEN/+="),
        "s3", "eu-west-1").add_auth(req)
    theirs = req.headers["Authorization"]
    now = dt.datetime.strptime(req.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=dt.timezone.utc)                     # the instant botocore signed at
    ours = sign_get(creds, "eu-west-1", "127.0.0.1:9000", "/b/dir/a%20b~c.bin",
                    {"range": "bytes=0-99"}, now)
    assert ours["authorization"] == theirs, (ours, dict(req.headers))


@pytest.mark.parametrize("answer", ["400-body", "301-header"])
def test_region_redirect_is_followed_and_remembered(fake, answer):
    """A bucket outside the default region: S3 names its region (400 with <Region>, or 301
    with x-amz-bucket-region); the read is signed again for it, and later reads go there."""

    def script(req):
        if scope_region(req) == "eu-west-1":
            return ranged(req)
        if answer == "400-body":
            body = ('<?xml version="1.0"?><Error><Code>AuthorizationHeaderMalformed</Code>'
                    "<Message>wrong region</Message><Region>eu-west-1</Region></Error>")
            return Reply(400, body, {"Content-Type": "application/xml"})
        return Reply(301, '<Error><Code>PermanentRedirect</Code></Error>',
                     {"x-amz-bucket-region": "eu-west-1"})

    fake.route("GET", r"^/bkt/", script)
    reader = S3Reader(fake.url, CredentialStore(FakeSts()), retry_budget_s=5)
    assert reader.read_range(5, 100, "bkt", "k", 10, 20) == DATA[10:30]
    assert [scope_region(r) for r in fake.calls("GET")] == ["us-east-1", "eu-west-1"]
    assert reader.read_range(5, 100, "bkt", "k", 0, 5) == DATA[:5]
    assert [scope_region(r) for r in fake.calls("GET")][2:] == ["eu-west-1"]
    assert reader.client.regions == {"bkt": "eu-west-1"}


def test_redirects_without_a_region_are_not_followed(fake):
    fake.route("GET", r"^/bkt/", Reply(301, "<Error><Code>PermanentRedirect</Code></Error>"))
    reader = S3Reader(fake.url, CredentialStore(FakeSts()), retry_budget_s=1)
    with pytest.raises(Unavailable, match="301 PermanentRedirect"):
        reader.read_range(5, 100, "bkt", "k", 0, 10)
    assert len(fake.calls()) == 1


def test_read_timeout_is_retried_then_unavailable_within_budget(fake):
    fake.route("GET", r"^/bkt/", Reply(delay=1.0, body=DATA[:10]))
    reader = S3Reader(fake.url, CredentialStore(FakeSts()), retry_budget_s=1.5,
                      read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="gave up"):
        reader.read_range(5, 100, "bkt", "k", 0, 10)
    assert time.monotonic() - started < 3.0 and len(fake.calls()) >= 2


def test_slow_answer_within_the_timeout_is_read(fake):
    fake.route("GET", r"^/bkt/", lambda req: Reply(206, ranged(req).body, delay=0.2))
    reader = S3Reader(fake.url, CredentialStore(FakeSts()), retry_budget_s=2, read_timeout=1.0)
    assert reader.read_range(5, 100, "bkt", "k", 3, 7) == DATA[3:10]


def read_head(f) -> bytes | None:
    """One request's head from a connection's file, or None once the client closed it."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline()
        if not line:
            return None
        head += line
    return head


class CuttingServer:
    """Answers the first ``cuts`` GETs with a Content-Length it does not keep (the connection
    closes mid-body) or a reset, then proper 206 answers."""

    def __init__(self, cuts: int, how: str):
        self.cuts, self.how, self.requests = cuts, how, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        with conn:
            f = conn.makefile("rb")
            while (head := read_head(f)) is not None:
                self.requests += 1
                m = re.search(rb"(?i)range: bytes=(\d+)-(\d+)", head)
                start, end = int(m.group(1)), int(m.group(2))
                body = DATA[start:end + 1]
                if self.requests <= self.cuts:
                    if self.how == "reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        return
                    conn.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body[:len(body) // 2])
                    return
                conn.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes "
                             + f"{start}-{end}/{len(DATA)}".encode() + b"\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("how", ["cut", "reset"])
def test_bodies_cut_short_and_resets_are_retried(how):
    server = CuttingServer(cuts=2, how=how)
    try:
        reader = S3Reader(server.url, CredentialStore(FakeSts()), retry_budget_s=5)
        out = bytearray(4000)
        assert reader.read_into(5, 100, "bkt", "k", 100, memoryview(out)) == 4000
        assert bytes(out) == DATA[100:4100] and server.requests == 3
    finally:
        server.close()


def test_keep_alive_connection_closed_by_the_server_is_replaced_at_once(fake):
    """The server dropping an idle keep-alive connection costs no retry delay."""
    fake.route("GET", r"^/bkt/", ranged)
    reader = S3Reader(fake.url, CredentialStore(FakeSts()), retry_budget_s=5)
    assert reader.read_range(5, 100, "bkt", "k", 0, 10) == DATA[:10]
    for conn in list(reader.client._all):
        conn.sock.shutdown(socket.SHUT_RDWR)        # as if the peer had closed it
    started = time.monotonic()
    assert reader.read_range(5, 100, "bkt", "k", 10, 10) == DATA[10:20]
    assert time.monotonic() - started < 0.5 and reader.stats["s3 GetObject"] == 2


# ---- against the emulator: SeaweedFS behind the proxy, the bucket in another region --------

def test_emulator_bucket_in_another_region(emulator, client, world):
    from tests.seams.test_reader import read_file, s3_reader

    eid, data = world.files["ext.csv"]
    bucket = client.get_entity(eid).file_handle.bucket
    reader = s3_reader(emulator, client)
    emulator.set_faults(s3_bucket_regions={bucket: "eu-central-1"})
    try:
        assert read_file(reader, client, eid, 0, len(data)) == data
        assert reader.client.regions == {bucket: "eu-central-1"}
        assert reader.stats["s3 GetObject"] == 1
    finally:
        emulator.set_faults(s3_bucket_regions={})


def test_connections_of_a_finished_worker_thread_are_closed(fake):
    """Worker threads come and go (trio's thread cache): the connections of one that ended
    are closed, not left open until the reader closes."""
    import gc

    fake.route("GET", r"^/bkt/", ranged)
    reader = S3Reader(fake.url, CredentialStore(FakeSts()), retry_budget_s=5)
    seen = []

    def work():
        reader.read_range(5, 100, "bkt", "k", 0, 10)
        seen.extend(reader.client._all)            # this thread's connection, still open
        assert all(c.sock is not None for c in seen)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    gc.collect()
    assert len(seen) == 1 and seen[0].sock is None
    assert reader.read_range(5, 100, "bkt", "k", 0, 10) == DATA[:10]    # this thread's own


class TailLateServer:
    """One keep-alive connection answering each GET with a body of ``size`` bytes, all but
    the last ``tail`` at once and the tail ``pause`` seconds later."""

    def __init__(self, size: int, tail: int, pause: float):
        self.body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        self.tail, self.pause, self.requests = tail, pause, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            f = conn.makefile("rb")
            while read_head(f) is not None:
                self.requests += 1
                size = len(self.body)
                conn.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-"
                             + f"{size - 1}/{size}".encode() + b"\r\nContent-Length: "
                             + str(size).encode() + b"\r\n\r\n" + self.body[:-self.tail])
                time.sleep(self.pause)
                conn.sendall(self.body[-self.tail:])

    def close(self):
        self.sock.close()


def test_a_body_whose_last_bytes_come_late_and_below_the_wakeup_mark_is_read_at_once():
    """Large bodies are received waking once per MiB (SO_RCVLOWAT). The last 300 KiB of a
    3 MiB body arrive 0.3 s after the rest, below the mark: the read still ends when they
    arrive, not at the 2 s read timeout, and the keep-alive connection serves the next GET
    (its headers are read with the default mark again)."""
    from synfs.s3.getclient import LOWAT, GetClient

    server = TailLateServer(3 * LOWAT + 12345, tail=300 * 1024, pause=0.3)
    client = GetClient(server.url, read_timeout=2.0)
    creds = StsCredentials(bucket="bkt", base_key=None, access_key_id="AK",
                           secret_access_key="SK", session_token=None, expiration=None)
    try:
        for _ in range(2):
            out = bytearray(len(server.body))
            started = time.monotonic()
            assert client.get_into(creds, "bkt", "k", 0, memoryview(out)) == len(out)
            assert time.monotonic() - started < 1.5 and bytes(out) == server.body
        assert server.requests == 2 and len(client._all) == 1
    finally:
        client.close()
        server.close()
