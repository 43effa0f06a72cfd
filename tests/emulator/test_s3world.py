"""S3World against a real SeaweedFS: STS scoping per Synapse's session policy, the proxy's
expiry and fault injection, presigned URLs, multipart, streaming and persistence.

One S3World serves the module; the persistence test runs a second one at the same time
(proving all ports are chosen per instance)."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from synfs.emulator.s3world import S3World

pytestmark = pytest.mark.timeout(120)

EXT = S3World.EXTERNAL_BUCKET
BASE = "lab/project"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = S3World(tmp_path_factory.mktemp("s3world"))
    w.start()
    try:
        admin = w.admin_client()
        for key in [f"{BASE}/a.txt", f"{BASE}/sub/b.txt", f"{BASE}/owner.txt", "other/c.txt",
                    "owner.txt", f"{BASE}-sibling/d.txt"]:
            admin.put_object(Bucket=EXT, Key=key, Body=b"content of " + key.encode())
        yield w
    finally:
        w.stop()


def client_for(world: S3World, creds: dict, attempts: int = 1):
    return boto3.client(
        "s3", endpoint_url=world.endpoint_url, region_name="us-east-1",
        aws_access_key_id=creds["accessKeyId"], aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=creds["sessionToken"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": attempts,
                                                                 "mode": "standard"}))


def error_of(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call()
    resp = info.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]


def denied(call) -> None:
    assert error_of(call) == ("AccessDenied", 403)


@pytest.fixture(scope="module")
def ro(world):
    return client_for(world, world.mint(EXT, BASE, "read_only", "sts-1-syn10"))


@pytest.fixture(scope="module")
def rw(world):
    return client_for(world, world.mint(EXT, BASE, "read_write", "sts-1-syn11"))


# -- pure policy ------------------------------------------------------------------------------
def test_session_policy_matches_synapse_template():
    p = S3World.session_policy("b", "my/base", "read_only")
    sids = [s["Sid"] for s in p["Statement"]]
    assert sids == ["ListParentBuckets", "ListBucketAccess", "FolderAccess", "DenyOwnerTxt"]
    lp, lb, fa, deny = p["Statement"]
    assert lp["Condition"] == {"StringEquals": {"s3:prefix": ["my/base"]}}
    assert lb["Condition"] == {"StringLike": {"s3:prefix": ["my/base/*"]}}
    assert fa["Action"] == ["s3:GetObject", "s3:ListBucket"]
    assert fa["Resource"] == ["arn:aws:s3:::b/my/base", "arn:aws:s3:::b/my/base/*"]
    assert deny == {"Sid": "DenyOwnerTxt", "Effect": "Deny", "Action": ["*"],
                    "Resource": ["arn:aws:s3:::b/my/base/owner.txt"]}
    rw = S3World.session_policy("b", None, "read_write")
    assert rw["Statement"][0]["Condition"] == {"StringEquals": {"s3:prefix": [""]}}
    assert rw["Statement"][1]["Condition"] == {"StringLike": {"s3:prefix": ["*"]}}
    assert rw["Statement"][2]["Action"] == [
        "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:ListBucket",
        "s3:ListMultipartUploadParts", "s3:PutObject", "s3:ListBucketMultipartUploads",
        "s3:PutObjectAcl"]
    assert rw["Statement"][2]["Resource"] == ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]
    assert rw["Statement"][3]["Resource"] == ["arn:aws:s3:::b/owner.txt"]
    with pytest.raises(ValueError):
        S3World.session_policy("b", None, "admin")


# -- read_only ------------------------------------------------------------------------------
def test_mint_returns_synapse_fields(world):
    creds = world.mint(EXT, BASE, "read_only", "sts-1-syn12", duration_s=900)
    assert set(creds) == {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}
    assert creds["expiration"].tzinfo is not None
    left = (creds["expiration"] - datetime.now(timezone.utc)).total_seconds()
    assert 800 < left <= 905


def test_read_only_scoping(world, ro):
    assert ro.get_object(Bucket=EXT, Key=f"{BASE}/a.txt")["Body"].read() == \
        f"content of {BASE}/a.txt".encode()
    assert ro.head_object(Bucket=EXT, Key=f"{BASE}/sub/b.txt")["ContentLength"] > 0
    denied(lambda: ro.put_object(Bucket=EXT, Key=f"{BASE}/new.txt", Body=b"x"))
    denied(lambda: ro.delete_object(Bucket=EXT, Key=f"{BASE}/a.txt"))
    denied(lambda: ro.get_object(Bucket=EXT, Key="other/c.txt"))
    denied(lambda: ro.get_object(Bucket=EXT, Key=f"{BASE}-sibling/d.txt"))
    denied(lambda: ro.get_object(Bucket=EXT, Key=f"{BASE}/owner.txt"))
    listing = ro.list_objects_v2(Bucket=EXT, Prefix=f"{BASE}/", Delimiter="/")
    assert [o["Key"] for o in listing.get("Contents", [])] == [f"{BASE}/a.txt", f"{BASE}/owner.txt"]
    assert [p["Prefix"] for p in listing.get("CommonPrefixes", [])] == [f"{BASE}/sub/"]
    ro.list_objects_v2(Bucket=EXT, Prefix=f"{BASE}/sub/")
    ro.list_objects_v2(Bucket=EXT, Prefix=BASE, Delimiter="/")  # StringEquals folder
    denied(lambda: ro.list_objects_v2(Bucket=EXT))
    denied(lambda: ro.list_objects_v2(Bucket=EXT, Prefix="other/"))
    denied(lambda: ro.list_objects_v2(Bucket=EXT, Prefix=f"{BASE}-sibling/"))
    denied(lambda: ro.get_object(Bucket=S3World.SYNAPSE_BUCKET, Key=f"{BASE}/a.txt"))


# -- read_write -----------------------------------------------------------------------------
def test_read_write_scoping(world, rw):
    key = f"{BASE}/rw/file.bin"
    rw.put_object(Bucket=EXT, Key=key, Body=b"written")
    assert rw.get_object(Bucket=EXT, Key=key)["Body"].read() == b"written"
    assert world.head_object(EXT, key)["ContentLength"] == 7
    rw.delete_object(Bucket=EXT, Key=key)
    assert world.head_object(EXT, key) is None
    denied(lambda: rw.put_object(Bucket=EXT, Key="other/x.txt", Body=b"x"))
    denied(lambda: rw.put_object(Bucket=EXT, Key=f"{BASE}/owner.txt", Body=b"x"))
    denied(lambda: rw.get_object(Bucket=EXT, Key=f"{BASE}/owner.txt"))
    denied(lambda: rw.delete_object(Bucket=EXT, Key=f"{BASE}/owner.txt"))
    denied(lambda: rw.delete_object(Bucket=EXT, Key="other/c.txt"))
    assert world.read_object(EXT, f"{BASE}/owner.txt") == f"content of {BASE}/owner.txt".encode()


def test_read_write_acl_bucket_owner_full_control(world, rw):
    """SeaweedFS 4.48 accepts the canned ACL that synapseclient sends (PutObjectAcl in policy)."""
    key = f"{BASE}/acl/file.txt"
    rw.put_object(Bucket=EXT, Key=key, Body=b"acl", ACL="bucket-owner-full-control")
    assert world.read_object(EXT, key) == b"acl"


def test_read_write_multipart_inside_base_key(world, rw):
    key = f"{BASE}/mp/big.bin"
    parts_data = [os.urandom(5 << 20), os.urandom(1 << 20)]
    up = rw.create_multipart_upload(Bucket=EXT, Key=key)["UploadId"]
    parts = []
    for i, data in enumerate(parts_data, start=1):
        etag = rw.upload_part(Bucket=EXT, Key=key, UploadId=up, PartNumber=i, Body=data)["ETag"]
        parts.append({"PartNumber": i, "ETag": etag})
    assert [p["PartNumber"] for p in rw.list_parts(Bucket=EXT, Key=key, UploadId=up)["Parts"]] \
        == [1, 2]
    rw.complete_multipart_upload(Bucket=EXT, Key=key, UploadId=up,
                                 MultipartUpload={"Parts": parts})
    body = rw.get_object(Bucket=EXT, Key=key)["Body"].read()
    assert hashlib.md5(body).digest() == hashlib.md5(b"".join(parts_data)).digest()
    denied(lambda: rw.create_multipart_upload(Bucket=EXT, Key="other/mp.bin"))
    up2 = rw.create_multipart_upload(Bucket=EXT, Key=f"{BASE}/mp/aborted.bin")["UploadId"]
    rw.abort_multipart_upload(Bucket=EXT, Key=f"{BASE}/mp/aborted.bin", UploadId=up2)


def test_whole_bucket_token_without_base_key(world):
    c = client_for(world, world.mint(EXT, None, "read_write", "sts-1-syn13"))
    keys = [o["Key"] for o in c.list_objects_v2(Bucket=EXT)["Contents"]]
    assert "other/c.txt" in keys and f"{BASE}/a.txt" in keys
    assert c.get_object(Bucket=EXT, Key="other/c.txt")["Body"].read() == b"content of other/c.txt"
    c.put_object(Bucket=EXT, Key="anywhere/new.txt", Body=b"n")
    c.delete_object(Bucket=EXT, Key="anywhere/new.txt")
    assert c.get_object(Bucket=EXT, Key=f"{BASE}/owner.txt")["Body"].read()  # not at root
    denied(lambda: c.get_object(Bucket=EXT, Key="owner.txt"))
    denied(lambda: c.put_object(Bucket=EXT, Key="owner.txt", Body=b"x"))
    denied(lambda: c.get_object(Bucket=S3World.SYNAPSE_BUCKET, Key="x"))


def test_tampered_and_garbage_tokens_rejected(world):
    creds = world.mint(EXT, BASE, "read_only", "sts-1-syn14")
    token = creds["sessionToken"]
    flipped = token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:]
    for bad in ({**creds, "sessionToken": flipped}, {**creds, "sessionToken": "garbage"},
                {**creds, "secretAccessKey": "wrong" + creds["secretAccessKey"][5:]}):
        code, status = error_of(lambda: client_for(world, bad).get_object(
            Bucket=EXT, Key=f"{BASE}/a.txt"))
        assert status == 403
        assert code in ("InvalidAccessKeyId", "InvalidToken", "SignatureDoesNotMatch",
                        "AccessDenied")


# -- proxy: reported expiry and faults ------------------------------------------------------
def test_reported_expiration_rejected_by_proxy(world):
    soon = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    creds = world.mint(EXT, BASE, "read_only", "sts-1-syn15", reported_expiration=soon)
    assert creds["expiration"] == soon
    c = client_for(world, creds)
    assert c.get_object(Bucket=EXT, Key=f"{BASE}/a.txt")["Body"].read()
    time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 0.1)
    assert error_of(lambda: c.get_object(Bucket=EXT, Key=f"{BASE}/a.txt")) == \
        ("ExpiredToken", 403)
    assert error_of(lambda: c.head_object(Bucket=EXT, Key=f"{BASE}/a.txt"))[1] == 403
    # An upload with a body is refused too, and the connection stays usable.
    assert error_of(lambda: c.put_object(Bucket=EXT, Key=f"{BASE}/e", Body=b"x" * 100000)) \
        == ("ExpiredToken", 403)
    # botocore sends "Expect: 100-continue" above 1 MiB: refused before the body is sent.
    assert error_of(lambda: c.put_object(Bucket=EXT, Key=f"{BASE}/e", Body=b"x" * (2 << 20))) \
        == ("ExpiredToken", 403)
    past = world.mint(EXT, BASE, "read_only", "sts-1-syn16",
                      reported_expiration=datetime.now(timezone.utc) - timedelta(seconds=1))
    resp = requests.get(f"{world.endpoint_url}/{EXT}/{BASE}/a.txt",
                        headers={"Authorization": "AWS4-HMAC-SHA256 Credential="
                                 f"{past['accessKeyId']}/20240101/us-east-1/s3/aws4_request, "
                                 "SignedHeaders=host, Signature=00"})
    assert resp.status_code == 403 and "<Code>ExpiredToken</Code>" in resp.text
    assert world.admin_client().get_object(Bucket=EXT, Key=f"{BASE}/a.txt")["Body"].read()


def test_fault_injection_hits_user_traffic_only(world, ro):
    world.faults = SimpleNamespace(s3_error_rate=1.0, s3_error_status=503, s3_latency_ms=0)
    try:
        assert error_of(lambda: ro.get_object(Bucket=EXT, Key=f"{BASE}/a.txt")) == \
            ("SlowDown", 503)
        assert world.admin_client().get_object(Bucket=EXT, Key=f"{BASE}/a.txt")["Body"].read()
        world.faults = SimpleNamespace(s3_error_rate=1.0, s3_error_status=500)
        assert error_of(lambda: ro.get_object(Bucket=EXT, Key=f"{BASE}/a.txt"))[1] == 500
        world.faults = SimpleNamespace(s3_error_rate="bogus", s3_latency_ms=300)
        started = time.monotonic()
        assert ro.get_object(Bucket=EXT, Key=f"{BASE}/a.txt")["Body"].read()
        assert time.monotonic() - started >= 0.3
        world.faults = SimpleNamespace(s3_error_rate=0.0, s3_error_status=503, s3_latency_ms=0)
        assert ro.get_object(Bucket=EXT, Key=f"{BASE}/a.txt")["Body"].read()
    finally:
        world.faults = None


# -- presigned URLs and the admin helpers ---------------------------------------------------
def test_presign_get(world):
    url = world.presign_get(EXT, f"{BASE}/a.txt", expires=30, content_type="text/csv",
                            file_name="a b.txt")
    query = parse_qs(urlsplit(url).query)
    assert "X-Amz-Date" in query and query["X-Amz-Expires"] == ["30"]
    assert url.startswith(world.endpoint_url)
    resp = requests.get(url)
    assert resp.status_code == 200 and resp.content == f"content of {BASE}/a.txt".encode()
    assert resp.headers["Content-Type"] == "text/csv"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="a b.txt"'
    plain = world.presign_get(EXT, f"{BASE}/a.txt", content_type="NOT_SET", file_name="NOT_SET")
    assert "response-content" not in plain
    assert requests.get(plain).status_code == 200
    assert requests.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403


def test_presigned_multipart_and_helpers(world):
    key = "uploads/1/uuid/data.bin"
    up = world.create_multipart(S3World.SYNAPSE_BUCKET, key, content_type="application/x-test")
    chunks = [os.urandom(5 << 20), b"tail"]
    for i, data in enumerate(chunks, start=1):
        url = world.presign_part(S3World.SYNAPSE_BUCKET, key, up, i)
        assert requests.put(url, data=data).status_code == 200
    parts = world.list_parts(S3World.SYNAPSE_BUCKET, key, up)
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 << 20), (2, 4)]
    world.complete_multipart(S3World.SYNAPSE_BUCKET, key, up, parts)
    head = world.head_object(S3World.SYNAPSE_BUCKET, key)
    assert head["ContentLength"] == (5 << 20) + 4 and head["ContentType"] == "application/x-test"
    assert world.read_object(S3World.SYNAPSE_BUCKET, key, max_bytes=10) == chunks[0][:10]
    assert world.head_object(S3World.SYNAPSE_BUCKET, "missing") is None
    assert world.read_object(S3World.SYNAPSE_BUCKET, "missing") is None
    up2 = world.create_multipart(S3World.SYNAPSE_BUCKET, "uploads/aborted")
    world.abort_multipart(S3World.SYNAPSE_BUCKET, "uploads/aborted", up2)
    world.abort_multipart(S3World.SYNAPSE_BUCKET, "uploads/aborted", up2)  # idempotent


def test_proxy_streams_large_and_chunked_bodies(world, rw):
    data = os.urandom(24 << 20)
    key = f"{BASE}/stream/big.bin"
    rw.put_object(Bucket=EXT, Key=key, Body=data)
    got = rw.get_object(Bucket=EXT, Key=key)["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    ranged = rw.get_object(Bucket=EXT, Key=key, Range="bytes=1000-5000999")["Body"].read()
    assert ranged == data[1000:5001000]
    # Transfer-Encoding: chunked request body (requests streams a generator that way).
    url = world.admin_client().generate_presigned_url(
        "put_object", Params={"Bucket": EXT, "Key": f"{BASE}/stream/chunked.bin"})
    n = 3 << 20
    resp = requests.put(url, data=(data[i:min(i + 300000, n)] for i in range(0, n, 300000)))
    assert resp.status_code == 200, resp.text
    assert world.read_object(EXT, f"{BASE}/stream/chunked.bin", max_bytes=None) == data[:n]
    empty = world.admin_client().put_object(Bucket=EXT, Key=f"{BASE}/stream/empty", Body=b"")
    assert empty["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert world.read_object(EXT, f"{BASE}/stream/empty") == b""


# -- persistence (a second world, running alongside the module's one) -------------------------
def test_restart_keeps_objects_and_tokens(tmp_path, world):
    other = S3World(tmp_path / "w2")
    other.start()
    try:
        assert other.endpoint_url != world.endpoint_url
        assert other.backend_url != world.backend_url
        other.admin_client().put_object(Bucket=EXT, Key=f"{BASE}/keep.txt", Body=b"kept")
        creds = other.mint(EXT, BASE, "read_only", "sts-1-syn17")
        soon = other.mint(EXT, BASE, "read_only", "sts-1-syn18",
                          reported_expiration=datetime.now(timezone.utc) - timedelta(seconds=1))
        other.stop()
        other.stop()  # idempotent
        other.start()
        c = client_for(other, creds)
        assert c.get_object(Bucket=EXT, Key=f"{BASE}/keep.txt")["Body"].read() == b"kept"
        denied(lambda: c.get_object(Bucket=EXT, Key="other/c.txt"))
        assert error_of(lambda: client_for(other, soon).get_object(
            Bucket=EXT, Key=f"{BASE}/keep.txt"))[0] == "ExpiredToken"
    finally:
        other.stop()
