"""Multipart upload (``/file/v1/file/multipart...``) and pre-signed downloads (``/file/v1/file/{id}``).

Follows ``MultipartManagerV2Impl`` and ``MultipartUploadRequestHandler`` (synapse-api.md §4.5):
``POST /file/multipart`` starts or resumes (same request by the same user, unless
``forceRestart``) a real S3 multipart upload in the storage location's bucket under the key
``[baseKey/]<userId>/<uuid>/<fileName>``; ``.../presigned/url/batch`` signs part PUTs;
``.../add/{n}?partMD5Hex=`` checks the part's ETag in S3 (ADD_SUCCESS / ADD_FAILED);
``.../complete`` completes the S3 upload and creates the S3FileHandle with the request's
``contentMD5Hex``. State lives in the ``multipart_uploads`` table; S3 calls run outside DB
transactions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid

from flask import Blueprint, jsonify, request

from . import acl, context, db, filehandles, storage
from .errors import BadRequest, Forbidden, NotFound, SynapseError

log = logging.getLogger(__name__)

files = Blueprint("multipart", __name__)
BLUEPRINTS = [(files, "/file/v1")]

F = "org.sagebionetworks.repo.model.file."
UPLOAD_REQUEST = F + "MultipartUploadRequest"
COPY_REQUEST = F + "MultipartUploadCopyRequest"
MIN_PART_SIZE = 5 * 1024 ** 2
MAX_PART_SIZE = 5 * 1024 ** 3
MAX_FILE_SIZE = 5 * 1024 ** 4
MAX_PARTS = 10_000
PART_URL_EXPIRE_S = 15 * 60
REQUEST_FIELDS = ("concreteType", "contentMD5Hex", "fileName", "generatePreview",
                  "storageLocationId", "fileSizeBytes", "partSizeBytes", "contentType")
_NAME = re.compile(r"^[a-zA-Z0-9,_. \-+()']+$")
MD5_MISMATCH = ("The provided MD5 does not match the MD5 of the uploaded part.  Please re-upload "
                "the part.")
NOT_STARTER = ("Only the user that started a multipart upload can get part upload pre-signed URLs"
               " for that file upload.")


def validate_name(name: str) -> None:
    """NameValidation.validateName (the entity-name rule)."""
    if len(name) > 256:
        raise BadRequest("Name length cannot be longer than 256 characters.")
    if not name.strip():
        raise BadRequest("Name cannot be only whitespace or empty string")
    if not _NAME.match(name.strip()):
        raise BadRequest(f"Invalid Name: '{name}'. Names may only contain: letters, numbers, "
                         "spaces, underscores, hyphens, periods, plus signs, apostrophes, and "
                         "parentheses")


def _long(data: dict, field: str) -> int:
    value = data.get(field)
    if value is None:
        raise BadRequest(f"MultipartUploadRequest.{field} is required.")
    if isinstance(value, bool) or not str(value).lstrip("-").isdigit():
        raise BadRequest(f"MultipartUploadRequest.{field} must be an integer")
    return int(value)


def number_of_parts(file_size: int, part_size: int) -> int:
    """PartUtils.calculateNumberOfParts (with its size validations)."""
    if file_size < 1:
        raise BadRequest("File size must be at least one byte")
    if file_size > MAX_FILE_SIZE:
        raise BadRequest("The maximum file size is 5 TB")
    if part_size > file_size:
        return 1
    n = -(-file_size // part_size)
    if n > MAX_PARTS:
        raise BadRequest(f"File Upload would require {n} parts, which exceeds the maximum number "
                         f"of allowed parts of: {MAX_PARTS}. Please choose a larger part size.")
    return n


def _parse_request(user, data: dict) -> dict:
    """Validation of MultipartManagerV2Impl + MultipartUploadRequestHandler, in order."""
    ct = data.get("concreteType", UPLOAD_REQUEST)
    if ct == COPY_REQUEST:
        raise BadRequest("MultipartUploadCopyRequest is not supported by the emulator")
    if ct != UPLOAD_REQUEST:
        raise BadRequest(f"Request type unsupported: {ct}")
    part_size = _long(data, "partSizeBytes")
    if part_size < MIN_PART_SIZE:
        raise BadRequest(f"The part size must be at least {MIN_PART_SIZE} bytes.")
    if part_size > MAX_PART_SIZE:
        raise BadRequest(f"The part size must not exceed {MAX_PART_SIZE} bytes.")
    if user is None:
        raise Forbidden("Anonymous cannot upload files.")
    name = data.get("fileName")
    if not isinstance(name, str) or not name:
        raise BadRequest("MultipartUploadRequest.fileName is required and must not be the empty "
                         "string.")
    validate_name(name)
    file_size = _long(data, "fileSizeBytes")
    if not data.get("contentMD5Hex"):
        raise BadRequest("MultipartUploadRequest.contentMD5Hex is required and must not be the "
                         "empty string.")
    number_of_parts(file_size, part_size)
    req = {k: data.get(k) for k in REQUEST_FIELDS}
    req.update(concreteType=UPLOAD_REQUEST, fileSizeBytes=file_size, partSizeBytes=part_size)
    if req["storageLocationId"] is None:
        req["storageLocationId"] = db.DEFAULT_STORAGE_LOCATION_ID
    elif not str(req["storageLocationId"]).isdigit():
        raise BadRequest(f"Invalid storageLocationId: {req['storageLocationId']}")
    req["storageLocationId"] = int(req["storageLocationId"])
    return {k: v for k, v in req.items() if v is not None}


def status_json(row) -> dict:
    out = {"uploadId": str(row["id"]), "startedBy": str(row["started_by"]),
           "startedOn": row["started_on"], "updatedOn": row["updated_on"],
           "partsState": row["parts_state"], "state": row["state"]}
    if row["state"] == "COMPLETED":
        out["partsState"] = "1" * len(row["parts_state"])
    if row["result_file_handle_id"] is not None:
        out["resultFileHandleId"] = str(row["result_file_handle_id"])
    return out


def _find(c, user_id: int, request_hash: str):
    return c.execute("SELECT * FROM multipart_uploads WHERE started_by = ? AND request_hash = ?",
                     (user_id, request_hash)).fetchone()


def _upload(c, upload_id: int):
    row = c.execute("SELECT * FROM multipart_uploads WHERE id = ?", (upload_id,)).fetchone()
    if row is None:
        raise NotFound(f"Could not find a multipart upload with id: {upload_id}")
    return row


def _check_starter(row, user) -> None:
    if user is None or row["started_by"] != user.id:
        raise Forbidden(NOT_STARTER)


def _part_number_ok(part: int, n: int) -> None:
    if part < 1:
        raise BadRequest("Part numbers cannot be less than one.")
    if part > n:
        raise BadRequest(f"Part number cannot be larger than number of parts. Number of parts: "
                         f"{n}, provided part number: {part}")


def _s3_failure(exc: Exception) -> SynapseError:
    log.warning("S3 call failed during multipart upload: %s", type(exc).__name__)
    return SynapseError(f"AmazonServiceException: {type(exc).__name__}", status=502)


@files.post("/file/multipart")
@context.scopes("view", "modify")
def start_upload():
    user = context.user()
    req = _parse_request(user, context.body())
    req_hash = hashlib.md5(json.dumps(req, sort_keys=True).encode()).hexdigest()
    force = (request.args.get("forceRestart") or "false").lower() == "true"
    with context.store().tx() as c:
        if force:
            c.execute("UPDATE multipart_uploads SET request_hash = ? WHERE started_by = ? AND"
                      " request_hash = ?", (f"R_{req_hash}_{uuid.uuid4()}", user.id, req_hash))
        row = _find(c, user.id, req_hash)
        if row is not None:
            return jsonify(status_json(row)), 201
        loc = storage.location_row(c, req["storageLocationId"])
        if loc is None:
            raise NotFound(f"StorageLocationSetting with id {req['storageLocationId']} does not"
                           " exist")
        if loc["concrete_type"] not in (storage.S3_SETTING, storage.EXT_S3_SETTING):
            raise BadRequest(f"Cannot upload to a storage location of type {loc['concrete_type']}")
    body = loc["body"]
    bucket = storage.location_bucket(body)
    prefix = f"{body['baseKey']}/" if body.get("baseKey") else ""
    key = f"{prefix}{user.id}/{uuid.uuid4()}/{req['fileName']}"
    n = number_of_parts(req["fileSizeBytes"], req["partSizeBytes"])
    try:
        s3_upload_id = context.s3().create_multipart(bucket, key, req.get("contentType"))
    except Exception as exc:  # noqa: BLE001
        raise _s3_failure(exc) from None
    with context.store().tx() as c:
        row = _find(c, user.id, req_hash)
        if row is None:
            upload_id = db.Store.next_id(c, "multipart")
            stamp = db.synapse_date()
            c.execute("INSERT INTO multipart_uploads(id, started_by, started_on, updated_on,"
                      " request, request_hash, bucket, key, s3_upload_id, parts_state, part_md5s,"
                      " state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', 'UPLOADING')",
                      (upload_id, user.id, stamp, stamp, json.dumps(req), req_hash, bucket, key,
                       s3_upload_id, "0" * n))
            return jsonify(status_json(_upload(c, upload_id))), 201
    _abort_quietly(bucket, key, s3_upload_id)  # lost a race with an identical request
    return jsonify(status_json(row)), 201


def _abort_quietly(bucket: str, key: str, s3_upload_id: str) -> None:
    try:
        context.s3().abort_multipart(bucket, key, s3_upload_id)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not abort multipart upload: %s", type(exc).__name__)


@files.post("/file/multipart/<int:upload_id>/presigned/url/batch")
@context.scopes("view", "modify")
def presigned_urls(upload_id: int):
    user = context.user()
    data = context.body()
    parts = data.get("partNumbers")
    if parts is None:
        raise BadRequest("BatchPresignedUploadUrlRequest.partNumbers is required.")
    if not isinstance(parts, list) or not parts:
        raise BadRequest("BatchPresignedUploadUrlRequest.partNumbers must contain at least one "
                         "value")
    with context.store().tx() as c:
        row = _upload(c, upload_id)
    _check_starter(row, user)
    n = len(row["parts_state"])
    content_type = data.get("contentType")
    out = []
    for part in parts:
        if part is None or not str(part).lstrip("-").isdigit():
            raise BadRequest("PartNumber is required.")
        _part_number_ok(int(part), n)
        try:
            url = context.s3().presign_part(row["bucket"], row["key"], row["s3_upload_id"],
                                            int(part), expires=PART_URL_EXPIRE_S)
        except Exception as exc:  # noqa: BLE001
            raise _s3_failure(exc) from None
        signed = {"Content-Type": content_type} if content_type else {}
        out.append({"partNumber": int(part), "uploadPresignedUrl": url, "signedHeaders": signed})
    return jsonify({"partPresignedUrls": out}), 201


@files.put("/file/multipart/<int:upload_id>/add/<int(signed=True):part_number>")
@context.scopes("view", "modify")
def add_part(upload_id: int, part_number: int):
    user = context.user()
    md5 = request.args.get("partMD5Hex")
    if md5 is None:
        raise BadRequest("partMD5Hex is required.")
    with context.store().tx() as c:
        row = _upload(c, upload_id)
        if row["state"] == "COMPLETED":
            raise BadRequest("Cannot add parts to completed file upload.")
        _part_number_ok(part_number, len(row["parts_state"]))
        _check_starter(row, user)
    error = None
    try:
        parts = context.s3().list_parts(row["bucket"], row["key"], row["s3_upload_id"])
        found = [p for p in parts if int(p["PartNumber"]) == part_number]
        if not found:
            error = "The uploaded part could not be found"
        elif found[0]["ETag"].strip('"').lower() != md5.strip().lower():
            error = MD5_MISMATCH
    except Exception as exc:  # noqa: BLE001 - reported as ADD_FAILED, like Synapse
        error = f"{type(exc).__name__}: could not verify the part"
    with context.store().tx() as c:
        cur = _upload(c, upload_id)
        state = list(cur["parts_state"])
        md5s = json.loads(cur["part_md5s"])
        state[part_number - 1] = "0" if error else "1"
        if error:
            md5s.pop(str(part_number), None)
        else:
            md5s[str(part_number)] = md5.lower()
        c.execute("UPDATE multipart_uploads SET parts_state = ?, part_md5s = ?, updated_on = ?"
                  " WHERE id = ?", ("".join(state), json.dumps(md5s), db.synapse_date(), upload_id))
    out = {"uploadId": str(upload_id), "partNumber": part_number,
           "addPartState": "ADD_FAILED" if error else "ADD_SUCCESS"}
    if error:
        out["errorMessage"] = error
    return jsonify(out), 201


@files.put("/file/multipart/<int:upload_id>/complete")
@context.scopes("view", "modify")
def complete_upload(upload_id: int):
    user = context.user()
    with context.store().tx() as c:
        row = _upload(c, upload_id)
    _check_starter(row, user)
    if row["state"] == "COMPLETED":
        return jsonify(status_json(row)), 201
    n = len(row["parts_state"])
    missing = row["parts_state"].count("0")
    if missing:
        raise BadRequest(f"Missing {missing} part(s).  All parts must be successfully added before"
                         " a file upload can be completed.")
    s3 = context.s3()
    try:
        parts = [p for p in s3.list_parts(row["bucket"], row["key"], row["s3_upload_id"])
                 if 1 <= int(p["PartNumber"]) <= n]
        s3.complete_multipart(row["bucket"], row["key"], row["s3_upload_id"], parts)
        head = s3.head_object(row["bucket"], row["key"]) or {}
    except Exception as exc:  # noqa: BLE001 - maybe a concurrent complete won the race
        with context.store().tx() as c:
            again = _upload(c, upload_id)
        if again["state"] == "COMPLETED":
            return jsonify(status_json(again)), 201
        raise _s3_failure(exc) from None
    req = json.loads(row["request"])
    size = int(head.get("ContentLength", sum(int(p["Size"]) for p in parts)))
    with context.store().tx() as c:
        cur = _upload(c, upload_id)
        if cur["state"] != "COMPLETED":
            fh_id = filehandles.insert_s3_handle(
                c, row["started_by"], row["bucket"], row["key"], req["fileName"],
                req.get("contentType"), req["contentMD5Hex"], size, req["storageLocationId"])
            c.execute("UPDATE multipart_uploads SET state = 'COMPLETED', parts_state = ?,"
                      " result_file_handle_id = ?, updated_on = ? WHERE id = ?",
                      ("1" * n, fh_id, db.synapse_date(), upload_id))
            cur = _upload(c, upload_id)
        return jsonify(status_json(cur)), 201


# ---- GET /file/{fileHandleId}?fileAssociateType=&fileAssociateId=&redirect= -----------------
@files.get("/file/<int:fh_id>")
@context.scopes("download")
def download_url(fh_id: int):
    params = {}
    for name, kind in (("fileAssociateType", "FileHandleAssociateType"),
                       ("fileAssociateId", "String")):
        params[name] = request.args.get(name)
        if params[name] is None:
            raise BadRequest(f"Required request parameter '{name}' for method parameter type "
                             f"{kind} is not present")
    assoc_type, assoc_id = params["fileAssociateType"], params["fileAssociateId"]
    if assoc_type not in filehandles.ASSOCIATE_TYPES:
        raise BadRequest(f"Invalid fileAssociateType: {assoc_type}")
    user = context.user()
    with context.store().tx() as c:
        if filehandles.association_failure(c, user, fh_id, assoc_type, assoc_id):
            eid = db.parse_syn_id(assoc_id)
            if assoc_type == "FileEntity" and eid is not None:
                acl.require(c, user, eid, "DOWNLOAD")
            raise Forbidden(f"FileHandleId: {fh_id} is not associated with {assoc_type}: "
                            f"{assoc_id}")
        row = filehandles.get_handle_row(c, fh_id)
        if row is None:
            raise NotFound(f"FileHandle: '{fh_id}' cannot be found")
    return filehandles.redirect_or_text(filehandles.presigned_url(row))
