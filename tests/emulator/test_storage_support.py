"""Helpers shared by the storage / STS / file-handle / multipart contract tests (no tests here).

They drive the emulator over HTTP exactly like a client: create storage locations (writing the
``owner.txt`` they need into the external bucket with the S3 world's admin identity), attach
project settings, upload through the multipart API and create FileEntities.
"""

from __future__ import annotations

import hashlib
import re
import uuid

import requests

P = "org.sagebionetworks.repo.model.project."
SYN_SETTING = P + "S3StorageLocationSetting"
EXT_SETTING = P + "ExternalS3StorageLocationSetting"
UPLOAD_LIST = P + "UploadDestinationListSetting"
F = "org.sagebionetworks.repo.model.file."
MIB = 1024 * 1024
DATE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def put_object(emulator, key: str, data: bytes, bucket: str | None = None) -> None:
    emulator.s3_admin_client().put_object(Bucket=bucket or emulator.info["externalBucket"],
                                          Key=key, Body=data)


def put_owner(emulator, base_key: str | None, text: str, bucket: str | None = None) -> None:
    key = f"{base_key}/owner.txt" if base_key else "owner.txt"
    put_object(emulator, key, text.encode(), bucket)


def external_location(emulator, user, base_key: str | None = "auto", sts: bool = True,
                      owner: bool = True, **extra) -> dict:
    """An ExternalS3StorageLocationSetting in the external bucket owned by ``user``."""
    if base_key == "auto":
        base_key = unique("base")
    if owner:
        put_owner(emulator, base_key, user.user_name)
    body = {"concreteType": EXT_SETTING, "uploadType": "S3",
            "bucket": emulator.info["externalBucket"], "stsEnabled": sts, **extra}
    if base_key:
        body["baseKey"] = base_key
    return user.api.ok(user.api.post("/storageLocation", body), 201)


def synapse_location(user, sts: bool = True) -> dict:
    body = {"concreteType": SYN_SETTING, "uploadType": "S3", "stsEnabled": sts}
    return user.api.ok(user.api.post("/storageLocation", body), 201)


def set_upload(user, entity_id: str, locations: list[int]):
    return user.api.post("/projectSettings", {"concreteType": UPLOAD_LIST, "settingsType": "upload",
                                              "projectId": entity_id, "locations": locations})


def sts_folder(emulator, user, location: dict | None = None, base_key: str | None = "auto"):
    """(project, folder, location): ``folder`` carries an STS external location setting."""
    project = user.api.project()
    folder = user.api.folder(project["id"], unique("sts"))
    location = location or external_location(emulator, user, base_key=base_key)
    user.api.ok(set_upload(user, folder["id"], [location["storageLocationId"]]), 201)
    return project, folder, location


def register_external(emulator, user, location: dict, data: bytes, name: str = "a.txt",
                      key: str | None = None, **extra):
    """Put ``data`` under the location's baseKey (admin identity) and register the handle."""
    base = location.get("baseKey")
    key = key or (f"{base}/{uuid.uuid4()}/{name}" if base else f"{uuid.uuid4()}/{name}")
    put_object(emulator, key, data, location["bucket"])
    body = {"concreteType": F + "S3FileHandle", "key": key, "bucketName": location["bucket"],
            "fileName": name, "contentMd5": md5_hex(data), "contentSize": len(data),
            "storageLocationId": location["storageLocationId"], "contentType": "text/plain",
            **extra}
    return user.api.post("/externalFileHandle/s3", body, prefix="file")


def start_multipart(api, data_or_size, name: str = "data.bin", part_size: int = 5 * MIB,
                    storage_location_id: int | None = None, md5: str | None = None,
                    force: bool = False, **extra):
    size = data_or_size if isinstance(data_or_size, int) else len(data_or_size)
    if md5 is None:
        md5 = md5_hex(data_or_size) if not isinstance(data_or_size, int) else "0" * 32
    body = {"concreteType": F + "MultipartUploadRequest", "contentMD5Hex": md5, "fileName": name,
            "generatePreview": False, "fileSizeBytes": size, "partSizeBytes": part_size,
            "contentType": "application/octet-stream", **extra}
    if storage_location_id is not None:
        body["storageLocationId"] = storage_location_id
    path = "/file/multipart" + ("?forceRestart=true" if force else "")
    return api.post(path, body, prefix="file")


def put_part(api, upload_id: str, part_number: int, chunk: bytes) -> None:
    urls = api.ok(api.post(f"/file/multipart/{upload_id}/presigned/url/batch",
                           {"uploadId": upload_id, "partNumbers": [part_number]},
                           prefix="file"), 201)
    item = urls["partPresignedUrls"][0]
    resp = requests.put(item["uploadPresignedUrl"], data=chunk,
                        headers=item.get("signedHeaders") or {}, timeout=60)
    assert resp.status_code == 200, resp.text


def multipart_upload(api, data: bytes, name: str = "data.bin", part_size: int = 5 * MIB,
                     storage_location_id: int | None = None) -> str:
    """Full multipart flow; returns the new file handle id."""
    status = api.ok(start_multipart(api, data, name, part_size, storage_location_id), 201)
    upload_id = status["uploadId"]
    for i in range(len(status["partsState"])):
        chunk = data[i * part_size:(i + 1) * part_size]
        put_part(api, upload_id, i + 1, chunk)
        added = api.ok(api.put(f"/file/multipart/{upload_id}/add/{i + 1}?partMD5Hex="
                               f"{md5_hex(chunk)}", prefix="file"), 201)
        assert added["addPartState"] == "ADD_SUCCESS", added
    done = api.ok(api.put(f"/file/multipart/{upload_id}/complete", prefix="file"), 201)
    assert done["state"] == "COMPLETED"
    return done["resultFileHandleId"]


def file_entity(api, parent_id: str, name: str, fh_id: str):
    return api.post("/entity", {"name": name, "parentId": parent_id, "dataFileHandleId": fh_id,
                                "concreteType": "org.sagebionetworks.repo.model.FileEntity"})


def batch(api, items: list[tuple[str, str]], handles=True, urls=True):
    body = {"requestedFiles": [{"fileHandleId": fh, "associateObjectId": eid,
                                "associateObjectType": "FileEntity"} for fh, eid in items],
            "includeFileHandles": handles, "includePreSignedURLs": urls,
            "includePreviewPreSignedURLs": False}
    return api.post("/fileHandle/batch", body, prefix="file")


def grant(owner, entity_id: str, principal_id: str, access: list[str]) -> None:
    """Give ``principal_id`` exactly ``access`` on ``entity_id`` (own ACL; owner keeps all)."""
    full = ["READ", "DOWNLOAD", "UPDATE", "CREATE", "DELETE", "CHANGE_PERMISSIONS",
            "CHANGE_SETTINGS", "MODERATE"]
    current = owner.api.get(f"/entity/{entity_id}/acl")
    rows = [{"principalId": int(owner.id), "accessType": full},
            {"principalId": int(principal_id), "accessType": access}]
    if current.status_code == 200:
        acl = current.json()
        acl["resourceAccess"] = rows
        owner.api.ok(owner.api.put(f"/entity/{entity_id}/acl", acl), 200)
    else:
        owner.api.ok(owner.api.post(f"/entity/{entity_id}/acl",
                                    {"id": entity_id, "resourceAccess": rows}), 201)


def reason(resp) -> str:
    return resp.json()["reason"]
