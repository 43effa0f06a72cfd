"""Transient server errors (emulator fault injection) must look like Synapse's to the client: a
JSON ``reason`` and a retryable status (synapse-api.md 7.4), so the unmodified client recovers."""

from __future__ import annotations

import datetime
import os

import pytest

import synapseclient

from .conftest import (create_folder, create_project, hidden, make_external_sts_folder, write_file)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_client_retries_transient_rest_errors(syn, user, emulator, clients, tmp_path):
    project = create_project(syn)
    folder = create_folder(syn, project)
    for i in range(3):
        user.api.folder(folder["id"], f"c{i}")
    emulator.set_faults(errors=[
        {"path": r"/entity/children$", "status": 503, "count": 1},
        {"path": r"/fileHandle/batch$", "status": 500, "count": 1},
        {"path": r"/file/multipart$", "status": 429, "count": 1},
    ])
    assert [c["name"] for c in syn.getChildren(folder)] == ["c0", "c1", "c2"]

    data = os.urandom(50_000)
    entity = syn.store(synapseclient.File(str(write_file(tmp_path / "u", "retry.bin", data)),
                                          parent=folder))
    reader = clients.new(user.token)
    got = reader.get(entity["id"], downloadLocation=str(tmp_path / "d"))
    with open(got.path, "rb") as fh:
        assert fh.read() == data
    # every injected error was actually served (and retried past)
    faults = emulator.admin.ok(emulator.admin.get("/faults", prefix="admin"), 200)
    assert [rule["count"] for rule in faults["errors"]] == [0, 0, 0], faults["errors"]


def test_short_sts_expiration_makes_the_client_refresh(syn, user, emulator):
    """A token with less than min_remaining_life (1 h) left is not reused from the client's
    cache; the expiration the emulator reports keeps the exact ISO shape."""
    sts = make_external_sts_folder(syn, emulator, user)
    emulator.set_faults(sts_expiration_s=1800)
    first = hidden(syn.get_sts_storage_token(sts.id, "read_only"))
    expires = datetime.datetime.strptime(first["expiration"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert expires - datetime.datetime.utcnow() < datetime.timedelta(minutes=31)
    second = hidden(syn.get_sts_storage_token(sts.id, "read_only"))
    assert second["accessKeyId"] != first["accessKeyId"]
    third = hidden(syn.get_sts_storage_token(sts.id, "read_only",
                                      min_remaining_life=datetime.timedelta(minutes=10)))
    assert third["accessKeyId"] == second["accessKeyId"]
