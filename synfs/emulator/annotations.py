"""Entity annotations (Annotations v2): ``GET /entity/{id}[/version/{v}]/annotations2`` and
``PUT /entity/{id}/annotations2``, plus the model the bundle and the views read.

Annotations are kept per entity (not per version: a version's annotations are the entity's
current ones) as ``{"key": {"type": T, "value": [str, ...]}}`` with T one of STRING, LONG,
DOUBLE, TIMESTAMP_MS, BOOLEAN. A PUT needs UPDATE and the entity's current etag (412 otherwise)
and touches the entity (new etag and modifiedOn), as in Synapse.
"""

from __future__ import annotations

import json
import math

from flask import Blueprint, jsonify

from . import acl, context
from .db import parse_syn_id, syn_id
from .entity_core import checked_entity, get_live_entity, path_entity_id, touch
from .errors import BadRequest, PreconditionFailed

repo = Blueprint("annotations", __name__)
BLUEPRINTS = [(repo, "/repo/v1")]

TYPES = ("STRING", "LONG", "DOUBLE", "TIMESTAMP_MS", "BOOLEAN")
MAX_VALUES = 100
MAX_KEY = 256
MAX_STRING = 500


def get(c, eid: int) -> dict:
    row = c.execute("SELECT body FROM annotations WHERE entity_id = ?", (eid,)).fetchone()
    return json.loads(row["body"]) if row else {}


def annotations_json(c, row) -> dict:
    return {"id": syn_id(row["id"]), "etag": row["etag"], "annotations": get(c, row["id"])}


def _check_value(key: str, kind: str, value: str) -> None:
    ok = True
    if kind in ("LONG", "TIMESTAMP_MS"):
        try:
            int(value)
        except ValueError:
            ok = False
    elif kind == "DOUBLE":
        try:
            float(value)
        except ValueError:
            ok = value in ("NaN", "Infinity", "-Infinity")
    elif kind == "BOOLEAN":
        ok = value.lower() in ("true", "false")
    elif len(value) > MAX_STRING:
        raise BadRequest(f"Value associated with key={key} exceeds the maximum length of "
                         f"{MAX_STRING} characters")
    if not ok:
        raise BadRequest(f"Value associated with key={key} is not valid for type={kind}: {value}")


def validate(data) -> dict:
    """The stored form of an Annotations v2 ``annotations`` map (400 for a bad one)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadRequest("annotations must be a map of key to AnnotationsValue")
    out = {}
    for key, item in data.items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
            raise BadRequest(f"Invalid annotation key: {key!r}")
        if not isinstance(item, dict):
            raise BadRequest(f"Value associated with key={key} must be an AnnotationsValue")
        kind = item.get("type")
        if kind not in TYPES:
            raise BadRequest(f"Value associated with key={key} has an invalid type: {kind}")
        values = item.get("value")
        if not isinstance(values, list) or not values:
            raise BadRequest(f"Value associated with key={key} must be a non-empty list")
        if len(values) > MAX_VALUES:
            raise BadRequest(f"Value associated with key={key} exceeds the maximum number of "
                             f"values: {MAX_VALUES}")
        texts = []
        for v in values:
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
                v = str(v)
            if not isinstance(v, str):
                raise BadRequest(f"Value associated with key={key} is not valid for type={kind}")
            _check_value(key, kind, v)
            texts.append(v)
        out[key] = {"type": kind, "value": texts}
    return out


def put(c, eid: int, annos: dict) -> None:
    """Store ``annos`` (already validated) as the entity's annotations (no touch)."""
    if annos:
        c.execute("INSERT INTO annotations(entity_id, body) VALUES (?, ?) ON CONFLICT(entity_id)"
                  " DO UPDATE SET body = excluded.body", (eid, json.dumps(annos)))
    else:
        c.execute("DELETE FROM annotations WHERE entity_id = ?", (eid,))


def delete(c, eid: int) -> None:
    c.execute("DELETE FROM annotations WHERE entity_id = ?", (eid,))


# ---- REST -------------------------------------------------------------------------------
@repo.get("/entity/<raw_id>/annotations2")
@context.scopes("view")
def get_annotations(raw_id: str):
    with checked_entity(raw_id) as (c, row):
        out = annotations_json(c, row)
    return jsonify(out)


@repo.get("/entity/<raw_id>/version/<int:version>/annotations2")
@context.scopes("view")
def get_version_annotations(raw_id: str, version: int):
    with checked_entity(raw_id, version=version) as (c, row):
        out = annotations_json(c, row)
    return jsonify(out)


@repo.put("/entity/<raw_id>/annotations2")
@context.scopes("view", "modify")
def put_annotations(raw_id: str):
    user = context.require_user()
    data = context.body()
    eid = path_entity_id(raw_id)
    if data.get("id") is not None and parse_syn_id(data["id"]) != eid:
        raise BadRequest("Entity ID in the URL does not match the ID in the body")
    annos = validate(data.get("annotations"))
    with context.store().tx() as c:
        row = get_live_entity(c, eid)
        acl.require(c, user, eid, "UPDATE")
        if data.get("etag") is None:
            raise BadRequest("etag is required.")
        if data["etag"] != row["etag"]:
            raise PreconditionFailed(f"Object: {syn_id(eid)} was updated since you last fetched "
                                     "it, retrieve it again and re-apply the update")
        put(c, eid, annos)
        touch(c, eid, user.id)
        out = annotations_json(c, c.execute("SELECT * FROM entities WHERE id = ?",
                                            (eid,)).fetchone())
    return jsonify(out)
