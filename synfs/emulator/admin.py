"""Emulator-only admin API under ``/admin/v1`` (not part of Synapse): users and tokens,
certification, access requirements, and run-time fault injection. Admin token required.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from . import context
from .errors import BadRequest, Forbidden, NotFound
from .db import parse_syn_id

admin = Blueprint("admin", __name__)
BLUEPRINTS = [(admin, "/admin/v1")]


@admin.before_request
def _require_admin():
    u = context.user()
    if u is None or not u.is_admin:
        raise Forbidden("The emulator admin API requires the admin token.")


@admin.get("/faults")
def get_faults():
    return jsonify(context.state().faults.to_json())


@admin.put("/faults")
def put_faults():
    data = context.body()
    try:
        context.state().faults.update(data)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"Invalid fault settings: {exc}") from None
    return jsonify(context.state().faults.to_json())


@admin.delete("/faults")
def reset_faults():
    context.state().faults.reset()
    return ("", 204)


@admin.post("/users")
def create_user():
    data = context.body()
    name = data.get("userName")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("userName is required")
    store = context.store()
    try:
        uid = store.create_user(name.strip(), email=data.get("email"),
                                certified=bool(data.get("certified", True)),
                                is_admin=bool(data.get("admin", False)))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    scopes = data.get("scopes")
    token = store.issue_token(uid, scopes) if scopes else store.issue_token(uid)
    return jsonify({"id": str(uid), "userName": name.strip(), "accessToken": token}), 201


@admin.post("/users/<int:uid>/tokens")
def create_token(uid: int):
    data = request.get_json(silent=True) or {}
    store = context.store()
    with store.tx() as c:
        if not c.execute("SELECT 1 FROM users WHERE id = ?", (uid,)).fetchone():
            raise NotFound(f"No user {uid}")
    scopes = data.get("scopes")
    token = store.issue_token(uid, scopes) if scopes else store.issue_token(uid)
    return jsonify({"accessToken": token}), 201


@admin.put("/users/<int:uid>/certified")
def set_certified(uid: int):
    data = context.body()
    with context.store().tx() as c:
        cur = c.execute("UPDATE users SET certified = ? WHERE id = ?",
                        (int(bool(data.get("certified"))), uid))
        if cur.rowcount == 0:
            raise NotFound(f"No user {uid}")
    return ("", 204)


@admin.post("/accessRequirements")
def add_access_requirement():
    """Attach an (unmet until approved) access requirement to an entity."""
    data = context.body()
    eid = parse_syn_id(data.get("entityId"))
    if eid is None:
        raise BadRequest("entityId is required")
    store = context.store()
    with store.tx() as c:
        if store.entity_row(c, eid) is None:
            raise NotFound(f"Resource: 'syn{eid}' does not exist")
        rid = store.next_id(c, "access_requirement")
        c.execute("INSERT INTO access_requirements(id, entity_id, description) VALUES (?, ?, ?)",
                  (rid, eid, data.get("description") or "Terms of use"))
    return jsonify({"id": rid, "entityId": f"syn{eid}"}), 201


@admin.post("/accessRequirements/<int:rid>/approvals/<int:uid>")
def approve(rid: int, uid: int):
    with context.store().tx() as c:
        c.execute("INSERT OR IGNORE INTO access_approvals(requirement_id, user_id) VALUES (?, ?)",
                  (rid, uid))
    return ("", 204)
