"""Contract tests of entity ACLs and permissions: the ACL REST API, inheritance from the
benefactor, permission checks across users, public / authenticated-users principals, the
admin, access requirements vs DOWNLOAD, trash and the STS-folder rule."""

from __future__ import annotations

from tests.emulator.test_entities import P, file_entity, grant, reason, upload

PUBLIC = 273948
AUTHENTICATED = 273949
ALL = ["CHANGE_PERMISSIONS", "CHANGE_SETTINGS", "CREATE", "DELETE", "DOWNLOAD", "MODERATE",
       "READ", "UPDATE"]


def test_project_acl_gives_creator_everything(user):
    api = user.api
    proj = api.project()
    acl = api.ok(api.get(f"/entity/{proj['id']}/acl"), 200)
    assert set(acl) >= {"id", "etag", "creationDate", "resourceAccess"}
    assert acl["id"] == proj["id"]
    assert acl["resourceAccess"] == [{"principalId": int(user.id), "accessType": ALL}]
    ben = api.ok(api.get(f"/entity/{proj['id']}/benefactor"), 200)
    assert ben["id"] == proj["id"]


def test_inherited_acl_is_404_and_benefactor(user):
    api = user.api
    proj = api.project()
    folder = api.folder(proj["id"], "f")
    resp = api.get(f"/entity/{folder['id']}/acl")
    assert resp.status_code == 404
    assert reason(resp).startswith("The requested ACL does not exist. This entity inherits its "
                                   "permissions from: ")
    assert reason(resp).endswith(f"/repo/v1/entity/{proj['id']}/acl")
    assert api.ok(api.get(f"/entity/{folder['id']}/benefactor"), 200)["id"] == proj["id"]


def test_create_update_delete_acl(emulator, user):
    api = user.api
    proj = api.project()
    folder = api.folder(proj["id"], "f")
    inner = api.folder(folder["id"], "inner")
    acl = api.ok(api.post(f"/entity/{folder['id']}/acl", {"resourceAccess": [
        {"principalId": int(user.id), "accessType": ["READ", "CHANGE_PERMISSIONS", "UPDATE"]}]}), 201)
    assert acl["id"] == folder["id"]
    # the entity's etag changes with its ACL; the benefactor of the subtree moves
    now = api.ok(api.get(f"/entity/{folder['id']}"), 200)
    assert now["etag"] != folder["etag"]
    assert api.ok(api.get(f"/entity/{inner['id']}/benefactor"), 200)["id"] == folder["id"]
    resp = api.post(f"/entity/{folder['id']}/acl", {"resourceAccess": []})
    assert (resp.status_code, reason(resp)) == (403, "Resource already has an ACL.")
    # update with etag; a stale etag is 412
    reader = emulator.new_user()
    acl["resourceAccess"].append({"principalId": int(reader.id), "accessType": ["READ"]})
    updated = api.ok(api.put(f"/entity/{folder['id']}/acl", acl), 200)
    assert updated["etag"] != acl["etag"]
    assert reader.api.get(f"/entity/{inner['id']}").status_code == 200
    assert api.put(f"/entity/{folder['id']}/acl", acl).status_code == 412
    # PUT on an inheriting entity is refused
    resp = api.put(f"/entity/{inner['id']}/acl", dict(acl, id=inner["id"]))
    assert resp.status_code == 403
    # restore inheritance
    assert api.delete(f"/entity/{folder['id']}/acl").status_code == 204
    assert api.get(f"/entity/{folder['id']}/acl").status_code == 404
    assert reader.api.get(f"/entity/{inner['id']}").status_code == 403
    resp = api.delete(f"/entity/{folder['id']}/acl")
    assert (resp.status_code, reason(resp)) == (403, "Resource already inherits its permissions.")
    resp = api.delete(f"/entity/{proj['id']}/acl")
    assert (resp.status_code, reason(resp)) == (403, "Cannot remove the ACL of a project")


def test_acl_content_validation(emulator, user):
    api = user.api
    proj = api.project()
    folder = api.folder(proj["id"], "f")
    resp = api.post(f"/entity/{folder['id']}/acl", {"resourceAccess": [
        {"principalId": int(user.id), "accessType": []}]})
    assert (resp.status_code, reason(resp)) == (400, "No access types specified.")
    # a non-owner with CHANGE_PERMISSIONS may not revoke their own
    manager = emulator.new_user()
    grant(api, proj["id"], int(manager.id), ["READ", "CHANGE_PERMISSIONS"])
    resp = manager.api.post(f"/entity/{folder['id']}/acl", {"resourceAccess": [
        {"principalId": int(user.id), "accessType": ["READ"]}]})
    assert (resp.status_code, reason(resp)) == (
        400, "Caller is trying to revoke their own ACL editing permissions.")
    # ... but the owner may
    api.ok(api.post(f"/entity/{folder['id']}/acl", {"resourceAccess": [
        {"principalId": int(manager.id), "accessType": ["READ"]}]}), 201)


def test_permissions_across_users(emulator, user):
    owner = user.api
    proj = owner.project()
    folder = owner.folder(proj["id"], "f")
    other = emulator.new_user()
    assert other.api.get(f"/entity/{folder['id']}").status_code == 403
    assert other.api.get(f"/entity/{proj['id']}/acl").status_code == 403
    grant(owner, proj["id"], int(other.id), ["READ"])
    got = other.api.ok(other.api.get(f"/entity/{folder['id']}"), 200)
    resp = other.api.put(f"/entity/{folder['id']}", dict(got, name="x"))
    assert (resp.status_code, reason(resp)) == (403, "You lack UPDATE access to the requested entity.")
    resp = other.api.delete(f"/entity/{folder['id']}")
    assert (resp.status_code, reason(resp)) == (403, "You lack DELETE access to the requested entity.")
    resp = other.api.post(f"/entity/{folder['id']}/acl", {"resourceAccess": []})
    assert (resp.status_code, reason(resp)) == (
        403, "You lack CHANGE_PERMISSIONS access to the requested entity.")
    perms = other.api.ok(other.api.post(f"/entity/{folder['id']}/bundle2",
                                        {"includePermissions": True}), 200)["permissions"]
    assert perms["canView"] and not perms["canEdit"] and not perms["canDownload"]
    assert not perms["canAddChild"] and not perms["canDelete"]
    grant(owner, proj["id"], int(other.id), ["UPDATE", "DELETE"])
    other.api.ok(other.api.put(f"/entity/{folder['id']}", dict(got, name="x")), 200)
    assert other.api.delete(f"/entity/{folder['id']}").status_code == 204


def test_public_and_authenticated_principals(emulator, user):
    owner = user.api
    proj = owner.project()
    folder = owner.folder(proj["id"], "f")
    anon = emulator.api(None)
    other = emulator.new_user()
    grant(owner, proj["id"], AUTHENTICATED, ["READ"])
    assert other.api.get(f"/entity/{folder['id']}").status_code == 200
    assert anon.get(f"/entity/{folder['id']}").status_code == 403
    grant(owner, proj["id"], PUBLIC, ["READ"])
    assert anon.get(f"/entity/{folder['id']}").status_code == 200
    perms = anon.ok(anon.post(f"/entity/{folder['id']}/bundle2",
                              {"includePermissions": True}), 200)["permissions"]
    assert perms["canView"] and perms["canPublicRead"] and not perms["canEdit"]
    assert anon.post("/entity/children", {"parentId": proj["id"],
                                          "includeTypes": ["folder"]}).status_code == 200


def test_admin_has_every_permission(emulator, user):
    proj = user.api.project()
    folder = user.api.folder(proj["id"], "f")
    admin = emulator.admin
    got = admin.ok(admin.get(f"/entity/{folder['id']}"), 200)
    admin.ok(admin.put(f"/entity/{folder['id']}", dict(got, name="by-admin")), 200)
    admin.ok(admin.get(f"/entity/{proj['id']}/acl"), 200)
    assert admin.delete(f"/entity/{folder['id']}").status_code == 204


def test_download_denied_while_requirement_unmet(emulator, user):
    api = user.api
    proj = api.project()
    f = file_entity(api, proj["id"], "x.txt", upload(api, b"x"))
    ar = emulator.admin.ok(emulator.admin.post("/accessRequirements", {"entityId": proj["id"]},
                                               prefix="admin"), 201)
    perms = api.ok(api.post(f"/entity/{f['id']}/bundle2", {"includePermissions": True}),
                   200)["permissions"]
    assert perms["canView"] and not perms["canDownload"]
    emulator.admin.ok(emulator.admin.post(
        f"/accessRequirements/{ar['id']}/approvals/{user.id}", prefix="admin"), 204)
    perms = api.ok(api.post(f"/entity/{f['id']}/bundle2", {"includePermissions": True}),
                   200)["permissions"]
    assert perms["canDownload"]


def test_trash_drops_subtree_acls(user):
    api = user.api
    proj = api.project()
    folder = api.folder(proj["id"], "f")
    inner = api.folder(folder["id"], "inner")
    grant(api, inner["id"], int(user.id), ["READ", "CHANGE_PERMISSIONS"], create=True)
    api.ok(api.delete(f"/entity/{folder['id']}"), 204)
    assert api.get(f"/entity/{inner['id']}/acl").status_code == 404
    api.ok(api.put(f"/trashcan/restore/{folder['id']}"), 200)
    assert api.ok(api.get(f"/entity/{inner['id']}/benefactor"), 200)["id"] == proj["id"]
    assert api.get(f"/entity/{inner['id']}/acl").status_code == 404


def test_no_acl_override_inside_sts_folder(user):
    api = user.api
    proj = api.project()
    sts = api.folder(proj["id"], "sts")
    loc = api.ok(api.post("/storageLocation", {
        "concreteType": P + "project.S3StorageLocationSetting", "uploadType": "S3",
        "stsEnabled": True}), 201)
    api.ok(api.post("/projectSettings", {
        "concreteType": P + "project.UploadDestinationListSetting", "settingsType": "upload",
        "projectId": sts["id"], "locations": [loc["storageLocationId"]]}), 201)
    child = api.folder(sts["id"], "child")
    body = {"resourceAccess": [{"principalId": int(user.id), "accessType": ALL}]}
    resp = api.post(f"/entity/{child['id']}/acl", body)
    assert (resp.status_code, reason(resp)) == (
        400, "Cannot override ACLs in a child of an STS-enabled folder")
    # the STS folder itself may have an ACL
    api.ok(api.post(f"/entity/{sts['id']}/acl", body), 201)
