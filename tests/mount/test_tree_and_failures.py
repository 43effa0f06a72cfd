"""Mounts of purpose-built trees: paging, depth, odd names, permissions, access requirements,
credential expiry during reads, and injected Synapse and S3 faults."""

from __future__ import annotations

import errno
import os
import time

import pytest

from synfs.cli.demo_seed import Seeder, content

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
    """STS credentials reported to expire in 3 s: a read spanning the expiry still succeeds."""
    owner, layout = seeded
    emulator.set_faults(sts_expiration_s=3)
    m = mounts(owner.token, layout["synapseStsFolder"], "expiry", ["--metadata-ttl", "1"])
    path = m.path / "big/random-100MiB.bin"
    expected = content("random-100MiB.bin", 100 * 1024 * 1024)
    with open(path, "rb", buffering=0) as fh:
        first = fh.read(8 * 1024 * 1024)
        time.sleep(4.5)  # the first credentials are now stale; S3 rejects them
        rest = fh.read()
    assert first + rest == expected


def test_synapse_503_and_429_are_retried(emulator, seeded, mounts):
    owner, layout = seeded
    m = mounts(owner.token, layout["plainFolder"], "retry", ["--metadata-ttl", "0"])
    emulator.set_faults(errors=[{"path": "/bundle2$", "status": 503, "count": 2},
                                {"path": "/entity/children$", "status": 429, "count": 2}])
    assert sorted(os.listdir(m.path)) == ["data", "hello.txt"]
    assert (m.path / "hello.txt").read_bytes() == content("hello.txt", 13)


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
