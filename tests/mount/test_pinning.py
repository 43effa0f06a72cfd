"""Open files stay pinned to what they opened, on real mounts (issue 11 C).

A file deleted or replaced while open keeps the size (fstat) and the bytes (pread) of the
version it opened until it is closed, whether the change is made on this mount (unlink,
rename over it) or by another client (here: a second mount saving a new version); an open
folder still answers fstat after rmdir. Writing a file this mount has open for reading is
ETXTBSY (the kernel keeps one size and page cache per inode)."""

from __future__ import annotations

import errno
import os
import stat
import time

import pytest

TTL = "1"


@pytest.fixture(scope="module")
def pin_mounts(seeded, mounts):
    """Two read-write mounts of a fresh folder in the external STS folder: a reader's and
    another client's. The folder goes to the trash afterwards, so the sample project keeps
    the files other tests expect."""
    owner, layout = seeded
    folder = owner.api.folder(layout["externalStsFolder"], f"pinning-{time.time_ns()}")
    a = mounts(owner.token, folder["id"], "pin-a", ["--metadata-ttl", TTL])
    b = mounts(owner.token, folder["id"], "pin-b", ["--metadata-ttl", TTL])
    yield a, b
    owner.api.ok(owner.api.delete(f"/entity/{folder['id']}"), (200, 204))


@pytest.fixture
def place(pin_mounts, request):
    a, b = pin_mounts
    name = f"pin-{request.node.name[5:45]}"
    (a.path / name).mkdir()
    return a.path / name, b.path / name


def wait_for(cond, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


OLD = b"the old version, 22 B."
NEW = b"NEW"


def test_a_deleted_open_file_stays_readable(place):
    d, _ = place
    (d / "f").write_bytes(OLD)
    fd = os.open(d / "f", os.O_RDONLY)
    try:
        os.unlink(d / "f")
        assert not (d / "f").exists()
        st = os.fstat(fd)
        assert st.st_size == len(OLD) and st.st_nlink == 0
        assert os.pread(fd, 100, 0) == OLD
        assert os.pread(fd, 5, 4) == OLD[4:9]
    finally:
        os.close(fd)


def test_an_open_folder_answers_fstat_after_rmdir(place):
    d, _ = place
    (d / "sub").mkdir()
    fd = os.open(d / "sub", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rmdir(d / "sub")
        st = os.fstat(fd)
        assert stat.S_ISDIR(st.st_mode)
        assert os.listdir(fd) == []
    finally:
        os.close(fd)


def test_rename_over_an_open_file_keeps_the_readers_version(place):
    d, _ = place
    (d / "f").write_bytes(OLD)
    fd = os.open(d / "f", os.O_RDONLY)
    try:
        old_ino = os.fstat(fd).st_ino
        (d / "g").write_bytes(NEW)
        os.rename(d / "g", d / "f")
        st = os.fstat(fd)
        assert st.st_size == len(OLD) and st.st_ino == old_ino
        assert os.pread(fd, 100, 0) == OLD
        assert (d / "f").read_bytes() == NEW and os.stat(d / "f").st_size == len(NEW)
        assert os.stat(d / "f").st_ino != old_ino
        assert os.pread(fd, 100, 0) == OLD
    finally:
        os.close(fd)
    assert (d / "f").read_bytes() == NEW


def test_a_new_version_from_elsewhere_does_not_touch_an_open_reader(place):
    d, other = place
    small = b"1234567"
    big = os.urandom(300_000)
    (d / "f").write_bytes(small)
    wait_for(lambda: (other / "f").exists(), "the other mount to see the file")
    fd = os.open(d / "f", os.O_RDONLY)
    try:
        assert os.pread(fd, 3, 0) == small[:3]
        (other / "f").write_bytes(big)              # another client saves a larger version
        wait_for(lambda: os.stat(d / "f").st_size == len(big), "the new version to show")
        assert os.stat(d / "f").st_ino != os.fstat(fd).st_ino
        assert os.fstat(fd).st_size == len(small)
        assert os.pread(fd, 1 << 20, 0) == small
        assert (d / "f").read_bytes() == big
        assert os.pread(fd, 1 << 20, 0) == small
    finally:
        os.close(fd)


def test_writing_a_file_open_for_reading_is_etxtbsy(place):
    d, _ = place
    (d / "f").write_bytes(OLD)
    fd = os.open(d / "f", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as exc:
            open(d / "f", "wb")
        assert exc.value.errno == errno.ETXTBSY
        with pytest.raises(OSError) as exc:
            os.truncate(d / "f", 3)
        assert exc.value.errno == errno.ETXTBSY
        assert os.fstat(fd).st_size == len(OLD) and os.pread(fd, 100, 0) == OLD
    finally:
        os.close(fd)
    (d / "f").write_bytes(NEW)                      # closed: writing works again
    assert (d / "f").read_bytes() == NEW
