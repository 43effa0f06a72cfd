"""REST frugality of the filesystem core: listings answer folders and names, sizes cost one
call per file only when asked for, and the persistent metadata store answers a remount."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import trio

from synfs import errors
from synfs.fs.core import ROOT_INO, Filesystem, Options
from synfs.fs.metastore import MetaStore
from synfs.synapse.models import Kind
from tests.unit.test_fs_core import FakeClock, FakeRemote


class CountingRemote(FakeRemote):
    """Also records how many get_entity calls were in flight at once."""

    def __init__(self):
        super().__init__()
        self.in_flight = self.max_in_flight = 0

    async def get_entity(self, eid):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await super().get_entity(eid)
        finally:
            self.in_flight -= 1


@pytest.fixture
def tree():
    r = CountingRemote()
    r.add(100, "project", Kind.PROJECT)
    for d in range(3):
        r.add(200 + d, f"dir{d}", Kind.FOLDER, 100)
        for f in range(10):
            r.add(1000 + 100 * d + f, f"file{f:02d}.bin", Kind.FILE, 200 + d, data=b"x" * (f + 1))
    return r


def make_fs(remote, store=None):
    return Filesystem(remote, 100, Options(uid=7, gid=8), clock=FakeClock(), store=store)


async def walk(fs, ino=ROOT_INO, out=None):
    """What ``find`` does: opendir/readdir down the tree, never a stat."""
    out = {} if out is None else out
    fh = await fs.opendir(ino)
    offset = 0
    while batch := await fs.readdir(fh, offset):
        for offset, name, attr in batch:
            out[attr.ino] = (name, attr)
            if attr.is_dir:
                await walk(fs, attr.ino, out)
    fs.releasedir(fh)
    return out


def new_version(remote, eid, data):
    old = remote.entities[eid]
    fh = dataclasses.replace(old.file_handle, id=old.file_handle.id + 1, size=len(data))
    remote.entities[eid] = dataclasses.replace(old, version=old.version + 1, file_handle=fh,
                                               file_handle_id=fh.id, modified_on=old.modified_on + 1)


def test_a_tree_walk_costs_listings_only(tree):
    fs = make_fs(tree)
    seen = trio.run(walk, fs)
    assert len(seen) == 33
    assert tree.count("list_children") == 4
    assert tree.count("get_entity") == 1                  # the mount root only
    dirs = [a for _, a in seen.values() if a.is_dir]
    files = [a for _, a in seen.values() if not a.is_dir]
    assert len(dirs) == 3 and not any(a.provisional for a in dirs)
    assert all(a.mtime == tree.entities[a.ino].modified_on for a in dirs)
    assert len(files) == 30 and all(a.provisional and a.size == 0 for a in files)


def test_stat_after_listing_fetches_each_file_once_with_siblings_alongside(tree):
    tree.delay = 0.01
    fs = make_fs(tree)

    async def main():
        seen = await walk(fs)
        before = tree.count("get_entity")
        sizes = {}
        for ino, (name, attr) in sorted(seen.items()):   # ls -l: stat in listing order
            sizes[ino] = (await fs.getattr(ino)).size
        assert tree.count("get_entity") - before == 30    # each file once, nothing wasted
        assert all(sizes[e] == tree.entities[e].file_handle.size for e in sizes
                   if tree.entities[e].kind is Kind.FILE)
        assert tree.max_in_flight >= 3                    # the run of misses went 3 at a time
        again = [(await fs.getattr(ino)).size for ino in sorted(seen)]
        assert tree.count("get_entity") - before == 30 and again == list(sizes.values())

    trio.run(main)


def test_a_single_stat_after_listing_costs_one_call(tree):
    fs = make_fs(tree)

    async def main():
        seen = await walk(fs)
        before = tree.count("get_entity")
        ino = next(i for i, (n, a) in seen.items() if n == "file05.bin" and i // 100 == 11)
        assert (await fs.getattr(ino)).size == 6
        assert not (await fs.getattr(ino)).provisional
        assert tree.count("get_entity") - before == 1

    trio.run(main)


def test_a_listing_after_stat_gives_real_sizes_and_a_new_version_is_noticed(tree):
    fs = make_fs(tree)

    async def main():
        await fs.lookup(ROOT_INO, "dir0")
        attr = await fs.lookup(200, "file03.bin")
        assert attr.size == 4 and not attr.provisional
        fs.tree._listings.clear()                               # the listing expires
        new_version(tree, 1003, b"longer content")
        seen = await walk(fs, 200)
        name, a = seen[1003]
        assert a.provisional                               # the cached size is for version 1
        assert (await fs.getattr(1003)).size == len(b"longer content")

    trio.run(main)


def test_the_store_answers_a_remount_without_per_file_calls(tree, tmp_path):
    store = MetaStore(tmp_path / "meta.sqlite")
    fs = make_fs(tree, store)

    async def first():
        seen = await walk(fs)
        for ino, (_, attr) in seen.items():
            await fs.getattr(ino)

    trio.run(first)
    store.close()
    tree.calls.clear()
    new_version(tree, 1205, b"changed")                    # changed while unmounted

    store2 = MetaStore(tmp_path / "meta.sqlite")
    fs2 = make_fs(tree, store2)
    seen = trio.run(walk, fs2)
    files = {ino: a for ino, (_, a) in seen.items() if not a.is_dir}
    assert tree.count("get_entity") == 1                   # the root; no file bundles
    assert files[1205].provisional
    assert all(not a.provisional and a.size == tree.entities[i].file_handle.size
               for i, a in files.items() if i != 1205)
    assert store2.status()["hits"] == 29 and store2.status()["stale"] == 1


def test_an_entity_from_the_store_is_refetched_before_open(tree, tmp_path):
    store = MetaStore(tmp_path / "meta.sqlite")
    trio.run(lambda: walk_and_stat(make_fs(tree, store)))
    store.close()
    # READ stays, DOWNLOAD is revoked on an ancestor: the file's version and modifiedOn stay
    tree.entities[1001] = dataclasses.replace(tree.entities[1001], can_download=False)
    fs = make_fs(tree, MetaStore(tmp_path / "meta.sqlite"))

    async def main():
        await walk(fs)
        assert (await fs.getattr(1001)).size == 2          # attributes from the store
        with pytest.raises(errors.PermissionDenied):
            await fs.open(1001, writable=False)

    trio.run(main)


async def walk_and_stat(fs):
    for ino in await walk(fs):
        await fs.getattr(ino)


def test_the_store_is_bounded_and_survives_a_corrupt_file(tree, tmp_path, caplog):
    store = MetaStore(tmp_path / "meta.sqlite", max_entries=10)
    trio.run(lambda: walk_and_stat(make_fs(tree, store)))
    store.flush()
    rows = store._db.execute("SELECT COUNT(*) FROM entities").fetchone()[0]
    assert rows == 10
    store.close()

    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="synfs.fs.metastore"):
        broken = MetaStore(bad)
        fs = make_fs(tree, broken)
        seen = trio.run(walk, fs)                          # works, just without the store
    assert len(seen) == 33
    assert not broken.enabled
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "synfs.fs.metastore" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings                    # said once, not per lookup
    assert str(bad) in warnings[0] and "running without it" in warnings[0]


def test_a_store_locked_by_another_mount_keeps_its_records_for_later(tree, tmp_path):
    path = tmp_path / "meta.sqlite"
    store = MetaStore(path)
    other = MetaStore(path)
    other._db.execute("BEGIN IMMEDIATE")                   # another mount is writing
    trio.run(lambda: walk_and_stat(make_fs(tree, store)))
    store.flush()
    assert store.enabled and len(store._pending) == 30     # kept, not lost, not fatal
    other._db.execute("COMMIT")
    store.flush()
    assert not store._pending
    assert MetaStore(path).get(1001, 1, tree.entities[1001].modified_on) is not None


def test_a_failing_stat_among_siblings_raises_its_own_error(tree):
    """A run of misses fetches siblings in a nursery; the file asked for must still fail with
    its own domain error (here Unavailable -> EIO), never an exception group, which the errno
    boundary would log as an internal error."""
    fs = make_fs(tree)

    async def main():
        seen = await walk(fs)
        files = [i for i, (n, a) in sorted(seen.items()) if not a.is_dir]
        await fs.getattr(files[0])                      # the first miss: no siblings yet
        original = tree.get_entity

        async def failing(eid):
            if eid == files[1]:
                raise errors.Unavailable("Synapse gave up (429)")
            return await original(eid)

        tree.get_entity = failing
        with pytest.raises(errors.Unavailable):         # the second miss runs with siblings
            await fs.getattr(files[1])

    trio.run(main)
