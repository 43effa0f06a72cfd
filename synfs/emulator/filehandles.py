"""File handles and upload destinations (file endpoint, ``/file/v1``).

Owns ``POST /externalFileHandle/s3`` (every validation of ``createExternalS3FileHandle`` in
order, synapse-api.md §4.2), ``GET|DELETE /fileHandle/{id}``, ``GET /fileHandle/{id}/url``,
``POST /fileHandle/batch`` (per-item NOT_FOUND / UNAUTHORIZED inside a 201) and the upload
destination endpoints ``/entity/{id}/uploadDestination[s|Locations|/{storageLocationId}]``
(§3.10). Exports ``association_failure`` and ``presigned_url`` for the other modules, and
re-exports the row helpers of ``handles`` (``get_handle_row``, ``handle_json``,
``insert_s3_handle``).
"""

from __future__ import annotations

import logging
import re

from flask import Blueprint, jsonify, redirect, request

from . import acl, context, db, storage
from .errors import BadRequest, Forbidden, NotFound
from .handles import S3_HANDLE, get_handle_row, handle_json, insert_s3_handle

log = logging.getLogger(__name__)

__all__ = ["get_handle_row", "handle_json", "insert_s3_handle", "association_failure",
           "presigned_url", "BLUEPRINTS"]

files = Blueprint("filehandles", __name__)
BLUEPRINTS = [(files, "/file/v1")]

F = "org.sagebionetworks.repo.model.file."
S3_DEST = F + "S3UploadDestination"
EXT_S3_DEST = F + "ExternalS3UploadDestination"
NOT_SET = "NOT_SET"
PRESIGNED_URL_EXPIRE_S = 30
MAX_REQUESTS_PER_CALL = 100
MUST_INCLUDE_EITHER = "Must include either FileHandles or pre-signed URLs or preview pre-signed URLs"
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
ASSOCIATE_TYPES = ("FileEntity", "TableEntity", "WikiAttachment", "WikiMarkdown",
                   "UserProfileAttachment", "MessageAttachment", "TeamAttachment",
                   "SubmissionAttachment", "VerificationSubmission", "AccessRequirementAttachment",
                   "DataAccessRequestAttachment", "DataAccessSubmissionAttachment", "FormData")


def _creator_only(row, user, fh_id) -> None:
    if user is None or (row["created_by"] != user.id and not user.is_admin):
        uid = user.id if user else db.ANONYMOUS_ID
        raise Forbidden("Only the creator of a FileHandle can access it directly by its ID.  "
                        f"FileHandleId = '{fh_id}', UserId = '{uid}'")


def presigned_url(row) -> str:
    """A 30 s SigV4 GET URL (X-Amz-Date, X-Amz-Expires) with content-type/disposition."""
    if row["concrete_type"] != S3_HANDLE:
        if row["external_url"]:
            return row["external_url"]
        raise BadRequest(f"Unknown FileHandle class: {row['concrete_type']}")
    return context.s3().presign_get(row["bucket_name"], row["key"], expires=PRESIGNED_URL_EXPIRE_S,
                                    content_type=row["content_type"], file_name=row["file_name"])


def redirect_or_text(url: str):
    """RedirectUtils.handleRedirect: 307 + Location, or 200 text/plain with redirect=false."""
    if (request.args.get("redirect") or "true").lower() == "false":
        return url, 200, {"Content-Type": "text/plain"}
    return redirect(url, code=307)


def association_failure(c, user, fh_id, assoc_type, assoc_id) -> str | None:
    """None when the caller may download ``fh_id`` through the association, else UNAUTHORIZED.

    Admins and the handle's creator may; otherwise the handle must belong to one of the
    entity's versions and the caller needs DOWNLOAD on the entity (FileEntity only here).
    """
    row = get_handle_row(c, fh_id)
    if user is not None and (user.is_admin or (row is not None and row["created_by"] == user.id)):
        return None
    eid = db.parse_syn_id(assoc_id)
    if assoc_type != "FileEntity" or eid is None or not str(fh_id).isdigit():
        return "UNAUTHORIZED"
    linked = c.execute("SELECT 1 FROM versions WHERE entity_id = ? AND data_file_handle_id = ?",
                       (eid, int(fh_id))).fetchone()
    if linked is None or not acl.can(c, user, eid, "DOWNLOAD"):
        return "UNAUTHORIZED"
    return None


# ---- POST /externalFileHandle/s3 ----------------------------------------------------------
def _validate_external(c, user, data: dict) -> dict:
    """Steps 2-8 of createExternalS3FileHandle; returns the handle fields."""
    sl_id = data.get("storageLocationId")
    if sl_id is None:
        raise BadRequest("FileHandle.storageLocationId is required.")
    for field, name in (("bucketName", "bucket"), ("key", "key"), ("contentMd5", "contentMd5")):
        if not data.get(field):
            raise BadRequest(f"FileHandle.{name} is required and must not be the empty string.")
    fields = {"bucket": str(data["bucketName"]), "key": str(data["key"]),
              "content_md5": str(data["contentMd5"]),
              "file_name": data.get("fileName") if data.get("fileName") is not None else NOT_SET,
              "content_type": data.get("contentType") if data.get("contentType") is not None
              else NOT_SET, "content_size": data.get("contentSize")}
    if not _MD5.match(fields["content_md5"]):
        raise BadRequest("The content MD5 digest must be a valid hexadecimal string of length 32.")
    if not str(sl_id).isdigit():
        raise BadRequest(f"Invalid storageLocationId: {sl_id}")
    sl_id = int(sl_id)
    loc = storage.location_row(c, sl_id)
    if loc is None:
        raise NotFound(f"StorageLocationSetting with id {sl_id} does not exist")
    if loc["concrete_type"] != storage.EXT_S3_SETTING:
        raise BadRequest(f"StorageLocationSetting.id={sl_id} was not of the expected type: "
                         f"{storage.EXT_S3_SETTING}")
    body = loc["body"]
    if fields["bucket"] != body.get("bucket"):
        raise BadRequest(f"The bucket for ExternalS3StorageLocationSetting.id={sl_id} does not "
                         f"match the provided bucket: {fields['bucket']}")
    base_key = body.get("baseKey")
    if body.get("stsEnabled") is True and base_key is not None \
            and not fields["key"].startswith(base_key):
        raise BadRequest(f"The baseKey for ExternalS3StorageLocationSetting.id={sl_id} does not "
                         f"match the provided key: {fields['key']}")
    if loc["created_by"] != user.id:
        raise Forbidden(f"Only the creator of ExternalS3StorageLocationSetting.id={sl_id} can "
                        f"create an external S3FileHandle with storageLocationId = {sl_id}")
    if fields["content_size"] is not None:
        try:
            fields["content_size"] = int(fields["content_size"])
        except (TypeError, ValueError):
            raise BadRequest(f"Invalid contentSize: {fields['content_size']}") from None
    fields["storage_location_id"] = sl_id
    return fields


@files.post("/externalFileHandle/s3")
@context.scopes("view", "modify")
def create_external_s3_handle():
    user = context.require_user()
    data = context.body()
    with context.store().tx() as c:
        fields = _validate_external(c, user, data)
    try:  # step 9: HEAD with the emulator's own ("Synapse's") identity
        head = context.s3().head_object(fields["bucket"], fields["key"])
    except Exception:  # noqa: BLE001
        head = None
    if head is None:
        raise BadRequest(f"Unable to access the file at bucket: {fields['bucket']} key: "
                         f"{fields['key']}.")
    if fields["content_size"] is None:
        fields["content_size"] = int(head.get("ContentLength", 0))
    with context.store().tx() as c:
        fh_id = insert_s3_handle(c, user.id, **fields)
        return jsonify(handle_json(get_handle_row(c, fh_id))), 200


# ---- GET/DELETE /fileHandle/{id}, GET /fileHandle/{id}/url ---------------------------------
def _handle_or_404(c, fh_id):
    row = get_handle_row(c, fh_id)
    if row is None:
        raise NotFound(f"FileHandle: '{fh_id}' cannot be found")
    return row


@files.get("/fileHandle/<int:fh_id>")
@context.scopes("view")
def get_file_handle(fh_id: int):
    with context.store().tx() as c:
        row = _handle_or_404(c, fh_id)
    _creator_only(row, context.user(), fh_id)
    return jsonify(handle_json(row))


@files.delete("/fileHandle/<int:fh_id>")
@context.scopes("modify")
def delete_file_handle(fh_id: int):
    user = context.require_user()
    with context.store().tx() as c:
        row = get_handle_row(c, fh_id)
        if row is None:
            return ("", 200)
        _creator_only(row, user, fh_id)
        c.execute("DELETE FROM file_handles WHERE id = ?", (fh_id,))
        others = c.execute("SELECT COUNT(*) AS n FROM file_handles WHERE bucket_name = ? AND"
                           " key = ?", (row["bucket_name"], row["key"])).fetchone()["n"]
    if row["concrete_type"] == S3_HANDLE and others == 0:
        try:
            context.s3().admin_client().delete_object(Bucket=row["bucket_name"], Key=row["key"])
        except Exception as exc:  # noqa: BLE001 - the handle is gone either way
            log.warning("could not delete s3 object of file handle %s: %s", fh_id,
                        type(exc).__name__)
    return ("", 200)


@files.get("/fileHandle/<int:fh_id>/url")
@context.scopes("download")
def file_handle_url(fh_id: int):
    user = context.user()
    with context.store().tx() as c:
        row = _handle_or_404(c, fh_id)
    if user is None or (row["created_by"] != user.id and not user.is_admin):
        raise Forbidden("Only the user that created the FileHandle can get the URL of the file.")
    return redirect_or_text(presigned_url(row))


# ---- POST /fileHandle/batch ----------------------------------------------------------------
def _flag(data: dict, name: str) -> bool:
    value = data.get(name)
    return value is True or (isinstance(value, str) and value.lower() == "true")


@files.post("/fileHandle/batch")
@context.scopes("view", "download")
def batch():
    user = context.user()
    data = context.body()
    wanted = data.get("requestedFiles")
    if not isinstance(wanted, list):
        raise BadRequest("requestedFiles is required.")
    inc_handles, inc_urls = _flag(data, "includeFileHandles"), _flag(data, "includePreSignedURLs")
    if not (inc_handles or inc_urls or _flag(data, "includePreviewPreSignedURLs")):
        raise BadRequest(MUST_INCLUDE_EITHER)
    if len(wanted) > MAX_REQUESTS_PER_CALL:
        raise BadRequest(f"Request exceeds the maximum number of objects per request: "
                         f"{MAX_REQUESTS_PER_CALL}")
    for item in wanted:
        if not isinstance(item, dict) or item.get("fileHandleId") is None:
            raise BadRequest("FileHandleAssociation.fileHandleId is required.")
        if item.get("associateObjectId") is None:
            raise BadRequest("FileHandleAssociation.associateObjectId is required.")
        if item.get("associateObjectType") not in ASSOCIATE_TYPES:
            raise BadRequest("FileHandleAssociation.associateObjectType is required.")
    results = []
    with context.store().tx() as c:
        for item in wanted:
            fh_id = str(item["fileHandleId"])
            result = {"fileHandleId": fh_id}
            failure = association_failure(c, user, fh_id, item["associateObjectType"],
                                          item["associateObjectId"])
            row = get_handle_row(c, fh_id) if failure is None else None
            if failure is None and row is None:
                failure = "NOT_FOUND"
            if failure:
                result["failureCode"] = failure
            results.append((result, row))
    out = []
    for result, row in results:
        if row is not None:
            if inc_handles:
                result["fileHandle"] = handle_json(row)
            if inc_urls:
                result["preSignedURL"] = presigned_url(row)
        out.append(result)
    return jsonify({"requestedFiles": out}), 201


# ---- upload destinations ------------------------------------------------------------------
def upload_destination(c, location_id) -> dict:
    """The UploadDestination JSON for a storage location (FileHandleManagerImpl)."""
    if int(location_id) == storage.DEFAULT_ID:
        return {"concreteType": S3_DEST, "storageLocationId": storage.DEFAULT_ID,
                "uploadType": "S3"}
    loc = storage.location_row(c, location_id)
    if loc is None:
        raise NotFound(f"StorageLocationSetting with id {location_id} does not exist")
    body = loc["body"]
    if body["concreteType"] == storage.S3_SETTING:
        out = {"concreteType": S3_DEST}
    elif body["concreteType"] == storage.EXT_S3_SETTING:
        out = {"concreteType": EXT_S3_DEST}
    else:
        raise BadRequest("Cannot handle upload destination location setting of type: "
                         + body["concreteType"])
    out.update(storageLocationId=int(location_id), uploadType=body.get("uploadType"))
    for field in ("banner", "baseKey", "stsEnabled", "bucket"):
        if body.get(field) is not None and (field != "bucket" or out["concreteType"] == EXT_S3_DEST):
            out[field] = body[field]
    return out


def _location_ids(c, entity_id: str) -> list[int]:
    eid = db.parse_syn_id(entity_id)
    if eid is None:
        raise BadRequest(f"Invalid entity id: {entity_id}")
    setting = storage.effective_setting(c, eid)
    return setting["locations"] if setting and setting["locations"] else [storage.DEFAULT_ID]


@files.get("/entity/<entity_id>/uploadDestination")
@context.scopes("view")
def default_destination(entity_id: str):
    with context.store().tx() as c:
        return jsonify(upload_destination(c, _location_ids(c, entity_id)[0]))


@files.get("/entity/<entity_id>/uploadDestination/<int:location_id>")
@context.scopes("view")
def destination_for_location(entity_id: str, location_id: int):
    if db.parse_syn_id(entity_id) is None:
        raise BadRequest(f"Invalid entity id: {entity_id}")
    with context.store().tx() as c:
        return jsonify(upload_destination(c, location_id))


@files.get("/entity/<entity_id>/uploadDestinations")
@context.scopes("view")
def all_destinations(entity_id: str):
    with context.store().tx() as c:
        return jsonify({"list": [upload_destination(c, i) for i in _location_ids(c, entity_id)]})


@files.get("/entity/<entity_id>/uploadDestinationLocations")
@context.scopes("view")
def destination_locations(entity_id: str):
    with context.store().tx() as c:
        out = []
        for lid in _location_ids(c, entity_id):
            loc = storage.location_row(c, lid)
            if loc is None:
                continue
            item = {"storageLocationId": lid, "description": loc["body"].get("description"),
                    "uploadType": loc["body"].get("uploadType", "NONE")}
            out.append({k: v for k, v in item.items() if v is not None})
        return jsonify({"list": out})
