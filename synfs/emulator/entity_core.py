"""Entity model helpers shared by the entity API modules (no routes here): id parsing, name
rules, the live-entity lookup with Synapse's 404 texts, ``checked_entity`` (the transaction
every entity GET opens after its 400/404/403 checks), Entity / EntityHeader JSON, versions,
``touch`` (new etag + modifiedOn) and file-handle lookups (from ``handles``). ``entities`` re-exports the public
helpers other modules rely on.
"""

from __future__ import annotations

import contextlib
import re

from . import acl, context, handles, view_schema
from .db import (FILE, FOLDER, PROJECT, ROOT_ID, TRASH_ID, Store, new_etag, parse_syn_id,
                 synapse_date, syn_id)
from .errors import BadRequest, Conflict, Forbidden, NotFound

CT = "org.sagebionetworks.repo.model."
# EntityType enum value -> concrete class name (only the first three can be created here).
TYPE_CLASSES = {
    "project": PROJECT,
    "folder": FOLDER,
    "file": FILE,
    "table": CT + "table.TableEntity",
    "link": CT + "Link",
    "entityview": CT + "table.EntityView",
    "dockerrepo": CT + "docker.DockerRepository",
    "submissionview": CT + "table.SubmissionView",
    "dataset": CT + "table.Dataset",
    "datasetcollection": CT + "table.DatasetCollection",
    "materializedview": CT + "table.MaterializedView",
    "virtualtable": CT + "table.VirtualTable",
    # Newer types (synapseclient 4.14 asks for "searchindex" by default); never created here.
    "searchindex": CT + "search.table.SearchIndex",
    "recordset": CT + "RecordSet",
}
CLASS_TYPES = {v: k for k, v in TYPE_CLASSES.items()}
CREATABLE = (PROJECT, FOLDER, FILE, view_schema.VIEW)
VERSIONABLE = (FILE, view_schema.VIEW)

NAME_RE = re.compile(r"^[a-zA-Z0-9,_. \-+()']+$")
MAX_NAME = 256
MAX_DESCRIPTION = 1000


def entity_type_enum(concrete_type: str) -> str:
    """``org.sagebionetworks.repo.model.FileEntity`` -> ``file``."""
    return CLASS_TYPES.get(concrete_type, concrete_type.rsplit(".", 1)[-1].lower())


def path_entity_id(raw) -> int:
    eid = parse_syn_id(raw)
    if eid is None:
        raise BadRequest(f"Invalid Entity ID: {raw}")
    return eid


def validate_name(name: str) -> str:
    """Synapse ``NameValidation.validateName``: trims, then the three 400 texts."""
    if not isinstance(name, str):
        raise BadRequest("Name cannot be only whitespace or empty string")
    key = name.strip()
    if not key:
        raise BadRequest("Name cannot be only whitespace or empty string")
    if len(key) > MAX_NAME:
        raise BadRequest("Name length cannot be longer than 256 characters.")
    if not NAME_RE.match(key):
        raise BadRequest(
            f"Invalid Name: '{key}'. Names may only contain: letters, numbers, spaces, "
            "underscores, hyphens, periods, plus signs, apostrophes, and parentheses")
    return key


def check_name_free(c, parent_id: int, name: str, self_id: int | None = None) -> None:
    """409 when another entity under ``parent_id`` already has this exact (byte-wise) name."""
    row = c.execute("SELECT id FROM entities WHERE parent_id = ? AND name = ?",
                    (parent_id, name)).fetchone()
    if row is not None and row["id"] != self_id:
        raise Conflict(f"An entity with the name: {name} already exists with a parentId: "
                       f"{syn_id(parent_id)}")


def get_live_entity(c, eid: int):
    """The entity row, or 404 ``Resource: 'synN' does not exist`` / ``Entity synN is in trash can.``"""
    row = Store.entity_row(c, eid)
    if row is None:
        raise NotFound(f"Resource: '{syn_id(eid)}' does not exist")
    if eid != TRASH_ID and Store.in_trash(c, eid):
        raise NotFound(f"Entity {syn_id(eid)} is in trash can.")
    return row


@contextlib.contextmanager
def checked_entity(raw_id, access: str = "READ", version: int | None = None):
    """``(c, row)``: a transaction on the entity at ``raw_id`` once the checks an entity GET
    makes have passed, in Synapse's order: 400 for a malformed id, 404 when it is absent or in
    the trash, 403 unless the caller has ``access``, 404 when ``version`` does not exist."""
    eid = path_entity_id(raw_id)
    with context.store().tx() as c:
        row = get_live_entity(c, eid)
        acl.require(c, context.user(), eid, access)
        if version is not None and version_row(c, eid, version) is None:
            raise NotFound(f"Cannot find a node with id {eid} and version {version}")
        yield c, row


def version_row(c, eid: int, version: int | None = None):
    if version is None:
        return c.execute("SELECT v.* FROM versions v JOIN entities e ON e.id = v.entity_id"
                         " AND e.current_version = v.version_number WHERE v.entity_id = ?",
                         (eid,)).fetchone()
    return c.execute("SELECT * FROM versions WHERE entity_id = ? AND version_number = ?",
                     (eid, version)).fetchone()


def current_file_handle_id(c, eid: int) -> int | None:
    v = version_row(c, eid)
    if v is None or v["data_file_handle_id"] is None:
        return None
    return int(v["data_file_handle_id"])


def is_empty_with_trash(c, eid: int) -> bool:
    """No children, counting trashed ones that were deleted out of ``eid``."""
    if c.execute("SELECT 1 FROM entities WHERE parent_id = ? LIMIT 1", (eid,)).fetchone():
        return False
    return c.execute("SELECT 1 FROM entities WHERE trash_original_parent = ? AND parent_id = ?"
                     " LIMIT 1", (eid, TRASH_ID)).fetchone() is None


def entity_json(c, row, version: int | None = None) -> dict:
    """The Entity JSON of ``row`` (at ``version`` for FileEntity; current when None)."""
    eid = row["id"]
    ct = row["concrete_type"]
    v = version_row(c, eid, version)
    out = {"name": row["name"]}
    if row["description"] is not None:
        out["description"] = row["description"]
    out["id"] = syn_id(eid)
    out["etag"] = row["etag"]
    out["createdOn"] = row["created_on"]
    is_current = v is None or v["version_number"] == row["current_version"]
    out["modifiedOn"] = row["modified_on"] if is_current or v is None else v["modified_on"]
    out["createdBy"] = str(row["created_by"])
    out["modifiedBy"] = str(row["modified_by"] if is_current or v is None else v["modified_by"])
    if row["parent_id"] is not None:
        out["parentId"] = syn_id(row["parent_id"])
    out["concreteType"] = ct
    if ct == PROJECT and row["alias"]:
        out["alias"] = row["alias"]
    if ct in VERSIONABLE and v is not None:
        out["versionNumber"] = int(v["version_number"])
        out["versionLabel"] = v["version_label"] or str(v["version_number"])
        if v["version_comment"] is not None:
            out["versionComment"] = v["version_comment"]
        out["isLatestVersion"] = bool(is_current)
        if v["data_file_handle_id"] is not None:
            out["dataFileHandleId"] = str(v["data_file_handle_id"])
    if ct == view_schema.VIEW:
        out.update(view_schema.json_fields(c, eid))
    return out


def header_json(c, row, benefactor_id: int | None = None) -> dict:
    """EntityHeader as ``/entity/children`` produces it (no etag, integer benefactorId)."""
    v = version_row(c, row["id"])
    ben = benefactor_id if benefactor_id is not None else acl.benefactor(c, row["id"])
    out = {"name": row["name"], "id": syn_id(row["id"]), "type": row["concrete_type"]}
    if v is not None:
        out["versionNumber"] = int(v["version_number"])
        out["versionLabel"] = v["version_label"] or str(v["version_number"])
    out["isLatestVersion"] = True
    out["benefactorId"] = int(ben)
    out["createdOn"] = row["created_on"]
    out["modifiedOn"] = row["modified_on"]
    out["createdBy"] = str(row["created_by"])
    out["modifiedBy"] = str(row["modified_by"])
    return out


def touch(c, eid: int, user_id: int) -> str:
    """New etag and modifiedOn/modifiedBy on the entity and its current revision."""
    etag = new_etag()
    stamp = synapse_date()
    c.execute("UPDATE entities SET etag = ?, modified_on = ?, modified_by = ? WHERE id = ?",
              (etag, stamp, user_id, eid))
    c.execute("UPDATE versions SET modified_on = ?, modified_by = ? WHERE entity_id = ? AND"
              " version_number = (SELECT current_version FROM entities WHERE id = ?)",
              (stamp, user_id, eid, eid))
    return etag


# ---- file handles -----------------------------------------------------------------------
handle_row = handles.get_handle_row
handle_json = handles.handle_json


def parse_handle_id(value) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise BadRequest(f"Invalid dataFileHandleId: {value}") from None


def check_handle_creator(c, user, fh_id: int):
    """The caller must have created the handle (admins excepted); returns its row."""
    row = handle_row(c, fh_id)
    if row is None:
        raise NotFound(f"FileHandle does not exist for id: {fh_id}")
    if not user.is_admin and int(row["created_by"]) != user.id:
        raise Forbidden("Only the creator of a FileHandle can access it directly by its ID.  "
                        f"FileHandleId = '{fh_id}', UserId = '{user.id}'")
    return row


def parent_type_error(concrete: str, parent_ct: str | None) -> BadRequest:
    return BadRequest(f"Entity type: {concrete} cannot have a parent of type: "
                      f"{parent_ct if parent_ct else 'null'}")


def check_parent_type(concrete: str, parent_row) -> None:
    """Projects live under the root; Files and Folders under a Project or Folder."""
    parent_ct = None if parent_row is None or parent_row["id"] == ROOT_ID \
        else parent_row["concrete_type"]
    if concrete == PROJECT:
        ok = parent_ct is None
    else:
        ok = parent_ct in (PROJECT, FOLDER)
    if not ok:
        raise parent_type_error(concrete, parent_ct)
