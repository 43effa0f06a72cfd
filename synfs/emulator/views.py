"""What a file view holds (no routes): its rows, their eventual consistency, and the in-memory
SQLite table a query runs on (synapse-views.md §1.1, §1.7, §2.4, §4).

Rows: the entities whose parent is a container (Project/Folder) at or under one of the view's
``scopeIds`` and whose type is in its ``viewTypeMask`` (a Project-only mask selects the scope
projects themselves), not in the trash. Each row has every default column plus the entity's
annotations, from which annotation columns (a ColumnModel named like the key) are filled.

Eventual consistency: each view keeps an index (``view_index``) of the rows it last saw. On a
query, an entity's index row is replaced by its live row (or dropped, when it left the view)
only once the entity's last change (``modifiedOn``, which every change touches) is at least
``lag_s`` seconds old; until then the query sees the old row (e.g. an old ``currentVersion``),
or no row for a new entity. ``lag_s`` is the ``view_lag_s`` fault knob (default 0: current).
"""

from __future__ import annotations

import json
import sqlite3

from . import acl, annotations, columns, view_schema
from .db import PROJECT, FOLDER, ROOT_ID, TRASH_ID, parse_synapse_date
from .entity_core import entity_type_enum, version_row
from .errors import BadRequest, NotFound
from .handles import get_handle_row

ROW_COLUMNS = ("ROW_ID", "ROW_VERSION", "ROW_ETAG", "ROW_BENEFACTOR")
SQL_TYPES = {"INTEGER": "INTEGER", "DATE": "INTEGER", "ENTITYID": "INTEGER",
             "FILEHANDLEID": "INTEGER", "USERID": "INTEGER", "SUBMISSIONID": "INTEGER",
             "EVALUATIONID": "INTEGER", "DOUBLE": "REAL", "BOOLEAN": "INTEGER"}
ENTITY_ID_TYPES = ("ENTITYID",)


def epoch_ms(text: str | None) -> int | None:
    return None if text is None else int(parse_synapse_date(text).timestamp() * 1000)


def get_view(c, eid: int):
    """(entity row, view fields) of the view ``eid``: 404 if missing, 400 if not a view."""
    row = c.execute("SELECT * FROM entities WHERE id = ?", (eid,)).fetchone()
    if row is None or (row["parent_id"] == TRASH_ID):
        raise NotFound(f"Resource: 'syn{eid}' does not exist")
    fields = view_schema.load(c, eid) if row["concrete_type"] == view_schema.VIEW else None
    if fields is None:
        raise BadRequest(f"syn{eid} is not a table or view")
    return row, fields


# ---- live rows ----------------------------------------------------------------------------
def containers(c, scope: list[int]) -> list[int]:
    """Projects and folders at or under the scope ids (not in the trash)."""
    if not scope:
        return []
    marks = ",".join("?" * len(scope))
    rows = c.execute(
        f"WITH RECURSIVE sub(id) AS (SELECT id FROM entities WHERE id IN ({marks})"
        " AND concrete_type IN (?, ?) UNION SELECT e.id FROM entities e JOIN sub"
        " ON e.parent_id = sub.id WHERE e.concrete_type IN (?, ?)) SELECT id FROM sub",
        (*scope, PROJECT, FOLDER, PROJECT, FOLDER)).fetchall()
    return [r["id"] for r in rows if r["id"] not in (TRASH_ID, ROOT_ID)]


def _member_rows(c, fields: dict) -> list:
    types = view_schema.types_for_mask(fields["mask"])
    tmarks = ",".join("?" * len(types))
    if fields["mask"] == view_schema.PROJECT_BIT:
        ids = fields["scope"]
        if not ids:
            return []
        return c.execute(f"SELECT * FROM entities WHERE id IN ({','.join('?' * len(ids))})"
                         f" AND concrete_type IN ({tmarks})", (*ids, *types)).fetchall()
    parents = containers(c, fields["scope"])
    if not parents:
        return []
    pmarks = ",".join("?" * len(parents))
    return c.execute(f"SELECT * FROM entities WHERE parent_id IN ({pmarks})"
                     f" AND concrete_type IN ({tmarks})", (*parents, *types)).fetchall()


class _Lineage:
    """Per-query memo of each container's path, project and benefactor."""

    def __init__(self, c):
        self.c = c
        self.memo: dict[int, tuple[str, int | None]] = {}

    def path_and_project(self, eid: int) -> tuple[str, int | None]:
        if eid in self.memo:
            return self.memo[eid]
        row = self.c.execute("SELECT name, parent_id FROM entities WHERE id = ?",
                             (eid,)).fetchone()
        if row is None or row["parent_id"] is None or eid == ROOT_ID:
            out = ("", None)
        elif row["parent_id"] == ROOT_ID:
            out = ("/" + row["name"], eid)
        else:
            ppath, project = self.path_and_project(row["parent_id"])
            out = (ppath + "/" + row["name"], project)
        self.memo[eid] = out
        return out


def live_row(c, erow, lineage: _Lineage) -> dict:
    """Every default column of ``erow`` (values in SQL form) plus its annotations."""
    eid = erow["id"]
    v = version_row(c, eid)
    path, project = lineage.path_and_project(eid)
    out = {"id": eid, "name": erow["name"], "description": erow["description"],
           "createdOn": epoch_ms(erow["created_on"]), "createdBy": int(erow["created_by"]),
           "etag": erow["etag"], "modifiedOn": epoch_ms(erow["modified_on"]),
           "modifiedBy": int(erow["modified_by"]), "path": path,
           "type": entity_type_enum(erow["concrete_type"]),
           "currentVersion": int(erow["current_version"]), "parentId": erow["parent_id"],
           "benefactorId": acl.benefactor(c, eid), "projectId": project}
    fh = get_handle_row(c, v["data_file_handle_id"]) \
        if v is not None and v["data_file_handle_id"] is not None else None
    if fh is not None:
        out.update(dataFileHandleId=int(fh["id"]), dataFileName=fh["file_name"],
                   dataFileSizeBytes=fh["content_size"], dataFileMD5Hex=fh["content_md5"],
                   dataFileConcreteType=fh["concrete_type"], dataFileBucket=fh["bucket_name"],
                   dataFileKey=fh["key"])
    out["_annotations"] = annotations.get(c, eid)
    return out


# ---- the index (eventual consistency) -------------------------------------------------------
def refresh(c, view_id: int, fields: dict, lag_s: float, now_ms: int) -> list[dict]:
    """Bring the view's index up to date with every change older than ``lag_s``; its rows."""
    lineage = _Lineage(c)
    settled_before = now_ms - int(lag_s * 1000)
    live = {r["id"]: r for r in _member_rows(c, fields)}
    indexed = {r["entity_id"]: json.loads(r["row"]) for r in c.execute(
        "SELECT entity_id, row FROM view_index WHERE view_id = ?", (view_id,)).fetchall()}
    for eid in set(live) | set(indexed):
        erow = live.get(eid)
        if erow is None:
            erow = c.execute("SELECT modified_on FROM entities WHERE id = ?", (eid,)).fetchone()
            if erow is None or lag_s <= 0 or epoch_ms(erow["modified_on"]) <= settled_before:
                c.execute("DELETE FROM view_index WHERE view_id = ? AND entity_id = ?",
                          (view_id, eid))
                indexed.pop(eid, None)
            continue
        if lag_s > 0 and epoch_ms(erow["modified_on"]) > settled_before:
            continue  # changed too recently: the index keeps what it had (or nothing)
        row = live_row(c, erow, lineage)
        if row != indexed.get(eid):
            c.execute("INSERT INTO view_index(view_id, entity_id, row) VALUES (?, ?, ?)"
                      " ON CONFLICT(view_id, entity_id) DO UPDATE SET row = excluded.row",
                      (view_id, eid, json.dumps(row)))
            indexed[eid] = row
    return [indexed[k] for k in sorted(indexed)]


def readable_rows(c, user, rows: list[dict]) -> list[dict]:
    """The rows whose benefactor gives the caller READ (the row-level filter of §4)."""
    if user is not None and user.is_admin:
        return rows
    ok: dict[int, bool] = {}
    out = []
    for row in rows:
        ben = row["benefactorId"]
        if ben not in ok:
            ok[ben] = "READ" in acl.granted(c, user, ben)
        if ok[ben]:
            out.append(row)
    return out


# ---- the materialised table ---------------------------------------------------------------
def _cell(model: dict, row: dict):
    """The SQL value of column ``model`` in ``row`` (default field or annotation)."""
    name, ctype = model["name"], model["columnType"]
    if name in row and not name.startswith("_"):
        value = row[name]
        return value if ctype not in columns.LIST_TYPES or value is None else json.dumps([value])
    item = (row.get("_annotations") or {}).get(name)
    if item is None:
        return None
    values = [_convert(ctype.replace("_LIST", ""), v) for v in item["value"]]
    if ctype in columns.LIST_TYPES:
        return json.dumps([_list_item(ctype, v) for v in values if v is not None])
    return values[0] if values else None


def _convert(ctype: str, text: str):
    try:
        if ctype in ("INTEGER", "DATE", "USERID", "FILEHANDLEID"):
            return int(text)
        if ctype == "ENTITYID":
            return int(text[3:] if text.lower().startswith("syn") else text)
        if ctype == "DOUBLE":
            return float(text)
        if ctype == "BOOLEAN":
            return {"true": 1, "false": 0}.get(text.lower())
    except ValueError:
        return None
    return text


def _list_item(ctype: str, value):
    if ctype == "ENTITYID_LIST":
        return f"syn{value}"
    if ctype == "BOOLEAN_LIST":
        return bool(value)
    return value


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def materialise(schema: list[dict], rows: list[dict]) -> sqlite3.Connection:
    """An in-memory SQLite database with table ``T``: one column per ColumnModel, plus
    ROW_ID/ROW_VERSION/ROW_ETAG; read-only once filled."""
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    cols = [f"{quote(m['name'])} {SQL_TYPES.get(m['columnType'], 'TEXT')}" for m in schema]
    cols += ["ROW_ID INTEGER", "ROW_VERSION INTEGER", "ROW_ETAG TEXT", "ROW_BENEFACTOR INTEGER"]
    conn.execute(f"CREATE TABLE T ({', '.join(cols)})")
    marks = ",".join("?" * (len(schema) + len(ROW_COLUMNS)))
    conn.executemany(f"INSERT INTO T VALUES ({marks})",
                     [[_cell(m, r) for m in schema]
                      + [r["id"], r["currentVersion"], r["etag"], r["benefactorId"]]
                      for r in rows])
    conn.execute("PRAGMA query_only = 1")
    return conn
