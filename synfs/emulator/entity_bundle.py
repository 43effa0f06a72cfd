"""Entity bundle v2: ``POST /entity/{id}/bundle2`` and ``POST /entity/{id}/version/{v}/bundle2``.

Parts (each only when its ``include*`` flag is true): entity + entityType, annotations (v2),
permissions, path, hasChildren, accessControlList (only on a benefactor), benefactorAcl, fileHandles (empty without DOWNLOAD), fileName, threadCount and
restrictionInformation (from the emulator's access requirements / approvals).
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from . import acl, annotations, context
from .db import FILE, Store
from .entity_children import path_headers
from .entity_core import (checked_entity, entity_json, entity_type_enum, handle_json,
                          handle_row, version_row)

repo = Blueprint("entity_bundle", __name__)
BLUEPRINTS = [(repo, "/repo/v1")]


def restriction_information(c, user, eid: int) -> dict:
    chain = Store.ancestors(c, eid)
    marks = ",".join("?" * len(chain))
    reqs = [r["id"] for r in c.execute(
        f"SELECT id FROM access_requirements WHERE entity_id IN ({marks}) ORDER BY id",
        chain).fetchall()]
    unmet = set(acl.unmet_requirements(c, user, eid))
    return {
        "objectId": eid,
        "restrictionLevel": "RESTRICTED_BY_TERMS_OF_USE" if reqs else "OPEN",
        "hasUnmetAccessRequirement": bool(unmet),
        "userEntityPermissions": acl.user_permissions(c, user, eid),
        "restrictionDetails": [{"accessRequirementId": r, "isApproved": r not in unmet,
                                "isExempt": False, "isMet": r not in unmet} for r in reqs],
    }


def build_bundle(c, user, row, version: int | None, req: dict) -> dict:
    eid = row["id"]
    out: dict = {}
    if req.get("includeEntity"):
        out["entity"] = entity_json(c, row, version)
        out["entityType"] = entity_type_enum(row["concrete_type"])
    if req.get("includeAnnotations"):
        out["annotations"] = annotations.annotations_json(c, row)
    if req.get("includePermissions"):
        out["permissions"] = acl.user_permissions(c, user, eid)
    if req.get("includeEntityPath"):
        out["path"] = {"path": path_headers(c, user, eid)}
    if req.get("includeHasChildren"):
        out["hasChildren"] = c.execute("SELECT 1 FROM entities WHERE parent_id = ? LIMIT 1",
                                       (eid,)).fetchone() is not None
    if req.get("includeAccessControlList"):
        own = acl.acl_json(c, eid)
        if own is not None:
            out["accessControlList"] = own
    if req.get("includeBenefactorACL"):
        ben = acl.acl_json(c, acl.benefactor(c, eid))
        if ben is not None:
            out["benefactorAcl"] = ben
    v = version_row(c, eid, version)
    fh_row = None
    if row["concrete_type"] == FILE and v is not None and v["data_file_handle_id"] is not None:
        fh_row = handle_row(c, int(v["data_file_handle_id"]))
    if req.get("includeFileHandles"):
        out["fileHandles"] = ([handle_json(fh_row)]
                              if fh_row is not None and acl.can(c, user, eid, "DOWNLOAD") else [])
    if req.get("includeFileName") and fh_row is not None:
        out["fileName"] = fh_row["file_name"]
    if req.get("includeThreadCount"):
        out["threadCount"] = 0
    if req.get("includeRestrictionInformation"):
        out["restrictionInformation"] = restriction_information(c, user, eid)
    return out


def _bundle(raw_id: str, version: int | None):
    req = context.body()
    with checked_entity(raw_id, version=version) as (c, row):
        out = build_bundle(c, context.user(), row, version, req)
    return jsonify(out)


@repo.post("/entity/<raw_id>/bundle2")
@context.scopes("view")
def bundle(raw_id: str):
    return _bundle(raw_id, None)


@repo.post("/entity/<raw_id>/version/<int:version>/bundle2")
@context.scopes("view")
def bundle_version(raw_id: str, version: int):
    return _bundle(raw_id, version)
