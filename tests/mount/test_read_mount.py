"""Real read-only mounts of the sample project: ordinary tools against Synapse + S3."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from synfs.cli.demo_seed import EXTERNAL_FILES, PLAIN_FILES, SYNAPSE_STS_FILES, content

ALL = ([("synapse-sts", *f) for f in SYNAPSE_STS_FILES]
       + [("external-sts", *f) for f in EXTERNAL_FILES]
       + [("plain", *f) for f in PLAIN_FILES])


def rel(top: str, folder: str, name: str) -> str:
    return "/".join(p for p in (top, folder, name) if p)


def sh(*cmd: str, cwd=None) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=cwd).stdout


def test_ls_shows_the_tree(project_mount):
    top = sorted(os.listdir(project_mount.path))
    assert top == ["external-sts", "plain", "synapse-sts"]
    out = sh("ls", "-l", str(project_mount.path / "synapse-sts"))
    assert "README.txt" in out and "big" in out and "reads" in out
    assert os.listdir(project_mount.path / "synapse-sts/reads/run 1 (lane+A)") == [
        "sample_1.fastq", "sample_2.fastq"]


def test_stat_sizes_modes_and_mtimes(project_mount, seeded, emulator):
    owner, layout = seeded
    for top, folder, name, size in ALL:
        st = os.stat(project_mount.path / rel(top, folder, name))
        assert st.st_size == size, (top, folder, name)
        assert st.st_mode & 0o777 == 0o444
        assert st.st_uid == os.getuid()
    entity = owner.api.ok(owner.api.get(f"/entity/{layout['files']['plain/hello.txt']}"))
    from synfs.synapse.models import parse_date

    st = os.stat(project_mount.path / "plain/hello.txt")
    assert abs(st.st_mtime - parse_date(entity["modifiedOn"])) < 0.002
    assert os.stat(project_mount.path / "plain").st_mode & 0o777 == 0o555
    assert os.stat(project_mount.path / "synapse-sts").st_ino == int(layout["synapseStsFolder"][3:])
    assert os.stat(project_mount.path).st_ino == 1
    ino = os.stat(project_mount.path / "plain/hello.txt").st_ino
    assert ino == int(layout["files"]["plain/hello.txt"][3:])


def test_find_and_du_see_every_file(project_mount):
    found = sh("find", ".", "-type", "f", cwd=project_mount.path).split("\n")
    expected = {"./" + rel(*f[:3]) for f in ALL}
    assert set(x for x in found if x) == expected
    # du without --apparent-size counts st_blocks (512-byte units), not st_size
    blocks = {}
    for line in sh("du", "-a", "-B1", ".", cwd=project_mount.path).splitlines():
        used, name = line.split("\t", 1)
        blocks[name] = int(used)
    for f in ALL:
        assert blocks["./" + rel(*f[:3])] == -(-f[3] // 512) * 512, f
    total = int(sh("du", "-s", "-B1", ".", cwd=project_mount.path).split()[0])
    assert total >= sum(-(-f[3] // 512) * 512 for f in ALL) > 0


def test_cp_r_is_byte_identical(project_mount, tmp_path):
    dest = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(project_mount.path), str(dest)], check=True)
    for top, folder, name, size in ALL:
        data = (dest / rel(top, folder, name)).read_bytes()
        assert data == content(name, size), rel(top, folder, name)


def test_md5sum_matches_content_md5(project_mount, seeded):
    owner, layout = seeded
    for key in ("synapse-sts/big/random-100MiB.bin", "external-sts/matrix.csv",
                "plain/data/blob-1MiB.bin", "external-sts/empty.txt"):
        out = sh("md5sum", str(project_mount.path / key)).split()[0]
        assert out == os.getxattr(project_mount.path / key, "user.synapse.md5").decode()
        bundle = owner.api.ok(owner.api.post(f"/entity/{layout['files'][key]}/bundle2",
                                             {"includeFileHandles": True}))
        assert out == bundle["fileHandles"][0]["contentMd5"]


def test_empty_file_reads_as_empty(project_mount):
    assert (project_mount.path / "external-sts/empty.txt").read_bytes() == b""


def test_random_access_reads(project_mount):
    path = project_mount.path / "synapse-sts/big/random-100MiB.bin"
    expected = content("random-100MiB.bin", 100 * 1024 * 1024)
    with open(path, "rb") as fh:
        for off in (0, 77_777_777, 5, 100 * 1024 * 1024 - 10, 50 * 1024 * 1024):
            fh.seek(off)
            assert fh.read(4096) == expected[off:off + 4096]
        fh.seek(100 * 1024 * 1024)
        assert fh.read(10) == b""


def test_xattrs_name_the_entity(project_mount, seeded):
    owner, layout = seeded
    path = project_mount.path / "external-sts/matrix.csv"
    syn_id = layout["files"]["external-sts/matrix.csv"]
    bundle = owner.api.ok(owner.api.post(f"/entity/{syn_id}/bundle2", {
        "includeEntity": True, "includeFileHandles": True}))
    entity, handle = bundle["entity"], bundle["fileHandles"][0]
    expected = {"user.synapse.id": syn_id, "user.synapse.etag": entity["etag"],
                "user.synapse.version": str(entity["versionNumber"]),
                "user.synapse.file_handle_id": str(entity["dataFileHandleId"]),
                "user.synapse.md5": handle["contentMd5"]}
    assert str(handle["id"]) == expected["user.synapse.file_handle_id"]
    assert {name: os.getxattr(path, name).decode() for name in expected} == expected
    assert set(expected) <= set(os.listxattr(path))
    folder = project_mount.path / "external-sts"
    assert os.getxattr(folder, "user.synapse.id").decode() == layout["externalStsFolder"]
    for unknown in ("user.synapse.nope", "user.other", "user.synapse.ID"):
        with pytest.raises(OSError) as exc:
            os.getxattr(path, unknown)
        assert exc.value.errno == errno.ENODATA, unknown


def test_writes_are_refused_with_erofs(project_mount):
    for action in (lambda: open(project_mount.path / "new.txt", "w"),
                   lambda: open(project_mount.path / "plain/hello.txt", "r+b"),
                   lambda: os.mkdir(project_mount.path / "newdir"),
                   lambda: os.unlink(project_mount.path / "plain/hello.txt")):
        with pytest.raises(OSError) as exc:
            action()
        assert exc.value.errno == errno.EROFS


def test_missing_names_are_enoent(project_mount):
    with pytest.raises(FileNotFoundError):
        os.stat(project_mount.path / "plain/not-there.txt")
