"""The snapshot file without Synapse: what the writer records and the reader refuses, the
diff of two snapshots, the snapshot-backed tree the core mounts, the pre-signed URL batches
and the progress line."""

from __future__ import annotations

import dataclasses
import io
import sqlite3

import pytest
import trio

from synfs import errors
from synfs.cli.snapshot import Bar
from synfs.config import EXIT_BAD_SNAPSHOT
from synfs.fs.attrs import ROOT_INO
from synfs.fs.core import Filesystem
from synfs.fs.snaptree import SnapTree
from synfs.remote.facade import _UrlCache
from synfs.snapshot.build import Progress
from synfs.snapshot.diff import diff
from synfs.snapshot.store import Node, Snapshot, SnapshotError, SnapshotWriter, partial_path

S3 = "org.sagebionetworks.repo.model.file.S3FileHandle"


def fnode(i, parent, name, *, version=1, size=10, loc=1, md5="m"):
    return Node(id=i, parent_id=parent, name=name, kind="file", version=version,
                modified_on=1000.0 + i, size=size, md5=md5, file_handle_id=9000 + i,
                concrete_type=S3, storage_location_id=loc, bucket="b", key=f"k/{i}")


def make(path, files, *, sts=(2,), folders=((11, 10, "sub"),)):
    w = SnapshotWriter(path, 10, {"source": "listings", "user_id": "42"})
    w.put([Node(id=10, parent_id=None, name="root", kind="project")] +
          [Node(id=i, parent_id=p, name=n, kind="folder") for i, p, n in folders] + files)
    for loc in (1, 2):
        w.put_location(loc, loc in sts, "b", None)
    return w.finish({"calls": "3"})


def test_writer_renames_only_when_complete_and_reader_serves_nodes(tmp_path):
    out = tmp_path / "t.synfs"
    w = SnapshotWriter(out, 10, {"source": "listings"})
    w.put([Node(id=10, parent_id=None, name="root", kind="project")])
    assert partial_path(out).exists() and not out.exists()
    w.close()
    with pytest.raises(SnapshotError, match="unfinished"):
        Snapshot(partial_path(out))
    make(out, [fnode(100, 10, "a.txt"), fnode(101, 11, "b.txt", size=5)])
    snap = Snapshot(out)
    assert [c.name for c in snap.children(10)] == ["a.txt", "sub"]
    assert snap.paths()[101] == "sub/b.txt"
    info = snap.info()
    assert (info["files"], info["folders"], info["bytes"], info["user_id"]) == (2, 1, 15, "42")
    ent = snap.node(100).entity()
    assert ent.file_handle.key == "k/100" and ent.version == 1 and ent.can_download


def test_foreign_garbage_damaged_and_newer_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE x (y)").connection.commit()
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"hello" * 100)
    good = make(tmp_path / "good.synfs", [fnode(100, 10, "a")])
    newer = tmp_path / "newer.synfs"
    newer.write_bytes(good.read_bytes())
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    damaged = tmp_path / "damaged.synfs"
    data = bytearray(good.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)
    damaged.write_bytes(bytes(data))
    for bad, words in ((foreign, "not a synfs snapshot"), (garbage, "not an SQLite"),
                       (newer, "format 99"), (damaged, "damaged"),
                       (tmp_path / "missing", "cannot read")):
        with pytest.raises(SnapshotError, match=words) as exc:
            Snapshot(bad)
        assert exc.value.exit_code == EXIT_BAD_SNAPSHOT


def test_resume_refuses_a_partial_file_of_another_root(tmp_path):
    out = tmp_path / "t.synfs"
    SnapshotWriter(out, 10, {"source": "listings"}).close()
    with pytest.raises(SnapshotError, match="another root"):
        SnapshotWriter(out, 11, {"source": "listings"})
    SnapshotWriter(out, 11, {"source": "listings"}, restart=True).close()


def test_diff_by_path(tmp_path):
    a = Snapshot(make(tmp_path / "a.synfs", [fnode(100, 10, "same"), fnode(101, 10, "gone"),
                                             fnode(102, 11, "changes")]))
    b = Snapshot(make(tmp_path / "b.synfs", [fnode(100, 10, "same"), fnode(103, 10, "new"),
                                             fnode(102, 11, "changes", version=2, size=11,
                                                   md5="n")]))
    d = diff(a, b)
    assert d.lines() == ["- gone", "+ new",
                         "M sub/changes (version 1 -> 2, size 10 -> 11, md5)"]
    assert diff(a, a).empty


def test_core_serves_a_snapshot_without_a_remote_call(tmp_path):
    snap = Snapshot(make(tmp_path / "t.synfs", [fnode(100, 10, "a.txt", size=123),
                                                fnode(101, 11, "b.txt")]))

    class NoRemote:
        def __getattr__(self, name):
            raise AssertionError(f"remote.{name} called")

    fs = Filesystem(NoRemote(), 10, tree=SnapTree(snap))

    async def walk():
        attr = await fs.lookup(ROOT_INO, "a.txt")
        assert attr.size == 123 and attr.ino == 100
        sub = await fs.lookup(ROOT_INO, "sub")
        fh = await fs.opendir(sub.ino)
        names = [name for _, name, _ in await fs.readdir(fh, 0)]
        assert names == ["b.txt"]
        with pytest.raises(errors.NotFound):
            await fs.lookup(ROOT_INO, "nope")
        assert (await fs.getattr(101)).size == 10
        return (await fs.xattrs(100))["user.synapse.version"]

    assert trio.run(walk) == "1"


def test_url_batches_name_the_next_files_needing_urls(tmp_path):
    # location 2 is STS: its files never need URLs; location 1 is not
    files = [fnode(100 + i, 10, f"f{i:03d}", loc=1) for i in range(150)] + \
        [fnode(400, 10, "sts.bin", loc=2)]
    tree = SnapTree(Snapshot(make(tmp_path / "t.synfs", files)))
    assert tree.files_needing_urls == 150 and tree.sts_locations == {1: False, 2: True}
    first = tree.url_batch(100)
    assert len(first) == 99 and first[0] == (101, 9101) and (400, 9400) not in first
    last = tree.url_batch(249)                 # the end wraps to the start, never itself
    assert len(last) == 99 and (249, 9249) not in last and last[0] == (100, 9100)
    assert tree.url_batch(400) == []


def test_url_cache_fetches_a_batch_once_and_serves_the_rest_from_it():
    calls = []

    class Client:
        def presigned_urls(self, pairs):
            calls.append(list(pairs))
            return {fh: (errors.PermissionDenied("no") if fh == 3 else f"url-{fh}")
                    for _, fh in pairs}

    cache = _UrlCache(Client())
    cache.batch = lambda eid: [(eid + 1, 2), (eid + 2, 3)]
    assert cache.provider(10, 1)() == "url-1"
    assert cache.provider(11, 2)() == "url-2"
    assert calls == [[(10, 1), (11, 2), (12, 3)]]
    with pytest.raises(errors.PermissionDenied):
        cache.provider(12, 3)()                # failures are not cached: asked again
    assert len(calls) == 2


def test_progress_bar_on_a_terminal_and_plain_lines_otherwise():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, plain = Tty(), io.StringIO()
    p = Progress(phase="done", files_done=5, files_total=10, folders=2, calls=7)
    Bar(tty, True)(p)
    bar = Bar(plain, True)
    bar(dataclasses.replace(p, phase="files"))
    assert plain.getvalue() == ""              # plain lines only every 10 s
    bar(p)
    assert tty.getvalue().startswith("\r[##########----------] done: 2 folders, files 5/10, "
                                     "7 calls, ETA ")
    assert plain.getvalue().startswith("done: 2 folders") and plain.getvalue().endswith("\n")
    quiet = io.StringIO()
    Bar(quiet, False)(p)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("args, words", [
    (["syn1", "-o", "/nonexistent/dir/t.synfs"], "not a writable directory"),
    (["syn1", "-o", "/tmp"], "is a directory"),
    (["syn1", "-o", "t.synfs", "--where", "a = 1"], "--where needs --view"),
    (["nonsense", "-o", "t.synfs"], "not a Synapse id"),
    (["info"], "usage: synfs snapshot info FILE"),
])
def test_snapshot_command_line_errors_are_one_line_exit_2(args, words, capsys):
    from synfs.cli.main import main

    assert main(["snapshot", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
