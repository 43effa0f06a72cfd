"""Contract tests: STS credential vending (§6.1) enforced by the real local S3 (§6.2)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import requests
from botocore.exceptions import ClientError

from tests.emulator.test_storage_support import (DATE_RE, batch, external_location, file_entity,
                                                 grant, md5_hex, put_object, reason,
                                                 register_external, set_upload, sts_folder,
                                                 synapse_location, unique)


def sts(api, entity_id: str, permission: str | None):
    query = f"?permission={permission}" if permission is not None else ""
    return api.get(f"/entity/{entity_id}/sts{query}")


def code_of(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def test_credentials_shape_and_lifetime(emulator, user):
    _project, folder, loc = sts_folder(emulator, user)
    for permission in ("read_only", "read_write"):
        creds = user.api.ok(sts(user.api, folder["id"], permission), 200)
        assert list(creds) == ["bucket", "baseKey", "accessKeyId", "secretAccessKey",
                               "sessionToken", "expiration"]
        assert creds["bucket"] == emulator.info["externalBucket"]
        assert creds["baseKey"] == loc["baseKey"]
        assert DATE_RE.match(creds["expiration"])
        expires = dt.datetime.strptime(creds["expiration"], "%Y-%m-%dT%H:%M:%S.%fZ")
        left = (expires - dt.datetime.utcnow()).total_seconds()
        assert 12 * 3600 - 120 < left <= 12 * 3600 + 5


def test_read_only_token_is_scoped(emulator, user):
    _project, folder, loc = sts_folder(emulator, user)
    base, bucket = loc["baseKey"], loc["bucket"]
    put_object(emulator, f"{base}/in/a.txt", b"inside")
    outside_key = f"{unique('elsewhere')}/b.txt"
    put_object(emulator, outside_key, b"outside")
    creds = user.api.ok(sts(user.api, folder["id"], "read_only"), 200)
    s3 = emulator.s3_client(creds)
    assert s3.get_object(Bucket=bucket, Key=f"{base}/in/a.txt")["Body"].read() == b"inside"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{base}/", Delimiter="/")
    assert [p["Prefix"] for p in listed.get("CommonPrefixes", [])] == [f"{base}/in/"]
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key=f"{base}/in/new.txt", Body=b"x")
    assert code_of(err) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        s3.list_objects_v2(Bucket=bucket, Prefix="")
    assert code_of(err) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key=f"{base}/owner.txt")
    assert code_of(err) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key=outside_key)
    assert code_of(err) == "AccessDenied"


def test_read_write_token_uploads_then_registers_a_file(emulator, user):
    _project, folder, loc = sts_folder(emulator, user)
    base, bucket = loc["baseKey"], loc["bucket"]
    creds = user.api.ok(sts(user.api, folder["id"], "read_write"), 200)
    s3 = emulator.s3_client(creds)
    data = b"written with STS credentials\n"
    key = f"{base}/{unique('u')}/hello.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=data, ACL="bucket-owner-full-control")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key=f"{unique('outside')}/x.txt", Body=b"x")
    assert code_of(err) == "AccessDenied"
    handle = user.api.ok(user.api.post("/externalFileHandle/s3", {
        "concreteType": "org.sagebionetworks.repo.model.file.S3FileHandle", "key": key,
        "bucketName": bucket, "fileName": "hello.txt", "contentMd5": md5_hex(data),
        "storageLocationId": loc["storageLocationId"]}, prefix="file"), 200)
    assert handle["contentSize"] == len(data)  # taken from S3 HEAD
    entity = user.api.ok(file_entity(user.api, folder["id"], "hello.txt", handle["id"]), 201)
    result = user.api.ok(batch(user.api, [(handle["id"], entity["id"])]), 201)
    url = result["requestedFiles"][0]["preSignedURL"]
    assert requests.get(url, timeout=30).content == data
    # read-only credentials asked for the file itself reach the same object
    ro = user.api.ok(sts(user.api, entity["id"], "read_only"), 200)
    assert emulator.s3_client(ro).get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_permission_parameter(emulator, user):
    _project, folder, _loc = sts_folder(emulator, user)
    for value in (None, "write", ""):
        resp = sts(user.api, folder["id"], value)
        assert resp.status_code == 400, value
        assert reason(resp)


def test_entity_must_be_in_sts_storage(emulator, user):
    project = user.api.project()
    plain = user.api.folder(project["id"], "plain")
    resp = sts(user.api, plain["id"], "read_only")      # no upload setting at all
    assert resp.status_code == 400
    assert reason(resp) == "Entity must have an STS-enabled storage location"
    non_sts = user.api.folder(project["id"], "non-sts")
    user.api.ok(set_upload(user, non_sts["id"],
                           [external_location(emulator, user, sts=False)["storageLocationId"]]),
                201)
    resp = sts(user.api, non_sts["id"], "read_only")
    assert resp.status_code == 400
    assert reason(resp) == "Entity must have an STS-enabled storage location"


def test_synapse_storage_is_read_only(emulator, user):
    loc = synapse_location(user, sts=True)
    _project, folder, _ = sts_folder(emulator, user, location=loc)
    resp = sts(user.api, folder["id"], "read_write")
    assert resp.status_code == 400
    assert reason(resp) == "STS write access is not allowed in Synapse storage"
    creds = user.api.ok(sts(user.api, folder["id"], "read_only"), 200)
    assert creds["bucket"] == emulator.info["synapseBucket"]
    assert creds["baseKey"] == loc["baseKey"]


def test_missing_and_trashed_entities_are_404_before_any_storage_check(emulator, user):
    """Existence first, as current Synapse (synapse-api.md §6.1): a missing entity is 404
    "does not exist", a trashed one 404 "is in trash can.", never the storage checks' 400."""
    _project, folder, _loc = sts_folder(emulator, user)
    resp = sts(user.api, "syn987654321", "read_only")
    assert resp.status_code == 404 and reason(resp) == "Resource: 'syn987654321' does not exist"
    sub = user.api.folder(folder["id"], "sub")
    assert user.api.delete(f"/entity/{sub['id']}").status_code == 204
    resp = sts(user.api, sub["id"], "read_only")
    assert resp.status_code == 404 and reason(resp) == f"Entity {sub['id']} is in trash can."
    project = user.api.project()
    plain = user.api.folder(project["id"], "plain")
    user.api.delete(f"/entity/{plain['id']}")
    resp = sts(user.api, plain["id"], "read_only")        # no STS storage either: still 404
    assert resp.status_code == 404


def test_permissions_are_checked_before_the_storage(emulator, user):
    """A caller without access learns nothing about the storage: 403 before the 400s."""
    project = user.api.project()
    plain = user.api.folder(project["id"], "plain")
    stranger = emulator.new_user()
    resp = sts(stranger.api, plain["id"], "read_only")
    assert resp.status_code == 403
    assert reason(resp) == "You lack DOWNLOAD access to the requested entity."
    loc = synapse_location(user, sts=True)
    _p, folder, _ = sts_folder(emulator, user, location=loc)
    grant(user, folder["id"], stranger.id, ["READ", "DOWNLOAD"])
    resp = sts(stranger.api, folder["id"], "read_write")   # Synapse storage, but no UPDATE
    assert resp.status_code == 403
    assert reason(resp) == "You lack UPDATE access to the requested entity."


def test_permission_checks_in_order(emulator, user):
    """DOWNLOAD (+ READ) for read_only, then UPDATE, CREATE, DELETE for read_write, each
    refusal naming the first access missing."""
    _project, folder, _loc = sts_folder(emulator, user)
    other = emulator.new_user()
    resp = sts(other.api, folder["id"], "read_only")
    assert resp.status_code == 403
    assert reason(resp) == "You lack DOWNLOAD access to the requested entity."
    granted = ["READ", "DOWNLOAD"]
    grant(user, folder["id"], other.id, granted)
    assert sts(other.api, folder["id"], "read_only").status_code == 200
    for missing in ("UPDATE", "CREATE", "DELETE"):
        resp = sts(other.api, folder["id"], "read_write")
        assert resp.status_code == 403
        assert reason(resp) == f"You lack {missing} access to the requested entity."
        granted.append(missing)
        grant(user, folder["id"], other.id, granted)
    creds = other.api.ok(sts(other.api, folder["id"], "read_write"), 200)
    assert creds["accessKeyId"]


def test_sts_requires_all_three_scopes(emulator):
    owner = emulator.new_user(scopes=["view", "modify"])
    resp = sts(owner.api, "syn4489", "read_only")
    assert resp.status_code == 403
    assert resp.json()["error"] == "insufficient_scope"
    assert "download" in reason(resp)


def test_short_reported_expiration_is_enforced(emulator, user):
    _project, folder, loc = sts_folder(emulator, user)
    key = f"{loc['baseKey']}/e.txt"
    put_object(emulator, key, b"soon gone")
    emulator.set_faults(sts_expiration_s=3)
    creds = user.api.ok(sts(user.api, folder["id"], "read_only"), 200)
    expires = dt.datetime.strptime(creds["expiration"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert (expires - dt.datetime.utcnow()).total_seconds() <= 4
    s3 = emulator.s3_client(creds)
    assert s3.get_object(Bucket=loc["bucket"], Key=key)["Body"].read() == b"soon gone"
    time.sleep(max(0.0, (expires - dt.datetime.utcnow()).total_seconds()) + 0.5)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=loc["bucket"], Key=key)
    assert code_of(err) in ("ExpiredToken", "InvalidAccessKeyId", "AccessDenied")


def test_external_handle_in_sts_folder_via_register(emulator, user):
    _project, folder, loc = sts_folder(emulator, user)
    handle = user.api.ok(register_external(emulator, user, loc, b"abc"), 200)
    entity = user.api.ok(file_entity(user.api, folder["id"], "abc.txt", handle["id"]), 201)
    creds = user.api.ok(sts(user.api, entity["id"], "read_only"), 200)
    assert creds["baseKey"] == loc["baseKey"]


def test_location_without_base_key_gives_whole_bucket_credentials(emulator, user):
    bucket = unique("whole")
    admin = emulator.s3_admin_client()
    admin.create_bucket(Bucket=bucket)
    put_object(emulator, "owner.txt", user.user_name.encode(), bucket)
    put_object(emulator, "any/where.txt", b"anywhere", bucket)
    loc = user.api.ok(user.api.post("/storageLocation", {
        "concreteType": "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting",
        "bucket": bucket, "stsEnabled": True}), 201)
    assert "baseKey" not in loc
    _project, folder, _ = sts_folder(emulator, user, location=loc)
    creds = user.api.ok(sts(user.api, folder["id"], "read_only"), 200)
    assert "baseKey" not in creds and creds["bucket"] == bucket
    s3 = emulator.s3_client(creds)
    assert s3.get_object(Bucket=bucket, Key="any/where.txt")["Body"].read() == b"anywhere"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "any/where.txt" in keys
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="owner.txt")
    assert code_of(err) == "AccessDenied"
    dest = user.api.ok(user.api.get(f"/entity/{folder['id']}/uploadDestination", prefix="file"),
                       200)
    assert "baseKey" not in dest and dest["bucket"] == bucket and dest["stsEnabled"] is True
