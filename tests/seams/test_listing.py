"""S3Lister (``ListObjectsV2`` and ``HeadObject`` with STS credentials): scripted errors on a
local fake S3, then the real thing against the emulator's SeaweedFS with a folder's
``read_only`` credentials (paging, directory prefixes, multipart ETags, the base-key scope)."""

from __future__ import annotations

import hashlib
import io

import boto3.s3.transfer
import pytest

from synfs.errors import PermissionDenied, Unavailable
from synfs.s3.listing import ObjectInfo, S3Lister
from synfs.synapse.credentials import CredentialStore
from tests.seams import FakeHttp, Reply, client_for
from tests.seams.test_reader import FakeSts, access_key_of, s3_error
from tests.seams.test_writer import external_world

LISTING = """<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult><Name>bkt</Name><Prefix>base/</Prefix><KeyCount>1</KeyCount>
<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>
<Contents><Key>base/a.txt</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>
<ETag>&quot;0cc175b9c0f1b6a831c399e269772661&quot;</ETag><Size>1</Size>
<StorageClass>STANDARD</StorageClass></Contents></ListBucketResult>"""


@pytest.fixture
def fake():
    server = FakeHttp()
    yield server
    server.close()


def test_expired_token_refreshes_once_and_5xx_is_retried_within_budget(fake):
    fake.route("GET", r"^/bkt", s3_error(400, "ExpiredToken"), s3_error(503, "SlowDown"),
               Reply(200, LISTING, {"Content-Type": "application/xml"}))
    sts = FakeSts()
    lister = S3Lister(fake.url, CredentialStore(sts), retry_budget_s=5)
    got = list(lister.list_objects(5, 100, "bkt", "base/"))
    assert got == [ObjectInfo("base/a.txt", 1, "0cc175b9c0f1b6a831c399e269772661",
                              got[0].last_modified)]
    assert got[0].etag_is_md5
    assert [access_key_of(r) for r in fake.calls("GET")] == ["AKID1", "AKID2", "AKID2"]
    fake.route("GET", r"^/bkt", s3_error(500, "InternalError"))
    quick = S3Lister(fake.url, CredentialStore(FakeSts()), retry_budget_s=0.3)
    with pytest.raises(Unavailable):
        list(quick.list_objects(5, 100, "bkt", "base/"))


def test_head_says_when_sse_kms_makes_the_etag_no_md5(fake):
    etag = '"0cc175b9c0f1b6a831c399e269772661"'
    for headers, encryption, is_md5 in (
            ({"x-amz-server-side-encryption": "aws:kms"}, "aws:kms", False),
            ({"x-amz-server-side-encryption-customer-algorithm": "AES256"}, "SSE-C", False),
            ({"x-amz-server-side-encryption": "AES256"}, "AES256", True),
            ({}, "", True)):
        fake.route("HEAD", r"^/bkt/base/a.txt", Reply(200, b"a", {"ETag": etag, **headers}))
        lister = S3Lister(fake.url, CredentialStore(FakeSts()), retry_budget_s=5)
        got = lister.head(5, 100, "bkt", "base/a.txt")
        lister.close()
        assert (got.size, got.etag, got.encryption, got.etag_is_md5) == (
            1, etag.strip('"'), encryption, is_md5)


def test_lists_pages_and_heads_in_the_emulator_within_the_base_key(emulator):
    world = external_world(emulator, "listing", ["READ", "DOWNLOAD"])
    owner = world.owner
    creds = owner.api.ok(owner.api.get(f"/entity/syn{world.folder}/sts?permission=read_write"))
    s3 = emulator.s3_client(creds)
    keys = [f"{world.base_key}/d/{i}.txt" for i in range(5)] + [f"{world.base_key}/dx.txt"]
    for key in keys:
        s3.put_object(Bucket=world.bucket, Key=key, Body=key.encode())
    big = f"{world.base_key}/d/big.bin"
    data = b"m" * (6 * 1024 * 1024)
    s3.upload_fileobj(io.BytesIO(data), world.bucket, big, Config=boto3.s3.transfer.TransferConfig(
        multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))

    client = client_for(emulator, world.other.token, retry_budget_s=10)
    lister = S3Lister(emulator.info["s3Endpoint"], CredentialStore(client), page_size=2)
    try:
        got = list(lister.list_objects(world.location, world.folder, world.bucket,
                                       f"{world.base_key}/d/"))
        assert [o.key for o in got] == sorted(keys[:5] + [big])
        assert lister.stats["s3 ListObjectsV2"] == 3                   # 6 keys, 2 per page
        one = next(o for o in got if o.key == keys[0])
        assert one.etag == hashlib.md5(keys[0].encode()).hexdigest() and one.etag_is_md5
        multi = next(o for o in got if o.key == big)
        assert multi.size == len(data) and not multi.etag_is_md5
        assert lister.head(world.location, world.folder, world.bucket, big) == \
            ObjectInfo(big, len(data), multi.etag, lister.head(
                world.location, world.folder, world.bucket, big).last_modified)
        with pytest.raises(PermissionDenied):                          # outside the base key
            list(lister.list_objects(world.location, world.folder, world.bucket, "elsewhere/"))
    finally:
        lister.close()
        client.close()
