"""The storage REST API (synapse-api.md §5): ``POST/GET /storageLocation`` (processors in
order, the ``owner.txt`` check, idempotent per creator) and ``POST/GET/PUT/DELETE
/projectSettings``. The rows and the STS rules are the ``storage`` model.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

from flask import Blueprint, jsonify

from . import acl, context, db, entity_core, storage
from .db import Store
from .errors import BadRequest, Forbidden, NotFound, PreconditionFailed

repo = Blueprint("storage", __name__)
BLUEPRINTS = [(repo, "/repo/v1")]

MAX_LOCATIONS = 10
OWNER_MARKER = "owner.txt"
OWNER_TXT_MAX_LINES = 100
STORAGE_HELP = ("https://help.synapse.org/docs/Custom-Storage-Locations.2048327803.html for more "
                "information on how to create a new external upload destination.")
SECURITY_EXPLANATION = (
    "For security purposes, Synapse needs to establish that the user has permission to write to "
    "the bucket. Please create an object in bucket '{b}' with key '{k}' that contains a line "
    "separated list of identifiers for the user. Valid identifiers are the id of the user or id "
    "of a team the user is part of. Also see " + STORAGE_HELP)
OWNER_HELP = ("http://docs.synapse.org/articles/custom_storage_location.html for more information "
              "on how to create a new external upload destination.")
_DOMAIN_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?$")


# ---- POST/GET /storageLocation --------------------------------------------------------------
def _valid_domain(name: str) -> bool:
    if not name or len(name) > 253:
        return False
    parts = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if len(parts) > 127 or not all(len(p) <= 63 and _DOMAIN_PART.match(p) for p in parts):
        return False
    return not parts[-1][0].isdigit()


def _verify_owner(user, bucket: str, base_key: str | None) -> None:
    """The owner.txt check of BucketOwnerVerifierImpl, read with the emulator's own identity."""
    key = OWNER_MARKER if base_key is None else f"{base_key}/{OWNER_MARKER}"
    explain = SECURITY_EXPLANATION.format(b=bucket, k=key)
    s3 = context.s3()
    try:
        data = s3.read_object(bucket, key, 1 << 20)
    except Exception as exc:  # noqa: BLE001 - any S3 failure is the user's 400 here
        raise BadRequest(f"Could not read S3 object at key {key} from bucket {bucket}: "
                         f"{type(exc).__name__}. {explain}") from None
    if data is None:
        try:
            s3.admin_client().head_bucket(Bucket=bucket)
        except Exception:  # noqa: BLE001 - no such bucket
            raise BadRequest(f"Did not find S3 bucket {bucket}. {explain}") from None
        raise BadRequest(f"Did not find S3 object at key {key} from bucket {bucket}. {explain}")
    lines = data.decode("utf-8", errors="replace").splitlines()[:OWNER_TXT_MAX_LINES]
    values = [v.strip().lower() for line in lines for v in line.split(",")]
    values = [v for v in values if v]
    if not values:
        raise BadRequest(f"No user identifier found under key {key} from bucket {bucket}. {explain}")
    aliases = {str(user.id), user.user_name.strip().lower(), user.email.strip().lower()}
    if not aliases.intersection(values):
        raise BadRequest(f"Could not find a valid user identifier under key {key} from bucket "
                         f"{bucket}. {explain}")


def _process_location(user, data: dict) -> dict:
    """Apply Synapse's StorageLocationProcessors in order; return the body to store."""
    ct = data.get("concreteType")
    if ct not in (storage.S3_SETTING, storage.EXT_S3_SETTING):
        raise BadRequest(f"Unsupported storage location type: {ct}" if ct else
                         "concreteType is required.")
    body = {"concreteType": ct}
    for field in ("uploadType", "banner", "description", "bucket", "baseKey", "stsEnabled",
                  "endpointUrl"):
        if data.get(field) is not None:
            body[field] = data[field]
    if "baseKey" in body:  # 1. sanitize the base key
        body["baseKey"] = str(body["baseKey"]).strip("/ \t") or None
        if body["baseKey"] is None:
            body.pop("baseKey")
    if "stsEnabled" in body and not isinstance(body["stsEnabled"], bool):
        raise BadRequest("stsEnabled must be a boolean")
    if ct == storage.EXT_S3_SETTING:
        bucket = body.get("bucket")
        if not bucket:  # 2. bucket name
            raise BadRequest("The bucket name is required.")
        if not isinstance(bucket, str) or not _valid_domain(bucket):
            raise BadRequest("Invalid bucket name.")
        body["uploadType"] = "S3"  # 3.
    else:
        if body.get("baseKey") is not None:  # 4. Synapse storage
            raise BadRequest("Cannot specify baseKey when creating an S3StorageLocationSetting")
        if body.get("stsEnabled") is True:
            body["baseKey"] = f"{user.id}/{uuid.uuid4()}"
        body["uploadType"] = "S3"
    if ct == storage.EXT_S3_SETTING and not user.is_admin:  # 5. owner.txt
        _verify_owner(user, body["bucket"], body.get("baseKey"))
    body.setdefault("uploadType", "NONE")  # 6.
    return body


@repo.post("/storageLocation")
@context.scopes("view", "modify")
def create_location():
    user = context.require_user()
    body = _process_location(user, context.body())
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    with context.store().tx() as c:
        storage.ensure_default(c)
        found = c.execute("SELECT id FROM storage_locations WHERE created_by = ? AND hash = ?",
                          (user.id, digest)).fetchone()
        if found:  # idempotent per creator (findByCreatorAndHash)
            return jsonify(storage.location_row(c, found["id"])["body"]), 201
        lid = Store.next_id(c, "storage_location")
        stamp = db.synapse_date()
        stored = dict(body, createdOn=stamp, createdBy=user.id)
        c.execute("INSERT INTO storage_locations(id, concrete_type, created_by, created_on, etag,"
                  " body, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (lid, body["concreteType"], user.id, stamp, db.new_etag(), json.dumps(stored),
                   digest))
        return jsonify(storage.location_row(c, lid)["body"]), 201


@repo.get("/storageLocation/<int:location_id>")
@context.scopes("view")
def get_location(location_id: int):
    user = context.require_user()
    with context.store().tx() as c:
        loc = storage.location_row(c, location_id)
    if loc is None:
        raise NotFound(f"StorageLocationSetting with id {location_id} does not exist")
    if loc["created_by"] != user.id:
        raise Forbidden("Only the creator can access storage location settings")
    return jsonify(loc["body"])


# ---- /projectSettings --------------------------------------------------------------------
def _entity_id(value, what: str = "projectId") -> int:
    eid = db.parse_syn_id(value) if value is not None else None
    if eid is None:
        raise BadRequest(f"{what} is required." if value is None else f"Invalid {what}: {value}")
    return eid


def _parse_locations(data: dict) -> list[int]:
    locs = data.get("locations")
    if locs is None:
        raise BadRequest("settings.locations is required.")
    if not isinstance(locs, list):
        raise BadRequest("settings.locations must be a list of storage location ids")
    bad = [v for v in locs if not str(v).isdigit()]
    if bad:
        raise BadRequest(f"uploadId {bad[0]} is not a valid upload destination location")
    return [int(v) for v in locs]


def _validate_locations(c, user, project_id: int, locations: list[int]) -> None:
    """validateUploadDestinationListSetting."""
    if len(locations) < 1:
        raise BadRequest("settings.locations must at least have one entry")
    if len(locations) > MAX_LOCATIONS:
        raise BadRequest(f"The maximum number of settings.locations is limited to {MAX_LOCATIONS}")
    for lid in locations:
        loc = storage.location_row(c, lid)
        if loc is None:
            raise BadRequest(f"uploadId {lid} is not a valid upload destination location")
        if loc["concrete_type"] == storage.EXT_S3_SETTING and not user.is_admin \
                and loc["created_by"] != user.id:
            owner = c.execute("SELECT user_name FROM users WHERE id = ?",
                              (loc["created_by"],)).fetchone()
            raise Forbidden(
                f"Only the owner of the external S3 upload destination (user "
                f"{owner['user_name'] if owner else loc['created_by']}) can add this upload "
                "destination to a project. Either ask that user to perform this operation or "
                f"follow the steps to create a new external s3 upload destination (see {OWNER_HELP}")
        if storage.is_sts_location(loc["body"]):
            if Store.entity_row(c, project_id)["concrete_type"] != db.FOLDER:
                raise BadRequest("Can only enable STS on a folder")
            if len(locations) != 1:
                raise BadRequest("An STS-enabled folder cannot add other upload destinations")


def _check_type(data: dict) -> None:
    ct = data.get("concreteType")
    if ct != storage.UPLOAD_LIST:
        raise BadRequest(f"Cannot handle project setting of type {ct}" if ct else
                         "concreteType is required.")


@repo.post("/projectSettings")
@context.scopes("view", "modify")
def create_setting():
    user = context.require_user()
    data = context.body()
    _check_type(data)
    pid = _entity_id(data.get("projectId"))
    with context.store().tx() as c:
        node = entity_core.get_live_entity(c, pid)
        if node["concrete_type"] not in (db.PROJECT, db.FOLDER):
            raise BadRequest("The id is not the id of a project or folder entity")
        if not acl.can(c, user, pid, "CREATE"):
            raise Forbidden("Cannot create settings for this project")
        if storage.setting_is_sts(c, storage.effective_setting(c, pid)):
            raise BadRequest("Can't override project settings in an STS-enabled folder path")
        locations = _parse_locations(data)
        _validate_locations(c, user, pid, locations)
        if storage.setting_is_sts(c, {"locations": locations}) \
                and not entity_core.is_empty_with_trash(c, pid):
            raise BadRequest("Can't enable STS in a non-empty folder")
        if storage.own_setting(c, pid):
            raise BadRequest(f"A project setting of type 'upload' already exists for "
                             f"{db.syn_id(pid)}")
        sid = Store.next_id(c, "project_setting")
        c.execute("INSERT INTO project_settings(id, project_id, settings_type, concrete_type, etag,"
                  " locations) VALUES (?, ?, 'upload', ?, ?, ?)",
                  (sid, pid, storage.UPLOAD_LIST, db.new_etag(), json.dumps(locations)))
        return jsonify(storage.setting_json(storage.own_setting(c, pid))), 201


def _setting_by_id(c, setting_id) -> dict:
    row = c.execute("SELECT * FROM project_settings WHERE id = ?", (setting_id,)).fetchone()
    if row is None:
        raise NotFound(f"Project setting {setting_id} does not exist")
    return storage.setting_dict(row)


@repo.get("/projectSettings/<int:setting_id>")
@context.scopes("view")
def get_setting(setting_id: int):
    user = context.user()
    with context.store().tx() as c:
        s = _setting_by_id(c, setting_id)
        if not acl.can(c, user, s["project_id"], "READ"):
            raise Forbidden("The current user does not have READ access on the project this"
                            " setting applies to.")
        return jsonify(storage.setting_json(s))


@repo.get("/projectSettings/<project_id>/type/<settings_type>")
@context.scopes("view")
def get_setting_by_type(project_id: str, settings_type: str):
    if settings_type not in storage.SETTINGS_TYPES + ("external_sync", "requester_pays"):
        raise BadRequest(f"Invalid settings type: {settings_type}")
    pid = _entity_id(project_id)
    with context.store().tx() as c:
        entity_core.get_live_entity(c, pid)
        if not acl.can(c, context.user(), pid, "READ"):
            raise Forbidden(f"The current user does not have READ access on the project "
                            f"{project_id}.")
        s = storage.own_setting(c, pid) if settings_type == "upload" else None
        if s is None:
            return ("", 200)
        return jsonify(storage.setting_json(s))


@repo.put("/projectSettings")
@context.scopes("view", "modify")
def update_setting():
    user = context.require_user()
    data = context.body()
    if data.get("id") is None:
        raise BadRequest("The id is required.")
    if data.get("projectId") is None:
        raise BadRequest("The project id is required.")
    _check_type(data)
    pid = _entity_id(data.get("projectId"))
    with context.store().tx() as c:
        if not acl.can(c, user, pid, "UPDATE"):
            raise Forbidden("Cannot update settings on this project")
        locations = _parse_locations(data)
        _validate_locations(c, user, pid, locations)
        try:
            old = _setting_by_id(c, int(data["id"]))
        except (TypeError, ValueError):
            raise BadRequest(f"Invalid id: {data['id']}") from None
        if not entity_core.is_empty_with_trash(c, pid):
            if storage.setting_is_sts(c, {"locations": locations}):
                raise BadRequest("Can't enable STS in a non-empty folder")
            if storage.setting_is_sts(c, old):
                raise BadRequest("Can't disable STS in a non-empty folder")
        if old["project_id"] != pid:
            raise BadRequest("You cannot change the project id with the update project settings"
                             " call. Create a new project settings instead")
        if data.get("etag") != old["etag"]:
            raise PreconditionFailed("Project setting was updated since you last fetched it,"
                                     " retrieve it again and reapply the update.")
        c.execute("UPDATE project_settings SET locations = ?, etag = ? WHERE id = ?",
                  (json.dumps(locations), db.new_etag(), old["id"]))
    return ("", 200)


@repo.delete("/projectSettings/<int:setting_id>")
@context.scopes("modify")
def delete_setting(setting_id: int):
    user = context.require_user()
    with context.store().tx() as c:
        s = _setting_by_id(c, setting_id)
        if not acl.can(c, user, s["project_id"], "DELETE"):
            raise Forbidden("Cannot delete settings from this project")
        if storage.setting_is_sts(c, s) and not entity_core.is_empty_with_trash(c, s["project_id"]):
            raise BadRequest("Can't disable STS in a non-empty folder")
        c.execute("DELETE FROM project_settings WHERE id = ?", (setting_id,))
    return ("", 204)

