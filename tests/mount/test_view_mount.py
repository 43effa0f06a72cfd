"""``synfs mount --view``: a live mount takes every file's size from one query of a file view
(rows checked against the listings), so ``ls -l`` of a folder costs its listing only; a stale
row costs that file's bundle; a view that does not cover the root is exit 10."""

from __future__ import annotations

import os
import sys
import time

import pytest

from synfs.config import EXIT_VIEW_SCOPE
from tests.emulator.test_entities import file_entity, upload
from tests.emulator.test_views import make_view
from tests.mount.conftest import run_synfs
from tests.mount.test_snapshot import status_after

N = 12


@pytest.fixture(scope="module")
def viewed(emulator):
    owner = emulator.new_user("view-owner")
    api = owner.api
    proj = api.project()
    folder = api.folder(proj["id"], "data")
    files = {}
    for i in range(N):
        data = bytes([65 + i]) * (100 + 37 * i)
        files[f"f{i:02d}.bin"] = file_entity(api, folder["id"], f"f{i:02d}.bin",
                                             upload(api, data, f"f{i:02d}.bin"))
    view = make_view(api, proj["id"], [proj["id"]])
    return owner, proj, folder, files, view


def bundles(status) -> int:
    return status["requests"]["by_call"].get("POST /entity/{id}/bundle2", 0)


def sizes(path) -> dict:
    return {name: os.stat(path / name).st_size for name in os.listdir(path)}


def test_ls_l_takes_sizes_from_the_view(viewed, mounts):
    owner, proj, folder, files, view = viewed
    m = mounts(owner.token, proj["id"], "view-live",
               ["--read-only", "--view", view["id"], "--metadata-cache-entries", "0"])
    before = bundles(status_after(m.path, time.time()))
    assert sizes(m.path / "data") == {f"f{i:02d}.bin": 100 + 37 * i for i in range(N)}
    assert bundles(status_after(m.path, time.time())) == before    # no call per file
    assert (m.path / "data" / "f03.bin").read_bytes() == b"D" * (100 + 37 * 3)


def test_a_stale_row_costs_that_file_only(viewed, mounts, emulator):
    owner, proj, folder, files, view = viewed
    api = owner.api
    emulator.set_faults(view_lag_s=60)
    f = files["f05.bin"]
    f["dataFileHandleId"] = upload(api, b"new" * 1000, "f05.bin")
    f = api.ok(api.put(f"/entity/{f['id']}", f), 200)
    files["f05.bin"] = f
    m = mounts(owner.token, proj["id"], "view-stale",
               ["--read-only", "--view", view["id"], "--metadata-cache-entries", "0"])
    before = bundles(status_after(m.path, time.time()))
    got = sizes(m.path / "data")
    assert got["f05.bin"] == 3000 and got["f04.bin"] == 100 + 37 * 4
    assert bundles(status_after(m.path, time.time())) == before + 1


def test_a_view_that_does_not_cover_the_root_is_exit_10(viewed, emulator, tmp_path):
    owner, proj, folder, files, view = viewed
    other = owner.api.project()
    token = tmp_path / "token"
    token.write_text(owner.token + "\n")
    token.chmod(0o600)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    info = emulator.info
    res = run_synfs([sys.executable, "-m", "synfs", "mount", other["id"], str(mnt), "--view",
                     view["id"], "--token-file", str(token), "--repo-endpoint",
                     info["repoEndpoint"], "--file-endpoint", info["fileHandleEndpoint"],
                     "--s3-endpoint", info["s3Endpoint"]])
    assert res.returncode == EXIT_VIEW_SCOPE, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not os.path.ismount(mnt)
