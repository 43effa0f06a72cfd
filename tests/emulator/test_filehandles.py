"""Contract tests: external S3 file handles (§4.2), GET /fileHandle and the batch (§4.3/4.4)."""

from __future__ import annotations

import urllib.parse
import uuid

import requests

from tests.emulator.test_storage_support import (F, batch, external_location, file_entity, grant,
                                                 md5_hex, multipart_upload, put_object, reason,
                                                 register_external, sts_folder)

S3FH = F + "S3FileHandle"


def test_external_handle_validations_in_order(emulator, user):
    loc = external_location(emulator, user, sts=True)
    sl, bucket, base = loc["storageLocationId"], loc["bucket"], loc["baseKey"]
    key = f"{base}/{uuid.uuid4()}/v.txt"
    good = {"concreteType": S3FH, "key": key, "bucketName": bucket, "fileName": "v.txt",
            "contentMd5": "0" * 32, "storageLocationId": sl}

    def post(**changes):
        body = {k: v for k, v in dict(good, **changes).items() if v is not None}
        return user.api.post("/externalFileHandle/s3", body, prefix="file")

    cases = [
        (dict(storageLocationId=None, bucketName=None), 400,
         "FileHandle.storageLocationId is required."),
        (dict(bucketName="", key=""), 400,
         "FileHandle.bucket is required and must not be the empty string."),
        (dict(key=None, contentMd5=None), 400,
         "FileHandle.key is required and must not be the empty string."),
        (dict(contentMd5=None), 400,
         "FileHandle.contentMd5 is required and must not be the empty string."),
        (dict(contentMd5="abc", storageLocationId=987654321), 400,
         "The content MD5 digest must be a valid hexadecimal string of length 32."),
        (dict(storageLocationId=987654321, bucketName="other"), 404, None),
        (dict(storageLocationId=1, bucketName="other"), 400,
         "StorageLocationSetting.id=1 was not of the expected type: "
         "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting"),
        (dict(bucketName="other", key="elsewhere/x"), 400,
         f"The bucket for ExternalS3StorageLocationSetting.id={sl} does not match the provided "
         "bucket: other"),
        (dict(key="elsewhere/x"), 400,
         f"The baseKey for ExternalS3StorageLocationSetting.id={sl} does not match the provided "
         "key: elsewhere/x"),
        ({}, 400, f"Unable to access the file at bucket: {bucket} key: {key}."),
    ]
    for changes, status, text in cases:
        resp = post(**changes)
        assert resp.status_code == status, (changes, resp.text)
        if text:
            assert reason(resp) == text, changes
    # only the creator of the storage location may register handles in it
    other = emulator.new_user()
    resp = other.api.post("/externalFileHandle/s3", dict(good), prefix="file")
    assert resp.status_code == 403
    assert reason(resp) == (f"Only the creator of ExternalS3StorageLocationSetting.id={sl} can "
                            f"create an external S3FileHandle with storageLocationId = {sl}")
    assert emulator.api(None).post("/externalFileHandle/s3", good,
                                   prefix="file").status_code == 403


def test_external_handle_success_shape(emulator, user):
    loc = external_location(emulator, user, sts=True)
    data = b"0123456789"
    key = f"{loc['baseKey']}/{uuid.uuid4()}/plain"
    put_object(emulator, key, data)
    resp = user.api.post("/externalFileHandle/s3", {
        "concreteType": S3FH, "key": key, "bucketName": loc["bucket"],
        "contentMd5": md5_hex(data).upper(), "storageLocationId": loc["storageLocationId"]},
        prefix="file")
    assert resp.status_code == 200  # not 201
    fh = resp.json()
    assert fh["concreteType"] == S3FH and fh["id"].isdigit()
    assert fh["fileName"] == "NOT_SET" and fh["contentType"] == "NOT_SET"
    assert fh["contentSize"] == len(data) and fh["createdBy"] == user.id
    assert fh["bucketName"] == loc["bucket"] and fh["key"] == key
    assert fh["storageLocationId"] == loc["storageLocationId"]
    assert fh["status"] == "AVAILABLE" and fh["isPreview"] is False and fh["etag"]
    got = user.api.ok(user.api.get(f"/fileHandle/{fh['id']}", prefix="file"), 200)
    assert got == fh
    # an explicit contentSize wins over S3 (the MD5 is never checked against S3 either)
    again = user.api.ok(register_external(emulator, user, loc, data, contentSize=99), 200)
    assert again["contentSize"] == 99


def test_base_key_prefix_only_checked_with_sts(emulator, user):
    loc = external_location(emulator, user, sts=False)
    key = f"{uuid.uuid4()}/outside-base.txt"
    resp = register_external(emulator, user, loc, b"x", key=key)
    assert resp.status_code == 200, resp.text
    # a plain prefix check: "<baseKey>suffix" passes too
    sts_loc = external_location(emulator, user, sts=True)
    resp = register_external(emulator, user, sts_loc, b"y", key=f"{sts_loc['baseKey']}-sibling/y")
    assert resp.status_code == 200, resp.text


def test_get_file_handle_is_creator_only(emulator, user):
    fh = multipart_upload(user.api, b"mine", "mine.txt")
    other = emulator.new_user()
    resp = other.api.get(f"/fileHandle/{fh}", prefix="file")
    assert resp.status_code == 403
    assert reason(resp) == ("Only the creator of a FileHandle can access it directly by its ID.  "
                            f"FileHandleId = '{fh}', UserId = '{other.id}'")
    assert user.api.get("/fileHandle/999999999", prefix="file").status_code == 404
    assert emulator.admin.get(f"/fileHandle/{fh}", prefix="file").status_code == 200


def test_file_handle_url_redirects(emulator, user):
    data = b"redirect me"
    fh = multipart_upload(user.api, data, "r.txt")
    resp = user.api.get(f"/fileHandle/{fh}/url?redirect=false", prefix="file")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
    assert requests.get(resp.text, timeout=30).content == data
    resp = user.api.get(f"/fileHandle/{fh}/url", prefix="file", allow_redirects=False)
    assert resp.status_code == 307 and "X-Amz-Signature" in resp.headers["Location"]
    other = emulator.new_user()
    resp = other.api.get(f"/fileHandle/{fh}/url?redirect=false", prefix="file")
    assert resp.status_code == 403
    assert reason(resp) == "Only the user that created the FileHandle can get the URL of the file."


def test_batch_limits(emulator, user):
    resp = batch(user.api, [("1", "syn1")], handles=False, urls=False)
    assert resp.status_code == 400
    assert reason(resp) == ("Must include either FileHandles or pre-signed URLs or preview "
                            "pre-signed URLs")
    resp = batch(user.api, [(str(i), "syn1") for i in range(101)])
    assert resp.status_code == 400
    assert reason(resp) == "Request exceeds the maximum number of objects per request: 100"
    assert batch(user.api, [(str(i), "syn1") for i in range(100)]).status_code == 201


def test_batch_urls_and_per_item_failures(emulator, user):
    project = user.api.project()
    data = b"batch download body"
    fh = multipart_upload(user.api, data, "b.txt")
    entity = user.api.ok(file_entity(user.api, project["id"], "b.txt", fh), 201)
    orphan = multipart_upload(user.api, b"orphan", "o.txt")
    doomed = multipart_upload(user.api, b"doomed", "d.txt")
    doomed_entity = user.api.ok(file_entity(user.api, project["id"], "d.txt", doomed), 201)
    assert user.api.delete(f"/fileHandle/{doomed}", prefix="file").status_code == 200

    resp = batch(user.api, [(fh, entity["id"]), (doomed, doomed_entity["id"])])
    assert resp.status_code == 201
    ok, gone = resp.json()["requestedFiles"]
    assert ok["fileHandleId"] == fh and "failureCode" not in ok
    assert ok["fileHandle"]["id"] == fh and ok["fileHandle"]["contentMd5"] == md5_hex(data)
    query = urllib.parse.parse_qs(urllib.parse.urlparse(ok["preSignedURL"]).query)
    assert query["X-Amz-Expires"] == ["30"] and len(query["X-Amz-Date"][0]) == 16
    assert 'filename="b.txt"' in query["response-content-disposition"][0]
    got = requests.get(ok["preSignedURL"], timeout=30)
    assert got.content == data
    assert gone == {"fileHandleId": doomed, "failureCode": "NOT_FOUND"}

    other = emulator.new_user()
    resp = batch(other.api, [(fh, entity["id"]), (orphan, entity["id"])])
    assert [r.get("failureCode") for r in resp.json()["requestedFiles"]] == \
        ["UNAUTHORIZED", "UNAUTHORIZED"]
    grant(user, entity["id"], other.id, ["READ", "DOWNLOAD"])
    resp = batch(other.api, [(fh, entity["id"]), (orphan, entity["id"])], urls=False)
    first, second = resp.json()["requestedFiles"]
    assert "failureCode" not in first and "preSignedURL" not in first
    assert first["fileHandle"]["id"] == fh
    assert second == {"fileHandleId": orphan, "failureCode": "UNAUTHORIZED"}  # not associated
    # the handle's creator may download it through any association
    resp = batch(user.api, [(orphan, entity["id"])], handles=False)
    only = resp.json()["requestedFiles"][0]
    assert "failureCode" not in only and "fileHandle" not in only and only["preSignedURL"]


def test_batch_on_sts_folder_file(emulator, user):
    _project, folder, loc = sts_folder(emulator, user)
    handle = user.api.ok(register_external(emulator, user, loc, b"sts bytes", name="s.txt"), 200)
    entity = user.api.ok(file_entity(user.api, folder["id"], "s.txt", handle["id"]), 201)
    item = user.api.ok(batch(user.api, [(handle["id"], entity["id"])]), 201)["requestedFiles"][0]
    assert item["fileHandle"]["storageLocationId"] == loc["storageLocationId"]
    assert requests.get(item["preSignedURL"], timeout=30).content == b"sts bytes"


def test_delete_file_handle(emulator, user):
    fh = multipart_upload(user.api, b"delete me", "del.txt")
    other = emulator.new_user()
    assert other.api.delete(f"/fileHandle/{fh}", prefix="file").status_code == 403
    assert user.api.delete(f"/fileHandle/{fh}", prefix="file").status_code == 200
    assert user.api.get(f"/fileHandle/{fh}", prefix="file").status_code == 404
    assert user.api.delete(f"/fileHandle/{fh}", prefix="file").status_code == 200
