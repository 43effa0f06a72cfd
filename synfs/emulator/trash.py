"""The trash can: ``move_to_trash`` (used by ``DELETE /entity/{id}`` and ``PUT /trashcan/trash/{id}``),
``PUT /trashcan/restore/{id}[/{parentId}]``, ``GET /trashcan/view`` and ``PUT /trashcan/purge/{id}``.

A trashed entity is renamed to its id, re-parented under syn1681355, touched, and loses every
ACL in its subtree; ``trash_original_parent`` / ``trash_original_name`` remember where it was.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from . import acl, annotations, context, entity_core, storage, view_schema
from .db import PROJECT, ROOT_ID, TRASH_ID, Store, parse_syn_id, synapse_date, syn_id
from .errors import BadRequest, Forbidden, NotFound

repo = Blueprint("trash", __name__)
BLUEPRINTS = [(repo, "/repo/v1")]


def move_to_trash(c, row, user_id: int) -> None:
    eid = row["id"]
    acl.delete_subtree_acls(c, eid)
    c.execute("UPDATE entities SET trash_original_parent = ?, trash_original_name = ?,"
              " trashed_by = ?, trashed_on = ?, name = ?, parent_id = ? WHERE id = ?",
              (row["parent_id"], row["name"], user_id, synapse_date(), syn_id(eid), TRASH_ID,
               eid))
    entity_core.touch(c, eid, user_id)


def _trashed_row(c, raw: str):
    eid = parse_syn_id(raw)
    row = Store.entity_row(c, eid) if eid is not None else None
    if row is None or row["parent_id"] != TRASH_ID:
        raise NotFound(f"The node {raw} is not in the trash can.")
    return row


def _check_deleter(row, user) -> None:
    if not user.is_admin and row["trashed_by"] != user.id:
        raise Forbidden(f"The current user {user.id} is not the user who deleted the entity "
                        f"{syn_id(row['id'])}.")


@repo.put("/trashcan/trash/<raw_id>")
@context.scopes("modify")
def trash_entity(raw_id: str):
    user = context.require_user()
    eid = entity_core.path_entity_id(raw_id)
    with context.store().tx() as c:
        row = entity_core.get_live_entity(c, eid)
        acl.require(c, user, eid, "DELETE")
        move_to_trash(c, row, user.id)
    return ("", 200)


def _restore(raw_id: str, parent_raw: str | None):
    user = context.require_user()
    store = context.store()
    with store.tx() as c:
        row = _trashed_row(c, raw_id)
        _check_deleter(row, user)
        eid = row["id"]
        parent_id = parse_syn_id(parent_raw) if parent_raw else row["trash_original_parent"]
        prow = store.entity_row(c, parent_id) if parent_id is not None else None
        if prow is None:
            raise NotFound(f"Resource: '{parent_raw or syn_id(parent_id)}' does not exist")
        if parent_id == TRASH_ID or Store.in_trash(c, parent_id):
            raise Forbidden(f"The intended parent {syn_id(parent_id)} is in the trash can and "
                            "cannot be restored to.")
        entity_core.check_parent_type(row["concrete_type"], prow)
        if parent_id != ROOT_ID:
            acl.require(c, user, parent_id, "CREATE")
            if row["concrete_type"] != entity_core.FILE:
                storage.check_move_folder(c, eid, row["trash_original_parent"], parent_id)
            else:
                fh = entity_core.current_file_handle_id(c, eid)
                if fh is not None:
                    storage.check_add_file(c, parent_id, fh)
        name = row["trash_original_name"] or syn_id(eid)
        entity_core.check_name_free(c, parent_id, name, self_id=eid)
        c.execute("UPDATE entities SET parent_id = ?, name = ?, trashed_by = NULL,"
                  " trashed_on = NULL, trash_original_parent = NULL, trash_original_name = NULL"
                  " WHERE id = ?", (parent_id, name, eid))
        if row["concrete_type"] == PROJECT or parent_id == ROOT_ID:
            acl.grant_creator_all(c, eid, user.id)
        entity_core.touch(c, eid, user.id)
    return ("", 200)


@repo.put("/trashcan/restore/<raw_id>")
@context.scopes("modify")
def restore(raw_id: str):
    return _restore(raw_id, None)


@repo.put("/trashcan/restore/<raw_id>/<parent_raw>")
@context.scopes("modify")
def restore_to(raw_id: str, parent_raw: str):
    return _restore(raw_id, parent_raw)


@repo.get("/trashcan/view")
@context.scopes("view")
def view():
    user = context.require_user()
    try:
        offset = int(request.args.get("offset", 0))
        limit = int(request.args.get("limit", 10))
    except ValueError:
        raise BadRequest("offset and limit must be integers") from None
    with context.store().tx() as c:
        args = (TRASH_ID, user.id)
        total = c.execute("SELECT COUNT(*) AS n FROM entities WHERE parent_id = ? AND trashed_by = ?",
                          args).fetchone()["n"]
        rows = c.execute("SELECT * FROM entities WHERE parent_id = ? AND trashed_by = ?"
                         " ORDER BY trashed_on DESC, id DESC LIMIT ? OFFSET ?",
                         (*args, limit, offset)).fetchall()
    results = [{"entityId": syn_id(r["id"]), "entityName": r["trash_original_name"],
                "deletedByPrincipalId": str(r["trashed_by"]), "deletedOn": r["trashed_on"],
                "originalParentId": syn_id(r["trash_original_parent"])} for r in rows]
    return jsonify({"totalNumberOfResults": total, "results": results})


@repo.put("/trashcan/purge/<raw_id>")
@context.scopes("modify")
def purge(raw_id: str):
    user = context.require_user()
    with context.store().tx() as c:
        row = _trashed_row(c, raw_id)
        _check_deleter(row, user)
        ids = [r["id"] for r in c.execute(
            "WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL SELECT e.id FROM entities e"
            " JOIN sub ON e.parent_id = sub.id) SELECT id FROM sub", (row["id"],)).fetchall()]
        for eid in reversed(ids):
            acl.delete_acl(c, eid)
            annotations.delete(c, eid)
            view_schema.delete(c, eid)
            c.execute("DELETE FROM versions WHERE entity_id = ?", (eid,))
            c.execute("DELETE FROM entities WHERE id = ?", (eid,))
    return ("", 200)
