"""REST frugality on real mounts: ``find`` costs listings only, a file seen only in a listing
still reads whole, ``ls -l`` shows real sizes, and a remount answers sizes from the
persistent metadata store (docs/semantics.md, "Metadata and REST calls")."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from synfs.cli.demo_seed import Seeder, content
from tests.harness import mount_status

SIZES = [1, 700, 4096, 70_001]


@pytest.fixture(scope="module")
def frugal(emulator):
    """A project with two folders of 12 files each (4 distinct contents)."""
    owner = emulator.new_user("frugal-owner")
    seeder = Seeder(emulator.info, owner.token)
    project = seeder.entity("Project", f"frugal project {time.time_ns()}", None)
    handles = [(seeder.multipart(f"c{n}.bin", content(f"c{n}", n), 1), n) for n in SIZES]
    expected = {}
    for d in range(2):
        folder = seeder.entity("Folder", f"dir{d}", project)
        for i in range(12):
            handle, size = handles[i % len(handles)]
            name = f"f{i:02d}.bin"
            eid = seeder.entity("FileEntity", name, folder, dataFileHandleId=handle)
            expected[f"dir{d}/{name}"] = (eid, size, content(f"c{size}", size))
    return owner, seeder, project, expected


def synapse_requests(mnt) -> int:
    """Synapse requests the daemon made so far, from a status file written after this call
    (never a stale one that predates the action being counted)."""
    return int(mount_status(mnt)["requests"]["synapse"])


def test_find_costs_listings_only_and_unstatted_files_read_whole(frugal, mounts, tmp_path):
    owner, _, project, expected = frugal
    m = mounts(owner.token, project, "frugal-find",
               ["--read-only", "--cache-dir", str(tmp_path / "cache")])
    before = synapse_requests(m.path)
    found = subprocess.run(["find", "."], cwd=m.path, capture_output=True, text=True,
                           check=True).stdout.split()
    calls = synapse_requests(m.path) - before
    assert sorted(p[2:] for p in found if p.endswith(".bin")) == sorted(expected)
    assert calls <= 3, f"find of 2 folders and 24 files sent {calls} Synapse requests"

    # listed, never stat'd: the kernel holds a provisional size 0 and must ask before EOF
    _, size, data = expected["dir1/f03.bin"]
    fd = os.open(m.path / "dir1/f03.bin", os.O_RDONLY)
    try:
        got = b""
        while chunk := os.read(fd, 1 << 20):
            got += chunk
    finally:
        os.close(fd)
    assert got == data and size == 70_001
    fd = os.open(m.path / "dir0/f02.bin", os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_END) == 4096
    finally:
        os.close(fd)


def test_ls_l_after_find_shows_real_sizes(frugal, mounts, tmp_path):
    owner, _, project, expected = frugal
    m = mounts(owner.token, project, "frugal-ls", ["--read-only", "--metadata-cache-entries", "0"])
    subprocess.run(["find", "."], cwd=m.path, check=True, capture_output=True)
    before = synapse_requests(m.path)
    out = subprocess.run(["ls", "-l", "dir0", "dir1"], cwd=m.path, capture_output=True,
                         text=True, check=True).stdout
    sizes = {}
    folder = None
    for line in out.splitlines():
        if line.endswith(":"):
            folder = line[:-1]
        elif line.startswith("-"):
            fields = line.split()
            sizes[f"{folder}/{fields[-1]}"] = int(fields[4])
    assert sizes == {path: size for path, (_, size, _) in expected.items()}
    assert synapse_requests(m.path) - before == 24     # one bundle per file, none twice


def test_a_remount_answers_sizes_from_the_metadata_store(frugal, mounts, emulator, tmp_path):
    owner, seeder, project, expected = frugal
    cache = tmp_path / "cache"
    first = mounts(owner.token, project, "frugal-store-1", ["--read-only", "--cache-dir", str(cache)])
    listing = subprocess.run(["ls", "-lR", "--time-style=+%s"], cwd=first.path,
                             capture_output=True, text=True, check=True).stdout
    first.stop()
    assert list((cache / "metadata").glob("user-*.sqlite"))

    # while unmounted, one file gets new content: a new version with another size
    eid, _, _ = expected["dir0/f05.bin"]
    api = emulator.api(owner.token)
    ent = api.ok(api.get(f"/entity/{eid}"), 200)
    ent["dataFileHandleId"] = seeder.multipart("new.bin", b"new content\n", 1)
    api.ok(api.put(f"/entity/{eid}", ent), 200)

    second = mounts(owner.token, project, "frugal-store-2", ["--read-only", "--cache-dir", str(cache)])
    before = synapse_requests(second.path)
    again = subprocess.run(["ls", "-lR", "--time-style=+%s"], cwd=second.path,
                           capture_output=True, text=True, check=True).stdout
    calls = synapse_requests(second.path) - before
    assert calls <= 4, f"remount ls -lR sent {calls} requests (3 listings + 1 changed file)"
    changed = [line for line in again.splitlines() if line.endswith(" f05.bin")]
    assert any(" 12 " in line for line in changed), changed
    def steady(text):
        return [line for line in text.splitlines()
                if not line.endswith(" f05.bin") and not line.startswith("total")]
    assert steady(again) == steady(listing) and len(steady(listing)) > 24
    assert (second.path / "dir0/f05.bin").read_bytes() == b"new content\n"


def test_without_xattrs_the_kernel_answers_xattr_requests_itself(frugal, mounts):
    owner, _, project, expected = frugal
    m = mounts(owner.token, project, "frugal-noxattr", ["--read-only"])
    path = m.path / "dir0/f01.bin"
    size = os.stat(path).st_size                 # name and attributes now cached by the kernel
    assert size == expected["dir0/f01.bin"][1]
    with pytest.raises(OSError) as info:          # the daemon's ENOSYS switches them off
        os.getxattr(path, "user.synapse.id")
    assert info.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as info:
        os.listxattr(path)
    assert info.value.errno == errno.EOPNOTSUPP
    # From now on the kernel answers by itself: even a stopped daemon does not hold them up.
    pid = int(mount_status(m.path)["pid"])
    probe = ("import errno, os, sys\n"
             "p = sys.argv[1]\n"
             "for call in (lambda: os.getxattr(p, 'user.synapse.id'),\n"
             "             lambda: os.getxattr(p, 'security.selinux'),\n"
             "             lambda: os.listxattr(p)):\n"
             "    try:\n"
             "        call()\n"
             "    except OSError as exc:\n"
             "        assert exc.errno == errno.EOPNOTSUPP, exc\n"
             "    else:\n"
             "        raise SystemExit('an xattr call succeeded')\n")
    os.kill(pid, signal.SIGSTOP)
    try:
        res = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                             text=True, timeout=15)
        assert res.returncode == 0, res.stderr
        out = subprocess.run(["ls", "-l", str(path)], capture_output=True, text=True,
                             check=True, timeout=15)     # SELinux label and ACL requests
    except subprocess.TimeoutExpired:
        pytest.fail("an xattr request waited for the (stopped) daemon")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert f" {size} " in out.stdout
