"""Contract tests of entity CRUD (synapse-api.md §3.1-3.5, 3.12): create/get/update/delete,
name and parent rules, certification, permissions, scopes, etags, versions and the trash can.

``upload`` (a small multipart upload returning a file handle id) is shared with the other
entity/ACL test modules.
"""

from __future__ import annotations

import hashlib
import time

import requests

P = "org.sagebionetworks.repo.model."
INVALID_NAME = ("Invalid Name: '{}'. Names may only contain: letters, numbers, spaces, "
                "underscores, hyphens, periods, plus signs, apostrophes, and parentheses")


def upload(api, content: bytes = b"hello world", name: str = "data.txt") -> str:
    """Multipart-upload ``content`` to Synapse storage as the api's user; return the handle id."""
    md5 = hashlib.md5(content).hexdigest()
    status = api.ok(api.post("/file/multipart", {
        "concreteType": P + "file.MultipartUploadRequest", "contentMD5Hex": md5,
        "fileName": name, "fileSizeBytes": len(content), "partSizeBytes": 5 * 1024 * 1024,
        "contentType": "text/plain", "storageLocationId": 1}, prefix="file"), 201)
    uid = status["uploadId"]
    urls = api.ok(api.post(f"/file/multipart/{uid}/presigned/url/batch",
                           {"uploadId": uid, "partNumbers": [1]}, prefix="file"), 201)
    part = urls["partPresignedUrls"][0]
    put = requests.put(part["uploadPresignedUrl"], data=content,
                       headers=part.get("signedHeaders") or {}, timeout=60)
    assert put.status_code == 200, put.text
    added = api.ok(api.put(f"/file/multipart/{uid}/add/1?partMD5Hex={md5}", prefix="file"), 201)
    assert added["addPartState"] == "ADD_SUCCESS", added
    done = api.ok(api.put(f"/file/multipart/{uid}/complete", prefix="file"), 201)
    return done["resultFileHandleId"]


def file_entity(api, parent: str, name: str, fh: str, **extra) -> dict:
    return api.create("FileEntity", name, parent, dataFileHandleId=fh, **extra)


def grant(api, eid, principal, access, create=False):
    """Add ``principal`` with ``access`` to the ACL of ``eid`` (creating it if asked)."""
    if create:
        return api.ok(api.post(f"/entity/{eid}/acl", {"resourceAccess": [
            {"principalId": principal, "accessType": access}]}), 201)
    acl = api.ok(api.get(f"/entity/{eid}/acl"), 200)
    acl["resourceAccess"].append({"principalId": principal, "accessType": access})
    return api.ok(api.put(f"/entity/{eid}/acl", acl), 200)


def reason(resp) -> str:
    return resp.json()["reason"]


# ---- create / get -------------------------------------------------------------------------
def test_create_project_and_folder_shapes(user):
    api = user.api
    proj = api.project()
    assert proj["parentId"] == "syn4489"
    assert proj["concreteType"] == P + "Project"
    assert proj["createdBy"] == user.id and proj["modifiedBy"] == user.id
    assert proj["id"].startswith("syn") and len(proj["etag"]) == 36
    assert proj["createdOn"].endswith("Z") and len(proj["createdOn"]) == 24
    assert "versionNumber" not in proj
    folder = api.folder(proj["id"], "data")
    assert folder["parentId"] == proj["id"]
    assert "versionNumber" not in folder and "dataFileHandleId" not in folder
    got = api.ok(api.get(f"/entity/{folder['id']}"), 200)
    assert got == folder
    # numeric ids work in paths
    assert api.ok(api.get(f"/entity/{folder['id'][3:]}"), 200)["id"] == folder["id"]


def test_get_missing_and_forbidden(emulator, user):
    resp = user.api.get("/entity/syn999999999")
    assert resp.status_code == 404
    assert reason(resp) == "Resource: 'syn999999999' does not exist"
    proj = user.api.project()
    other = emulator.new_user()
    resp = other.api.get(f"/entity/{proj['id']}")
    assert resp.status_code == 403
    assert reason(resp) == "You lack READ access to the requested entity."
    assert emulator.api(None).get(f"/entity/{proj['id']}").status_code == 403


def test_name_rules(user):
    api = user.api
    proj = api.project()
    pid = proj["id"]
    for bad in ("a/b", "a*b", "tab\there", "é"):
        resp = api.post("/entity", {"name": bad, "parentId": pid, "concreteType": P + "Folder"})
        assert resp.status_code == 400, bad
        assert reason(resp) == INVALID_NAME.format(bad.strip())
    resp = api.post("/entity", {"name": "x" * 257, "parentId": pid, "concreteType": P + "Folder"})
    assert (resp.status_code, reason(resp)) == (400, "Name length cannot be longer than 256 characters.")
    for blank in ("", "   "):
        resp = api.post("/entity", {"name": blank, "parentId": pid, "concreteType": P + "Folder"})
        assert (resp.status_code, reason(resp)) == (
            400, "Name cannot be only whitespace or empty string")
    ok = api.folder(pid, "  ok name, (v1) +'x'-_.  ")
    assert ok["name"] == "ok name, (v1) +'x'-_."
    assert api.folder(pid, "y" * 256)["name"] == "y" * 256
    unnamed = api.ok(api.post("/entity", {"parentId": pid, "concreteType": P + "Folder"}), 201)
    assert unnamed["name"] == unnamed["id"]


def test_name_uniqueness_is_per_parent_and_case_sensitive(user):
    api = user.api
    pid = api.project()["id"]
    api.folder(pid, "Data")
    resp = api.post("/entity", {"name": "Data", "parentId": pid, "concreteType": P + "Folder"})
    assert resp.status_code == 409
    assert reason(resp) == f"An entity with the name: Data already exists with a parentId: {pid}"
    # a trimmed clash is a clash too
    assert api.post("/entity", {"name": " Data ", "parentId": pid,
                                "concreteType": P + "Folder"}).status_code == 409
    assert api.folder(pid, "data")["name"] == "data"
    sub = api.folder(pid, "sub")
    assert api.folder(sub["id"], "Data")["parentId"] == sub["id"]


def test_parent_type_rules(user):
    api = user.api
    proj = api.project()
    folder = api.folder(proj["id"], "f")
    resp = api.post("/entity", {"name": "x", "concreteType": P + "Folder"})
    assert (resp.status_code, reason(resp)) == (
        400, f"Entity type: {P}Folder cannot have a parent of type: null")
    resp = api.post("/entity", {"name": "x", "parentId": "syn4489", "concreteType": P + "Folder"})
    assert (resp.status_code, reason(resp)) == (
        400, f"Entity type: {P}Folder cannot have a parent of type: null")
    resp = api.post("/entity", {"name": "x", "parentId": folder["id"],
                                "concreteType": P + "Project"})
    assert (resp.status_code, reason(resp)) == (
        400, f"Entity type: {P}Project cannot have a parent of type: {P}Folder")
    resp = api.post("/entity", {"name": "x", "parentId": "syn987654321",
                                "concreteType": P + "Folder"})
    assert (resp.status_code, reason(resp)) == (
        404, "The given parent: syn987654321 does not exist")
    explicit = api.ok(api.post("/entity", {"name": f"p{time.time_ns()}", "parentId": "syn4489",
                                           "concreteType": P + "Project"}), 201)
    assert explicit["parentId"] == "syn4489"


def test_certification_and_create_permission(emulator, user):
    uncertified = emulator.new_user(certified=False)
    proj = uncertified.api.project()  # projects need no certification
    resp = uncertified.api.post("/entity", {"name": "f", "parentId": proj["id"],
                                            "concreteType": P + "Folder"})
    assert (resp.status_code, reason(resp)) == (
        403, "Only certified users may create or update content in Synapse.")
    mine = user.api.project()
    resp = emulator.new_user().api.post("/entity", {"name": "f", "parentId": mine["id"],
                                                    "concreteType": P + "Folder"})
    assert (resp.status_code, reason(resp)) == (403, "You lack CREATE access to the requested entity.")


def test_view_only_token_cannot_create(emulator, user):
    proj = user.api.project()
    viewer = emulator.api(emulator.admin.ok(emulator.admin.post(
        f"/users/{user.id}/tokens", {"scopes": ["view"]}, prefix="admin"), 201)["accessToken"])
    resp = viewer.post("/entity", {"name": "f", "parentId": proj["id"],
                                   "concreteType": P + "Folder"})
    assert resp.status_code == 403
    body = resp.json()
    assert body["error"] == "insufficient_scope"
    assert body["reason"].startswith("insufficient_scope. Request lacks scope(s)")
    assert "modify" in body["reason"]
    assert viewer.get(f"/entity/{proj['id']}").status_code == 200
    assert viewer.delete(f"/entity/{proj['id']}").status_code == 403


# ---- update ---------------------------------------------------------------------------------
def test_update_rename_etag_and_412(user):
    api = user.api
    proj = api.project()
    folder = api.folder(proj["id"], "before")
    time.sleep(0.01)
    folder["name"] = "after"
    folder["description"] = "described"
    updated = api.ok(api.put(f"/entity/{folder['id']}", folder), 200)
    assert updated["name"] == "after" and updated["description"] == "described"
    assert updated["etag"] != folder["etag"]
    assert updated["modifiedOn"] > folder["modifiedOn"]
    assert updated["createdOn"] == folder["createdOn"]
    resp = api.put(f"/entity/{folder['id']}", folder)  # stale etag
    assert resp.status_code == 412
    assert reason(resp) == (f"Object: {folder['id']} was updated since you last fetched it, "
                            "retrieve it again and re-apply the update")
    no_etag = dict(updated)
    no_etag.pop("etag")
    assert api.put(f"/entity/{folder['id']}", no_etag).status_code == 400
    # the parent is not touched by a child's changes
    assert api.ok(api.get(f"/entity/{proj['id']}"), 200)["etag"] == proj["etag"]


def test_update_rename_conflict_and_bad_name(user):
    api = user.api
    pid = api.project()["id"]
    api.folder(pid, "taken")
    f = api.folder(pid, "free")
    resp = api.put(f"/entity/{f['id']}", dict(f, name="taken"))
    assert resp.status_code == 409
    resp = api.put(f"/entity/{f['id']}", dict(f, name="bad/name"))
    assert (resp.status_code, reason(resp)) == (400, INVALID_NAME.format("bad/name"))


def test_move_rules(emulator, user):
    api = user.api
    proj = api.project()
    a = api.folder(proj["id"], "a")
    b = api.folder(proj["id"], "b")
    child = api.folder(a["id"], "child")
    moved = api.ok(api.put(f"/entity/{child['id']}", dict(child, parentId=b["id"])), 200)
    assert moved["parentId"] == b["id"]
    assert api.ok(api.get(f"/entity/{a['id']}"), 200)["etag"] == a["etag"]
    assert api.ok(api.get(f"/entity/{b['id']}"), 200)["etag"] == b["etag"]
    # an entity cannot become its own ancestor
    b_now = api.ok(api.get(f"/entity/{b['id']}"), 200)
    resp = api.put(f"/entity/{b['id']}", dict(b_now, parentId=moved["id"]))
    assert (resp.status_code, reason(resp)) == (
        400, "Invalid hierarchy: an entity cannot be an ancestor of itself")
    resp = api.put(f"/entity/{b['id']}", dict(b_now, parentId=b["id"]))
    assert resp.status_code == 400
    # moving into somebody else's project needs CREATE there
    foreign = emulator.new_user().api.project()
    resp = api.put(f"/entity/{moved['id']}", dict(moved, parentId=foreign["id"]))
    assert resp.status_code == 403
    assert reason(resp) == (f"You cannot move content into the new location, {foreign['id']}. "
                            "You lack CREATE access to the requested entity.")
    # a clash in the new parent is a 409
    api.folder(a["id"], "child")
    resp = api.put(f"/entity/{moved['id']}", dict(moved, parentId=a["id"]))
    assert resp.status_code == 409


def test_move_needs_change_permissions(emulator, user):
    owner = user.api
    proj = owner.project()
    src = owner.folder(proj["id"], "src")
    dst = owner.folder(proj["id"], "dst")
    item = owner.folder(src["id"], "item")
    editor = emulator.new_user()
    grant(owner, proj["id"], int(editor.id), ["READ", "UPDATE", "CREATE"])
    renamed = editor.api.ok(editor.api.put(f"/entity/{item['id']}", dict(item, name="renamed")), 200)
    resp = editor.api.put(f"/entity/{item['id']}", dict(renamed, parentId=dst["id"]))
    assert (resp.status_code, reason(resp)) == (
        403, "CHANGE_PERMISSIONS is required to move to a new location")
    resp = emulator.new_user().api.put(f"/entity/{item['id']}", renamed)
    assert resp.status_code == 403


# ---- delete / trash -------------------------------------------------------------------------
def test_delete_moves_to_trash(emulator, user):
    api = user.api
    proj = api.project()
    folder = api.folder(proj["id"], "doomed")
    inner = api.folder(folder["id"], "inner")
    assert api.delete(f"/entity/{folder['id']}").status_code == 204
    for eid in (folder["id"], inner["id"]):
        resp = api.get(f"/entity/{eid}")
        assert (resp.status_code, reason(resp)) == (404, f"Entity {eid} is in trash can.")
    # deleting twice or deleting a missing entity succeeds silently
    assert api.delete(f"/entity/{folder['id']}").status_code == 204
    assert api.delete("/entity/syn999999998").status_code == 204
    # the name is free again; the parent was not touched
    assert api.folder(proj["id"], "doomed")["name"] == "doomed"
    assert api.ok(api.get(f"/entity/{proj['id']}"), 200)["etag"] == proj["etag"]
    view = api.ok(api.get("/trashcan/view"), 200)
    entry = next(e for e in view["results"] if e["entityId"] == folder["id"])
    assert entry["originalParentId"] == proj["id"] and entry["entityName"] == "doomed"
    # others cannot delete
    other_folder = api.folder(proj["id"], "keep")
    resp = emulator.new_user().api.delete(f"/entity/{other_folder['id']}")
    assert resp.status_code == 403


def test_restore_only_by_deleter(emulator, user):
    api = user.api
    proj = api.project()
    folder = api.folder(proj["id"], "back")
    api.ok(api.delete(f"/entity/{folder['id']}"), 204)
    assert emulator.new_user().api.put(f"/trashcan/restore/{folder['id']}").status_code == 403
    api.ok(api.put(f"/trashcan/restore/{folder['id']}"), 200)
    back = api.ok(api.get(f"/entity/{folder['id']}"), 200)
    assert back["name"] == "back" and back["parentId"] == proj["id"]
    assert back["etag"] != folder["etag"]
    assert api.put(f"/trashcan/restore/{folder['id']}").status_code == 404


# ---- files and versions ---------------------------------------------------------------------
def test_file_entity_rules(emulator, user):
    api = user.api
    pid = api.project()["id"]
    resp = api.post("/entity", {"name": "f.txt", "parentId": pid, "concreteType": P + "FileEntity"})
    assert (resp.status_code, reason(resp)) == (400, "FileEntity.dataFileHandleId cannot be null")
    fh = upload(api)
    resp = api.post("/entity", {"name": "f.txt", "parentId": pid, "concreteType": P + "FileEntity",
                                "dataFileHandleId": fh, "fileNameOverride": "x"})
    assert (resp.status_code, reason(resp)) == (
        400, "fileNameOverride field is deprecated and should not be set.")
    other = emulator.new_user()
    other_pid = other.api.project()["id"]
    resp = other.api.post("/entity", {"name": "f.txt", "parentId": other_pid,
                                      "concreteType": P + "FileEntity", "dataFileHandleId": fh})
    assert resp.status_code == 403
    assert reason(resp) == ("Only the creator of a FileHandle can access it directly by its ID.  "
                            f"FileHandleId = '{fh}', UserId = '{other.id}'")
    f = file_entity(api, pid, "f.txt", fh)
    assert (f["versionNumber"], f["versionLabel"], f["isLatestVersion"]) == (1, "1", True)
    assert f["dataFileHandleId"] == fh
    assert api.ok(api.get(f"/entity/{f['id']}"), 200) == f


def test_file_versioning(user):
    api = user.api
    pid = api.project()["id"]
    fh1 = upload(api, b"one")
    f = file_entity(api, pid, "v.txt", fh1, versionComment="first")
    # same MD5 -> replaced in place
    fh1b = upload(api, b"one", "other-name.txt")
    same = api.ok(api.put(f"/entity/{f['id']}", dict(f, dataFileHandleId=fh1b)), 200)
    assert same["versionNumber"] == 1 and same["dataFileHandleId"] == fh1b
    # different MD5 -> automatic new version, label/comment cleared
    fh2 = upload(api, b"two two")
    v2 = api.ok(api.put(f"/entity/{f['id']}", dict(same, dataFileHandleId=fh2)), 200)
    assert (v2["versionNumber"], v2["versionLabel"], v2["dataFileHandleId"]) == (2, "2", fh2)
    assert "versionComment" not in v2
    # explicit newVersion with a label
    v3 = api.ok(api.put(f"/entity/{f['id']}?newVersion=true",
                        dict(v2, versionLabel="release", versionComment="c3")), 200)
    assert (v3["versionNumber"], v3["versionLabel"], v3["versionComment"]) == (3, "release", "c3")
    assert v3["dataFileHandleId"] == fh2
    old = api.ok(api.get(f"/entity/{f['id']}/version/1"), 200)
    assert (old["versionNumber"], old["isLatestVersion"], old["dataFileHandleId"]) == (1, False, fh1b)
    assert old["versionComment"] == "first"
    assert api.get(f"/entity/{f['id']}/version/9").status_code == 404
    page = api.ok(api.get(f"/entity/{f['id']}/version?offset=0&limit=10"), 200)
    assert page["totalNumberOfResults"] == 3
    assert [v["versionNumber"] for v in page["results"]] == [3, 2, 1]
    top = page["results"][0]
    assert top["isLatestVersion"] is True and top["id"] == f["id"]
    assert top["contentMd5"] == hashlib.md5(b"two two").hexdigest()
    assert top["contentSize"] == "7"
    assert page["results"][2]["contentMd5"] == hashlib.md5(b"one").hexdigest()
    assert page["results"][2]["versionComment"] == "first"
    page = api.ok(api.get(f"/entity/{f['id']}/version?offset=1&limit=1"), 200)
    assert [v["versionNumber"] for v in page["results"]] == [2]


def test_entity_type_endpoint(user):
    api = user.api
    proj = api.project()
    header = api.ok(api.get(f"/entity/{proj['id']}/type"), 200)
    assert header["id"] == proj["id"] and header["type"] == P + "Project"
    assert header["name"] == proj["name"]


def test_version_delete_filehandle_swap_and_filehandles(emulator, user):
    api = user.api
    pid = api.project()["id"]
    fh1 = upload(api, b"alpha")
    f = file_entity(api, pid, "s.txt", fh1)
    # same-MD5 swap of a revision's handle
    fh1b = upload(api, b"alpha", "copy.txt")
    resp = api.put(f"/entity/{f['id']}/version/1/filehandle",
                   {"oldFileHandleId": fh1, "newFileHandleId": fh1b})
    assert resp.status_code == 200
    swapped = api.ok(api.get(f"/entity/{f['id']}"), 200)
    assert swapped["dataFileHandleId"] == fh1b and swapped["versionNumber"] == 1
    assert swapped["etag"] != f["etag"]
    resp = api.put(f"/entity/{f['id']}/version/1/filehandle",
                   {"oldFileHandleId": fh1, "newFileHandleId": fh1b})
    assert resp.status_code == 412
    fh2 = upload(api, b"beta")
    resp = api.put(f"/entity/{f['id']}/version/1/filehandle",
                   {"oldFileHandleId": fh1b, "newFileHandleId": fh2})
    assert (resp.status_code, reason(resp)) == (
        412, "The MD5 of the new file handle does not match the MD5 of the current file handle, "
             "a new version must be created.")
    resp = api.put(f"/entity/{f['id']}/version/5/filehandle",
                   {"oldFileHandleId": fh1b, "newFileHandleId": fh2})
    assert resp.status_code == 404
    # filehandles of the current version (needs DOWNLOAD)
    listed = api.ok(api.get(f"/entity/{f['id']}/filehandles"), 200)
    assert [h["id"] for h in listed["list"]] == [fh1b]
    assert emulator.new_user().api.get(f"/entity/{f['id']}/filehandles").status_code == 403
    # delete a version: the previous one becomes current again; the last one cannot go
    v2 = api.ok(api.put(f"/entity/{f['id']}", dict(swapped, dataFileHandleId=fh2)), 200)
    assert v2["versionNumber"] == 2
    assert api.delete(f"/entity/{f['id']}/version/2").status_code == 204
    now = api.ok(api.get(f"/entity/{f['id']}"), 200)
    assert (now["versionNumber"], now["dataFileHandleId"]) == (1, fh1b)
    assert api.delete(f"/entity/{f['id']}/version/1").status_code == 400


def test_trash_restore_rules_and_purge(user):
    api = user.api
    proj = api.project()
    outer = api.folder(proj["id"], "outer")
    inner = api.folder(outer["id"], "inner")
    api.ok(api.delete(f"/entity/{inner['id']}"), 204)
    assert api.put(f"/trashcan/trash/{outer['id']}").status_code == 200
    resp = api.put(f"/trashcan/restore/{inner['id']}")  # its parent is in the trash too
    assert resp.status_code == 403
    # restore to another parent instead
    other = api.folder(proj["id"], "other")
    api.ok(api.put(f"/trashcan/restore/{inner['id']}/{other['id']}"), 200)
    assert api.ok(api.get(f"/entity/{inner['id']}"), 200)["parentId"] == other["id"]
    # a name clash blocks a restore
    api.folder(proj["id"], "outer")
    assert api.put(f"/trashcan/restore/{outer['id']}").status_code == 409
    api.ok(api.put(f"/trashcan/purge/{outer['id']}"), 200)
    resp = api.get(f"/entity/{outer['id']}")
    assert (resp.status_code, reason(resp)) == (404, f"Resource: '{outer['id']}' does not exist")
    ids = [e["entityId"] for e in api.ok(api.get("/trashcan/view"), 200)["results"]]
    assert outer["id"] not in ids
