"""Mounts of purpose-built trees: paging, depth, odd names, permissions, access requirements,
credential expiry during reads, and injected Synapse and S3 faults."""

from __future__ import annotations

import datetime as dt
import errno
import os
import threading
import time

import pytest

from synfs.cli.demo_seed import Seeder, content
from tests.harness import mount_status, wait_for

ODD_NAMES = ["with space.txt", "paren (1).txt", "it's.txt", "a+b.txt", "dots...txt",
             "comma,name.txt", "-dash_under.txt"]


@pytest.fixture(scope="session")
def built(emulator):
    """A project with a 260-entry folder, a 10-level chain and odd names (plain storage)."""
    owner = emulator.new_user("tree-owner")
    seeder = Seeder(emulator.info, owner.token)
    project = seeder.entity("Project", f"tree project {time.time_ns()}", None)
    wide = seeder.entity("Folder", "wide", project)
    for i in range(250):
        seeder.entity("Folder", f"sub{i:03d}", wide)
    small = seeder.multipart("tiny.txt", b"tiny\n", 1)
    for i in range(10):
        seeder.entity("FileEntity", f"file{i}.txt", wide, dataFileHandleId=small)
    deep = project
    for level in range(10):
        deep = seeder.entity("Folder", f"level {level}", deep)
    deep_file = seeder.entity("FileEntity", "bottom.txt", deep,
                              dataFileHandleId=seeder.multipart("bottom.txt", b"bottom\n", 1))
    odd = seeder.entity("Folder", "odd names", project)
    for name in ODD_NAMES:
        seeder.entity("FileEntity", name, odd,
                      dataFileHandleId=seeder.multipart(name, name.encode(), 1))
    return owner, seeder, {"project": project, "wide": wide, "deep_file": deep_file}


def test_paging_over_hundreds_of_children(built, mounts):
    owner, _, ids = built
    m = mounts(owner.token, ids["project"], "tree")
    names = os.listdir(m.path / "wide")
    assert len(names) == 260 and len(set(names)) == 260
    assert "sub249" in names and "file9.txt" in names
    assert (m.path / "wide/file9.txt").read_bytes() == b"tiny\n"


def test_ten_levels_deep(built, mounts, tmp_path):
    owner, _, ids = built
    m = mounts(owner.token, ids["project"], "tree-deep")
    path = m.path.joinpath(*[f"level {i}" for i in range(10)], "bottom.txt")
    assert path.read_bytes() == b"bottom\n"
    assert os.stat(path).st_ino == int(ids["deep_file"][3:])


def test_odd_names(built, mounts):
    owner, _, ids = built
    m = mounts(owner.token, ids["project"], "tree-odd")
    assert sorted(os.listdir(m.path / "odd names")) == sorted(ODD_NAMES)
    for name in ODD_NAMES:
        assert (m.path / "odd names" / name).read_bytes() == name.encode()


def test_permission_denied_without_download(emulator, built, mounts):
    """A reader with READ but not DOWNLOAD sees the tree but gets EACCES on open."""
    owner, _, ids = built
    reader = emulator.new_user("reader-no-download")
    acl = owner.api.ok(owner.api.get(f"/entity/{ids['project']}/acl"))
    acl["resourceAccess"].append({"principalId": int(reader.id), "accessType": ["READ"]})
    owner.api.ok(owner.api.put(f"/entity/{ids['project']}/acl", acl))
    m = mounts(reader.token, ids["project"], "reader")
    assert "file0.txt" in os.listdir(m.path / "wide")
    with pytest.raises(PermissionError):
        open(m.path / "wide/file0.txt", "rb")
    log = m.log_text()
    assert "no DOWNLOAD permission" in log and "file0.txt" in log


def test_unmet_access_requirement_is_eacces(emulator, built, mounts):
    owner, seeder, ids = built
    folder = seeder.entity("Folder", "restricted", ids["project"])
    fid = seeder.entity("FileEntity", "terms.txt", folder,
                        dataFileHandleId=seeder.multipart("terms.txt", b"terms", 1))
    emulator.admin.ok(emulator.admin.post("/accessRequirements", {"entityId": folder},
                                          prefix="admin"), 201)
    m = mounts(owner.token, ids["project"], "restricted")
    with pytest.raises(PermissionError):
        open(m.path / "restricted/terms.txt", "rb")
    assert "access requirement" in m.log_text() and fid in m.log_text()


def test_credentials_expiring_during_a_long_read(emulator, seeded, mounts):
    """A read outlives its STS credentials. S3 answers 503 (retried with the set the request
    started with) until the proxy rejects that set as expired (ExpiredToken); only
    refresh-on-reject (a fresh set, the request retried) can finish the read, because the early
    refresh at half the lifetime is decided when a request starts, never during its retries."""
    owner, layout = seeded
    emulator.set_faults(sts_expiration_s=3, s3_error_rate=1.0, s3_error_status=503)
    try:
        m = mounts(owner.token, layout["synapseStsFolder"], "expiry", ["--retry-budget", "60"])
        path = m.path / "big/random-100MiB.bin"
        assert os.stat(path).st_size == 100 * 1024 * 1024
        got: dict = {}

        def read():
            # O_DIRECT: through the page cache, the kernel would answer a failed readahead by
            # asking again (a new request, which gets fresh credentials) and hide the failure.
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
            chunks = []
            try:
                while chunk := os.read(fd, 4 * 1024 * 1024):
                    chunks.append(chunk)
                got["data"] = b"".join(chunks)
            except OSError as exc:
                got["error"] = exc
            finally:
                os.close(fd)

        reader = threading.Thread(target=read)
        reader.start()

        def read_only_sets():
            creds = mount_status(m.path).get("credentials", {})
            return [loc for loc in creds.get("locations", []) if loc["permission"] == "read_only"]

        # The newest set the read fetched; the first one, held by the retried request, expires
        # no later. Wait until the proxy rejects it, then let S3 answer again.
        newest = wait_for(read_only_sets, what="the read's credentials")[0]
        expires = dt.datetime.fromisoformat(newest["expiration"]).timestamp()
        wait_for(lambda: time.time() > expires + 0.3, timeout=30, what="credential expiry")
        assert reader.is_alive() and not got, "the read ended before its credentials expired"
        emulator.set_faults(s3_error_rate=0.0)
        reader.join(120)
    finally:
        emulator.reset_faults()
    assert not reader.is_alive()
    assert "error" not in got, got.get("error")
    assert got["data"] == content("random-100MiB.bin", 100 * 1024 * 1024)


def test_synapse_503_and_429_are_retried(emulator, seeded, mounts):
    owner, layout = seeded
    m = mounts(owner.token, layout["plainFolder"], "retry", ["--metadata-ttl", "0"])
    emulator.set_faults(errors=[{"path": "/bundle2$", "status": 503, "count": 2},
                                {"path": "/entity/children$", "status": 429, "count": 2}])
    try:
        assert sorted(os.listdir(m.path)) == ["data", "hello.txt"]
        assert (m.path / "hello.txt").read_bytes() == content("hello.txt", 13)
        left = emulator.admin.ok(emulator.admin.get("/faults", prefix="admin"))["errors"]
    finally:
        emulator.reset_faults()
    assert [rule["count"] for rule in left] == [0, 0]    # every injected error was met


def test_synapse_down_gives_eio_then_recovers(emulator, seeded, mounts):
    owner, layout = seeded
    m = mounts(owner.token, layout["plainFolder"], "down",
               ["--metadata-ttl", "0", "--retry-budget", "2"])
    emulator.set_faults(errors=[{"path": "/(bundle2|children)$", "status": 503}])
    t0 = time.monotonic()
    with pytest.raises(OSError) as exc:
        os.stat(m.path / "data" / "blob-1MiB.bin")
    assert exc.value.errno == errno.EIO
    assert time.monotonic() - t0 < 20
    emulator.reset_faults()
    assert os.stat(m.path / "data/blob-1MiB.bin").st_size == 1024 * 1024


def test_s3_errors_give_eio_then_recover(emulator, seeded, mounts):
    owner, layout = seeded
    m = mounts(owner.token, layout["externalStsFolder"], "s3err", ["--retry-budget", "2"])
    path = m.path / "matrix.csv"
    os.stat(path)
    emulator.set_faults(s3_error_rate=1.0, s3_error_status=503)
    with pytest.raises(OSError) as exc:
        with open(path, "rb") as fh:
            fh.read()
    assert exc.value.errno == errno.EIO
    emulator.reset_faults()
    assert path.read_bytes() == content("matrix.csv", 64 * 1024)
