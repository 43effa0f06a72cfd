"""The EntityView's own fields (no routes): ``scopeIds``, ``viewTypeMask`` and ``columnIds``,
validated like ``EntityMetadataIndexProvider`` (synapse-views.md §1.1) and kept in the
``views`` table; ``json_fields`` adds them to the view's Entity JSON.
"""

from __future__ import annotations

import json

from . import columns
from .db import CT, FILE, FOLDER, PROJECT, parse_syn_id
from .errors import BadRequest

VIEW = CT + "table.EntityView"
TABLE = CT + "table.TableEntity"
# viewTypeMask bit -> concrete type of the rows it selects (HasViewTypeMask.json).
MASK_TYPES = {
    0x01: FILE, 0x02: PROJECT, 0x04: TABLE, 0x08: FOLDER, 0x10: VIEW,
    0x20: CT + "docker.DockerRepository", 0x40: CT + "table.SubmissionView",
    0x80: CT + "table.Dataset", 0x100: CT + "table.DatasetCollection",
    0x200: CT + "table.MaterializedView",
}
ALL_BITS = sum(MASK_TYPES)
PROJECT_BIT = 0x02
DEPRECATED_TYPES = {"file": 0x01, "project": 0x02, "file_and_table": 0x05}
MSG_PROJECT_MIX = "The Project type cannot be combined with any other type."


def types_for_mask(mask: int) -> list[str]:
    return [ct for bit, ct in MASK_TYPES.items() if mask & bit]


def parse(c, data: dict) -> dict:
    """``{"scope": [int], "mask": int, "column_ids": [int]}`` from an EntityView body (400s)."""
    mask = data.get("viewTypeMask")
    if mask is None and data.get("type") is not None:
        mask = DEPRECATED_TYPES.get(str(data["type"]).lower())
        if mask is None:
            raise BadRequest(f"Unknown view type: {data['type']}")
    if mask is None:
        raise BadRequest("viewTypeMask is required.")
    try:
        mask = int(mask)
    except (TypeError, ValueError):
        raise BadRequest(f"Invalid viewTypeMask: {mask}") from None
    if mask <= 0 or mask & ~ALL_BITS:
        raise BadRequest(f"Invalid viewTypeMask: {mask}")
    if mask & PROJECT_BIT and mask != PROJECT_BIT:
        raise BadRequest(MSG_PROJECT_MIX)
    scope = []
    for raw in data.get("scopeIds") or []:
        sid = parse_syn_id(raw)
        if sid is None:
            raise BadRequest(f"Invalid scope id: {raw}")
        if sid not in scope:
            scope.append(sid)
    column_ids = []
    names = set()
    for raw in data.get("columnIds") or []:
        model = columns.get(c, raw)
        if model is None:
            raise BadRequest(f"ColumnModel does not exist for id: {raw}")
        if model["name"] in names:
            raise BadRequest(f"Duplicate column name: {model['name']}")
        names.add(model["name"])
        column_ids.append(int(model["id"]))
    return {"scope": scope, "mask": mask, "column_ids": column_ids}


def save(c, eid: int, fields: dict) -> None:
    c.execute("INSERT INTO views(entity_id, view_type_mask, scope_ids, column_ids)"
              " VALUES (?, ?, ?, ?) ON CONFLICT(entity_id) DO UPDATE SET"
              " view_type_mask = excluded.view_type_mask, scope_ids = excluded.scope_ids,"
              " column_ids = excluded.column_ids",
              (eid, fields["mask"], json.dumps(fields["scope"]), json.dumps(fields["column_ids"])))


def set_columns(c, eid: int, column_ids: list[int]) -> None:
    c.execute("UPDATE views SET column_ids = ? WHERE entity_id = ?",
              (json.dumps([int(x) for x in column_ids]), eid))


def load(c, eid: int) -> dict | None:
    row = c.execute("SELECT * FROM views WHERE entity_id = ?", (eid,)).fetchone()
    if row is None:
        return None
    return {"scope": json.loads(row["scope_ids"]), "mask": int(row["view_type_mask"]),
            "column_ids": json.loads(row["column_ids"])}


def delete(c, eid: int) -> None:
    c.execute("DELETE FROM views WHERE entity_id = ?", (eid,))
    c.execute("DELETE FROM view_index WHERE view_id = ?", (eid,))


def json_fields(c, eid: int) -> dict:
    """The EntityView fields of the Entity JSON (scope ids without the ``syn`` prefix)."""
    fields = load(c, eid)
    if fields is None:
        return {}
    return {"columnIds": [str(x) for x in fields["column_ids"]],
            "scopeIds": [str(x) for x in fields["scope"]],
            "viewTypeMask": fields["mask"], "isSearchEnabled": False}
