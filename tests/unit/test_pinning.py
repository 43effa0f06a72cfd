"""Unit tests of pinned open files in the core (issue 11 C), with an in-memory fake remote:
a file deleted or replaced while open keeps the size and bytes of the version it opened, the
file gets a new inode for its new version, and writing a file open for reading is ETXTBSY."""

from __future__ import annotations

import errno
import hashlib

import pytest
import trio

from synfs import errors
from synfs.fs.core import ROOT_INO
from synfs.synapse.models import Kind
from tests.unit.test_fs_core import FakeClock, FakeRemote, make_fs

OLD = b"the old version, 22 B."
NEW = b"NEW"


class VersionedRemote(FakeRemote):
    """Bytes by file handle, so an old version stays readable after a new one is stored."""

    def __init__(self):
        super().__init__()
        self.blobs: dict[int, bytes] = {}

    def add(self, eid, name, kind, parent=None, data=None, **kw):
        super().add(eid, name, kind, parent, data, **kw)
        if data is not None:
            self.blobs[self.entities[eid].file_handle.id] = data

    def new_version(self, eid, data):
        import dataclasses
        ent = self.entities[eid]
        fh = dataclasses.replace(ent.file_handle, id=ent.file_handle.id + 1, size=len(data),
                                 md5=hashlib.md5(data).hexdigest())
        self.blobs[fh.id] = data
        self.entities[eid] = dataclasses.replace(
            ent, version=ent.version + 1, file_handle=fh, file_handle_id=fh.id,
            modified_on=ent.modified_on + 1)

    def remove(self, eid):
        del self.entities[eid]
        for kids in self.children.values():
            if eid in kids:
                kids.remove(eid)

    async def read(self, entity, start, length):
        self.calls.append(("read", entity.id, start, length))
        return self.blobs[entity.file_handle.id][start:start + length]


@pytest.fixture
def world():
    r = VersionedRemote()
    r.add(100, "project", Kind.PROJECT)
    r.add(101, "folder", Kind.FOLDER, 100)
    r.add(102, "f.txt", Kind.FILE, 100, data=OLD)
    return r


async def read_all(fs, fh, size=1 << 20):
    return await fs.read(fh, 0, size)


@pytest.fixture
def short_ttl(world):
    """A filesystem over ``world`` whose metadata expires after 1 s of its fake clock, and
    that clock."""
    clock = FakeClock()
    return make_fs(world, clock, metadata_ttl=1.0), clock


def test_a_deleted_open_file_keeps_its_size_and_bytes(world, short_ttl):
    fs, clock = short_ttl

    async def main():
        attr = await fs.lookup(ROOT_INO, "f.txt")
        fh, _ = await fs.open(attr.ino, writable=False)
        world.remove(102)
        clock.t += 5                        # every cache expired: Synapse says 404
        got = await fs.getattr(attr.ino)
        assert (got.ino, got.size, got.nlink) == (102, len(OLD), 0)
        assert (await fs.xattrs(attr.ino))["user.synapse.id"] == "syn102"
        assert await read_all(fs, fh) == OLD
        with pytest.raises(errors.NotFound):
            await fs.lookup(ROOT_INO, "f.txt")
        fs.release(fh)
        with pytest.raises(errors.NotFound):   # closed: nothing keeps it any more
            await fs.getattr(attr.ino)

    trio.run(main)


def test_an_open_folder_answers_fstat_after_it_is_removed(world, short_ttl):
    fs, clock = short_ttl

    async def main():
        d = await fs.lookup(ROOT_INO, "folder")
        dh = await fs.opendir(d.ino)
        world.remove(101)
        clock.t += 5
        got = await fs.getattr(d.ino)
        assert got.is_dir and got.ino == 101 and got.nlink == 0
        assert got.mtime == d.mtime
        fs.releasedir(dh)
        with pytest.raises(errors.NotFound):
            await fs.getattr(d.ino)

    trio.run(main)


def test_a_replaced_open_file_keeps_its_inode_and_the_new_version_gets_another(world, short_ttl):
    fs, clock = short_ttl

    async def main():
        old = await fs.lookup(ROOT_INO, "f.txt")
        fs.remember(old.ino)
        fh, _ = await fs.open(old.ino, writable=False)
        world.new_version(102, NEW)
        clock.t += 5
        got = await fs.getattr(old.ino)           # fstat(fd): the opened version's size
        assert (got.ino, got.size) == (old.ino, len(OLD))
        new = await fs.lookup(ROOT_INO, "f.txt")  # the name: the new version, a new inode
        assert new.ino != old.ino and new.size == len(NEW)
        assert fs.entity_id(new.ino) == 102
        assert await read_all(fs, fh) == OLD
        assert (await fs.xattrs(old.ino))["user.synapse.version"] == "1"
        assert (await fs.xattrs(new.ino))["user.synapse.version"] == "2"
        with pytest.raises(errors.ContentChanged) as exc:   # a stale name: kernel looks again
            await fs.open(old.ino, writable=False)
        assert exc.value.errno == errno.ESTALE
        fh2, _ = await fs.open(new.ino, writable=False)
        assert await read_all(fs, fh2) == NEW
        assert (await fs.getattr(old.ino)).size == len(OLD)
        fs.release(fh)
        fs.forget([(old.ino, 1)])
        assert fs.tree.frozen(old.ino) is None      # closed and forgotten: nothing kept

    trio.run(main)


def test_a_second_open_before_anyone_looked_again_is_sent_to_the_new_version(world, short_ttl):
    fs, clock = short_ttl

    async def main():
        old = await fs.lookup(ROOT_INO, "f.txt")
        fh, _ = await fs.open(old.ino, writable=False)
        world.new_version(102, NEW)
        clock.t += 5
        with pytest.raises(errors.ContentChanged):
            await fs.open(old.ino, writable=False)
        assert (await fs.getattr(old.ino)).size == len(OLD)
        assert await read_all(fs, fh) == OLD

    trio.run(main)


def test_writing_a_file_open_for_reading_is_etxtbsy(world):
    fs = make_fs(world)
    fs.writes.read_only = False             # the refusal comes before any write path work

    async def main():
        attr = await fs.lookup(ROOT_INO, "f.txt")
        fh, _ = await fs.open(attr.ino, writable=False)
        with pytest.raises(errors.OpenForReading) as exc:
            await fs.open(attr.ino, writable=True)
        assert exc.value.errno == errno.ETXTBSY
        with pytest.raises(errors.OpenForReading):
            await fs.setattr(attr.ino, 0, None, False)
        assert await read_all(fs, fh) == OLD

    trio.run(main)


class FailingRemote(VersionedRemote):
    def __init__(self):
        super().__init__()
        self.failing = True

    async def read(self, entity, start, length):
        self.calls.append(("read", entity.id, start, length))
        if self.failing:
            raise errors.Unavailable("S3 still failing after the retry budget")
        return self.blobs[entity.file_handle.id][start:start + length]


def test_the_kernels_retry_of_a_failed_read_gets_the_error_at_once_and_is_counted_once():
    """Issue 11 E: a failed read is remembered per open file for a few seconds, so the
    kernel's retry does not wait a second retry budget; status counts one error."""
    world = FailingRemote()
    world.add(100, "project", Kind.PROJECT)
    world.add(102, "f.txt", Kind.FILE, 100, data=OLD * 1000)
    clock = FakeClock()
    fs = make_fs(world, clock)

    async def main():
        attr = await fs.lookup(ROOT_INO, "f.txt")
        fh, _ = await fs.open(attr.ino, writable=False)
        errors.reset_status()
        with pytest.raises(errors.Unavailable) as first:
            await fs.read(fh, 0, 8192)
        assert errors.to_errno(first.value) == errno.EIO
        tries = world.count("read")
        with pytest.raises(errors.Unavailable) as again:     # the kernel's page retry
            await fs.read(fh, 4096, 4096)
        assert world.count("read") == tries                  # no new attempt
        assert errors.to_errno(again.value) == errno.EIO
        assert errors.status()["failures"] == 1 and errors.status()["by_errno"] == {"EIO": 1}
        world.failing = False
        clock.t += 10                                        # the memory is short
        assert await fs.read(fh, 4096, 10) == (OLD * 1000)[4096:4106]

    trio.run(main)


def test_inode_numbers_of_files_created_here_and_of_renames_over_files(world):
    """Issue 11 D: a saved file not being written shows its Synapse id; a rename over another
    file re-points the temporary inode the kernel holds, and the source's Synapse id keeps
    meaning the source."""
    fs = make_fs(world)
    tree = fs.tree
    writing: set[int] = set()
    tree.writing = writing.__contains__
    x = tree.new_temp_ino()
    fs.remember(x)
    writing.add(x)
    tree.alias(x, 300)                      # first save of a new file: syn300
    assert tree.ino_of(300) == x            # still being written: the inode it was created as
    writing.discard(x)
    assert tree.ino_of(300) == 300 and tree.entity_id(x) == 300
    tree.alias(tree.ino_of(300), 102)       # renamed over f.txt (syn102): a version of it
    assert tree.entity_id(x) == 102         # the kernel's inode for the name follows
    assert tree.entity_id(300) == 300       # syn300 (now in the trash) is still itself
    fs.forget([(x, 1)])
    assert tree.entity_id(x) == x and tree.ino_of(102) == 102
