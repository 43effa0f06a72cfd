"""Column models (no routes): validation and normalisation of a ColumnModel, content-idempotent
creation (the same spec always gets the same id, for every user, like ``POST /column``), lookup,
and the default columns of a file view (synapse-views.md §1.2-1.4).
"""

from __future__ import annotations

import hashlib
import json

from .db import Store
from .errors import BadRequest, NotFound

COLUMN_MODEL = "org.sagebionetworks.repo.model.table.ColumnModel"
LIST_TYPES = ("STRING_LIST", "INTEGER_LIST", "BOOLEAN_LIST", "DATE_LIST", "ENTITYID_LIST",
              "USERID_LIST")
COLUMN_TYPES = ("STRING", "DOUBLE", "INTEGER", "BOOLEAN", "DATE", "FILEHANDLEID", "ENTITYID",
                "SUBMISSIONID", "EVALUATIONID", "LINK", "MEDIUMTEXT", "LARGETEXT", "USERID",
                "JSON") + LIST_TYPES
SIZED_TYPES = ("STRING", "STRING_LIST", "LINK")
NO_DEFAULT_TYPES = ("ENTITYID", "FILEHANDLEID", "USERID", "LARGETEXT")
DEFAULT_MAX_SIZE = 50
MAX_STRING_SIZE = 1000
DEFAULT_LIST_LENGTH = 100
MAX_NAME = 256
FACET_TYPES = ("enumeration", "range")
FIELDS = ("name", "columnType", "maximumSize", "maximumListLength", "facetType", "defaultValue",
          "enumValues", "jsonSubColumns")

# The default columns of an entity view (Constants.BASIC_DEAFULT_COLUMNS + FILE_SPECIFIC_COLUMNS):
# (name, columnType, maximumSize, facetType).
BASIC_DEFAULTS = (
    ("id", "ENTITYID", None, None),
    ("name", "STRING", 256, None),
    ("description", "STRING", 1000, None),
    ("createdOn", "DATE", None, "range"),
    ("createdBy", "USERID", None, "enumeration"),
    ("etag", "STRING", 36, None),
    ("modifiedOn", "DATE", None, "range"),
    ("modifiedBy", "USERID", None, "enumeration"),
    ("path", "STRING", 1000, None),
)
FILE_DEFAULTS = (
    ("type", "STRING", 20, "enumeration"),
    ("currentVersion", "INTEGER", None, None),
    ("parentId", "ENTITYID", None, "enumeration"),
    ("benefactorId", "ENTITYID", None, None),
    ("projectId", "ENTITYID", None, "enumeration"),
    ("dataFileHandleId", "FILEHANDLEID", None, None),
    ("dataFileName", "STRING", 256, None),
    ("dataFileSizeBytes", "INTEGER", None, None),
    ("dataFileMD5Hex", "STRING", 100, None),
    ("dataFileConcreteType", "STRING", 65, "enumeration"),
    ("dataFileBucket", "STRING", 100, "enumeration"),
    ("dataFileKey", "STRING", 700, None),
)
FILE_BIT = 0x01


def normalise(data) -> dict:
    """The stored form of a ColumnModel request (400 for an invalid one); no ``id``."""
    if not isinstance(data, dict):
        raise BadRequest("ColumnModel must be a JSON object")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("ColumnModel.name is required")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise BadRequest(f"ColumnModel.name cannot be longer than {MAX_NAME} characters")
    ctype = data.get("columnType")
    if ctype not in COLUMN_TYPES:
        raise BadRequest("ColumnModel.columnType is required" if ctype is None
                         else f"Unknown columnType: {ctype}")
    out: dict = {"name": name, "columnType": ctype}
    size = data.get("maximumSize")
    if ctype in SIZED_TYPES:
        size = DEFAULT_MAX_SIZE if size is None else size
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_STRING_SIZE:
            raise BadRequest(f"ColumnModel.maxSize for a STRING cannot exceed: {MAX_STRING_SIZE}")
        out["maximumSize"] = size
    if ctype in LIST_TYPES:
        length = data.get("maximumListLength")
        length = DEFAULT_LIST_LENGTH if length is None else length
        if not isinstance(length, int) or isinstance(length, bool) or not 2 <= length <= 100:
            raise BadRequest("ColumnModel.maximumListLength must be between 2 and 100")
        out["maximumListLength"] = length
    facet = data.get("facetType")
    if facet is not None:
        if facet not in FACET_TYPES:
            raise BadRequest(f"Unknown facetType: {facet}")
        out["facetType"] = facet
    default = data.get("defaultValue")
    if default is not None:
        if ctype in NO_DEFAULT_TYPES:
            raise BadRequest(f"Columns of type {ctype} cannot have default values.")
        out["defaultValue"] = str(default)
    enum = data.get("enumValues")
    if enum is not None:
        if not isinstance(enum, list) or len(enum) > 100:
            raise BadRequest("ColumnModel.enumValues must be a list of at most 100 values")
        out["enumValues"] = [str(v) for v in enum]
    if data.get("jsonSubColumns") is not None:
        out["jsonSubColumns"] = data["jsonSubColumns"]
    return out


def model_json(col_id: int, body: dict) -> dict:
    return {"id": str(col_id), **body, "concreteType": COLUMN_MODEL}


def create(c, data) -> dict:
    """The ColumnModel for ``data``: the existing one with the same content, else a new one."""
    body = normalise(data)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    row = c.execute("SELECT id FROM column_models WHERE hash = ?", (digest,)).fetchone()
    if row is not None:
        return model_json(row["id"], body)
    col_id = Store.next_id(c, "column")
    c.execute("INSERT INTO column_models(id, hash, body) VALUES (?, ?, ?)",
              (col_id, digest, json.dumps(body)))
    return model_json(col_id, body)


def get(c, col_id) -> dict | None:
    try:
        col_id = int(str(col_id).strip())
    except (TypeError, ValueError):
        return None
    row = c.execute("SELECT body FROM column_models WHERE id = ?", (col_id,)).fetchone()
    return model_json(col_id, json.loads(row["body"])) if row else None


def require(c, col_id) -> dict:
    found = get(c, col_id)
    if found is None:
        raise NotFound(f"ColumnModel does not exist for id: {col_id}")
    return found


def schema(c, column_ids) -> list[dict]:
    """The ColumnModels of ``column_ids`` in order (404 for an unknown id)."""
    return [require(c, cid) for cid in column_ids]


def defaults(c, view_type_mask: int) -> list[dict]:
    """Default view columns (with ids): 21 for a mask with the File bit, else the basic 9."""
    specs = BASIC_DEFAULTS + (FILE_DEFAULTS if view_type_mask & FILE_BIT else ())
    out = []
    for name, ctype, size, facet in specs:
        spec = {"name": name, "columnType": ctype}
        if size is not None:
            spec["maximumSize"] = size
        if facet is not None:
            spec["facetType"] = facet
        out.append(create(c, spec))
    return out
