"""The file-view source of a snapshot: one query instead of one call per file.

Owns what ``--view``, ``--create-view`` and ``--where`` mean. The view must be an
EntityView of files whose scope holds the snapshot's root or one of its ancestors (else
``EXIT_VIEW_SCOPE``). One query (all pages) reads ``id, currentVersion, modifiedOn`` and the
``dataFile*`` columns, filtered by the user's ``--where`` condition (a condition Synapse
rejects is ``EXIT_BAD_WHERE``). The listings walk still runs: it is the truth the rows are
checked against (a view is eventually consistent), and with ``--where`` only matching files
and the folders on their paths are kept. A file whose row is missing or stale (other version
or modifiedOn than its listing) is fetched by bundle, so the snapshot is exact; a file that
does not match ``--where`` by its (possibly stale) row is left out.

``view_entities`` serves live mounts (``synfs mount --view``): every file row as an
attributes-only entity, which the tree uses only while the listing shows the same version
and modifiedOn (the same cross-check), so ``ls -l`` needs no call per file.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time

from synfs import errors
from synfs.config import EXIT_BAD_WHERE, EXIT_NOT_FOUND, EXIT_VIEW_SCOPE
from synfs.snapshot.build import Builder
from synfs.snapshot.store import Node, SnapshotError
from synfs.synapse.models import Entity, FileHandle, Kind, parse_date, parse_id
from synfs.synapse.tables import FILE_MASK, VIEW_TYPE, Tables

log = logging.getLogger(__name__)

# Synapse sizes a query's pages by the selected columns' maximum sizes (2 MiB a page), so
# every wide STRING column selected costs pages: with the ``dataFile*`` strings (key 700,
# name 256, ...) a page holds about 400 rows, one async job each. A snapshot selects only what
# the cross-check and the node need (``POST /fileHandle/batch`` gives size, MD5, bucket, key,
# name and type of 100 files a call anyway): 5,000 rows in one page.
COLUMNS = ("id", "currentVersion", "modifiedOn", "dataFileHandleId", "etag", "createdOn")
# A ``--view`` mount keeps a row's entity for attributes only (size and times; opening a file
# fetches its entity): no name, MD5, bucket or key.
MOUNT_COLUMNS = ("id", "currentVersion", "modifiedOn", "createdOn", "etag",
                 "dataFileHandleId", "dataFileSizeBytes")


def check_view(tables: Tables, view_id: int, root_id: int) -> None:
    try:
        view = tables.entity_json(view_id)
    except (errors.NotFound, errors.PermissionDenied):
        raise SnapshotError(f"view syn{view_id} does not exist or is not readable",
                            EXIT_NOT_FOUND) from None
    if view.get("concreteType") != VIEW_TYPE or not int(view.get("viewTypeMask") or 0) & FILE_MASK:
        raise SnapshotError(f"syn{view_id} is not a file view", EXIT_VIEW_SCOPE)
    scope = {parse_id(s) for s in view.get("scopeIds") or ()}
    if not scope & set(tables.path_ids(root_id)):
        raise SnapshotError(f"view syn{view_id} does not cover syn{root_id} (its scope: "
                            f"{', '.join(f'syn{s}' for s in sorted(scope)) or 'empty'})",
                            EXIT_VIEW_SCOPE)


def select_sql(view_id: int, where: str | None) -> str:
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    sql = f"SELECT {cols} FROM syn{view_id}"
    return sql + (f" WHERE ({where})" if where else "")


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def row_matches(row: dict, node: Node) -> bool:
    """A row is trusted only if it shows the listing's version and modifiedOn (to the ms)."""
    return (_int(row.get("currentVersion")) == node.version and
            _int(row.get("modifiedOn")) == round(node.modified_on * 1000) and
            _int(row.get("dataFileHandleId")) is not None)


def node_from_row(row: dict, node: Node) -> Node:
    """The node a trusted row gives; size, MD5, bucket, key, name and type come from the
    file handle batch (``Builder.handles``), unless the row has them."""
    created = _int(row.get("createdOn"))
    return Node(id=node.id, parent_id=node.parent_id, name=node.name, kind=node.kind,
                version=node.version, modified_on=node.modified_on,
                created_on=created / 1000 if created else node.modified_on,
                etag=row.get("etag") or "", size=_int(row.get("dataFileSizeBytes")),
                md5=row.get("dataFileMD5Hex"), file_handle_id=_int(row.get("dataFileHandleId")),
                concrete_type=row.get("dataFileConcreteType"), bucket=row.get("dataFileBucket"),
                key=row.get("dataFileKey"), file_name=row.get("dataFileName"), done=False)


def build_from_view(builder: Builder, tables: Tables, root_id: int, view_id: int,
                    where: str | None) -> dict:
    builder.root(root_id)
    check_view(tables, view_id, root_id)
    builder.tick("querying the view")
    try:
        rows = tables.query(view_id, select_sql(view_id, where))
    except errors.InvalidRequest as exc:
        if where:
            reason = str(exc).split(": 400 ", 1)[-1]
            raise SnapshotError(f"--where {where!r} is not a valid condition on view "
                                f"syn{view_id}: {reason}", EXIT_BAD_WHERE) from None
        raise
    by_id = {}
    for row in rows:
        try:
            by_id[parse_id(row.get("id"))] = row
        except ValueError:
            continue
    builder.walk()
    if where:
        files = {n.id for n in builder.writer.files()}
        builder.writer.prune(files & set(by_id), root_id)
        builder.progress.files_total = builder.writer.count("file")
    trusted, stale = [], []
    for node in builder.writer.pending_files():
        row = by_id.get(node.id)
        if row is not None and row_matches(row, node):
            trusted.append(node_from_row(row, node))
        else:
            stale.append(node)
    if stale:
        log.info("%d file(s) missing or stale in view syn%d: fetched one by one",
                 len(stale), view_id)
    missing = builder.handles(trusted)
    builder.from_bundles(stale + missing)
    builder.locations()
    return {"view_rows": len(rows), "from_view": len(trusted) - len(missing),
            "stale": len(stale) + len(missing)}


DEFAULT_COLUMNS = frozenset((
    "id", "name", "description", "createdOn", "createdBy", "etag", "modifiedOn", "modifiedBy",
    "path", "type", "currentVersion", "parentId", "benefactorId", "projectId",
    "dataFileHandleId", "dataFileName", "dataFileSizeBytes", "dataFileMD5Hex",
    "dataFileConcreteType", "dataFileBucket", "dataFileKey", "ROW_ID", "ROW_VERSION"))
SQL_WORDS = frozenset((
    "and", "or", "not", "in", "like", "is", "null", "between", "has", "has_like", "true",
    "false", "escape", "asc", "desc"))
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"((?:[^\"]|\"\")*)\"|([A-Za-z_][A-Za-z0-9_.]*)")


def where_columns(where: str | None) -> list[str]:
    """Annotation names a ``--where`` condition mentions (not the view's default columns):
    the columns a temporary view needs (quoted names included, string literals skipped)."""
    out: list[str] = []
    for m in _TOKEN.finditer(where or ""):
        name = m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2)
        if name is None or name in DEFAULT_COLUMNS or (m.group(2) and name.lower() in SQL_WORDS):
            continue
        if name not in out:
            out.append(name)
    return out


def create_temporary_view(tables: Tables, parent_id: int, root_id: int,
                          where: str | None = None) -> int:
    try:
        return tables.create_file_view(parent_id, root_id,
                                       f"synfs snapshot view {root_id} {time.time_ns()}",
                                       annotations=where_columns(where))
    except errors.PermissionDenied:
        raise SnapshotError(f"no CREATE permission in syn{parent_id} for a temporary view",
                            EXIT_NOT_FOUND) from None
    except errors.NotFound:
        raise SnapshotError(f"syn{parent_id} does not exist", EXIT_NOT_FOUND) from None


def _iso_ms(ms: int) -> str:
    when = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def entity_from_row(row: dict) -> Entity | None:
    """A file's attributes from a view row (attributes only: ``from_store``; a mount's rows
    carry no name, MD5, bucket or key), or None if the row lacks what a size needs. ``modifiedOn`` goes through the same parsing as a listing's,
    so the tree's (version, modifiedOn) check against the listing compares like with like."""
    try:
        eid = parse_id(row.get("id"))
    except ValueError:
        return None
    size, fh_id, version = (_int(row.get("dataFileSizeBytes")), _int(row.get("dataFileHandleId")),
                            _int(row.get("currentVersion")))
    modified = _int(row.get("modifiedOn"))
    if size is None or fh_id is None or version is None or modified is None:
        return None
    created = _int(row.get("createdOn"))
    handle = FileHandle(id=fh_id, size=size, md5=row.get("dataFileMD5Hex"),
                        concrete_type=row.get("dataFileConcreteType") or "",
                        bucket=row.get("dataFileBucket"), key=row.get("dataFileKey"),
                        file_name=row.get("dataFileName"))
    return Entity(id=eid, name=row.get("name") or "", kind=Kind.FILE, parent_id=None,
                  etag=row.get("etag") or "",
                  created_on=parse_date(_iso_ms(created)) if created else 0.0,
                  modified_on=parse_date(_iso_ms(modified)), version=version,
                  file_handle_id=fh_id, file_handle=handle, from_store=True)


def view_entities(tables: Tables, view_id: int, root_id: int) -> list[Entity]:
    """Every file row of the view as attributes-only entities (``synfs mount --view``)."""
    check_view(tables, view_id, root_id)
    cols = ", ".join(f'"{c}"' for c in MOUNT_COLUMNS)
    rows = tables.query(view_id, f"SELECT {cols} FROM syn{view_id}")
    return [ent for ent in map(entity_from_row, rows) if ent is not None]
