"""Entity CRUD: ``POST /entity``, ``GET/PUT/DELETE /entity/{id}``, ``GET /entity/{id}/version/{v}``,
``GET /entity/{id}/type``, and the bundles that write (``POST /entity/bundle2/create``,
``PUT /entity/{id}/bundle2``). Creatable: Project, Folder, FileEntity and EntityView (whose
scope, mask and columns are ``view_schema``'s).

Also the package's entity entry point: it re-exports the helpers other modules rely on
(``get_live_entity``, ``entity_json``, ``current_file_handle_id``, ``is_empty_with_trash``,
``entity_type_enum``) from ``entity_core`` and mounts the blueprints of ``entity_children``
(children / child / path), ``entity_versions`` (version list/delete, file-handle swap,
filehandles), ``entity_bundle`` (bundle2), ``annotations`` (annotations2) and ``trash``.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from . import (acl, annotations, context, entity_bundle, entity_children, entity_versions, storage,
               trash, view_schema)
from .db import FILE, PROJECT, ROOT_ID, Store, new_etag, parse_syn_id, synapse_date, syn_id
from .entity_core import (CREATABLE, MAX_DESCRIPTION, VERSIONABLE, check_handle_creator,
                          checked_entity, check_name_free, check_parent_type, current_file_handle_id, entity_json,
                          entity_type_enum, get_live_entity, handle_row, header_json,
                          is_empty_with_trash, parent_type_error, parse_handle_id,
                          path_entity_id, touch, validate_name, version_row)
from .errors import BadRequest, Forbidden, NotFound, PreconditionFailed

__all__ = ["get_live_entity", "entity_json", "current_file_handle_id", "is_empty_with_trash",
           "entity_type_enum", "header_json", "BLUEPRINTS"]

repo = Blueprint("entities", __name__)
BLUEPRINTS = [(repo, "/repo/v1"), (entity_children.repo, "/repo/v1"),
              (entity_versions.repo, "/repo/v1"), (entity_bundle.repo, "/repo/v1"),
              (trash.repo, "/repo/v1"), (annotations.repo, "/repo/v1")]

ALIAS_BAD = "Aliases can only have letters (a-z and A-Z), digits (0-9) and underscores (_)"


def _validate_file_fields(data: dict) -> None:
    if data.get("fileNameOverride") is not None:
        raise BadRequest("fileNameOverride field is deprecated and should not be set.")
    if data.get("dataFileHandleId") is None:
        raise BadRequest("FileEntity.dataFileHandleId cannot be null")


def _validate_common(data: dict) -> None:
    desc = data.get("description")
    if desc is not None and (not isinstance(desc, str) or len(desc) > MAX_DESCRIPTION):
        raise BadRequest(f"Description length cannot be longer than {MAX_DESCRIPTION} characters.")
    alias = data.get("alias")
    if alias:
        if not isinstance(alias, str) or not alias.replace("_", "a").isalnum() \
                or not alias.isascii():
            raise BadRequest(ALIAS_BAD)


def _new_version(c, eid: int, fh_id, label, comment, user_id: int) -> int:
    top = c.execute("SELECT MAX(version_number) AS n FROM versions WHERE entity_id = ?",
                    (eid,)).fetchone()["n"] or 0
    n = top + 1
    stamp = synapse_date()
    c.execute("INSERT INTO versions(entity_id, version_number, version_label, version_comment,"
              " data_file_handle_id, modified_on, modified_by, created_on, created_by)"
              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (eid, n, label or str(n), comment, fh_id, stamp, user_id, stamp, user_id))
    c.execute("UPDATE entities SET current_version = ? WHERE id = ?", (n, eid))
    return n


# ---- create -----------------------------------------------------------------------------
def _refuse_type(ct: str, parent_raw) -> None:
    """Types the emulator does not model; inside an STS folder Synapse's own rule answers first."""
    parent_id = parse_syn_id(parent_raw) if parent_raw is not None else None
    if parent_id is not None:
        with context.store().tx() as c:
            if context.store().entity_row(c, parent_id) is not None:
                storage.check_create_in_parent(c, parent_id, ct)
    raise BadRequest(f"The emulator cannot create entities of type: {ct}")


def precheck_create(data: dict) -> str:
    """The checks Synapse makes before touching its database; returns the concreteType."""
    ct = data.get("concreteType")
    if not ct:
        raise BadRequest("concreteType is required.")
    if ct not in CREATABLE:
        _refuse_type(ct, data.get("parentId"))
    if ct == FILE:
        _validate_file_fields(data)
    _validate_common(data)
    return ct


def create_in(c, user, data: dict) -> int:
    """Create the entity described by ``data`` (after ``precheck_create``); returns its id."""
    store = context.store()
    ct = data["concreteType"]
    parent_raw = data.get("parentId")
    if parent_raw is None:
        if ct != PROJECT:
            raise parent_type_error(ct, None)
        parent_id = ROOT_ID
    else:
        parent_id = parse_syn_id(parent_raw)
        prow = store.entity_row(c, parent_id) if parent_id is not None else None
        if prow is None:
            raise NotFound(f"The given parent: {parent_raw} does not exist")
        check_parent_type(ct, prow)
    fh_id = parse_handle_id(data["dataFileHandleId"]) if ct == FILE else None
    if parent_id != ROOT_ID:
        storage.check_create_in_parent(c, parent_id, ct)
    eid = store.next_id(c, "entity")
    name = validate_name(data["name"]) if data.get("name") is not None else syn_id(eid)
    if parent_id != ROOT_ID:
        acl.require(c, user, parent_id, "CREATE")
    if fh_id is not None:
        check_handle_creator(c, user, fh_id)
        storage.check_add_file(c, parent_id, fh_id)
    view_fields = view_schema.parse(c, data) if ct == view_schema.VIEW else None
    check_name_free(c, parent_id, name)
    stamp = synapse_date()
    c.execute(
        "INSERT INTO entities(id, name, parent_id, concrete_type, etag, created_on, created_by,"
        " modified_on, modified_by, description, alias, current_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        (eid, name, parent_id, ct, new_etag(), stamp, user.id, stamp, user.id,
         data.get("description"), data.get("alias") if ct == PROJECT else None))
    label = data.get("versionLabel") if ct in VERSIONABLE else None
    comment = data.get("versionComment") if ct in VERSIONABLE else None
    c.execute("INSERT INTO versions(entity_id, version_number, version_label, version_comment,"
              " data_file_handle_id, modified_on, modified_by, created_on, created_by)"
              " VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?)",
              (eid, label or "1", comment, fh_id, stamp, user.id, stamp, user.id))
    if ct == PROJECT:
        acl.grant_creator_all(c, eid, user.id)
    if view_fields is not None:
        view_schema.save(c, eid, view_fields)
    return eid


@repo.post("/entity")
@context.scopes("view", "modify")
def create_entity():
    user = context.require_user()
    data = context.body()
    precheck_create(data)
    store = context.store()
    with store.tx() as c:
        eid = create_in(c, user, data)
        out = entity_json(c, store.entity_row(c, eid))
    return jsonify(out), 201


# ---- read -------------------------------------------------------------------------------
@repo.get("/entity/<raw_id>")
@context.scopes("view")
def get_entity(raw_id: str):
    with checked_entity(raw_id) as (c, row):
        out = entity_json(c, row)
    return jsonify(out)


@repo.get("/entity/<raw_id>/version/<int:version>")
@context.scopes("view")
def get_entity_version(raw_id: str, version: int):
    with checked_entity(raw_id, version=version) as (c, row):
        out = entity_json(c, row, version)
    return jsonify(out)


@repo.get("/entity/<raw_id>/type")
@context.scopes("view")
def get_entity_type(raw_id: str):
    with checked_entity(raw_id) as (c, row):
        out = header_json(c, row)
    return jsonify(out)


# ---- update -----------------------------------------------------------------------------
def precheck_update(eid: int, data: dict) -> None:
    if data.get("id") is None:
        raise BadRequest("Updated Entity cannot have a null id")
    if parse_syn_id(data.get("id")) != eid:
        raise BadRequest("Entity ID in the URL does not match the ID in the body")


def update_in(c, user, eid: int, data: dict, new_version: bool) -> None:
    """Apply an Entity PUT body (after ``precheck_update``) inside the caller's transaction."""
    store = context.store()
    row = get_live_entity(c, eid)
    ct = row["concrete_type"]
    if data.get("concreteType") is not None and data["concreteType"] != ct:
        raise BadRequest(f"Cannot change the concreteType of {syn_id(eid)} from {ct} to "
                         f"{data['concreteType']}")
    if ct == FILE:
        _validate_file_fields(data)
    _validate_common(data)
    if data.get("parentId") is None:
        raise BadRequest("The parent id of the node is required.")
    new_parent = parse_syn_id(data["parentId"])
    prow = store.entity_row(c, new_parent) if new_parent is not None else None
    if prow is None:
        raise NotFound(f"Resource: '{data['parentId']}' does not exist")
    check_parent_type(ct, prow)
    moving = new_parent != row["parent_id"]
    if moving and eid in Store.ancestors(c, new_parent):
        raise BadRequest("Invalid hierarchy: an entity cannot be an ancestor of itself")
    if data.get("name") is None:
        raise BadRequest("Name cannot be only whitespace or empty string")
    name = validate_name(data["name"])
    acl.require(c, user, eid, "UPDATE")
    if moving and not acl.can(c, user, eid, "CHANGE_PERMISSIONS"):
        raise Forbidden("CHANGE_PERMISSIONS is required to move to a new location")
    alias = data.get("alias") if ct == PROJECT else None
    if ct == PROJECT and (alias or None) != (row["alias"] or None):
        acl.require(c, user, eid, "CHANGE_SETTINGS")
    cur = version_row(c, eid)
    fh_id = parse_handle_id(data["dataFileHandleId"]) if ct == FILE else None
    fh_changed = ct == FILE and fh_id != cur["data_file_handle_id"]
    if fh_changed:
        check_handle_creator(c, user, fh_id)
    if data.get("etag") is None:
        raise BadRequest("The eTag of the node is required.")
    if data["etag"] != row["etag"]:
        raise PreconditionFailed(f"Object: {syn_id(eid)} was updated since you last fetched "
                                 "it, retrieve it again and re-apply the update")
    if moving:
        err = acl.decide(c, user, new_parent, "CREATE")
        if err is not None:
            raise Forbidden(f"You cannot move content into the new location, "
                            f"{syn_id(new_parent)}. {err.reason}")
        if ct != FILE and ct != PROJECT:
            storage.check_move_folder(c, eid, row["parent_id"], new_parent)
        if new_parent != ROOT_ID:
            storage.check_create_in_parent(c, new_parent, ct)
    if ct == FILE and (fh_changed or moving):
        storage.check_add_file(c, new_parent, fh_id)
    check_name_free(c, new_parent, name, self_id=eid)
    view_fields = view_schema.parse(c, data) if ct == view_schema.VIEW else None

    if ct == FILE:
        label = data.get("versionLabel")
        comment = data.get("versionComment")
        if fh_changed and not new_version:
            old = handle_row(c, cur["data_file_handle_id"]) \
                if cur["data_file_handle_id"] is not None else None
            new = handle_row(c, fh_id)
            same = (old is not None and new is not None and old["content_md5"]
                    and old["content_md5"] == new["content_md5"])
            if not same:
                new_version, label, comment = True, None, None
        if new_version:
            if label == (cur["version_label"] or str(cur["version_number"])):
                label = None
            if comment == cur["version_comment"]:
                comment = None
            _new_version(c, eid, fh_id, label, comment, user.id)
        else:
            c.execute("UPDATE versions SET version_label = ?, version_comment = ?,"
                      " data_file_handle_id = ? WHERE entity_id = ? AND version_number = ?",
                      (label or cur["version_label"], comment, fh_id, eid,
                       cur["version_number"]))
    if ct == view_schema.VIEW:
        view_schema.save(c, eid, view_fields)
    c.execute("UPDATE entities SET name = ?, parent_id = ?, description = ?, alias = ?"
              " WHERE id = ?", (name, new_parent, data.get("description"), alias, eid))
    touch(c, eid, user.id)


@repo.put("/entity/<raw_id>")
@context.scopes("view", "modify")
def update_entity(raw_id: str):
    user = context.require_user()
    data = context.body()
    eid = path_entity_id(raw_id)
    precheck_update(eid, data)
    new_version = request.args.get("newVersion", "false").strip().lower() == "true"
    store = context.store()
    with store.tx() as c:
        update_in(c, user, eid, data, new_version)
        out = entity_json(c, store.entity_row(c, eid))
    return jsonify(out)


# ---- delete (to the trash can) ------------------------------------------------------------
@repo.delete("/entity/<raw_id>")
@context.scopes("modify")
def delete_entity(raw_id: str):
    user = context.require_user()
    eid = path_entity_id(raw_id)
    store = context.store()
    with store.tx() as c:
        row = store.entity_row(c, eid)
        if eid in (ROOT_ID, trash.TRASH_ID):
            raise Forbidden(acl.lack("DELETE"))
        if row is None or Store.in_trash(c, eid):
            return ("", 204)
        acl.require(c, user, eid, "DELETE")
        trash.move_to_trash(c, row, user.id)
    return ("", 204)


# ---- bundles that write (EntityBundleCreate v2) ---------------------------------------------
def _bundle_entity(bundle: dict) -> dict:
    entity = bundle.get("entity")
    if not isinstance(entity, dict):
        raise BadRequest("Entity bundle must include an entity.")
    return entity


def _bundle_annotations(bundle: dict):
    annos = bundle.get("annotations")
    return None if annos is None else annotations.validate(annos.get("annotations")
                                                           if isinstance(annos, dict) else annos)


def _bundle_out(c, eid: int, with_annotations: bool) -> dict:
    row = context.store().entity_row(c, eid)
    out = {"entity": entity_json(c, row), "entityType": entity_type_enum(row["concrete_type"])}
    if with_annotations:
        out["annotations"] = annotations.annotations_json(c, row)
    return out


@repo.post("/entity/bundle2/create")
@context.scopes("view", "modify")
def create_bundle():
    user = context.require_user()
    bundle = context.body()
    data = _bundle_entity(bundle)
    precheck_create(data)
    annos = _bundle_annotations(bundle)
    with context.store().tx() as c:
        eid = create_in(c, user, data)
        if annos is not None:
            annotations.put(c, eid, annos)
        out = _bundle_out(c, eid, annos is not None)
    return jsonify(out), 201


@repo.put("/entity/<raw_id>/bundle2")
@context.scopes("view", "modify")
def update_bundle(raw_id: str):
    user = context.require_user()
    bundle = context.body()
    eid = path_entity_id(raw_id)
    data = _bundle_entity(bundle)
    precheck_update(eid, data)
    annos = _bundle_annotations(bundle)
    with context.store().tx() as c:
        update_in(c, user, eid, data, False)
        if annos is not None:
            annotations.put(c, eid, annos)
        out = _bundle_out(c, eid, annos is not None)
    return jsonify(out)
