"""The ACL REST API: ``GET/POST/PUT/DELETE /entity/{id}/acl`` and ``GET /entity/{id}/benefactor``.

Request ACLs are validated like ``PermissionsManagerUtils.validateACLContent``; every change
touches the entity (new etag). The permission model itself is ``acl``.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from . import acl, context, entity_core, storage
from .db import syn_id
from .errors import BadRequest, Forbidden, NotFound, PreconditionFailed

repo = Blueprint("acl", __name__)
BLUEPRINTS = [(repo, "/repo/v1")]


def _touch(c, eid: int, user) -> None:
    entity_core.touch(c, eid, user.id)


def _save_acl(c, user, eid: int, entries: list[tuple[int, list[str]]]) -> dict:
    """Give ``eid`` the ACL ``entries`` (the entity gets a new etag); the ACL as saved."""
    _touch(c, eid, user)
    acl.write_acl(c, eid, entries)
    return acl.acl_json(c, eid)


def _parse_acl_body(data: dict, user, owner_id: int) -> list[tuple[int, list[str]]]:
    """Validate a request ACL like ``PermissionsManagerUtils.validateACLContent`` (400s)."""
    ra = data.get("resourceAccess")
    if ra is None:
        ra = []
    if not isinstance(ra, list):
        raise BadRequest("resourceAccess must be a list")
    out = []
    keeps_access = False
    valid = set(acl.ACCESS_TYPES) | set(acl.OTHER_ACCESS_TYPES)
    for item in ra:
        if not isinstance(item, dict):
            raise BadRequest("ACL row is null.")
        pid = item.get("principalId")
        if pid is None:
            raise BadRequest("Group ID is null")
        try:
            pid = int(pid)
        except (TypeError, ValueError):
            raise BadRequest(f"Invalid principalId: {pid}") from None
        types = item.get("accessType") or []
        if not isinstance(types, list) or not types:
            raise BadRequest("No access types specified.")
        for t in types:
            if t not in valid:
                raise BadRequest(f"Invalid access type: {t}")
        if pid in acl.principals(user) and "CHANGE_PERMISSIONS" in types:
            keeps_access = True
        out.append((pid, list(types)))
    if not keeps_access and not user.is_admin and user.id != owner_id:
        raise BadRequest("Caller is trying to revoke their own ACL editing permissions.")
    return out


def _entity_for_acl(c, raw: str):
    return entity_core.get_live_entity(c, entity_core.path_entity_id(raw))


# ---- REST -------------------------------------------------------------------------------
@repo.get("/entity/<raw_id>/acl")
@context.scopes("view")
def get_acl(raw_id: str):
    with entity_core.checked_entity(raw_id) as (c, row):
        eid = row["id"]
        ben = acl.benefactor(c, eid)
        if ben != eid:
            prefix = request.host_url.rstrip("/") + "/repo/v1"
            raise NotFound("The requested ACL does not exist. This entity inherits its "
                           f"permissions from: {prefix}/entity/{syn_id(ben)}/acl")
        out = acl.acl_json(c, eid)
    return jsonify(out)


@repo.post("/entity/<raw_id>/acl")
@context.scopes("view", "modify")
def create_acl(raw_id: str):
    user = context.require_user()
    data = context.body()
    store = context.store()
    with store.tx() as c:
        row = _entity_for_acl(c, raw_id)
        eid = row["id"]
        ben = acl.benefactor(c, eid)
        if ben == eid:
            raise Forbidden("Resource already has an ACL.")
        acl.require(c, user, ben, "CHANGE_PERMISSIONS")
        entries = _parse_acl_body(data, user, row["created_by"])
        _check_sts_child(c, eid)
        out = _save_acl(c, user, eid, entries)
    return jsonify(out), 201


@repo.put("/entity/<raw_id>/acl")
@context.scopes("view", "modify")
def update_acl(raw_id: str):
    user = context.require_user()
    data = context.body()
    store = context.store()
    with store.tx() as c:
        row = _entity_for_acl(c, raw_id)
        eid = row["id"]
        if acl.benefactor(c, eid) != eid:
            raise Forbidden("Cannot update ACL for a resource which inherits its permissions.")
        acl.require(c, user, eid, "CHANGE_PERMISSIONS")
        entries = _parse_acl_body(data, user, row["created_by"])
        current = c.execute("SELECT etag FROM acls WHERE entity_id = ?", (eid,)).fetchone()
        if data.get("etag") != current["etag"]:
            raise PreconditionFailed(
                f"Access Control List was updated since you last fetched it, retrieve it again "
                f"and reapply the update. ({syn_id(eid)})")
        out = _save_acl(c, user, eid, entries)
    return jsonify(out)


@repo.delete("/entity/<raw_id>/acl")
@context.scopes("modify")
def restore_inheritance(raw_id: str):
    user = context.require_user()
    store = context.store()
    with store.tx() as c:
        row = _entity_for_acl(c, raw_id)
        eid = row["id"]
        err = acl.can_delete_acl(c, user, eid)
        if err is not None:
            raise err
        if acl.benefactor(c, eid) != eid:
            raise Forbidden("Resource already inherits its permissions.")
        _touch(c, eid, user)
        acl.delete_acl(c, eid)
    return ("", 204)


@repo.get("/entity/<raw_id>/benefactor")
@context.scopes("view")
def get_benefactor(raw_id: str):
    with entity_core.checked_entity(raw_id) as (c, row):
        ben = acl.benefactor(c, row["id"])
        out = entity_core.header_json(c, context.store().entity_row(c, ben))
    return jsonify(out)


def _check_sts_child(c, eid: int) -> None:
    if storage.in_sts_folder(c, eid):
        raise BadRequest("Cannot override ACLs in a child of an STS-enabled folder")
