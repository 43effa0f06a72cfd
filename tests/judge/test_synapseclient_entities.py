"""Entity CRUD, listing and lookup through the official client (synapse-api.md 3)."""

from __future__ import annotations

import pytest

import synapseclient
import synapseutils
from synapseclient.core.exceptions import SynapseHTTPError

from .conftest import assert_http_error, create_folder, create_project, unique, write_file

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_project_folder_roundtrip(syn, user):
    name = unique("roundtrip")
    project = create_project(syn, name)
    assert project["id"].startswith("syn")
    assert project["parentId"] == "syn4489"
    assert project["concreteType"] == "org.sagebionetworks.repo.model.Project"
    folder = create_folder(syn, project, "data")
    assert folder["parentId"] == project["id"]
    got = syn.get(folder["id"])
    assert got["name"] == "data" and got["etag"] == folder["etag"]
    assert str(got["createdBy"]) == str(user.id)

    # update: description change gives a new etag
    got["description"] = "updated by the judge"
    updated = syn.store(got)
    assert updated["description"] == "updated by the judge"
    assert updated["etag"] != folder["etag"]

    # path
    path = syn.restGET(f"/entity/{folder['id']}/path")["path"]
    assert [h["id"] for h in path] == ["syn4489", project["id"], folder["id"]]


def test_get_children_pages_over_50(syn, user):
    project = create_project(syn)
    folder = create_folder(syn, project, "many")
    names = sorted(f"child {i:03d}" for i in range(57))
    for name in names:  # raw REST for speed; the listing is what is judged
        user.api.folder(folder["id"], name)
    children = list(syn.getChildren(folder))
    assert [c["name"] for c in children] == names
    assert all(c["type"] == "org.sagebionetworks.repo.model.Folder" for c in children)
    assert len({c["id"] for c in children}) == 57
    desc = list(syn.getChildren(folder, sortDirection="DESC"))
    assert [c["name"] for c in desc] == names[::-1]
    assert list(syn.getChildren(folder, includeTypes=["file"])) == []

    # the raw page shape (50 per page, token "50a50")
    page = syn.restPOST("/entity/children", body=(
        '{"parentId": "%s", "includeTypes": ["folder"], "includeTotalChildCount": true}'
        % folder["id"]))
    assert len(page["page"]) == 50
    assert page["nextPageToken"] == "50a50"
    assert page["totalChildCount"] == 57


def test_get_children_of_projects_lists_my_projects(syn):
    project = create_project(syn)
    ids = {c["id"] for c in syn.getChildren(None, includeTypes=["project"])}
    assert project["id"] in ids


def test_walk_and_find_entity_id(syn, tmp_path):
    project = create_project(syn)
    a = create_folder(syn, project, "a")
    b = create_folder(syn, a, "b")
    f1 = syn.store(synapseclient.File(str(write_file(tmp_path / "1", "one.txt", b"1")), parent=a))
    f2 = syn.store(synapseclient.File(str(write_file(tmp_path / "2", "two.txt", b"2")), parent=b))
    f0 = syn.store(synapseclient.File(str(write_file(tmp_path / "0", "top.txt", b"0")),
                                      parent=project))

    walked = list(synapseutils.walk(syn, project["id"]))
    pname = project["name"]
    assert walked[0] == ((pname, project["id"]), [("a", a["id"])], [("top.txt", f0["id"])])
    assert walked[1] == ((f"{pname}/a", a["id"]), [("b", b["id"])], [("one.txt", f1["id"])])
    assert walked[2] == ((f"{pname}/a/b", b["id"]), [], [("two.txt", f2["id"])])
    assert len(walked) == 3

    assert syn.findEntityId("one.txt", a) == f1["id"]
    assert syn.findEntityId("b", a["id"]) == b["id"]
    assert syn.findEntityId(pname) == project["id"]
    assert syn.findEntityId("nope.txt", a) is None


def test_delete_then_get_is_404(syn):
    project = create_project(syn)
    folder = create_folder(syn, project)
    syn.delete(folder)
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.get(folder["id"])
    assert_http_error(excinfo, 404, f"Entity {folder['id']} is in trash can.")
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.get("syn999999999")
    assert excinfo.value.response.status_code == 404
    assert syn.findEntityId(folder["name"], project) is None
    syn.delete(folder)  # deleting again silently succeeds


def test_name_conflict_is_409_when_not_create_or_update(syn):
    project = create_project(syn)
    create_folder(syn, project, "same")
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.store(synapseclient.Folder(name="same", parent=project), createOrUpdate=False)
    assert_http_error(excinfo, 409, f"An entity with the name: same already exists with a "
                                    f"parentId: {project['id']}")
    # case-sensitive names
    other = syn.store(synapseclient.Folder(name="SAME", parent=project), createOrUpdate=False)
    assert other["name"] == "SAME"


def test_stale_etag_is_412(syn, clients, user):
    project = create_project(syn)
    folder = create_folder(syn, project)
    other = clients.new(user.token)
    copy = other.get(folder["id"])
    folder["description"] = "first"
    syn.store(folder)
    copy["description"] = "second"
    with pytest.raises(SynapseHTTPError) as excinfo:
        other.store(copy)
    assert_http_error(excinfo, 412, "was updated since you last fetched it")


def test_models_api_file_roundtrip(syn, user, tmp_path, clients):
    from synapseclient.models import File, Folder, Project

    project = Project(name=unique("models")).store(synapse_client=syn)
    folder = Folder(name="f", parent_id=project.id).store(synapse_client=syn)
    path = write_file(tmp_path / "m", "model.txt", b"model bytes")
    stored = File(path=str(path), parent_id=folder.id).store(synapse_client=syn)
    assert stored.id and stored.version_number == 1
    reader = clients.new(user.token)
    (tmp_path / "dl").mkdir()
    got = File(id=stored.id, path=str(tmp_path / "dl")).get(synapse_client=reader)
    with open(got.path, "rb") as fh:
        assert fh.read() == b"model bytes"
    names = [c["name"] for c in reader.getChildren(folder.id)]
    assert names == ["model.txt"]


def test_sync_from_synapse_downloads_the_tree(syn, user, clients, tmp_path):
    import synapseutils

    project = create_project(syn)
    a = create_folder(syn, project, "a")
    b = create_folder(syn, a, "b")
    contents = {"top.txt": (project, b"top"), "one.txt": (a, b"one" * 1000),
                "two.txt": (b, b"two" * 3000)}
    for name, (parent, data) in contents.items():
        syn.store(synapseclient.File(str(write_file(tmp_path / "up" / name, name, data)),
                                     parent=parent))
    reader = clients.new(user.token)
    out = tmp_path / "sync"
    files = synapseutils.syncFromSynapse(reader, project["id"], path=str(out))
    assert sorted(f["name"] for f in files) == ["one.txt", "top.txt", "two.txt"]
    assert (out / "top.txt").read_bytes() == b"top"
    assert (out / "a" / "one.txt").read_bytes() == b"one" * 1000
    assert (out / "a" / "b" / "two.txt").read_bytes() == b"two" * 3000
