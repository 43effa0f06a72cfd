"""Contract tests of listing and lookup (synapse-api.md §3.6-3.9): ``POST /entity/children``
(paging, tokens, sort orders, counts, visibility), ``POST /entity/child``,
``GET /entity/{id}/path`` and the entity bundle."""

from __future__ import annotations

import hashlib
import time

from tests.emulator.test_entities import P, file_entity, grant, reason, upload


def children(api, parent, types=("folder", "file"), **extra):
    body = {"parentId": parent, "includeTypes": list(types), **extra}
    return api.ok(api.post("/entity/children", body), 200)


def all_children(api, parent, **extra):
    names, token = [], None
    while True:
        page = children(api, parent, nextPageToken=token, **extra)
        names += [h["name"] for h in page["page"]]
        token = page.get("nextPageToken")
        if not token:
            return names


def test_children_paging_and_tokens(user):
    api = user.api
    pid = api.project()["id"]
    names = [f"f{i:03d}" for i in range(105)]
    for n in names:
        api.folder(pid, n)
    first = children(api, pid)
    assert len(first["page"]) == 50 and first["nextPageToken"] == "50a50"
    assert "totalChildCount" not in first and "sumFileSizesBytes" not in first
    second = children(api, pid, nextPageToken="50a50")
    assert second["nextPageToken"] == "50a100"
    last = children(api, pid, nextPageToken="50a100")
    assert [h["name"] for h in last["page"]] == names[100:]
    assert last.get("nextPageToken") is None
    assert all_children(api, pid) == names
    small = children(api, pid, nextPageToken="10a5")
    assert [h["name"] for h in small["page"]] == names[5:15] and small["nextPageToken"] == "10a15"
    for bad in ("abc", "50", "a50", "-1a0"):
        resp = api.post("/entity/children", {"parentId": pid, "includeTypes": ["folder"],
                                             "nextPageToken": bad})
        assert (resp.status_code, reason(resp)) == (400, f"Unknow token format: {bad}")
    resp = api.post("/entity/children", {"parentId": pid, "includeTypes": ["folder"],
                                         "nextPageToken": "51a0"})
    assert (resp.status_code, reason(resp)) == (400, "Limit must not exceed: 50")
    counted = children(api, pid, includeTotalChildCount=True, includeSumFileSizes=True)
    assert counted["totalChildCount"] == 105 and counted["sumFileSizesBytes"] == 0


def test_children_request_validation(user):
    api = user.api
    pid = api.project()["id"]
    resp = api.post("/entity/children", {"parentId": pid, "includeTypes": []})
    assert (resp.status_code, reason(resp)) == (
        400, "EntityChildrenRequest.includeTypes must include at least one type")
    resp = api.post("/entity/children", {"parentId": pid})
    assert resp.status_code == 400
    resp = api.post("/entity/children", {"parentId": "syn999999997", "includeTypes": ["file"]})
    assert resp.status_code == 404


def test_children_sorting_is_bytewise(user):
    api = user.api
    pid = api.project()["id"]
    for n in ("b", "B", "_x", "a", "A", "10", "9", "Z z"):
        api.folder(pid, n)
        time.sleep(0.002)
    assert all_children(api, pid) == ["10", "9", "A", "B", "Z z", "_x", "a", "b"]
    assert all_children(api, pid, sortBy="NAME", sortDirection="DESC") == \
        ["b", "a", "_x", "Z z", "B", "A", "9", "10"]
    created = ["b", "B", "_x", "a", "A", "10", "9", "Z z"]
    assert all_children(api, pid, sortBy="CREATED_ON") == created
    assert all_children(api, pid, sortBy="CREATED_ON", sortDirection="DESC") == created[::-1]
    first = children(api, pid, sortBy="CREATED_ON")["page"][0]
    entity = api.ok(api.get(f"/entity/{first['id']}"), 200)
    api.ok(api.put(f"/entity/{first['id']}", dict(entity, description="touched")), 200)
    assert all_children(api, pid, sortBy="MODIFIED_ON")[-1] == "b"


def test_children_types_headers_and_sizes(user):
    api = user.api
    proj = api.project()
    pid = proj["id"]
    folder = api.folder(pid, "dir")
    f1 = file_entity(api, pid, "one.txt", upload(api, b"12345"))
    file_entity(api, pid, "two.txt", upload(api, b"1234567890"))
    files = children(api, pid, types=["file"], includeTotalChildCount=True,
                     includeSumFileSizes=True)
    assert [h["name"] for h in files["page"]] == ["one.txt", "two.txt"]
    assert files["totalChildCount"] == 2 and files["sumFileSizesBytes"] == 15
    header = files["page"][0]
    assert header["type"] == P + "FileEntity"
    assert header["id"] == f1["id"] and header["versionNumber"] == 1
    assert header["versionLabel"] == "1" and header["isLatestVersion"] is True
    assert header["benefactorId"] == int(pid[3:])
    assert header["createdBy"] == user.id and header["modifiedOn"] == f1["modifiedOn"]
    assert "etag" not in header and "dataFileHandleId" not in header
    dirs = children(api, pid, types=["folder"])["page"]
    assert [(h["name"], h["type"], h["versionNumber"]) for h in dirs] == [
        ("dir", P + "Folder", 1)]
    assert children(api, pid, types=["table", "link"])["page"] == []
    # trashed children disappear
    api.ok(api.delete(f"/entity/{folder['id']}"), 204)
    assert [h["name"] for h in children(api, pid)["page"]] == ["one.txt", "two.txt"]


def test_children_exclude_unreadable_and_project_listing(emulator, user):
    owner = user.api
    proj = owner.project()
    pid = proj["id"]
    owner.folder(pid, "shared")
    private = owner.folder(pid, "private")
    owner.ok(owner.post(f"/entity/{private['id']}/acl", {"resourceAccess": [
        {"principalId": int(user.id), "accessType": ["READ", "CHANGE_PERMISSIONS"]}]}), 201)
    reader = emulator.new_user()
    grant(owner, pid, int(reader.id), ["READ"])
    assert [h["name"] for h in children(reader.api, pid)["page"]] == ["shared"]
    assert [h["name"] for h in children(owner, pid)["page"]] == ["private", "shared"]
    priv_header = children(owner, pid)["page"][0]
    assert priv_header["benefactorId"] == int(private["id"][3:])
    stranger = emulator.new_user()
    resp = stranger.api.post("/entity/children", {"parentId": pid, "includeTypes": ["folder"]})
    assert (resp.status_code, reason(resp)) == (403, "You lack READ access to the requested entity.")
    # parentId null lists the projects the caller can read
    mine = stranger.api.project()
    listed = stranger.api.ok(stranger.api.post("/entity/children", {"includeTypes": ["folder"]}), 200)
    ids = {h["id"] for h in listed["page"]}
    assert mine["id"] in ids and pid not in ids
    assert all(h["type"] == P + "Project" for h in listed["page"])
    reader_projects = reader.api.ok(reader.api.post("/entity/children", {}), 200)
    assert pid in {h["id"] for h in reader_projects["page"]}


def test_child_lookup(emulator, user):
    api = user.api
    proj = api.project()
    pid = proj["id"]
    folder = api.folder(pid, "Lookup Me")
    assert api.ok(api.post("/entity/child", {"parentId": pid, "entityName": "Lookup Me"}),
                  200) == {"id": folder["id"]}
    resp = api.post("/entity/child", {"parentId": pid, "entityName": "lookup me"})
    assert (resp.status_code, reason(resp)) == (
        404, f"Child not found for parent: '{pid}' with name: 'lookup me'")
    resp = api.post("/entity/child", {"parentId": pid})
    assert (resp.status_code, reason(resp)) == (400, "EntityLookupRequest.entityName is required.")
    assert api.ok(api.post("/entity/child", {"entityName": proj["name"]}), 200) == {"id": pid}
    other = emulator.new_user()
    resp = other.api.post("/entity/child", {"parentId": pid, "entityName": "Lookup Me"})
    assert (resp.status_code, reason(resp)) == (403, "Lack of READ permission on the parent entity.")
    resp = other.api.post("/entity/child", {"entityName": proj["name"]})
    assert (resp.status_code, reason(resp)) == (
        403, "Lack of READ permission on the requested entity.")


def test_entity_path(emulator, user):
    owner = user.api
    proj = owner.project()
    a = owner.folder(proj["id"], "a")
    b = owner.folder(a["id"], "b")
    path = owner.ok(owner.get(f"/entity/{b['id']}/path"), 200)["path"]
    assert path == [
        {"name": "root", "id": "syn4489", "type": P + "Folder"},
        {"name": proj["name"], "id": proj["id"], "type": P + "Project"},
        {"name": "a", "id": a["id"], "type": P + "Folder"},
        {"name": "b", "id": b["id"], "type": P + "Folder"},
    ]
    other = emulator.new_user()
    resp = other.api.get(f"/entity/{b['id']}/path")
    assert resp.status_code == 403
    owner.ok(owner.post(f"/entity/{b['id']}/acl", {"resourceAccess": [
        {"principalId": int(user.id), "accessType": ["READ", "CHANGE_PERMISSIONS"]},
        {"principalId": int(other.id), "accessType": ["READ"]}]}), 201)
    path = other.api.ok(other.api.get(f"/entity/{b['id']}/path"), 200)["path"]
    assert [h["name"] for h in path] == ["root", "Redacted", "Redacted", "b"]


def test_bundle(emulator, user):
    api = user.api
    proj = api.project()
    content = b"bundle me"
    fh = upload(api, content, "b.txt")
    f = file_entity(api, proj["id"], "b.txt", fh)
    req = {"includeEntity": True, "includeAnnotations": True, "includeFileHandles": True,
           "includeRestrictionInformation": True}
    b = api.ok(api.post(f"/entity/{f['id']}/bundle2", req), 200)
    assert b["entity"] == f and b["entityType"] == "file"
    assert b["annotations"]["annotations"] == {} and b["annotations"]["id"] == f["id"]
    [handle] = b["fileHandles"]
    assert handle["id"] == fh and handle["contentMd5"] == hashlib.md5(content).hexdigest()
    assert handle["contentSize"] == len(content)
    ri = b["restrictionInformation"]
    assert ri["hasUnmetAccessRequirement"] is False and ri["restrictionLevel"] == "OPEN"
    full = api.ok(api.post(f"/entity/{f['id']}/bundle2", {
        "includePermissions": True, "includeEntityPath": True, "includeHasChildren": True,
        "includeAccessControlList": True, "includeBenefactorACL": True, "includeFileName": True}), 200)
    perms = full["permissions"]
    for key in ("canView", "canEdit", "canMove", "canAddChild", "canCertifiedUserEdit",
                "canCertifiedUserAddChild", "isCertifiedUser", "canChangePermissions",
                "canChangeSettings", "canDelete", "canDownload", "canUpload",
                "canEnableInheritance", "ownerPrincipalId", "canPublicRead", "canModerate",
                "isCertificationRequired", "isEntityOpenData", "isDataContributor"):
        assert key in perms, key
    assert perms["canDownload"] and perms["canEdit"] and not perms["canPublicRead"]
    assert perms["ownerPrincipalId"] == int(user.id)
    assert [h["id"] for h in full["path"]["path"]][-2:] == [proj["id"], f["id"]]
    assert full["hasChildren"] is False and full["fileName"] == "b.txt"
    assert "accessControlList" not in full and full["benefactorAcl"]["id"] == proj["id"]
    assert "entity" not in full
    pb = api.ok(api.post(f"/entity/{proj['id']}/bundle2", {"includeHasChildren": True,
                                                           "includeAccessControlList": True}), 200)
    assert pb["hasChildren"] is True and pb["accessControlList"]["id"] == proj["id"]
    # version bundle
    f2 = api.ok(api.put(f"/entity/{f['id']}?newVersion=true", f), 200)
    assert f2["versionNumber"] == 2
    v1 = api.ok(api.post(f"/entity/{f['id']}/version/1/bundle2", {"includeEntity": True}), 200)
    assert v1["entity"]["versionNumber"] == 1 and v1["entity"]["isLatestVersion"] is False
    assert api.post(f"/entity/{f['id']}/version/7/bundle2", {"includeEntity": True}).status_code == 404
    # other users: 403
    resp = emulator.new_user().api.post(f"/entity/{f['id']}/bundle2", req)
    assert resp.status_code == 403


def test_bundle_access_requirements_and_download(emulator, user):
    api = user.api
    proj = api.project()
    folder = api.folder(proj["id"], "restricted")
    f = file_entity(api, folder["id"], "r.txt", upload(api, b"secret"))
    ar = emulator.admin.ok(emulator.admin.post("/accessRequirements", {"entityId": folder["id"]},
                                               prefix="admin"), 201)
    req = {"includeFileHandles": True, "includeRestrictionInformation": True,
           "includePermissions": True}
    b = api.ok(api.post(f"/entity/{f['id']}/bundle2", req), 200)
    assert b["fileHandles"] == [] and b["permissions"]["canDownload"] is False
    ri = b["restrictionInformation"]
    assert ri["hasUnmetAccessRequirement"] is True and ri["restrictionLevel"] != "OPEN"
    assert ri["objectId"] == int(f["id"][3:])
    emulator.admin.ok(emulator.admin.post(
        f"/accessRequirements/{ar['id']}/approvals/{user.id}", prefix="admin"), 204)
    b = api.ok(api.post(f"/entity/{f['id']}/bundle2", req), 200)
    assert len(b["fileHandles"]) == 1 and b["permissions"]["canDownload"] is True
    assert b["restrictionInformation"]["hasUnmetAccessRequirement"] is False
