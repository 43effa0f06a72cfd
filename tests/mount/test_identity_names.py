"""Names, sizes and identity on a real mount (issue 11 D, G): a file created through the mount
has its Synapse id as inode once closed; statfs and pathconf report the write path's name
limit; Synapse's "." and ".." names are listed under escaped names; the cache directory is
private to its user."""

from __future__ import annotations

import os
import stat
import time

import pytest

from synfs.write.names import MAX_NAME


@pytest.fixture(scope="module")
def idmount(seeded, mounts, tmp_path_factory):
    """A read-write mount of a fresh folder in the external STS folder, with a fresh cache
    directory. The folder goes to the trash afterwards, so the sample project keeps the
    files other tests expect."""
    owner, layout = seeded
    folder = owner.api.folder(layout["externalStsFolder"], f"identity-{time.time_ns()}")
    cache = tmp_path_factory.mktemp("idcache") / "new" / "cache"
    m = mounts(owner.token, folder["id"], "ident",
               ["--metadata-ttl", "1", "--xattrs", "--cache-dir", str(cache),
                "--cache-size", "64M"])
    m.cache = cache
    m.folder = folder["id"]
    yield m
    owner.api.ok(owner.api.delete(f"/entity/{folder['id']}"), (200, 204))


def syn_id(path) -> int:
    return int(os.getxattr(path, "user.synapse.id").decode()[3:])


def wait_for(cond, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_file_created_here_has_its_synapse_id_as_inode_once_closed(idmount):
    path = idmount.path / f"created-{time.time_ns()}.txt"
    with open(path, "wb") as f:
        f.write(b"made on this mount")
        f.flush()
        assert os.fstat(f.fileno()).st_ino >= 1 << 48     # no Synapse id before the save
    eid = syn_id(path)
    # the kernel keeps the attributes it has for --metadata-ttl (1 s here), then asks again
    wait_for(lambda: os.stat(path).st_ino == eid, "the Synapse id as inode")
    with open(path, "rb") as f:
        assert os.fstat(f.fileno()).st_ino == eid
        assert f.read() == b"made on this mount"
    assert [e.inode() for e in os.scandir(idmount.path) if e.name == path.name] == [eid]


def test_statfs_and_pathconf_report_the_name_limit_of_writes(idmount):
    assert os.statvfs(idmount.path).f_namemax == MAX_NAME
    assert os.pathconf(idmount.path, "PC_NAME_MAX") == MAX_NAME


def test_dot_names_are_listed_escaped(seeded, idmount):
    owner, layout = seeded
    holder = owner.api.folder(idmount.folder, f"dots-{time.time_ns()}")
    dot = owner.api.folder(holder["id"], ".")
    dotdot = owner.api.folder(holder["id"], "..")
    owner.api.folder(dot["id"], "inside")
    where = idmount.path / holder["name"]
    wait_for(where.exists, "the new folder to show")
    assert sorted(os.listdir(where)) == ["%2E", "%2E%2E"]
    assert stat.S_ISDIR(os.stat(where / "%2E").st_mode)
    assert os.stat(where / "%2E").st_ino == int(dot["id"][3:])
    assert os.stat(where / "%2E%2E").st_ino == int(dotdot["id"][3:])
    assert os.listdir(where / "%2E") == ["inside"]
    assert "shown as '%2E'" in idmount.log_text()
    os.rename(where / "%2E", where / "was dot")          # handled like any other name
    assert owner.api.ok(owner.api.get(f"/entity/{dot['id']}"))["name"] == "was dot"
    os.rmdir(where / "%2E%2E")
    assert sorted(os.listdir(where)) == ["was dot"]


def test_the_cache_directory_is_private(idmount):
    data = idmount.path / "cached.bin"
    content = os.urandom(100_000)
    data.write_bytes(content)
    assert data.read_bytes() == content        # read back from S3, through the data cache
    wait_for(lambda: list((idmount.cache / "data").glob("*/meta.json")), "a cached block")
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)   # noqa: E731
    assert mode(idmount.cache.parent) == 0o700 and mode(idmount.cache) == 0o700
    assert mode(idmount.cache / "data") == 0o700
    for meta in (idmount.cache / "data").glob("*/meta.json"):
        assert mode(meta.parent) == 0o700 and mode(meta) == 0o600
