"""Storage locations, project settings and the STS rules of Synapse (synapse-api.md §5).

Owns ``POST/GET /storageLocation`` (processors in order, owner.txt check, idempotent per
creator) and ``POST/GET/PUT/DELETE /projectSettings`` (repo), plus the §5.4 checks the entities
and acl modules call: ``effective_setting``, ``effective_location``, ``check_create_in_parent``,
``check_add_file``, ``check_move_folder``, ``in_sts_folder`` and ``location_row``. All STS rule
violations raise ``errors.BadRequest`` with Synapse's texts. (The upload-destination endpoints,
which Synapse serves from its file-handle manager, live in ``filehandles``.)

A location row (``location_row``) is ``{"id", "concrete_type", "created_by", "created_on",
"etag", "body"}`` where ``body`` is the StorageLocationSetting JSON as the API returns it.
Storage location 1 (Synapse storage, not STS) is stored on first use.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

from flask import Blueprint, jsonify

from . import context, db
from .db import Store
from .errors import BadRequest, Forbidden, NotFound, PreconditionFailed

repo = Blueprint("storage", __name__)
BLUEPRINTS = [(repo, "/repo/v1")]

P = "org.sagebionetworks.repo.model.project."
S3_SETTING = P + "S3StorageLocationSetting"
EXT_S3_SETTING = P + "ExternalS3StorageLocationSetting"
UPLOAD_LIST = P + "UploadDestinationListSetting"
DEFAULT_ID = db.DEFAULT_STORAGE_LOCATION_ID
DEFAULT_BODY = {"concreteType": S3_SETTING, "storageLocationId": DEFAULT_ID, "uploadType": "S3"}
SETTINGS_TYPES = ("upload",)
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


# ---- storage location rows ---------------------------------------------------------------
def _ensure_default(c) -> None:
    if c.execute("SELECT 1 FROM storage_locations WHERE id = ?", (DEFAULT_ID,)).fetchone():
        return
    body = dict(DEFAULT_BODY, createdBy=1, createdOn=db.synapse_date())
    c.execute("INSERT OR IGNORE INTO storage_locations(id, concrete_type, created_by, created_on,"
              " etag, body, hash) VALUES (?, ?, 1, ?, ?, ?, ?)",
              (DEFAULT_ID, S3_SETTING, body["createdOn"], db.new_etag(), json.dumps(body), ""))


def location_row(c, location_id) -> dict | None:
    """The storage location ``location_id`` (see module docstring), or None."""
    try:
        location_id = int(location_id)
    except (TypeError, ValueError):
        return None
    if location_id == DEFAULT_ID:
        _ensure_default(c)
    row = c.execute("SELECT * FROM storage_locations WHERE id = ?", (location_id,)).fetchone()
    if row is None:
        return None
    body = json.loads(row["body"])
    body.update(storageLocationId=row["id"], etag=row["etag"])
    if row["id"] == DEFAULT_ID:  # Synapse builds this one in code: no etag or creator fields
        body = dict(DEFAULT_BODY)
    return {"id": row["id"], "concrete_type": row["concrete_type"], "created_by": row["created_by"],
            "created_on": row["created_on"], "etag": row["etag"], "body": body}


def is_sts_location(body: dict | None) -> bool:
    return bool(body) and body.get("concreteType") in (S3_SETTING, EXT_S3_SETTING) \
        and body.get("stsEnabled") is True


def location_bucket(body: dict) -> str | None:
    """Where objects of this location live: the Synapse bucket or the external bucket."""
    if body.get("concreteType") == S3_SETTING:
        return context.s3().SYNAPSE_BUCKET
    return body.get("bucket")


# ---- project-setting rows and the inherited lookup ---------------------------------------
def _setting_dict(row) -> dict:
    return {"id": row["id"], "project_id": row["project_id"], "etag": row["etag"],
            "settings_type": row["settings_type"], "locations": json.loads(row["locations"])}


def _setting_json(s: dict) -> dict:
    return {"id": str(s["id"]), "concreteType": UPLOAD_LIST, "projectId": db.syn_id(s["project_id"]),
            "settingsType": s["settings_type"], "etag": s["etag"], "locations": s["locations"]}


def own_setting(c, eid: int) -> dict | None:
    """The upload setting defined on exactly ``eid``."""
    row = c.execute("SELECT * FROM project_settings WHERE project_id = ? AND settings_type ="
                    " 'upload'", (eid,)).fetchone()
    return _setting_dict(row) if row else None


def effective_setting(c, eid) -> dict | None:
    """Nearest ancestor-or-self upload setting: ``{"id","project_id","locations",...}``."""
    for node in Store.ancestors(c, int(eid)):
        found = own_setting(c, node)
        if found:
            return found
    return None


def effective_location(c, eid) -> dict:
    """StorageLocationSetting JSON of the effective ``locations[0]`` (location 1 if none)."""
    setting = effective_setting(c, eid)
    loc = location_row(c, setting["locations"][0]) if setting else None
    return (loc or location_row(c, DEFAULT_ID))["body"]


def _setting_is_sts(c, setting: dict | None) -> bool:
    if not setting or not setting["locations"]:
        return False
    loc = location_row(c, setting["locations"][0])
    return is_sts_location(loc["body"] if loc else None)


def in_sts_folder(c, eid) -> bool:
    """True when ``eid`` lies inside an STS-enabled folder (and does not hold the setting)."""
    setting = effective_setting(c, eid)
    return _setting_is_sts(c, setting) and setting["project_id"] != int(eid)


# ---- §5.4 checks for the entities module --------------------------------------------------
def check_create_in_parent(c, parent_id: int, concrete_type: str) -> None:
    if concrete_type in (db.FOLDER, db.FILE):
        return
    if _setting_is_sts(c, effective_setting(c, parent_id)):
        raise BadRequest("Can only create Files and Folders inside STS-enabled folders")


def check_add_file(c, parent_id: int, file_handle_id: int) -> None:
    fh = c.execute("SELECT storage_location_id FROM file_handles WHERE id = ?",
                   (int(file_handle_id),)).fetchone()
    if fh is None:
        raise NotFound(f"FileHandle: '{file_handle_id}' cannot be found")
    file_loc_id = fh["storage_location_id"]
    file_sts = _setting_is_sts(c, {"locations": [file_loc_id]} if file_loc_id else None)
    setting = effective_setting(c, parent_id)
    parent_sts = _setting_is_sts(c, setting)
    if (file_sts or parent_sts) and file_loc_id != (setting["locations"][0] if setting else None):
        if file_sts:
            raise BadRequest("Files in STS-enabled storage locations can only be placed in folders"
                             " with the same storage location")
        raise BadRequest("Folders with STS-enabled storage locations can only accept files with"
                         " the same storage location")


def check_move_folder(c, folder_id: int, old_parent_id: int, new_parent_id: int) -> None:
    if int(old_parent_id) == int(new_parent_id):
        return
    own = own_setting(c, folder_id)
    old = own if own else effective_setting(c, old_parent_id)
    new = effective_setting(c, new_parent_id)
    old_sts, new_sts = _setting_is_sts(c, old), _setting_is_sts(c, new)
    old_loc = old["locations"][0] if old else None
    new_loc = new["locations"][0] if new else None
    if own and old_sts:
        if new_sts:
            raise BadRequest("Cannot place an STS-enabled folder inside another STS-enabled folder")
    elif (old_sts or new_sts) and old_loc != new_loc:
        if old_sts:
            raise BadRequest("Folders in STS-enabled storage locations can only be placed in"
                             " folders with the same storage location")
        raise BadRequest("Non-STS-enabled folders cannot be placed inside STS-enabled folders")


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
    if ct not in (S3_SETTING, EXT_S3_SETTING):
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
    if ct == EXT_S3_SETTING:
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
    if ct == EXT_S3_SETTING and not user.is_admin:  # 5. owner.txt
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
        _ensure_default(c)
        found = c.execute("SELECT id FROM storage_locations WHERE created_by = ? AND hash = ?",
                          (user.id, digest)).fetchone()
        if found:  # idempotent per creator (findByCreatorAndHash)
            return jsonify(location_row(c, found["id"])["body"]), 201
        lid = Store.next_id(c, "storage_location")
        stamp = db.synapse_date()
        stored = dict(body, createdOn=stamp, createdBy=user.id)
        c.execute("INSERT INTO storage_locations(id, concrete_type, created_by, created_on, etag,"
                  " body, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (lid, body["concreteType"], user.id, stamp, db.new_etag(), json.dumps(stored),
                   digest))
        return jsonify(location_row(c, lid)["body"]), 201


@repo.get("/storageLocation/<int:location_id>")
@context.scopes("view")
def get_location(location_id: int):
    user = context.require_user()
    with context.store().tx() as c:
        loc = location_row(c, location_id)
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


def _can(c, user, eid: int, access: str) -> bool:
    from . import acl  # lazy imports: acl and entities import this module
    return acl.can(c, user, eid, access)


def _live(c, eid: int):
    from . import entities
    return entities.get_live_entity(c, eid)


def _is_empty(c, eid: int) -> bool:
    from . import entities
    return entities.is_empty_with_trash(c, eid)


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
        loc = location_row(c, lid)
        if loc is None:
            raise BadRequest(f"uploadId {lid} is not a valid upload destination location")
        if loc["concrete_type"] == EXT_S3_SETTING and not user.is_admin \
                and loc["created_by"] != user.id:
            owner = c.execute("SELECT user_name FROM users WHERE id = ?",
                              (loc["created_by"],)).fetchone()
            raise Forbidden(
                f"Only the owner of the external S3 upload destination (user "
                f"{owner['user_name'] if owner else loc['created_by']}) can add this upload "
                "destination to a project. Either ask that user to perform this operation or "
                f"follow the steps to create a new external s3 upload destination (see {OWNER_HELP}")
        if is_sts_location(loc["body"]):
            if Store.entity_row(c, project_id)["concrete_type"] != db.FOLDER:
                raise BadRequest("Can only enable STS on a folder")
            if len(locations) != 1:
                raise BadRequest("An STS-enabled folder cannot add other upload destinations")


def _check_type(data: dict) -> None:
    ct = data.get("concreteType")
    if ct != UPLOAD_LIST:
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
        node = _live(c, pid)
        if node["concrete_type"] not in (db.PROJECT, db.FOLDER):
            raise BadRequest("The id is not the id of a project or folder entity")
        if not _can(c, user, pid, "CREATE"):
            raise Forbidden("Cannot create settings for this project")
        if _setting_is_sts(c, effective_setting(c, pid)):
            raise BadRequest("Can't override project settings in an STS-enabled folder path")
        locations = _parse_locations(data)
        _validate_locations(c, user, pid, locations)
        if _setting_is_sts(c, {"locations": locations}) and not _is_empty(c, pid):
            raise BadRequest("Can't enable STS in a non-empty folder")
        if own_setting(c, pid):
            raise BadRequest(f"A project setting of type 'upload' already exists for "
                             f"{db.syn_id(pid)}")
        sid = Store.next_id(c, "project_setting")
        c.execute("INSERT INTO project_settings(id, project_id, settings_type, concrete_type, etag,"
                  " locations) VALUES (?, ?, 'upload', ?, ?, ?)",
                  (sid, pid, UPLOAD_LIST, db.new_etag(), json.dumps(locations)))
        return jsonify(_setting_json(own_setting(c, pid))), 201


def _setting_by_id(c, setting_id) -> dict:
    row = c.execute("SELECT * FROM project_settings WHERE id = ?", (setting_id,)).fetchone()
    if row is None:
        raise NotFound(f"Project setting {setting_id} does not exist")
    return _setting_dict(row)


@repo.get("/projectSettings/<int:setting_id>")
@context.scopes("view")
def get_setting(setting_id: int):
    user = context.user()
    with context.store().tx() as c:
        s = _setting_by_id(c, setting_id)
        if not _can(c, user, s["project_id"], "READ"):
            raise Forbidden("The current user does not have READ access on the project this"
                            " setting applies to.")
        return jsonify(_setting_json(s))


@repo.get("/projectSettings/<project_id>/type/<settings_type>")
@context.scopes("view")
def get_setting_by_type(project_id: str, settings_type: str):
    if settings_type not in SETTINGS_TYPES + ("external_sync", "requester_pays"):
        raise BadRequest(f"Invalid settings type: {settings_type}")
    pid = _entity_id(project_id)
    with context.store().tx() as c:
        _live(c, pid)
        if not _can(c, context.user(), pid, "READ"):
            raise Forbidden(f"The current user does not have READ access on the project "
                            f"{project_id}.")
        s = own_setting(c, pid) if settings_type == "upload" else None
        if s is None:
            return ("", 200)
        return jsonify(_setting_json(s))


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
        if not _can(c, user, pid, "UPDATE"):
            raise Forbidden("Cannot update settings on this project")
        locations = _parse_locations(data)
        _validate_locations(c, user, pid, locations)
        try:
            old = _setting_by_id(c, int(data["id"]))
        except (TypeError, ValueError):
            raise BadRequest(f"Invalid id: {data['id']}") from None
        if not _is_empty(c, pid):
            if _setting_is_sts(c, {"locations": locations}):
                raise BadRequest("Can't enable STS in a non-empty folder")
            if _setting_is_sts(c, old):
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
        if not _can(c, user, s["project_id"], "DELETE"):
            raise Forbidden("Cannot delete settings from this project")
        if _setting_is_sts(c, s) and not _is_empty(c, s["project_id"]):
            raise BadRequest("Can't disable STS in a non-empty folder")
        c.execute("DELETE FROM project_settings WHERE id = ?", (setting_id,))
    return ("", 204)


__all__ = ["effective_setting", "effective_location", "check_create_in_parent", "check_add_file",
           "check_move_folder", "in_sts_folder", "location_row", "is_sts_location",
           "location_bucket", "BLUEPRINTS"]
