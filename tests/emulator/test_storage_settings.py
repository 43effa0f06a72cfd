"""Contract tests: project settings (§5.2) and every STS restriction of §5.4."""

from __future__ import annotations

from tests.emulator.test_storage_support import (UPLOAD_LIST, external_location, file_entity,
                                                 grant, multipart_upload, reason,
                                                 register_external, set_upload, sts_folder,
                                                 synapse_location, unique)


def test_project_setting_crud(emulator, user):
    project = user.api.project()
    loc = external_location(emulator, user, sts=False)
    created = user.api.ok(set_upload(user, project["id"], [loc["storageLocationId"], 1]), 201)
    assert created["concreteType"] == UPLOAD_LIST
    assert created["projectId"] == project["id"] and created["settingsType"] == "upload"
    assert created["locations"] == [loc["storageLocationId"], 1]
    assert isinstance(created["id"], str) and created["etag"]
    by_type = user.api.ok(user.api.get(f"/projectSettings/{project['id']}/type/upload"), 200)
    assert by_type == created
    assert user.api.ok(user.api.get(f"/projectSettings/{created['id']}"), 200) == created
    dest = user.api.ok(user.api.get(f"/entity/{project['id']}/uploadDestination",
                                    prefix="file"), 200)
    assert dest["storageLocationId"] == loc["storageLocationId"]  # locations[0] is the default
    # PUT: 200 with an empty body; the etag changes; a stale etag is 412
    update = dict(created, locations=[1])
    resp = user.api.put("/projectSettings", update)
    assert resp.status_code == 200 and resp.content == b""
    now = user.api.ok(user.api.get(f"/projectSettings/{project['id']}/type/upload"), 200)
    assert now["locations"] == [1] and now["etag"] != created["etag"]
    resp = user.api.put("/projectSettings", update)
    assert resp.status_code == 412
    assert reason(resp) == ("Project setting was updated since you last fetched it, retrieve it "
                            "again and reapply the update.")
    moved = dict(now, projectId=user.api.project()["id"])
    resp = user.api.put("/projectSettings", moved)
    assert resp.status_code == 400 and "cannot change the project id" in reason(resp)
    # DELETE: 204, then the type lookup is an empty 200
    assert user.api.delete(f"/projectSettings/{created['id']}").status_code == 204
    resp = user.api.get(f"/projectSettings/{project['id']}/type/upload")
    assert resp.status_code == 200 and resp.content == b""
    assert user.api.get(f"/projectSettings/{created['id']}").status_code == 404


def test_setting_type_lookup_is_not_inherited(emulator, user):
    project = user.api.project()
    user.api.ok(set_upload(user, project["id"], [1]), 201)
    folder = user.api.folder(project["id"], "child")
    resp = user.api.get(f"/projectSettings/{folder['id']}/type/upload")
    assert resp.status_code == 200 and resp.content == b""


def test_project_setting_validation(emulator, user):
    project = user.api.project()
    pid = project["id"]
    resp = set_upload(user, pid, [])
    assert resp.status_code == 400
    assert reason(resp) == "settings.locations must at least have one entry"
    resp = set_upload(user, pid, [1] * 11)
    assert resp.status_code == 400
    assert reason(resp) == "The maximum number of settings.locations is limited to 10"
    resp = set_upload(user, pid, [1, 987654321])
    assert resp.status_code == 400
    assert reason(resp) == "uploadId 987654321 is not a valid upload destination location"
    resp = set_upload(user, "syn987654321", [1])
    assert resp.status_code == 404
    fh = multipart_upload(user.api, b"x", "x.txt")
    f = user.api.ok(file_entity(user.api, pid, "f.txt", fh), 201)
    resp = set_upload(user, f["id"], [1])
    assert resp.status_code == 400
    assert reason(resp) == "The id is not the id of a project or folder entity"


def test_project_setting_permissions(emulator, user):
    project = user.api.project()
    other = emulator.new_user()
    resp = set_upload(other, project["id"], [1])
    assert resp.status_code == 403 and reason(resp) == "Cannot create settings for this project"
    resp = other.api.get(f"/projectSettings/{project['id']}/type/upload")
    assert resp.status_code == 403
    assert reason(resp) == (f"The current user does not have READ access on the project "
                            f"{project['id']}.")
    setting = user.api.ok(set_upload(user, project["id"], [1]), 201)
    assert other.api.get(f"/projectSettings/{setting['id']}").status_code == 403
    resp = other.api.put("/projectSettings", setting)
    assert resp.status_code == 403 and reason(resp) == "Cannot update settings on this project"
    resp = other.api.delete(f"/projectSettings/{setting['id']}")
    assert resp.status_code == 403 and reason(resp) == "Cannot delete settings from this project"


def test_only_the_owner_may_use_an_external_location(emulator, user):
    loc = external_location(emulator, user, sts=False)
    other = emulator.new_user()
    project = other.api.project()
    resp = set_upload(other, project["id"], [loc["storageLocationId"]])
    assert resp.status_code == 403
    assert reason(resp).startswith(f"Only the owner of the external S3 upload destination (user "
                                   f"{user.user_name}) can add this upload destination to a "
                                   "project.")
    # a Synapse-storage location of someone else is fine
    mine = synapse_location(user, sts=False)
    assert set_upload(other, project["id"], [mine["storageLocationId"]]).status_code == 201


def test_sts_only_on_a_folder_and_alone(emulator, user):
    loc = external_location(emulator, user)
    project = user.api.project()
    resp = set_upload(user, project["id"], [loc["storageLocationId"]])
    assert resp.status_code == 400 and reason(resp) == "Can only enable STS on a folder"
    folder = user.api.folder(project["id"], "f")
    resp = set_upload(user, folder["id"], [loc["storageLocationId"], 1])
    assert resp.status_code == 400
    assert reason(resp) == "An STS-enabled folder cannot add other upload destinations"
    resp = set_upload(user, folder["id"], [1, loc["storageLocationId"]])
    assert resp.status_code == 400
    assert reason(resp) == "An STS-enabled folder cannot add other upload destinations"


def test_sts_needs_an_empty_folder_counting_the_trash(emulator, user):
    loc = external_location(emulator, user)
    project = user.api.project()
    folder = user.api.folder(project["id"], "f")
    child = user.api.folder(folder["id"], "child")
    resp = set_upload(user, folder["id"], [loc["storageLocationId"]])
    assert resp.status_code == 400 and reason(resp) == "Can't enable STS in a non-empty folder"
    assert user.api.delete(f"/entity/{child['id']}").status_code == 204
    resp = set_upload(user, folder["id"], [loc["storageLocationId"]])
    assert resp.status_code == 400 and reason(resp) == "Can't enable STS in a non-empty folder"
    # the same rule applies when a PUT switches an existing setting to STS
    other = user.api.folder(project["id"], "g")
    setting = user.api.ok(set_upload(user, other["id"], [1]), 201)
    user.api.folder(other["id"], "child")
    resp = user.api.put("/projectSettings", dict(setting, locations=[loc["storageLocationId"]]))
    assert resp.status_code == 400 and reason(resp) == "Can't enable STS in a non-empty folder"


def test_cannot_disable_sts_in_a_non_empty_folder(emulator, user):
    _project, folder, loc = sts_folder(emulator, user)
    setting = user.api.ok(user.api.get(f"/projectSettings/{folder['id']}/type/upload"), 200)
    sub = user.api.folder(folder["id"], "sub")
    resp = user.api.put("/projectSettings", dict(setting, locations=[1]))
    assert resp.status_code == 400 and reason(resp) == "Can't disable STS in a non-empty folder"
    resp = user.api.delete(f"/projectSettings/{setting['id']}")
    assert resp.status_code == 400 and reason(resp) == "Can't disable STS in a non-empty folder"
    assert user.api.delete(f"/entity/{sub['id']}").status_code == 204
    # a trashed child still counts
    resp = user.api.delete(f"/projectSettings/{setting['id']}")
    assert resp.status_code == 400 and reason(resp) == "Can't disable STS in a non-empty folder"
    empty = user.api.folder(_project["id"], unique("e"))
    user.api.ok(set_upload(user, empty["id"], [loc["storageLocationId"]]), 201)
    s2 = user.api.ok(user.api.get(f"/projectSettings/{empty['id']}/type/upload"), 200)
    assert user.api.delete(f"/projectSettings/{s2['id']}").status_code == 204


def test_no_settings_under_an_sts_folder(emulator, user):
    _project, folder, _loc = sts_folder(emulator, user)
    sub = user.api.folder(folder["id"], "sub")
    for locations in ([1], [synapse_location(user, sts=True)["storageLocationId"]]):
        resp = set_upload(user, sub["id"], locations)
        assert resp.status_code == 400
        assert reason(resp) == "Can't override project settings in an STS-enabled folder path"


def test_files_must_match_the_sts_location(emulator, user):
    project, folder, loc = sts_folder(emulator, user)
    synapse_file = multipart_upload(user.api, b"plain", "plain.txt")
    resp = file_entity(user.api, folder["id"], "plain.txt", synapse_file)
    assert resp.status_code == 400
    assert reason(resp) == ("Folders with STS-enabled storage locations can only accept files "
                            "with the same storage location")
    sts_handle = user.api.ok(register_external(emulator, user, loc, b"sts data"), 200)
    resp = file_entity(user.api, project["id"], "sts.txt", sts_handle["id"])
    assert resp.status_code == 400
    assert reason(resp) == ("Files in STS-enabled storage locations can only be placed in folders"
                            " with the same storage location")
    sub = user.api.folder(folder["id"], "sub")
    user.api.ok(file_entity(user.api, sub["id"], "sts.txt", sts_handle["id"]), 201)


def test_folder_moves_respect_sts(emulator, user):
    project, folder, _loc = sts_folder(emulator, user)
    _p2, folder2, _loc2 = sts_folder(emulator, user)
    plain = user.api.folder(project["id"], "plain")
    inner = user.api.folder(folder["id"], "inner")

    def move(entity, parent):
        body = user.api.ok(user.api.get(f"/entity/{entity['id']}"), 200)
        return user.api.put(f"/entity/{entity['id']}", dict(body, parentId=parent["id"]))

    resp = move(folder, folder2)
    assert resp.status_code == 400
    assert reason(resp) == "Cannot place an STS-enabled folder inside another STS-enabled folder"
    resp = move(inner, plain)
    assert resp.status_code == 400
    assert reason(resp) == ("Folders in STS-enabled storage locations can only be placed in "
                            "folders with the same storage location")
    resp = move(plain, folder)
    assert resp.status_code == 400
    assert reason(resp) == "Non-STS-enabled folders cannot be placed inside STS-enabled folders"
    assert move(folder, plain).status_code == 200  # an STS root may move to a non-STS parent


def test_no_acl_on_children_of_an_sts_folder(emulator, user):
    _project, folder, _loc = sts_folder(emulator, user)
    sub = user.api.folder(folder["id"], "sub")
    other = emulator.new_user()
    resp = user.api.post(f"/entity/{sub['id']}/acl", {"id": sub["id"], "resourceAccess": [
        {"principalId": int(user.id), "accessType": ["READ", "CHANGE_PERMISSIONS"]}]})
    assert resp.status_code == 400
    assert reason(resp) == "Cannot override ACLs in a child of an STS-enabled folder"
    grant(user, folder["id"], other.id, ["READ"])  # the STS folder itself may have one


def test_only_files_and_folders_inside_sts_folders_unit(tmp_path):
    """The entity API can only create Projects, Folders and Files (and a Project can't live in a
    folder), so the "only Files and Folders" rule is checked on the module function directly."""
    import json

    import pytest

    from synfs.emulator import db, storage
    from synfs.emulator.errors import BadRequest

    store = db.Store(tmp_path / "unit.sqlite")
    try:
        with store.tx() as c:
            stamp = db.synapse_date()
            for eid, parent, ct in ((10, db.ROOT_ID, db.PROJECT), (11, 10, db.FOLDER),
                                    (12, 11, db.FOLDER)):
                c.execute("INSERT INTO entities(id, name, parent_id, concrete_type, etag,"
                          " created_on, created_by, modified_on, modified_by) VALUES"
                          " (?, ?, ?, ?, 'e', ?, 1, ?, 1)", (eid, f"n{eid}", parent, ct, stamp,
                                                            stamp))
            body = {"concreteType": storage.EXT_S3_SETTING, "bucket": "b", "stsEnabled": True,
                    "uploadType": "S3"}
            c.execute("INSERT INTO storage_locations(id, concrete_type, created_by, created_on,"
                      " etag, body, hash) VALUES (77, ?, 1, ?, 'e', ?, 'h')",
                      (storage.EXT_S3_SETTING, stamp, json.dumps(body)))
            c.execute("INSERT INTO project_settings(id, project_id, settings_type, concrete_type,"
                      " etag, locations) VALUES (1, 11, 'upload', ?, 'e', '[77]')",
                      (storage.UPLOAD_LIST,))
            for parent in (11, 12):
                with pytest.raises(BadRequest) as err:
                    storage.check_create_in_parent(c, parent, "org.sagebionetworks.repo.model.Link")
                assert err.value.reason == ("Can only create Files and Folders inside STS-enabled"
                                            " folders")
                storage.check_create_in_parent(c, parent, db.FOLDER)
                storage.check_create_in_parent(c, parent, db.FILE)
            storage.check_create_in_parent(c, 10, "org.sagebionetworks.repo.model.Link")
            assert storage.in_sts_folder(c, 12) and not storage.in_sts_folder(c, 11)
            assert not storage.in_sts_folder(c, 10)
            assert storage.effective_setting(c, 12)["project_id"] == 11
            assert storage.effective_location(c, 12)["storageLocationId"] == 77
            assert storage.effective_location(c, 10) == {
                "concreteType": storage.S3_SETTING, "storageLocationId": 1, "uploadType": "S3"}
            assert c.execute("SELECT id FROM storage_locations WHERE id = 1").fetchone()
    finally:
        store.close()
