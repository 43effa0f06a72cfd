"""Storage locations, project settings and the STS rules of Synapse (synapse-api.md §5), as a
model (no routes; the REST API is ``storage_api``).

Owns the location and setting rows and the §5.4 checks the entity and ACL modules call:
``effective_setting``, ``effective_location``, ``check_create_in_parent``, ``check_add_file``,
``check_move_folder``, ``in_sts_folder`` and ``location_row``. All STS rule violations raise
``errors.BadRequest`` with Synapse's texts. (The upload-destination endpoints, which Synapse
serves from its file-handle manager, live in ``filehandles``.)

A location row (``location_row``) is ``{"id", "concrete_type", "created_by", "created_on",
"etag", "body"}`` where ``body`` is the StorageLocationSetting JSON as the API returns it.
Storage location 1 (Synapse storage, not STS) is stored on first use.
"""

from __future__ import annotations

import json

from . import context, db
from .db import Store
from .errors import BadRequest, NotFound

P = "org.sagebionetworks.repo.model.project."
S3_SETTING = P + "S3StorageLocationSetting"
EXT_S3_SETTING = P + "ExternalS3StorageLocationSetting"
UPLOAD_LIST = P + "UploadDestinationListSetting"
DEFAULT_ID = db.DEFAULT_STORAGE_LOCATION_ID
DEFAULT_BODY = {"concreteType": S3_SETTING, "storageLocationId": DEFAULT_ID, "uploadType": "S3"}
SETTINGS_TYPES = ("upload",)


# ---- storage location rows ---------------------------------------------------------------
def ensure_default(c) -> None:
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
        ensure_default(c)
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
def setting_dict(row) -> dict:
    return {"id": row["id"], "project_id": row["project_id"], "etag": row["etag"],
            "settings_type": row["settings_type"], "locations": json.loads(row["locations"])}


def setting_json(s: dict) -> dict:
    return {"id": str(s["id"]), "concreteType": UPLOAD_LIST, "projectId": db.syn_id(s["project_id"]),
            "settingsType": s["settings_type"], "etag": s["etag"], "locations": s["locations"]}


def own_setting(c, eid: int) -> dict | None:
    """The upload setting defined on exactly ``eid``."""
    row = c.execute("SELECT * FROM project_settings WHERE project_id = ? AND settings_type ="
                    " 'upload'", (eid,)).fetchone()
    return setting_dict(row) if row else None


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


def setting_is_sts(c, setting: dict | None) -> bool:
    if not setting or not setting["locations"]:
        return False
    loc = location_row(c, setting["locations"][0])
    return is_sts_location(loc["body"] if loc else None)


def in_sts_folder(c, eid) -> bool:
    """True when ``eid`` lies inside an STS-enabled folder (and does not hold the setting)."""
    setting = effective_setting(c, eid)
    return setting_is_sts(c, setting) and setting["project_id"] != int(eid)


# ---- §5.4 checks for the entities module --------------------------------------------------
def check_create_in_parent(c, parent_id: int, concrete_type: str) -> None:
    if concrete_type in (db.FOLDER, db.FILE):
        return
    if setting_is_sts(c, effective_setting(c, parent_id)):
        raise BadRequest("Can only create Files and Folders inside STS-enabled folders")


def check_add_file(c, parent_id: int, file_handle_id: int) -> None:
    fh = c.execute("SELECT storage_location_id FROM file_handles WHERE id = ?",
                   (int(file_handle_id),)).fetchone()
    if fh is None:
        raise NotFound(f"FileHandle: '{file_handle_id}' cannot be found")
    file_loc_id = fh["storage_location_id"]
    file_sts = setting_is_sts(c, {"locations": [file_loc_id]} if file_loc_id else None)
    setting = effective_setting(c, parent_id)
    parent_sts = setting_is_sts(c, setting)
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
    old_sts, new_sts = setting_is_sts(c, old), setting_is_sts(c, new)
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


__all__ = ["effective_setting", "effective_location", "check_create_in_parent", "check_add_file",
           "check_move_folder", "in_sts_folder", "location_row", "is_sts_location",
           "location_bucket", "own_setting", "setting_dict", "setting_json", "setting_is_sts",
           "ensure_default"]
