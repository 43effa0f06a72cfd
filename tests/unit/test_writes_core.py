"""Unit tests of the write path of the core (synfs.write.path / synfs.write.namespace) with fakes: no
FUSE, no HTTP. A fake writer records what Synapse would be asked to do."""

from __future__ import annotations

import errno
import hashlib

import pytest
import trio

from synfs import errors
from synfs.fs.core import ROOT_INO, Filesystem, Options
from synfs.write.staging import StagingArea
from synfs.synapse.models import CT, Entity, FileHandle, Kind, UploadDestination
from tests.unit.test_fs_core import FakeClock, FakeRemote

EXT = UploadDestination(storage_location_id=77, concrete_type=CT + "file.ExternalS3UploadDestination",
                        sts_enabled=True, bucket="bkt", base_key="base")
# Synapse-managed storage with STS: STS there grants read access only (synapse-api.md §6.1)
SYNAPSE = UploadDestination(storage_location_id=1, concrete_type=CT + "file.S3UploadDestination",
                            sts_enabled=True, bucket="synapse-bucket", base_key="12/abc")
# an external bucket without STS: Synapse could store there, synfs has no credentials to
EXT_NO_STS = UploadDestination(storage_location_id=99, concrete_type=EXT.concrete_type,
                               bucket="plain-bkt")
PERMS = dict(can_update=True, can_create=True, can_delete=True)


class FakeWriter:
    """Synapse + S3 as seen by RemoteWriter; state lives in the FakeRemote."""

    def __init__(self, remote: FakeRemote):
        self.remote = remote
        self.calls: list[tuple] = []
        self.dest: dict[int, UploadDestination] = {}
        self.fail_store = False
        self.next_id = 9000
        self.handles: dict[int, bytes] = {}

    async def upload_destination(self, folder_id):
        return self.dest.get(folder_id, SYNAPSE)

    async def store_bytes(self, target, path, name):
        if self.fail_store:
            raise errors.Unavailable("S3 is down")
        data = open(path, "rb").read()
        self.next_id += 1
        self.handles[self.next_id] = data
        self.calls.append(("store", name, data))
        return self.next_id

    def _set(self, eid, name, parent, handle_id, version):
        data = self.handles[handle_id]
        fh = FileHandle(id=handle_id, size=len(data), md5=hashlib.md5(data).hexdigest(),
                        concrete_type=CT + "file.S3FileHandle", storage_location_id=77,
                        bucket="bkt", key=f"base/{handle_id}")
        self.remote.entities[eid] = Entity(id=eid, name=name, kind=Kind.FILE, parent_id=parent,
                                           etag="e", created_on=1.0, modified_on=2.0,
                                           version=version, file_handle_id=handle_id,
                                           file_handle=fh, **PERMS)
        self.remote.data[eid] = data

    async def create_file(self, parent_id, name, handle_id):
        if any(self.remote.entities[c].name == name for c in self.remote.children.get(parent_id, [])):
            raise errors.AlreadyExists(name)
        self.next_id += 1
        eid = self.next_id
        self._set(eid, name, parent_id, handle_id, 1)
        self.remote.children.setdefault(parent_id, []).append(eid)
        self.calls.append(("create_file", parent_id, name))
        return eid

    async def new_version(self, eid, handle_id):
        old = self.remote.entities[eid]
        self._set(eid, old.name, old.parent_id, handle_id, old.version + 1)
        self.calls.append(("new_version", eid))

    async def create_folder(self, parent_id, name):
        self.next_id += 1
        self.remote.add(self.next_id, name, Kind.FOLDER, parent_id, **PERMS)
        self.calls.append(("create_folder", parent_id, name))
        return self.remote.entities[self.next_id]

    async def move(self, eid, parent_id, name):
        old = self.remote.entities[eid]
        self.remote.children[old.parent_id].remove(eid)
        self.remote.children.setdefault(parent_id, []).append(eid)
        self.remote.entities[eid] = Entity(**{**old.__dict__, "name": name, "parent_id": parent_id})
        self.calls.append(("move", eid, parent_id, name))

    async def delete(self, eid):
        old = self.remote.entities.pop(eid)
        self.remote.children[old.parent_id].remove(eid)
        self.calls.append(("delete", eid))


@pytest.fixture
def world(tmp_path):
    r = FakeRemote()
    r.add(100, "project", Kind.PROJECT, **PERMS)
    r.add(200, "ext", Kind.FOLDER, 100, **PERMS)
    r.add(201, "doc.txt", Kind.FILE, 200, data=b"version one", **PERMS)
    r.add(300, "managed", Kind.FOLDER, 100, **PERMS)
    r.add(301, "kept.txt", Kind.FILE, 300, data=b"managed bytes", **PERMS)
    r.add(302, "sub", Kind.FOLDER, 300, **PERMS)           # empty
    r.add(400, "ext-ro", Kind.FOLDER, 100)        # no permissions
    r.add(500, "ext-other", Kind.FOLDER, 100, **PERMS)
    r.add(600, "ext-no-sts", Kind.FOLDER, 100, **PERMS)
    r.add(601, "plain.txt", Kind.FILE, 600, data=b"plain bytes", **PERMS)
    r.add(602, "sub", Kind.FOLDER, 600, **PERMS)           # empty
    w = FakeWriter(r)
    w.dest.update({200: EXT, 400: EXT, 500: UploadDestination(
        storage_location_id=88, concrete_type=EXT.concrete_type, sts_enabled=True, bucket="b2"),
        600: EXT_NO_STS, 602: EXT_NO_STS})
    staging = StagingArea(tmp_path / "staging", limit=1024 * 1024)
    fs = Filesystem(r, 100, Options(), clock=FakeClock(), writer=w, staging=staging,
                    read_only=False)
    return fs, r, w, staging


def run(fn):
    trio.run(fn)


def test_new_file_is_created_on_flush_with_a_temporary_inode(world):
    fs, r, w, staging = world

    async def main():
        fh, attr = await fs.create(200, "new.txt")
        assert attr.ino > 1 << 48 and attr.size == 0
        await fs.write(fh, 0, b"hello")
        assert (await fs.getattr(attr.ino)).size == 5
        assert "new.txt" in [n for _, n, _ in await fs.readdir(await fs.opendir(200), 0)]
        assert w.calls == []
        await fs.flush(fh)
        assert [c[0] for c in w.calls] == ["store", "create_file"]
        eid = [e for e in r.children[200] if r.entities[e].name == "new.txt"][0]
        assert fs.entity_id(attr.ino) == eid                  # the temp inode is now an alias
        assert (await fs.lookup(200, "new.txt")).ino == attr.ino
        fs.release(fh)
        assert staging.used == 0 and list(staging.root.iterdir()) == []

    run(main)


def test_overwrite_partial_write_makes_a_new_version(world):
    fs, r, w, _ = world

    async def main():
        fh, _ = await fs.open(201, writable=True)
        await fs.write(fh, 8, b"TWO")
        assert await fs.read(fh, 0, 100) == b"version TWO"
        await fs.flush(fh)
        await fs.flush(fh)                                   # clean: nothing more to save
        fs.release(fh)
        assert w.calls[-1] == ("new_version", 201) and len(w.calls) == 2
        assert r.data[201] == b"version TWO" and r.entities[201].version == 2

    run(main)


def test_o_trunc_does_not_download_the_old_content(world):
    fs, r, w, _ = world

    async def main():
        r.calls.clear()
        fh, _ = await fs.open(201, writable=True, truncate=True)
        await fs.write(fh, 0, b"new")
        await fs.flush(fh)
        fs.release(fh)
        assert not [c for c in r.calls if c[0] == "read"]
        assert r.data[201] == b"new"

    run(main)


def test_where_writes_are_refused(world):
    fs, r, w, _ = world

    async def main():
        with pytest.raises(errors.ReadOnly):
            await fs.create(300, "x.txt")                  # Synapse-managed storage
        with pytest.raises(errors.PermissionDenied):
            await fs.create(400, "x.txt")                  # no CREATE
        with pytest.raises(errors.InvalidName):
            await fs.create(200, "bad#name")
        with pytest.raises(errors.NameTooLong):
            await fs.mkdir(200, "n" * 257)
        with pytest.raises(errors.CrossDevice):
            await fs.rename(200, "doc.txt", 500, "doc.txt", 0)
        with pytest.raises(errors.CrossDevice):
            await fs.rename(200, "doc.txt", 300, "doc.txt", 0)
        assert w.calls == []

    run(main)


def every_write(fs, folder: int, file_name: str, file_ino: int, sub_name: str, sub_ino: int):
    """Each write-type entry point of the core aimed at ``folder``, which holds the file
    ``file_name`` (inode ``file_ino``) and the empty folder ``sub_name`` (``sub_ino``)."""
    return {
        "create": lambda: fs.create(folder, "x.txt"),
        "create O_EXCL|O_TRUNC": lambda: fs.create(folder, "y.txt", exclusive=True,
                                                   truncate=True),
        "mkdir": lambda: fs.mkdir(folder, "newdir"),
        "open for writing": lambda: fs.open(file_ino, writable=True),
        "open O_TRUNC": lambda: fs.open(file_ino, writable=True, truncate=True),
        "truncate": lambda: fs.setattr(file_ino, 0, None, False),
        "chmod/chown/utimes": lambda: fs.setattr(file_ino, None, None, True),
        "chmod of the folder": lambda: fs.setattr(folder, None, None, True),
        "unlink": lambda: fs.unlink(folder, file_name),
        "rmdir": lambda: fs.rmdir(folder, sub_name),
        "rename file": lambda: fs.rename(folder, file_name, folder, "renamed.txt", 0),
        "rename folder": lambda: fs.rename(folder, sub_name, folder, "renamed", 0),
        "move into the subfolder": lambda: fs.rename(folder, file_name, sub_ino, file_name, 0),
        "create in the subfolder": lambda: fs.create(sub_ino, "x.txt"),
    }


async def refusals(writes) -> dict:
    """What each write raised, as errno names ("allowed" if it went through)."""
    got = {}
    for what, call in writes.items():
        try:
            await call()
            got[what] = "allowed"
        except errors.SynfsError as exc:
            got[what] = errno.errorcode[errors.to_errno(exc)]
    return got


def test_read_only_core_refuses_everything(world, tmp_path):
    """A read-only core refuses every write even in a writable external-STS folder."""
    _, r, w, _ = world
    r.add(202, "empty", Kind.FOLDER, 200, **PERMS)
    staging = StagingArea(tmp_path / "s2", 1024)
    fs = Filesystem(r, 100, Options(), clock=FakeClock(), writer=w, staging=staging,
                    read_only=True)
    before = dict(r.entities)

    async def main():
        got = await refusals(every_write(fs, 200, "doc.txt", 201, "empty", 202))
        assert got == {what: "EROFS" for what in got}

    run(main)
    assert w.calls == [] and r.entities == before and staging.used == 0


def test_staging_budget_gives_enospc(world):
    fs, _, _, staging = world

    async def main():
        fh, _ = await fs.create(200, "big.bin")
        await fs.write(fh, 0, b"x" * 1000)
        with pytest.raises(errors.NoSpace) as exc:
            await fs.write(fh, 1000, b"y" * (1024 * 1024))
        assert exc.value.errno == errno.ENOSPC
        await fs.write(fh, 1000, b"z" * 10)
        assert staging.used == 1010

    run(main)


def test_failed_save_keeps_the_data_and_synapse_unchanged(world, caplog):
    fs, r, w, staging = world
    w.fail_store = True

    async def main():
        fh, _ = await fs.open(201, writable=True, truncate=True)
        await fs.write(fh, 0, b"precious")
        with pytest.raises(errors.Unavailable):
            await fs.flush(fh)
        fs.release(fh)
        assert r.data[201] == b"version one"
        kept = list(staging.root.iterdir())
        assert [p.read_bytes() for p in kept] == [b"precious"]
        assert str(kept[0]) in caplog.text

    run(main)


def test_rename_over_an_existing_file_keeps_the_target(world):
    fs, r, w, _ = world

    async def main():
        fh, attr = await fs.create(200, ".doc.txt.swp")
        fs.remember(attr.ino)                         # as the FUSE layer does for the kernel
        await fs.write(fh, 0, b"edited")
        await fs.flush(fh)
        await fs.rename(200, ".doc.txt.swp", 200, "doc.txt", 0)
        fs.release(fh)
        assert r.entities[201].version == 2 and r.data[201] == b"edited"
        assert [r.entities[e].name for e in r.children[200]] == ["doc.txt"]
        assert fs.entity_id(attr.ino) == 201          # the kernel's inode follows the content
        fs.forget([(attr.ino, 1)])
        assert fs.entity_id(attr.ino) == attr.ino     # forgotten: the alias is gone

    run(main)


def test_rename_of_an_unsaved_file_over_an_existing_one(world):
    fs, r, w, _ = world

    async def main():
        fh, _ = await fs.create(200, "tmp.txt")
        await fs.write(fh, 0, b"fresh")
        await fs.rename(200, "tmp.txt", 200, "doc.txt", 0)
        await fs.flush(fh)
        fs.release(fh)
        assert ("create_file", 200, "tmp.txt") not in w.calls
        assert r.data[201] == b"fresh" and r.entities[201].version == 2

    run(main)


def test_unlink_of_an_unsaved_file_saves_nothing(world):
    fs, r, w, staging = world

    async def main():
        fh, _ = await fs.create(200, "scratch")
        await fs.write(fh, 0, b"temp")
        await fs.unlink(200, "scratch")
        await fs.flush(fh)
        fs.release(fh)
        assert w.calls == [] and list(staging.root.iterdir()) == []

    run(main)


def test_mkdir_rmdir_notempty(world):
    fs, r, w, _ = world

    async def main():
        attr = await fs.mkdir(200, "sub")
        assert attr.is_dir
        w.dest[attr.ino] = EXT
        fh, _ = await fs.create(attr.ino, "f")
        with pytest.raises(errors.NotEmpty):            # an unsaved file counts
            await fs.rmdir(200, "sub")
        await fs.flush(fh)
        fs.release(fh)
        with pytest.raises(errors.NotEmpty):
            await fs.rmdir(200, "sub")
        await fs.unlink(attr.ino, "f")
        await fs.rmdir(200, "sub")
        assert w.calls[-1] == ("delete", attr.ino)
        with pytest.raises(errors.ReadOnly):            # the project root is Synapse storage
            await fs.rmdir(ROOT_INO, "ext")

    run(main)


def _record(staging):
    import json

    from synfs.write import journal

    recs = [json.loads(p.read_text()) for p in journal.journal_dir(staging.root).glob("*.json")]
    assert len(recs) <= 1
    return recs[0] if recs else None


def test_the_record_is_durable_before_the_first_byte_and_follows_the_save(world):
    fs, r, w, staging = world
    states = []
    store = w.store_bytes

    async def spying_store(target, path, name):
        states.append(_record(staging)["state"])        # durable before the upload starts
        return await store(target, path, name)

    w.store_bytes = spying_store

    async def main():
        fh, _ = await fs.create(200, "new.txt")
        rec = _record(staging)
        assert rec["state"] == "open" and rec["name"] == "new.txt" and rec["parent_id"] == 200
        assert rec["entity_id"] is None and rec["storage_location_id"] == 77
        await fs.write(fh, 0, b"abc")
        await fs.flush(fh)
        assert states == ["closing"]
        rec = _record(staging)
        eid = fs.entity_id(_ino_of(fs, fh))
        assert rec["state"] == "saved" and rec["entity_id"] == eid
        assert rec["base_handle_id"] == r.entities[eid].file_handle_id
        await fs.write(fh, 3, b"d")
        assert _record(staging)["state"] == "open"       # changed after the save
        await fs.rename(200, "new.txt", 200, "renamed.txt", 0)
        assert _record(staging)["name"] == "renamed.txt"
        await fs.flush(fh)
        fs.release(fh)
        assert _record(staging) is None and list(staging.root.iterdir()) == []

    run(main)


def _ino_of(fs, fh):
    return fs.writes._writes[fh].ino


def test_a_flush_with_nothing_written_saves_nothing(world):
    fs, r, w, _ = world

    async def main():
        fh, _ = await fs.create(200, "echo.txt")          # `echo hi > f`: the shell's first
        await fs.flush(fh)                                 # close comes before any write
        assert w.calls == []
        await fs.write(fh, 0, b"hi\n")
        await fs.flush(fh)
        fs.release(fh)
        await fs.settle()
        assert [c[0] for c in w.calls] == ["store", "create_file"]
        fh, _ = await fs.open(201, writable=True, truncate=True)   # `: > doc.txt`
        await fs.flush(fh)
        assert w.calls[-1][0] == "create_file"
        fs.release(fh)
        await fs.settle()                                  # owed at the last release
        assert w.calls[-1] == ("new_version", 201) and r.data[201] == b""
        fh, attr = await fs.create(200, "touched")         # `touch new`: an empty file
        await fs.flush(fh)
        fs.release(fh)
        await fs.settle()
        assert w.calls[-1] == ("create_file", 200, "touched")

    run(main)


def test_a_failed_save_stays_visible_and_fsync_retries_without_a_new_upload(world):
    fs, r, w, staging = world
    create = w.create_file
    w.create_file = None

    async def failing(parent_id, name, handle_id):
        raise errors.Unavailable("Synapse is down")

    w.create_file = failing

    async def main():
        fh, attr = await fs.create(200, "kept.txt")
        await fs.write(fh, 0, b"precious")
        with pytest.raises(errors.Unavailable):
            await fs.flush(fh)
        fs.release(fh)
        await fs.settle()
        assert (await fs.lookup(200, "kept.txt")).size == 8          # still there
        assert _record(staging)["state"] == "uploaded"
        w.create_file = create
        fh, _ = await fs.open(attr.ino, writable=False)
        assert await fs.read(fh, 0, 100) == b"precious"
        await fs.fsync(fh)
        fs.release(fh)
        assert [c[0] for c in w.calls] == ["store", "create_file"]   # one upload only
        assert _record(staging) is None and staging.used == 0

    run(main)


def test_names_keys_and_sizes_synfs_cannot_store(world):
    from synfs.write.names import MAX_NAME, check_key
    from synfs.write.staging import MAX_FILE_SIZE

    fs, r, w, staging = world

    async def main():
        with pytest.raises(errors.NameTooLong):
            await fs.create(200, "x" * (MAX_NAME + 1))
        fh, _ = await fs.create(200, "x" * MAX_NAME)
        with pytest.raises(errors.FileTooLarge) as exc:
            await fs.setattr(_ino_of(fs, fh), MAX_FILE_SIZE + 1, fh, False)
        assert exc.value.errno == errno.EFBIG and staging.used == 0
        with pytest.raises(errors.NoSpace) as exc:
            await fs.setattr(_ino_of(fs, fh), 2 * 1024 * 1024, fh, False)
        assert "cannot take 2097152 more bytes: 0 of 1048576" in str(exc.value)

    run(main)
    with pytest.raises(errors.NameTooLong):
        check_key("k" * 900, "n" * 100)
    check_key("k" * 800, "n" * 100)
