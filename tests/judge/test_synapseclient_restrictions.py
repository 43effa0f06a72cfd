"""STS restrictions (synapse-api.md 5.4) answered with the reference's errors, as the official
client raises them: SynapseHTTPError, status 400 (IllegalArgumentException) and the message."""

from __future__ import annotations

import json

import pytest

import synapseclient
from synapseclient.core.exceptions import SynapseHTTPError

from .conftest import (assert_http_error, create_folder, create_project, external_sts_location,
                       make_external_sts_folder, make_synapse_sts_folder, new_user,
                       set_upload_setting, synapse_sts_location, unique, write_file)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _setting_error(syn, container_id, locations):
    with pytest.raises(SynapseHTTPError) as excinfo:
        set_upload_setting(syn, container_id, locations)
    return excinfo


def test_sts_only_on_empty_folder(syn):
    location = synapse_sts_location(syn)
    project = create_project(syn)
    folder = create_folder(syn, project)
    create_folder(syn, folder, "child")
    excinfo = _setting_error(syn, folder["id"], [location["storageLocationId"]])
    assert_http_error(excinfo, 400, "Can't enable STS in a non-empty folder")


def test_sts_not_on_folder_whose_only_child_is_in_the_trash(syn):
    location = synapse_sts_location(syn)
    project = create_project(syn)
    folder = create_folder(syn, project)
    child = create_folder(syn, folder, "trashed child")
    syn.delete(child)
    assert list(syn.getChildren(folder)) == []
    excinfo = _setting_error(syn, folder["id"], [location["storageLocationId"]])
    assert_http_error(excinfo, 400, "Can't enable STS in a non-empty folder")


def test_sts_not_on_project(syn):
    location = synapse_sts_location(syn)
    project = create_project(syn)
    excinfo = _setting_error(syn, project["id"], [location["storageLocationId"]])
    assert_http_error(excinfo, 400, "Can only enable STS on a folder")


def test_sts_setting_takes_no_second_location(syn):
    location = synapse_sts_location(syn)
    project = create_project(syn)
    folder = create_folder(syn, project)
    excinfo = _setting_error(syn, folder["id"], [location["storageLocationId"], 1])
    assert_http_error(excinfo, 400, "An STS-enabled folder cannot add other upload destinations")


def test_no_project_setting_under_sts_folder(syn):
    sts = make_synapse_sts_folder(syn)
    sub = create_folder(syn, sts.folder, "sub")
    excinfo = _setting_error(syn, sub["id"], [1])
    assert_http_error(excinfo, 400, "Can't override project settings in an STS-enabled folder path")
    # also through the client's setStorageLocation helper
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.setStorageLocation(sub, 1)
    assert_http_error(excinfo, 400, "Can't override project settings in an STS-enabled folder path")


def test_invalid_location_id_in_setting(syn):
    project = create_project(syn)
    folder = create_folder(syn, project)
    excinfo = _setting_error(syn, folder["id"], [987654321])
    assert_http_error(excinfo, 400, "uploadId 987654321 is not a valid upload destination location")


def test_only_files_and_folders_inside_sts_folder(syn):
    sts = make_synapse_sts_folder(syn)
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.store(synapseclient.Link(targetId=sts.project["id"], parent=sts.id, name="a link"))
    assert_http_error(excinfo, 400, "Can only create Files and Folders inside STS-enabled folders")


@pytest.fixture
def sts_and_plain(syn, user, emulator, tmp_path):
    """An external STS folder with one file, and a plain folder with one file."""
    sts = make_external_sts_folder(syn, emulator, user)
    plain = create_folder(syn, sts.project, unique("plain"))
    syn.use_boto_sts_transfers = True
    sts_file = syn.store(synapseclient.File(
        str(write_file(tmp_path / "a", "in-sts.txt", b"sts bytes")), parent=sts.id))
    plain_file = syn.store(synapseclient.File(
        str(write_file(tmp_path / "b", "in-plain.txt", b"plain bytes")), parent=plain))
    return sts, plain, sts_file, plain_file


def test_no_move_of_sts_file_out_with_syn_move(syn, sts_and_plain):
    sts, plain, sts_file, _ = sts_and_plain
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.move(sts_file, plain)
    assert_http_error(excinfo, 400, "Files in STS-enabled storage locations can only be placed "
                                    "in folders with the same storage location")
    assert syn.get(sts_file["id"], downloadFile=False)["parentId"] == sts.id


def test_no_move_of_foreign_file_into_sts_folder_by_store(syn, sts_and_plain):
    sts, plain, _, plain_file = sts_and_plain
    entity = syn.get(plain_file["id"], downloadFile=False)
    entity["parentId"] = sts.id
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.store(entity, forceVersion=False)
    assert_http_error(excinfo, 400, "Folders with STS-enabled storage locations can only accept "
                                    "files with the same storage location")
    assert syn.get(plain_file["id"], downloadFile=False)["parentId"] == plain["id"]


def test_no_move_of_sts_file_with_models_api(syn, sts_and_plain):
    from synapseclient.models import File

    sts, plain, sts_file, _ = sts_and_plain
    model = File(id=sts_file["id"], download_file=False).get(synapse_client=syn)
    model.parent_id = plain["id"]
    with pytest.raises(SynapseHTTPError) as excinfo:
        model.store(synapse_client=syn)
    assert_http_error(excinfo, 400, "Files in STS-enabled storage locations can only be placed "
                                    "in folders with the same storage location")


def test_no_new_file_with_foreign_handle_in_sts_folder(syn, sts_and_plain):
    sts, _, _, plain_file = sts_and_plain
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.store(synapseclient.File(parentId=sts.id, name="foreign.txt",
                                     dataFileHandleId=plain_file["dataFileHandleId"]))
    assert_http_error(excinfo, 400, "Folders with STS-enabled storage locations can only accept "
                                    "files with the same storage location")


def test_move_within_same_sts_location_is_allowed(syn, sts_and_plain):
    sts, _, sts_file, _ = sts_and_plain
    sub = create_folder(syn, sts.folder, "sub")
    moved = syn.move(sts_file, sub)
    assert moved["parentId"] == sub["id"]


def test_no_move_of_plain_folder_into_sts_folder(syn, user, emulator):
    sts = make_external_sts_folder(syn, emulator, user)
    plain = create_folder(syn, sts.project, unique("plain"))
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.move(plain, sts.folder)
    assert_http_error(excinfo, 400, "Non-STS-enabled folders cannot be placed inside STS-enabled folders")


def test_no_move_of_sts_folder_into_other_sts_folder(syn, user, emulator):
    outer = make_external_sts_folder(syn, emulator, user)
    inner = make_synapse_sts_folder(syn, project=outer.project)
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.move(inner.folder, outer.folder)
    assert_http_error(excinfo, 400, "Cannot place an STS-enabled folder inside another STS-enabled folder")


def test_no_move_of_subfolder_out_of_sts_folder(syn, user, emulator):
    sts = make_external_sts_folder(syn, emulator, user)
    sub = create_folder(syn, sts.folder, "sub")
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.move(sub, sts.project)
    assert_http_error(excinfo, 400, "Folders in STS-enabled storage locations can only be placed "
                                    "in folders with the same storage location")


def test_non_sts_folder_can_move_between_plain_folders(syn):
    project = create_project(syn)
    a = create_folder(syn, project, "a")
    b = create_folder(syn, project, "b")
    assert syn.move(a, b)["parentId"] == b["id"]


def test_second_sts_setting_location_from_other_user_is_forbidden(syn, user, emulator, clients):
    """An ExternalS3 location can be added to a project setting only by its creator (403)."""
    location = external_sts_location(syn, emulator, user)
    other_user = new_user(emulator)
    other = clients.new(other_user.token)
    project = create_project(other)
    folder = create_folder(other, project)
    with pytest.raises(SynapseHTTPError) as excinfo:
        set_upload_setting(other, folder["id"], [location["storageLocationId"]])
    assert_http_error(excinfo, 403, "Only the owner of the external S3 upload destination")


def test_sts_setting_update_and_delete_rules(syn):
    """PUT /projectSettings (the client's setStorageLocation on an existing setting) and
    DELETE /projectSettings/{id} keep the STS rules (ProjectSettingsManagerImpl.update/delete)."""
    project = create_project(syn)
    non_sts = syn.restPOST("/storageLocation", json.dumps({
        "concreteType": "org.sagebionetworks.repo.model.project.S3StorageLocationSetting",
        "uploadType": "S3", "stsEnabled": False}))
    folder = create_folder(syn, project)
    syn.setStorageLocation(folder, non_sts["storageLocationId"])  # POST
    create_folder(syn, folder, "child")
    sts_location = synapse_sts_location(syn)
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.setStorageLocation(folder, sts_location["storageLocationId"])  # PUT
    assert_http_error(excinfo, 400, "Can't enable STS in a non-empty folder")
    assert syn.getProjectSetting(folder, "upload")["locations"] == [non_sts["storageLocationId"]]

    sts = make_synapse_sts_folder(syn, project=project)
    create_folder(syn, sts.folder, "child")
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.setStorageLocation(sts.folder, 1)
    assert_http_error(excinfo, 400, "Can't disable STS in a non-empty folder")
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.restDELETE(f"/projectSettings/{sts.setting['id']}")
    assert_http_error(excinfo, 400, "Can't disable STS in a non-empty folder")

    # an empty STS folder may be switched back to the default location (PUT, 200 empty body)
    empty = make_synapse_sts_folder(syn, project=project)
    updated = syn.setStorageLocation(empty.folder, 1)
    assert updated["locations"] == [1]
    assert updated["etag"] != empty.setting["etag"]
    syn.restDELETE(f"/projectSettings/{empty.setting['id']}")
    assert syn.getProjectSetting(empty.folder, "upload") is None
