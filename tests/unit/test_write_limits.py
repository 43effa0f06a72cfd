"""Unit tests of two write-path promises of issue 11 (A, D) with the fakes of
``test_writes_core``: a name whose S3 key would be too long for the folder's base key is
refused at create and rename, before anything is staged; a save that failed at close is
retried by a later close (not only by fsync); and writes where synfs may not write (Synapse
storage, an external bucket without STS) are EROFS with nothing sent."""

from __future__ import annotations

import errno

import pytest
import trio

from synfs import errors
from synfs.synapse.models import UploadDestination
from synfs.write.names import MAX_KEY, MAX_NAME, key_length
from tests.unit.test_writes_core import EXT, every_write, refusals, run, world  # noqa: F401

LONG_BASE = "k" * 900


@pytest.fixture
def long_key(world):  # noqa: F811
    w = world[2]
    w.dest[200] = UploadDestination(storage_location_id=EXT.storage_location_id,
                                    concrete_type=EXT.concrete_type, sts_enabled=True,
                                    bucket=EXT.bucket, base_key=LONG_BASE)
    return world


def test_a_name_whose_s3_key_is_too_long_is_refused_at_create_and_rename(long_key):
    fs, _, w, staging = long_key
    fits = "n" * (MAX_KEY - key_length(LONG_BASE, ""))
    too_long = fits + "n"
    assert len(too_long.encode()) < MAX_NAME          # short enough as a name: the key decides

    async def main():
        with pytest.raises(errors.NameTooLong) as exc:
            await fs.create(200, too_long)
        assert exc.value.errno == errno.ENAMETOOLONG and "S3 keys are at most 1024" in str(
            exc.value)
        with pytest.raises(errors.NameTooLong):
            await fs.rename(200, "doc.txt", 200, too_long, 0)
        assert w.calls == [] and list(staging.root.glob("*")) == []   # nothing staged or sent
        fh, _ = await fs.create(200, fits)            # one byte less fits
        await fs.write(fh, 0, b"x")
        await fs.flush(fh)
        fs.release(fh)
        assert [c[0] for c in w.calls] == ["store", "create_file"]
        await fs.rename(200, "doc.txt", 200, fits[:-1], 0)
        assert w.calls[-1][0] == "move"

    trio.run(main)


def test_a_failed_save_is_retried_by_a_later_close(world):  # noqa: F811
    fs, r, w, staging = world
    w.fail_store = True

    async def main():
        fh, attr = await fs.create(200, "later.txt")
        await fs.write(fh, 0, b"kept until saved")
        with pytest.raises(errors.Unavailable):
            await fs.flush(fh)
        fs.release(fh)
        await fs.settle()
        assert w.calls == [] and (await fs.lookup(200, "later.txt")).size == 16
        w.fail_store = False
        fh, _ = await fs.open(attr.ino, writable=False)   # open and close, nothing written
        await fs.flush(fh)
        fs.release(fh)
        assert [c[0] for c in w.calls] == ["store", "create_file"]
        eid = next(e for e, ent in r.entities.items() if ent.name == "later.txt")
        assert r.data[eid] == b"kept until saved" and staging.used == 0

    trio.run(main)


def test_files_kept_from_a_crash_count_in_the_budget_and_the_enospc_message(tmp_path):
    from synfs.write.staging import StagingArea

    area = StagingArea(tmp_path / "staging", 1000, owner="7")
    area.adopt(700)                                   # found at start-up
    staged = area.new("new.bin", parent_id=5, name="new.bin")
    staged.write(0, b"x" * 300)                       # fits: 1000 of 1000
    with pytest.raises(errors.NoSpace) as exc:
        staged.write(300, b"y")
    assert exc.value.errno == errno.ENOSPC
    assert "cannot take 1 more bytes: 1000 of 1000 bytes" in str(exc.value)
    assert "700 B of it kept from earlier mounts (see `synfs recover list`)" in str(exc.value)
    area.disown(700)                                  # saved or discarded: room again
    staged.write(300, b"y")
    assert area.used == 301 and area.kept_bytes == 0
    staged.discard()


def test_synapse_managed_storage_refuses_every_write_with_erofs(world):  # noqa: F811
    """Files and folders on Synapse storage (no STS write access there): every write, even by
    a user with every permission, is EROFS, and nothing reaches Synapse or S3."""
    fs, r, w, staging = world
    before = dict(r.entities)

    async def main():
        got = await refusals(every_write(fs, 300, "kept.txt", 301, "sub", 302))
        assert got == {what: "EROFS" for what in got}
        fh, _ = await fs.open(301, writable=False)          # still readable
        assert await fs.read(fh, 0, 100) == b"managed bytes"

    run(main)
    assert w.calls == [] and r.entities == before and staging.used == 0


def test_an_external_bucket_without_sts_refuses_every_write_with_erofs(world):  # noqa: F811
    """An external bucket without STS: synfs has no credentials to write there, so every
    write is EROFS too, and nothing reaches Synapse or S3."""
    fs, r, w, staging = world
    before = dict(r.entities)

    async def main():
        got = await refusals(every_write(fs, 600, "plain.txt", 601, "sub", 602))
        assert got == {what: "EROFS" for what in got}

    run(main)
    assert w.calls == [] and r.entities == before and staging.used == 0
