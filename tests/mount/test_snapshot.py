"""``synfs snapshot`` and ``synfs mount --snapshot`` end to end: the real CLI builds a snapshot
of a project seeded for this module alone (every storage kind, small files; the session's
seeded project is changed by the write tests), a real FUSE mount serves it, and the daemon's own
request counter proves the per-node bound: zero metadata calls, one STS call per storage
location, one ``POST /fileHandle/batch`` per 100 files read through pre-signed URLs. Files
stay pinned to the snapshot's versions; a file whose version is gone is a clean errno with the
entity named in the log; bad snapshot files get one line and exit 9."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from synfs.cli.demo_seed import Seeder, content
from synfs.config import EXIT_BAD_SNAPSHOT, EXIT_BAD_WHERE, EXIT_OTHER_USER, EXIT_VIEW_SCOPE
from synfs.service.runtime import find_status_file
from tests.emulator.test_acl import grant
from tests.emulator.test_entities import file_entity, upload
from tests.emulator.test_views import annotate, make_view
from tests.harness import mount_status
from tests.mount.conftest import run_synfs

BIG = "random-8MiB.bin"
BIG_SIZE = 8 * 1024 * 1024 + 17
STS_FILES = [("", "README.txt", 600), ("reads/run 1 (lane+A)", "sample_1.fastq", 20_000),
             ("big", BIG, BIG_SIZE)]
EXTERNAL_FILES = [("notes", "patient's notes.txt", 1234), ("", "empty.txt", 0)]
PLAIN_FILES = [("", "hello.txt", 13), ("data", "blob.bin", 70_000)]


def snapshot_cli(emulator, token_file, *args) -> subprocess.CompletedProcess:
    info = emulator.info
    return run_synfs([sys.executable, "-m", "synfs", "snapshot", *args, "--token-file",
                      str(token_file), "--repo-endpoint", info["repoEndpoint"],
                      "--file-endpoint", info["fileHandleEndpoint"]])


def status_after(mnt, since: float) -> dict:
    """The daemon's status, published after ``since`` (it is refreshed every 2 s); an
    AssertionError if none comes, so a stale report can never pass for the state after an
    action (request counts read from it would miss the action's requests)."""
    return mount_status(mnt, after=since, timeout=15)


@pytest.fixture(scope="module")
def snap_seeded(emulator):
    """This module's own project, every storage kind, nobody else changes it."""
    owner = emulator.new_user("snap-owner")
    seeder = Seeder(emulator.info, owner.token, owner_s3=emulator.s3_admin_client())
    layout = seeder.seed(progress=lambda _msg: None, project_name="synfs snapshot tests",
                         sts_files=STS_FILES, external_files=EXTERNAL_FILES,
                         plain_files=PLAIN_FILES)
    return owner, layout


@pytest.fixture(scope="module")
def snap(snap_seeded, emulator, tmp_path_factory):
    owner, layout = snap_seeded
    work = tmp_path_factory.mktemp("snap")
    token_file = work / "token"
    token_file.write_text(owner.token + "\n")
    token_file.chmod(0o600)
    out = work / "tree.synfs"
    res = snapshot_cli(emulator, token_file, layout["project"], "-o", str(out))
    assert res.returncode == 0, res.stderr
    return owner, layout, out, token_file, res


def test_snapshot_summary_and_info(snap):
    owner, layout, out, token_file, res = snap
    files = len(layout["files"])
    summary = res.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"snapshot of {layout['project']} in {out}: {files} files, ")
    assert " calls, " in summary and summary.endswith("s (from listings)")
    info = run_synfs([sys.executable, "-m", "synfs", "snapshot", "info", str(out), "--json"])
    data = json.loads(info.stdout)
    assert data["files"] == files and data["root"] == layout["project"]
    assert data["bytes"] == sum(size for _, _, size in STS_FILES + EXTERNAL_FILES + PLAIN_FILES)
    assert owner.token not in out.read_bytes().decode("latin-1")     # no secret in the file


def test_snapshot_mount_makes_no_metadata_call(snap, mounts, tmp_path):
    owner, layout, out, _, _ = snap
    m = mounts(owner.token, layout["project"], "snap-zero",
               ["--snapshot", str(out), "--cache-dir", str(tmp_path / "cache")])
    seen = {}
    for top, dirs, names in os.walk(m.path):
        for name in names:
            path = os.path.join(top, name)
            seen[os.path.relpath(path, m.path)] = os.stat(path).st_size
    assert set(seen) == set(layout["files"])
    assert seen[f"synapse-sts/big/{BIG}"] == BIG_SIZE
    status = status_after(m.path, time.time())
    assert status["requests"]["synapse"] == 0, status["requests"]
    assert status["snapshot"]["root"] == layout["project"]
    assert status["options"]["read_only"] is True
    shown = run_synfs([sys.executable, "-m", "synfs", "status", str(m.path)])
    assert shown.returncode == 0 and "snapshot" in shown.stdout and str(out) in shown.stdout

    for rel in layout["files"]:
        name = rel.rsplit("/", 1)[-1]
        with open(m.path / rel, "rb") as f:
            data = f.read()
        assert data == content(name, seen[rel]), rel
    status = status_after(m.path, time.time())
    by_call = status["requests"]["by_call"]
    # two STS-enabled storage locations (synapse-sts, external-sts), two plain files: one batch
    assert by_call == {"GET /entity/{id}/sts": 2, "POST /fileHandle/batch": 1}, by_call
    with pytest.raises(OSError) as exc:
        (m.path / "plain" / "new.txt").write_bytes(b"x")
    assert exc.value.errno == errno.EROFS


def test_files_are_pinned_and_vanished_or_revoked_files_are_clean_errors(
        emulator, snap_seeded, tmp_path, mounts):
    owner = snap_seeded[0]
    reader = emulator.new_user("snap-reader")
    api = owner.api
    proj = api.project()
    grant(api, proj["id"], int(reader.id), ["READ", "DOWNLOAD"])
    locked = api.folder(proj["id"], "locked")
    keep = file_entity(api, proj["id"], "keep.txt", upload(api, b"version one", "keep.txt"))
    gone = file_entity(api, proj["id"], "gone.txt", upload(api, b"soon deleted", "gone.txt"))
    shut = file_entity(api, locked["id"], "shut.txt", upload(api, b"soon revoked", "shut.txt"))
    token_file = tmp_path / "token"
    token_file.write_text(reader.token + "\n")
    token_file.chmod(0o600)
    out = tmp_path / "pinned.synfs"
    assert snapshot_cli(emulator, token_file, proj["id"], "-o", str(out)).returncode == 0
    keep["dataFileHandleId"] = upload(api, b"version two, longer", "keep.txt")
    assert api.ok(api.put(f"/entity/{keep['id']}", keep), 200)["versionNumber"] == 2
    api.ok(api.delete(f"/entity/{gone['id']}"), (200, 204))
    api.ok(api.post(f"/entity/{locked['id']}/acl", {"resourceAccess": [
        {"principalId": int(owner.id), "accessType": ["READ", "DOWNLOAD"]}]}), 201)
    m = mounts(reader.token, proj["id"], "snap-pinned", ["--snapshot", str(out)])
    assert (m.path / "keep.txt").read_bytes() == b"version one"
    assert (m.path / "keep.txt").stat().st_size == len(b"version one")
    for rel, ent in (("gone.txt", gone), ("locked/shut.txt", shut)):
        with pytest.raises(OSError) as exc:
            (m.path / rel).read_bytes()
        assert exc.value.errno in (errno.EIO, errno.EACCES), rel
        deadline = time.monotonic() + 5
        while ent["id"] not in m.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ent["id"] in m.log_text()


def test_bad_snapshot_files_get_one_line_and_exit_9(snap, tmp_path):
    owner, layout, out, token_file, _ = snap
    foreign = tmp_path / "foreign.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    garbage = tmp_path / "garbage.synfs"
    garbage.write_bytes(os.urandom(4096))
    damaged = tmp_path / "damaged.synfs"
    data = bytearray(out.read_bytes())
    data[4096:] = os.urandom(len(data) - 4096)
    damaged.write_bytes(bytes(data))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for bad in (foreign, garbage, damaged, tmp_path / "missing.synfs"):
        res = run_synfs([sys.executable, "-m", "synfs", "mount", "--snapshot", str(bad),
                         str(mnt), "--token-file", str(token_file)])
        assert res.returncode == EXIT_BAD_SNAPSHOT, (bad, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
        info = run_synfs([sys.executable, "-m", "synfs", "snapshot", "info", str(bad)])
        assert info.returncode == EXIT_BAD_SNAPSHOT, (bad, info.stderr)
    assert not os.path.ismount(mnt)


def test_diff_lists_added_removed_and_changed(snap, emulator, tmp_path):
    owner, layout, out, token_file, _ = snap
    api = owner.api
    proj = api.project()
    a = file_entity(api, proj["id"], "a.txt", upload(api, b"a", "a.txt"))
    b = file_entity(api, proj["id"], "b.txt", upload(api, b"b", "b.txt"))
    first, second = tmp_path / "1.synfs", tmp_path / "2.synfs"
    assert snapshot_cli(emulator, token_file, proj["id"], "-o", str(first)).returncode == 0
    a["dataFileHandleId"] = upload(api, b"aa", "a.txt")
    api.ok(api.put(f"/entity/{a['id']}", a), 200)
    c = file_entity(api, proj["id"], "c.txt", upload(api, b"c", "c.txt"))
    api.ok(api.delete(f"/entity/{b['id']}"), (200, 204))
    assert snapshot_cli(emulator, token_file, proj["id"], "-o", str(second)).returncode == 0
    res = run_synfs([sys.executable, "-m", "synfs", "snapshot", "diff", str(first), str(second)])
    assert res.returncode == 1
    assert res.stdout.splitlines() == ["M a.txt (version 1 -> 2, size 1 -> 2, md5)",
                                       "- b.txt", "+ c.txt"]
    same = run_synfs([sys.executable, "-m", "synfs", "snapshot", "diff", str(first), str(first)])
    assert same.returncode == 0 and same.stdout == ""
    assert c["id"] != a["id"]


def test_mount_a_query_and_the_view_errors_exit_codes(emulator, snap_seeded, mounts,
                                                      tmp_path):
    owner = snap_seeded[0]
    other = emulator.new_user("snap-other")
    api = owner.api
    proj = api.project()
    sub = api.folder(proj["id"], "samples")
    wanted = {}
    for name, assay, tissue in (("a.txt", "RNA-seq", "brain"), ("b.txt", "RNA-seq", "heart"),
                                ("c.txt", "WGS", "brain"), ("d.txt", "RNA-seq", "liver")):
        data = f"{name} {assay} {tissue}".encode()
        ent = file_entity(api, sub["id"], name, upload(api, data, name))
        annotate(api, ent["id"], {"assay": assay, "tissue": tissue})
        if assay == "RNA-seq" and tissue in ("brain", "liver"):
            wanted[name] = data
    file_entity(api, proj["id"], "top.txt", upload(api, b"top", "top.txt"))
    token_file = tmp_path / "token"
    token_file.write_text(owner.token + "\n")
    token_file.chmod(0o600)
    out = tmp_path / "query.synfs"
    where = "assay = 'RNA-seq' AND tissue IN ('brain','liver')"
    res = snapshot_cli(emulator, token_file, proj["id"], "-o", str(out), "--create-view",
                       proj["id"], "--where", where)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("(from temporary view)")
    children = api.ok(api.post("/entity/children", {"parentId": proj["id"],
                                                    "includeTypes": ["entityview"]}), 200)
    assert children["page"] == []                       # the temporary view is gone
    m = mounts(owner.token, proj["id"], "snap-query", ["--snapshot", str(out)])
    assert sorted(os.listdir(m.path)) == ["samples"]
    assert {n: (m.path / "samples" / n).read_bytes()
            for n in os.listdir(m.path / "samples")} == wanted

    bad = snapshot_cli(emulator, token_file, proj["id"], "-o", str(tmp_path / "bad.synfs"),
                       "--create-view", proj["id"], "--where", "assay = = 'x' AND (")
    assert bad.returncode == EXIT_BAD_WHERE and len(bad.stderr.strip().splitlines()) == 1
    view = make_view(api, sub["id"], [sub["id"]])
    uncovered = snapshot_cli(emulator, token_file, proj["id"], "-o",
                             str(tmp_path / "u.synfs"), "--view", view["id"])
    assert uncovered.returncode == EXIT_VIEW_SCOPE, uncovered.stderr
    assert len(uncovered.stderr.strip().splitlines()) == 1

    other_token = tmp_path / "other-token"
    other_token.write_text(other.token + "\n")
    other_token.chmod(0o600)
    mnt = tmp_path / "mnt-other"
    mnt.mkdir()
    info = emulator.info
    refused = run_synfs([sys.executable, "-m", "synfs", "mount", "--snapshot", str(out),
                         str(mnt), "--check-user", "--token-file", str(other_token),
                         "--repo-endpoint", info["repoEndpoint"],
                         "--file-endpoint", info["fileHandleEndpoint"]])
    assert refused.returncode == EXIT_OTHER_USER, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not os.path.ismount(mnt)


def test_sts_credentials_are_refreshed_with_no_other_call(snap, mounts, emulator):
    owner, layout, out, _, _ = snap
    emulator.set_faults(sts_expiration_s=4)        # refreshed at half life: every 2 s
    m = mounts(owner.token, layout["project"], "snap-refresh", ["--snapshot", str(out)])
    big = m.path / "synapse-sts" / "big" / BIG
    expected = content(BIG, BIG_SIZE)
    fd = os.open(big, os.O_RDONLY)
    try:
        deadline, k, by_call = time.monotonic() + 30, 0, {}
        while time.monotonic() < deadline:
            offset = (k * 7919 * 4096) % (BIG_SIZE - 4096)
            assert os.pread(fd, 4096, offset) == expected[offset:offset + 4096]
            k += 1
            path, _ = find_status_file(m.path)
            by_call = json.loads(path.read_text())["requests"]["by_call"]
            if by_call.get("GET /entity/{id}/sts", 0) >= 2:
                break
            time.sleep(0.2)
    finally:
        os.close(fd)
    assert by_call.get("GET /entity/{id}/sts", 0) >= 2, by_call
    assert set(by_call) == {"GET /entity/{id}/sts"}, by_call


def test_pre_signed_urls_come_100_files_per_call(snap_seeded, emulator, mounts, tmp_path):
    owner = snap_seeded[0]
    api = owner.api
    proj = api.project()
    folders = [api.folder(proj["id"], f"d{d}")["id"] for d in range(2)]
    want = {}
    for i in range(150):                         # no STS: every file needs a pre-signed URL
        name, data = f"d{i % 2}/f{i:03d}.txt", f"file {i}\n".encode()
        file_entity(api, folders[i % 2], name[3:], upload(api, data, name[3:]))
        want[name] = data
    token_file = tmp_path / "token"
    token_file.write_text(owner.token + "\n")
    token_file.chmod(0o600)
    out = tmp_path / "many.synfs"
    assert snapshot_cli(emulator, token_file, proj["id"], "-o", str(out)).returncode == 0
    m = mounts(owner.token, proj["id"], "snap-urls", ["--snapshot", str(out)])
    got = {f"{d}/{n}": (m.path / d / n).read_bytes()
           for d in ("d0", "d1") for n in sorted(os.listdir(m.path / d))}
    assert got == want
    by_call = status_after(m.path, time.time())["requests"]["by_call"]
    assert by_call == {"POST /fileHandle/batch": 2}, by_call     # ceil(150 / 100)
