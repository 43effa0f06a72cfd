"""FileEntity revisions: ``GET /entity/{id}/version`` (PaginatedResults<VersionInfo>),
``DELETE /entity/{id}/version/{v}``, ``PUT /entity/{id}/version/{v}/filehandle``
(FileHandleUpdateRequest: swap a revision's handle for one with the same MD5) and
``GET /entity/{id}[/version/{v}]/filehandles`` (FileHandleResults, needs DOWNLOAD).
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from . import acl, context, storage
from .db import FILE, syn_id
from .entity_core import (check_handle_creator, checked_entity, get_live_entity, handle_json,
                          handle_row, parse_handle_id, path_entity_id, touch, version_row)
from .errors import BadRequest, NotFound, PreconditionFailed

repo = Blueprint("entity_versions", __name__)
BLUEPRINTS = [(repo, "/repo/v1")]


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"Failed to convert value of type 'java.lang.String' to required type "
                         f"'java.lang.Integer'; For input string: \"{raw}\"") from None


@repo.get("/entity/<raw_id>/version")
@context.scopes("view")
def list_versions(raw_id: str):
    eid = path_entity_id(raw_id)
    offset = _int_arg("offset", 0)
    limit = _int_arg("limit", 10)
    if offset < 0:
        raise BadRequest("pagination offset must be 0 or greater")
    if limit < 0:
        raise BadRequest("pagination limit must be 0 or greater")
    with context.store().tx() as c:
        row = get_live_entity(c, eid)
        acl.require(c, context.user(), eid, "READ")
        total = c.execute("SELECT COUNT(*) AS n FROM versions WHERE entity_id = ?",
                          (eid,)).fetchone()["n"]
        rows = c.execute("SELECT v.*, u.display_name, u.user_name FROM versions v LEFT JOIN users u"
                         " ON u.id = v.modified_by WHERE v.entity_id = ?"
                         " ORDER BY v.version_number DESC LIMIT ? OFFSET ?",
                         (eid, limit, offset)).fetchall()
        results = []
        for v in rows:
            info = {"id": syn_id(eid), "versionNumber": int(v["version_number"]),
                    "versionLabel": v["version_label"] or str(v["version_number"])}
            if v["version_comment"] is not None:
                info["versionComment"] = v["version_comment"]
            info["isLatestVersion"] = v["version_number"] == row["current_version"]
            info["modifiedBy"] = v["display_name"] or v["user_name"] or str(v["modified_by"])
            info["modifiedByPrincipalId"] = str(v["modified_by"])
            info["modifiedOn"] = v["modified_on"]
            if v["data_file_handle_id"] is not None:
                fh = handle_row(c, int(v["data_file_handle_id"]))
                if fh is not None:
                    if fh["content_size"] is not None:
                        info["contentSize"] = str(fh["content_size"])
                    if fh["content_md5"] is not None:
                        info["contentMd5"] = fh["content_md5"]
            results.append(info)
    return jsonify({"totalNumberOfResults": total, "results": results})


@repo.delete("/entity/<raw_id>/version/<int:version>")
@context.scopes("modify")
def delete_version(raw_id: str, version: int):
    user = context.require_user()
    eid = path_entity_id(raw_id)
    with context.store().tx() as c:
        row = get_live_entity(c, eid)
        acl.require(c, user, eid, "DELETE")
        if version_row(c, eid, version) is None:
            raise NotFound(f"Cannot find a node with id {eid} and version {version}")
        count = c.execute("SELECT COUNT(*) AS n FROM versions WHERE entity_id = ?",
                          (eid,)).fetchone()["n"]
        if count <= 1:
            raise BadRequest("Cannot delete the last version of an entity")
        c.execute("DELETE FROM versions WHERE entity_id = ? AND version_number = ?", (eid, version))
        if version == row["current_version"]:
            top = c.execute("SELECT MAX(version_number) AS n FROM versions WHERE entity_id = ?",
                            (eid,)).fetchone()["n"]
            c.execute("UPDATE entities SET current_version = ? WHERE id = ?", (top, eid))
        touch(c, eid, user.id)
    return ("", 204)


@repo.put("/entity/<raw_id>/version/<int:version>/filehandle")
@context.scopes("view", "modify")
def update_version_file_handle(raw_id: str, version: int):
    """NodeManagerImpl.updateNodeFileHandle: same-MD5 swap without a new version."""
    user = context.require_user()
    data = context.body()
    eid = path_entity_id(raw_id)
    for field in ("oldFileHandleId", "newFileHandleId"):
        if data.get(field) is None:
            raise BadRequest(f"The updateRequest.{field} is required.")
    old_id = parse_handle_id(data["oldFileHandleId"])
    new_id = parse_handle_id(data["newFileHandleId"])
    with context.store().tx() as c:
        row = get_live_entity(c, eid)
        acl.require(c, user, eid, "READ")
        v = version_row(c, eid, version)
        if row["concrete_type"] != FILE or v is None or v["data_file_handle_id"] is None:
            raise NotFound(f"A file entity with id {syn_id(eid)} and revision {version} does "
                           "not exist.")
        acl.require(c, user, eid, "UPDATE")
        check_handle_creator(c, user, new_id)
        current = int(v["data_file_handle_id"])
        if current != old_id:
            raise PreconditionFailed(
                f"The id of the provided file handle id (request.oldFileHandleId: {old_id}) does "
                "not match the current file handle id.")
        if new_id == current:
            return ("", 200)
        old_row, new_row = handle_row(c, current), handle_row(c, new_id)
        if not (old_row is not None and old_row["content_md5"]
                and old_row["content_md5"] == new_row["content_md5"]):
            raise PreconditionFailed("The MD5 of the new file handle does not match the MD5 of "
                                     "the current file handle, a new version must be created.")
        storage.check_add_file(c, row["parent_id"], new_id)
        touch(c, eid, user.id)
        c.execute("UPDATE versions SET data_file_handle_id = ? WHERE entity_id = ? AND"
                  " version_number = ?", (new_id, eid, version))
    return ("", 200)


def _file_handles(raw_id: str, version: int | None):
    with checked_entity(raw_id, "DOWNLOAD", version) as (c, row):
        eid = row["id"]
        v = version_row(c, eid, version)
        if v is None:
            raise NotFound(f"Cannot find a node with id {eid} and version {version}")
        fh = handle_row(c, int(v["data_file_handle_id"])) \
            if v["data_file_handle_id"] is not None else None
        out = {"list": [handle_json(fh)] if fh is not None else []}
    return jsonify(out)


@repo.get("/entity/<raw_id>/filehandles")
@context.scopes("view")
def file_handles(raw_id: str):
    return _file_handles(raw_id, None)


@repo.get("/entity/<raw_id>/version/<int:version>/filehandles")
@context.scopes("view")
def version_file_handles(raw_id: str, version: int):
    return _file_handles(raw_id, version)
