"""Listing and lookup: ``POST /entity/children`` (EntityChildrenRequest, pages of 50 with
``"<limit>a<offset>"`` tokens), ``POST /entity/child`` (EntityLookupRequest) and
``GET /entity/{id}/path`` (EntityPath with "Redacted" unreadable ancestors).
"""

from __future__ import annotations

import re

from flask import Blueprint, jsonify

from . import acl, context
from .db import FILE, ROOT_ID, Store, parse_syn_id, syn_id
from .entity_core import TYPE_CLASSES, checked_entity, header_json
from .errors import BadRequest, Forbidden, NotFound

repo = Blueprint("entity_children", __name__)
BLUEPRINTS = [(repo, "/repo/v1")]

MAX_LIMIT = 50
TOKEN_RE = re.compile(r"^(\d+)a(\d+)$")
SORT_COLUMNS = {"NAME": "e.name", "CREATED_ON": "e.created_on", "MODIFIED_ON": "e.modified_on"}


def parse_token(token) -> tuple[int, int]:
    """``"50a100"`` -> (limit 50, offset 100); None -> (50, 0)."""
    if token is None:
        return MAX_LIMIT, 0
    m = TOKEN_RE.match(str(token))
    if not m:
        raise BadRequest(f"Unknow token format: {token}")
    limit, offset = int(m.group(1)), int(m.group(2))
    if limit > MAX_LIMIT:
        raise BadRequest(f"Limit must not exceed: {MAX_LIMIT}")
    return limit, offset


def hidden_children(c, user, parent_id: int) -> list[int]:
    """Children with their own ACL that does not give the caller READ."""
    if user is not None and user.is_admin:
        return []
    rows = c.execute("SELECT e.id FROM entities e JOIN acls a ON a.entity_id = e.id"
                     " WHERE e.parent_id = ?", (parent_id,)).fetchall()
    return [r["id"] for r in rows if "READ" not in acl.granted(c, user, r["id"])]


@repo.post("/entity/children")
@context.scopes("view")
def children():
    data = context.body()
    user = context.user()
    parent_raw = data.get("parentId")
    include = data.get("includeTypes")
    if parent_raw is None:
        parent_raw, include = syn_id(ROOT_ID), ["project"]
    if include is None:
        raise BadRequest("EntityChildrenRequest.includeTypes is required.")
    if not isinstance(include, list) or not include:
        raise BadRequest("EntityChildrenRequest.includeTypes must include at least one type")
    for t in include:
        if t not in TYPE_CLASSES:
            raise BadRequest(f"Cannot deserialize value of type `EntityType` from String "
                             f"\"{t}\": not one of the values accepted for Enum class: "
                             f"[{', '.join(TYPE_CLASSES)}]")
    sort_by = data.get("sortBy") or "NAME"
    direction = data.get("sortDirection") or "ASC"
    if sort_by not in SORT_COLUMNS:
        raise BadRequest(f"Invalid sortBy: {sort_by}")
    if direction not in ("ASC", "DESC"):
        raise BadRequest(f"Invalid sortDirection: {direction}")
    limit, offset = parse_token(data.get("nextPageToken"))
    parent_id = parse_syn_id(parent_raw)
    if parent_id is None:
        raise BadRequest(f"Invalid Entity ID: {parent_raw}")
    with context.store().tx() as c:
        if parent_id != ROOT_ID:
            acl.require(c, user, parent_id, "READ")
        hidden = hidden_children(c, user, parent_id)
        types = sorted({TYPE_CLASSES[t] for t in include})
        where = (f"e.parent_id = ? AND e.concrete_type IN ({','.join('?' * len(types))})"
                 f" AND e.id NOT IN ({','.join('?' * len(hidden))})")
        args = [parent_id, *types, *hidden]
        col = SORT_COLUMNS[sort_by]
        rows = c.execute(f"SELECT e.* FROM entities e WHERE {where}"
                         f" ORDER BY {col} {direction}, e.id {direction} LIMIT ? OFFSET ?",
                         (*args, limit + 1, offset)).fetchall()
        parent_ben = acl.benefactor(c, parent_id)
        page = []
        for r in rows[:limit]:
            own = c.execute("SELECT 1 FROM acls WHERE entity_id = ?", (r["id"],)).fetchone()
            page.append(header_json(c, r, r["id"] if own else parent_ben))
        out = {"page": page}
        if len(rows) > limit:
            out["nextPageToken"] = f"{limit}a{offset + limit}"
        if data.get("includeTotalChildCount"):
            out["totalChildCount"] = c.execute(
                f"SELECT COUNT(*) AS n FROM entities e WHERE {where}", args).fetchone()["n"]
        if data.get("includeSumFileSizes"):
            out["sumFileSizesBytes"] = c.execute(
                f"SELECT COALESCE(SUM(f.content_size), 0) AS n FROM entities e"
                f" JOIN versions v ON v.entity_id = e.id AND v.version_number = e.current_version"
                f" JOIN file_handles f ON f.id = v.data_file_handle_id"
                f" WHERE {where} AND e.concrete_type = ?", (*args, FILE)).fetchone()["n"]
    return jsonify(out)


@repo.post("/entity/child")
@context.scopes("view")
def child():
    data = context.body()
    user = context.user()
    name = data.get("entityName")
    if name is None:
        raise BadRequest("EntityLookupRequest.entityName is required.")
    parent_raw = data.get("parentId")
    parent_id = ROOT_ID if parent_raw is None else parse_syn_id(parent_raw)
    if parent_id is None:
        raise BadRequest(f"Invalid Entity ID: {parent_raw}")
    with context.store().tx() as c:
        if parent_id != ROOT_ID:
            acl.require(c, user, parent_id, "READ", "Lack of READ permission on the parent entity.")
        row = c.execute("SELECT id FROM entities WHERE parent_id = ? AND name = ?",
                        (parent_id, name)).fetchone()
        if row is None:
            raise NotFound(f"Child not found for parent: '{syn_id(parent_id)}' with name: '{name}'")
        if not acl.can(c, user, row["id"], "READ"):
            raise Forbidden("Lack of READ permission on the requested entity.")
    return jsonify({"id": syn_id(row["id"])})


def path_headers(c, user, eid: int) -> list[dict]:
    """EntityPath headers from the root to ``eid``; unreadable ancestors are "Redacted"."""
    chain = list(reversed(Store.ancestors(c, eid)))
    out = []
    for aid in chain:
        row = Store.entity_row(c, aid)
        name = row["name"]
        if aid not in (ROOT_ID, eid) and not acl.can(c, user, aid, "READ"):
            name = "Redacted"
        out.append({"name": name, "id": syn_id(aid), "type": row["concrete_type"]})
    return out


@repo.get("/entity/<raw_id>/path")
@context.scopes("view")
def path(raw_id: str):
    with checked_entity(raw_id) as (c, row):
        out = {"path": path_headers(c, context.user(), row["id"])}
    return jsonify(out)
