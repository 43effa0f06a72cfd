"""Contract tests: the multipart upload flow (§4.5) and ``GET /file/{id}`` downloads (§4.4)."""

from __future__ import annotations

import os
import re

import requests

from tests.emulator.test_storage_support import (DATE_RE, MIB, batch, file_entity, grant, md5_hex,
                                                 multipart_upload, put_part, reason,
                                                 start_multipart, sts_folder)


def test_twelve_mib_in_three_parts_round_trip(emulator, user):
    project = user.api.project()
    data = os.urandom(12 * MIB)
    status = user.api.ok(start_multipart(user.api, data, "big file.bin"), 201)
    assert status["state"] == "UPLOADING" and status["partsState"] == "000"
    assert status["startedBy"] == user.id and status["uploadId"].isdigit()
    assert DATE_RE.match(status["startedOn"]) and DATE_RE.match(status["updatedOn"])
    assert "resultFileHandleId" not in status
    upload_id = status["uploadId"]
    # the same request by the same user resumes the same upload
    again = user.api.ok(start_multipart(user.api, data, "big file.bin"), 201)
    assert again["uploadId"] == upload_id
    urls = user.api.ok(user.api.post(f"/file/multipart/{upload_id}/presigned/url/batch",
                                     {"uploadId": upload_id, "partNumbers": [1, 2, 3]},
                                     prefix="file"), 201)["partPresignedUrls"]
    assert [u["partNumber"] for u in urls] == [1, 2, 3]
    for i, item in enumerate(urls):
        chunk = data[i * 5 * MIB:(i + 1) * 5 * MIB]
        put = requests.put(item["uploadPresignedUrl"], data=chunk,
                           headers=item["signedHeaders"], timeout=60)
        assert put.status_code == 200, put.text
        added = user.api.ok(user.api.put(
            f"/file/multipart/{upload_id}/add/{i + 1}?partMD5Hex={md5_hex(chunk)}",
            prefix="file"), 201)
        assert added == {"uploadId": upload_id, "partNumber": i + 1,
                         "addPartState": "ADD_SUCCESS"}
    resumed = user.api.ok(start_multipart(user.api, data, "big file.bin"), 201)
    assert resumed["partsState"] == "111"
    done = user.api.ok(user.api.put(f"/file/multipart/{upload_id}/complete", prefix="file"), 201)
    assert done["state"] == "COMPLETED" and done["partsState"] == "111"
    fh_id = done["resultFileHandleId"]
    fh = user.api.ok(user.api.get(f"/fileHandle/{fh_id}", prefix="file"), 200)
    assert fh["contentMd5"] == md5_hex(data) and fh["contentSize"] == len(data)
    assert fh["fileName"] == "big file.bin" and fh["storageLocationId"] == 1
    assert fh["bucketName"] == emulator.info["synapseBucket"]
    assert re.fullmatch(rf"{user.id}/[0-9a-f-]{{36}}/big file\.bin", fh["key"])
    assert fh["contentType"] == "application/octet-stream"
    # completing again is a no-op; adding to a completed upload is refused
    assert user.api.ok(user.api.put(f"/file/multipart/{upload_id}/complete",
                                    prefix="file"), 201) == done
    resp = user.api.put(f"/file/multipart/{upload_id}/add/1?partMD5Hex={'0' * 32}", prefix="file")
    assert resp.status_code == 400 and reason(resp) == "Cannot add parts to completed file upload."
    entity = user.api.ok(file_entity(user.api, project["id"], "big file.bin", fh_id), 201)
    item = user.api.ok(batch(user.api, [(fh_id, entity["id"])]), 201)["requestedFiles"][0]
    assert requests.get(item["preSignedURL"], timeout=60).content == data


def test_force_restart_starts_a_new_upload(emulator, user):
    first = user.api.ok(start_multipart(user.api, b"abc", "r.txt"), 201)
    second = user.api.ok(start_multipart(user.api, b"abc", "r.txt", force=True), 201)
    assert second["uploadId"] != first["uploadId"]
    third = user.api.ok(start_multipart(user.api, b"abc", "r.txt"), 201)
    assert third["uploadId"] == second["uploadId"]
    other = emulator.new_user()  # per user
    assert other.api.ok(start_multipart(other.api, b"abc", "r.txt"), 201)["uploadId"] \
        != second["uploadId"]


def test_add_part_failures_and_missing_parts(emulator, user):
    data = b"x" * 100
    status = user.api.ok(start_multipart(user.api, data, "p.txt"), 201)
    upload_id = status["uploadId"]
    assert status["partsState"] == "0"
    resp = user.api.ok(user.api.put(f"/file/multipart/{upload_id}/add/1?partMD5Hex={md5_hex(data)}",
                                    prefix="file"), 201)
    assert resp["addPartState"] == "ADD_FAILED"
    assert resp["errorMessage"] == "The uploaded part could not be found"
    resp = user.api.put(f"/file/multipart/{upload_id}/complete", prefix="file")
    assert resp.status_code == 400
    assert reason(resp) == ("Missing 1 part(s).  All parts must be successfully added before a "
                            "file upload can be completed.")
    put_part(user.api, upload_id, 1, data)
    resp = user.api.ok(user.api.put(f"/file/multipart/{upload_id}/add/1?partMD5Hex={'1' * 32}",
                                    prefix="file"), 201)
    assert resp["addPartState"] == "ADD_FAILED"
    assert resp["errorMessage"] == ("The provided MD5 does not match the MD5 of the uploaded "
                                    "part.  Please re-upload the part.")
    for bad in (0, 2):
        resp = user.api.put(f"/file/multipart/{upload_id}/add/{bad}?partMD5Hex={md5_hex(data)}",
                            prefix="file")
        assert resp.status_code == 400, bad
    assert reason(resp) == ("Part number cannot be larger than number of parts. Number of parts: 1,"
                            " provided part number: 2")
    resp = user.api.post(f"/file/multipart/{upload_id}/presigned/url/batch",
                         {"uploadId": upload_id, "partNumbers": [0]}, prefix="file")
    assert resp.status_code == 400 and reason(resp) == "Part numbers cannot be less than one."
    resp = user.api.post(f"/file/multipart/{upload_id}/presigned/url/batch",
                         {"uploadId": upload_id, "partNumbers": []}, prefix="file")
    assert resp.status_code == 400
    ok = user.api.ok(user.api.put(f"/file/multipart/{upload_id}/add/1?partMD5Hex={md5_hex(data)}",
                                  prefix="file"), 201)
    assert ok["addPartState"] == "ADD_SUCCESS"
    done = user.api.ok(user.api.put(f"/file/multipart/{upload_id}/complete", prefix="file"), 201)
    assert done["state"] == "COMPLETED"


def test_request_validation(emulator, user):
    cases = [
        (dict(part_size=5 * MIB - 1), "The part size must be at least 5242880 bytes."),
        (dict(part_size=5 * 1024 ** 3 + 1), "The part size must not exceed 5368709120 bytes."),
        (dict(name="bad/name"), "Invalid Name: 'bad/name'. Names may only contain: letters, "
         "numbers, spaces, underscores, hyphens, periods, plus signs, apostrophes, and parentheses"),
        (dict(name=""), "MultipartUploadRequest.fileName is required and must not be the empty "
         "string."),
        (dict(md5=""), "MultipartUploadRequest.contentMD5Hex is required and must not be the "
         "empty string."),
        (dict(size=0), "File size must be at least one byte"),
        (dict(size=10001 * 5 * MIB), "File Upload would require 10001 parts, which exceeds the "
         "maximum number of allowed parts of: 10000. Please choose a larger part size."),
    ]
    for kw, text in cases:
        size = kw.pop("size", 10)
        resp = start_multipart(user.api, size, kw.pop("name", "ok.txt"),
                               kw.pop("part_size", 5 * MIB), md5=kw.pop("md5", "a" * 32))
        assert resp.status_code == 400, (text, resp.text)
        assert reason(resp) == text
    resp = start_multipart(user.api, 10, "ok.txt", storage_location_id=987654321)
    assert resp.status_code == 404
    resp = start_multipart(emulator.api(None), 10, "ok.txt")
    assert resp.status_code == 403


def test_only_the_starter_may_continue(emulator, user):
    status = user.api.ok(start_multipart(user.api, b"abc", "s.txt"), 201)
    upload_id = status["uploadId"]
    other = emulator.new_user()
    text = ("Only the user that started a multipart upload can get part upload pre-signed URLs "
            "for that file upload.")
    for resp in (other.api.post(f"/file/multipart/{upload_id}/presigned/url/batch",
                                {"uploadId": upload_id, "partNumbers": [1]}, prefix="file"),
                 other.api.put(f"/file/multipart/{upload_id}/add/1?partMD5Hex={'0' * 32}",
                               prefix="file"),
                 other.api.put(f"/file/multipart/{upload_id}/complete", prefix="file")):
        assert resp.status_code == 403 and reason(resp) == text
    assert user.api.put("/file/multipart/999999999/complete", prefix="file").status_code == 404


def test_multipart_into_an_sts_location_by_a_collaborator(emulator, user):
    _project, folder, loc = sts_folder(emulator, user)
    other = emulator.new_user()
    grant(user, folder["id"], other.id, ["READ", "DOWNLOAD", "UPDATE", "CREATE", "DELETE"])
    data = b"collaborator bytes"
    fh_id = multipart_upload(other.api, data, "c.txt",
                             storage_location_id=loc["storageLocationId"])
    fh = other.api.ok(other.api.get(f"/fileHandle/{fh_id}", prefix="file"), 200)
    assert fh["bucketName"] == loc["bucket"]
    assert fh["key"].startswith(f"{loc['baseKey']}/{other.id}/")
    assert fh["storageLocationId"] == loc["storageLocationId"]
    entity = other.api.ok(file_entity(other.api, folder["id"], "c.txt", fh_id), 201)
    item = user.api.ok(batch(user.api, [(fh_id, entity["id"])]), 201)["requestedFiles"][0]
    assert requests.get(item["preSignedURL"], timeout=30).content == data


def test_get_file_by_association(emulator, user):
    project = user.api.project()
    data = b"associated"
    fh_id = multipart_upload(user.api, data, "a.txt")
    entity = user.api.ok(file_entity(user.api, project["id"], "a.txt", fh_id), 201)
    query = f"fileAssociateType=FileEntity&fileAssociateId={entity['id']}"
    resp = user.api.get(f"/file/{fh_id}?{query}&redirect=false", prefix="file")
    assert resp.status_code == 200 and "X-Amz-Expires=30" in resp.text
    assert requests.get(resp.text, timeout=30).content == data
    resp = user.api.get(f"/file/{fh_id}?{query}", prefix="file", allow_redirects=False)
    assert resp.status_code == 307 and resp.headers["Location"].startswith("http")
    resp = user.api.get(f"/file/{fh_id}?fileAssociateType=FileEntity", prefix="file")
    assert resp.status_code == 400
    other = emulator.new_user()
    resp = other.api.get(f"/file/{fh_id}?{query}&redirect=false", prefix="file")
    assert resp.status_code == 403
    assert reason(resp) == "You lack DOWNLOAD access to the requested entity."
