"""Sharing, access requirements and STS permission checks through the official client
(synapse-api.md 3, 5.4 "No ACL on children", 6.1 permissions)."""

from __future__ import annotations

import pytest

import synapseclient
from synapseclient.core.exceptions import SynapseHTTPError, SynapseUnmetAccessRestrictions

from .conftest import (assert_http_error, create_folder, create_project, hidden,
                       make_external_sts_folder, new_user, write_file)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_share_read_download_with_another_user(syn, user, emulator, clients, tmp_path):
    project = create_project(syn)
    f = syn.store(synapseclient.File(str(write_file(tmp_path / "a", "shared.txt", b"shared")),
                                     parent=project))
    reader_user = new_user(emulator)
    reader = clients.new(reader_user.token)
    with pytest.raises(SynapseHTTPError) as excinfo:
        reader.get(f["id"], downloadFile=False)
    assert excinfo.value.response.status_code == 403

    acl = syn.setPermissions(project, reader_user.id, accessType=["READ", "DOWNLOAD"])
    assert any(str(ra["principalId"]) == str(reader_user.id) for ra in acl["resourceAccess"])

    got = reader.get(f["id"], downloadLocation=str(tmp_path / "r"))
    with open(got.path, "rb") as fh:
        assert fh.read() == b"shared"
    # no CREATE: the reader cannot add content
    with pytest.raises(SynapseHTTPError) as excinfo:
        reader.store(synapseclient.Folder(name="intruder", parent=project))
    assert excinfo.value.response.status_code == 403


def test_get_permissions_of_a_user(syn, emulator):
    """syn.getPermissions also reads the user's teams: GET /user/{id}/team?limit=20&offset=0."""
    project = create_project(syn)
    other = new_user(emulator)
    syn.setPermissions(project, other.id, accessType=["READ", "DOWNLOAD"])
    assert set(syn.getPermissions(project, other.id)) == {"READ", "DOWNLOAD"}


def test_no_acl_on_child_of_sts_folder(syn, user, emulator):
    sts = make_external_sts_folder(syn, emulator, user)
    sub = create_folder(syn, sts.folder, "sub")
    other = new_user(emulator)
    with pytest.raises(SynapseHTTPError) as excinfo:
        syn.setPermissions(sub, other.id, accessType=["READ"])
    assert_http_error(excinfo, 400, "Cannot override ACLs in a child of an STS-enabled folder")
    # the STS folder itself may have an ACL
    acl = syn.setPermissions(sts.folder, other.id, accessType=["READ", "DOWNLOAD"])
    assert acl["id"] == sts.id


def test_sts_permissions_for_a_reader(syn, user, emulator, clients, tmp_path):
    """read_only needs DOWNLOAD; read_write needs DOWNLOAD, UPDATE, CREATE and DELETE."""
    sts = make_external_sts_folder(syn, emulator, user)
    reader_user = new_user(emulator)
    reader = clients.new(reader_user.token)
    syn.setPermissions(sts.folder, reader_user.id, accessType=["READ"])
    with pytest.raises(SynapseHTTPError) as excinfo:
        reader.get_sts_storage_token(sts.id, "read_only")
    assert_http_error(excinfo, 403, "You lack DOWNLOAD access to the requested entity.")

    syn.setPermissions(sts.folder, reader_user.id, accessType=["READ", "DOWNLOAD"])
    token = hidden(reader.get_sts_storage_token(sts.id, "read_only"))
    assert token["bucket"] == sts.bucket
    with pytest.raises(SynapseHTTPError) as excinfo:
        reader.get_sts_storage_token(sts.id, "read_write")
    assert_http_error(excinfo, 403, "You lack UPDATE access to the requested entity.")


def test_unmet_access_requirement_blocks_download(syn, user, emulator, clients, tmp_path):
    project = create_project(syn)
    f = syn.store(synapseclient.File(str(write_file(tmp_path / "a", "restricted.txt", b"secret")),
                                     parent=project))
    reader_user = new_user(emulator)
    reader = clients.new(reader_user.token)
    syn.setPermissions(project, reader_user.id, accessType=["READ", "DOWNLOAD"])
    ar = emulator.admin.ok(emulator.admin.post("/accessRequirements", {"entityId": f["id"]},
                                               prefix="admin"), 201)

    with pytest.raises(SynapseUnmetAccessRestrictions):
        reader.get(f["id"], downloadLocation=str(tmp_path / "r1"))
    meta = reader.get(f["id"], downloadFile=False)  # metadata only: a warning, no error
    assert meta["name"] == "restricted.txt"

    emulator.admin.ok(emulator.admin.post(
        f"/accessRequirements/{ar['id']}/approvals/{reader_user.id}", prefix="admin"), (200, 204))
    reader2 = clients.new(reader_user.token)
    got = reader2.get(f["id"], downloadLocation=str(tmp_path / "r2"))
    with open(got.path, "rb") as fh:
        assert fh.read() == b"secret"
