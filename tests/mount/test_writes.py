"""Writes through real mounts on an external-bucket STS folder: every change is a Synapse
entity or version, and close() returns only once Synapse holds it."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time

import pytest
import requests

WRITER_EXTRA = ["--metadata-ttl", "1", "--xattrs"]


@pytest.fixture(scope="module")
def wmount(seeded, mounts):
    """A read-write mount of the whole sample project, as the owner of the external bucket."""
    owner, layout = seeded
    return mounts(owner.token, layout["project"], "rw", WRITER_EXTRA)


@pytest.fixture
def ext(wmount, request):
    """A fresh folder (created through the mount) inside the external STS folder."""
    path = wmount.path / "external-sts" / f"t-{request.node.name[:60]}"
    path.mkdir()
    return path


def api_of(seeded):
    return seeded[0].api


def entity_at(seeded, path, wmount) -> dict:
    syn_id = os.getxattr(path, "user.synapse.id").decode()
    return api_of(seeded).ok(api_of(seeded).get(f"/entity/{syn_id}"))


def synapse_bytes(seeded, syn_id: str, version: int | None = None) -> tuple[bytes, dict]:
    """Content as Synapse serves it: bundle -> file handle -> pre-signed URL download."""
    api = api_of(seeded)
    path = f"/entity/{syn_id}" + (f"/version/{version}" if version else "") + "/bundle2"
    bundle = api.ok(api.post(path, {"includeEntity": True, "includeFileHandles": True}))
    fh = [h for h in bundle["fileHandles"] if str(h["id"]) == bundle["entity"]["dataFileHandleId"]][0]
    batch = api.ok(api.post("/fileHandle/batch", {
        "requestedFiles": [{"fileHandleId": fh["id"], "associateObjectId": syn_id,
                            "associateObjectType": "FileEntity"}],
        "includePreSignedURLs": True}, prefix="file"), 201)
    url = batch["requestedFiles"][0]["preSignedURL"]
    data = requests.get(url, timeout=60).content
    return data, fh


def versions(seeded, syn_id: str) -> list[dict]:
    api = api_of(seeded)
    return api.ok(api.get(f"/entity/{syn_id}/version?offset=0&limit=50"))["results"]


def test_create_write_close_makes_a_file_entity(seeded, ext):
    data = os.urandom(300_000)
    with open(ext / "new.bin", "wb") as fh:
        fh.write(data)
    syn_id = os.getxattr(ext / "new.bin", "user.synapse.id").decode()
    got, handle = synapse_bytes(seeded, syn_id)
    assert got == data and handle["contentMd5"] == hashlib.md5(data).hexdigest()
    assert handle["contentSize"] == len(data)
    ent = entity_at(seeded, ext / "new.bin", None)
    assert ent["name"] == "new.bin" and ent["versionNumber"] == 1
    assert (ext / "new.bin").read_bytes() == data
    assert os.stat(ext / "new.bin").st_size == len(data)


def test_touch_creates_an_empty_file(seeded, ext):
    subprocess.run(["touch", str(ext / "empty")], check=True)
    syn_id = os.getxattr(ext / "empty", "user.synapse.id").decode()
    got, handle = synapse_bytes(seeded, syn_id)
    assert got == b"" and handle["contentSize"] == 0


def test_overwrite_is_a_new_version_and_keeps_history(seeded, ext):
    (ext / "doc.txt").write_bytes(b"first\n")
    syn_id = os.getxattr(ext / "doc.txt", "user.synapse.id").decode()
    (ext / "doc.txt").write_bytes(b"second version\n")
    assert (ext / "doc.txt").read_bytes() == b"second version\n"
    vs = versions(seeded, syn_id)
    assert len(vs) == 2
    assert os.getxattr(ext / "doc.txt", "user.synapse.version") == b"2"   # the mount knows
    assert synapse_bytes(seeded, syn_id, 1)[0] == b"first\n"
    assert synapse_bytes(seeded, syn_id, 2)[0] == b"second version\n"


def test_append_and_partial_overwrite(seeded, ext):
    (ext / "log.txt").write_bytes(b"0123456789")
    with open(ext / "log.txt", "ab") as fh:
        fh.write(b"abc")
    with open(ext / "log.txt", "r+b") as fh:
        fh.seek(2)
        fh.write(b"XY")
    syn_id = os.getxattr(ext / "log.txt", "user.synapse.id").decode()
    assert synapse_bytes(seeded, syn_id)[0] == b"01XY456789abc"
    assert len(versions(seeded, syn_id)) == 3


def test_truncate_by_path_and_by_handle(seeded, ext):
    (ext / "cut.txt").write_bytes(b"x" * 1000)
    os.truncate(ext / "cut.txt", 10)
    syn_id = os.getxattr(ext / "cut.txt", "user.synapse.id").decode()
    assert synapse_bytes(seeded, syn_id)[0] == b"x" * 10
    with open(ext / "cut.txt", "r+b") as fh:
        fh.truncate(3)
    assert synapse_bytes(seeded, syn_id)[0] == b"xxx"
    assert os.stat(ext / "cut.txt").st_size == 3


def test_fsync_saves_before_close(seeded, ext):
    fh = open(ext / "synced.txt", "wb")
    try:
        fh.write(b"durable")
        fh.flush()
        os.fsync(fh.fileno())
        syn_id = os.getxattr(ext / "synced.txt", "user.synapse.id").decode()
        assert synapse_bytes(seeded, syn_id)[0] == b"durable"
    finally:
        fh.close()


def test_mkdir_rmdir_and_enotempty(seeded, ext):
    (ext / "d").mkdir()
    folder = entity_at(seeded, ext / "d", None)
    assert folder["concreteType"].endswith(".Folder") and folder["name"] == "d"
    assert folder["parentId"] == os.getxattr(ext, "user.synapse.id").decode()
    (ext / "d" / "f.txt").write_bytes(b"f")
    with pytest.raises(OSError) as exc:
        os.rmdir(ext / "d")
    assert exc.value.errno == errno.ENOTEMPTY
    assert api_of(seeded).get(f"/entity/{folder['id']}").status_code == 200
    os.unlink(ext / "d" / "f.txt")
    os.rmdir(ext / "d")
    assert not (ext / "d").exists()
    resp = api_of(seeded).get(f"/entity/{folder['id']}")
    assert resp.status_code == 404 and "trash" in resp.json()["reason"]


def test_unlink_moves_to_trash(seeded, ext):
    (ext / "gone.txt").write_bytes(b"bye")
    syn_id = os.getxattr(ext / "gone.txt", "user.synapse.id").decode()
    os.unlink(ext / "gone.txt")
    assert not (ext / "gone.txt").exists()
    resp = api_of(seeded).get(f"/entity/{syn_id}")
    assert resp.status_code == 404 and "trash" in resp.json()["reason"]


def test_rename_files_and_folders(seeded, ext):
    (ext / "a.txt").write_bytes(b"A")
    syn_id = os.getxattr(ext / "a.txt", "user.synapse.id").decode()
    (ext / "sub").mkdir()
    os.rename(ext / "a.txt", ext / "sub" / "b.txt")
    assert (ext / "sub" / "b.txt").read_bytes() == b"A"
    ent = api_of(seeded).ok(api_of(seeded).get(f"/entity/{syn_id}"))
    assert ent["name"] == "b.txt" and ent["versionNumber"] == 1   # no copy, no new version
    sub_id = os.getxattr(ext / "sub", "user.synapse.id").decode()
    assert ent["parentId"] == sub_id
    os.rename(ext / "sub", ext / "sub2")
    assert (ext / "sub2" / "b.txt").read_bytes() == b"A"
    sub = api_of(seeded).ok(api_of(seeded).get(f"/entity/{sub_id}"))
    assert sub["name"] == "sub2" and os.getxattr(ext / "sub2", "user.synapse.id").decode() == sub_id


def test_rename_over_existing_keeps_target_history(seeded, ext):
    (ext / "target.txt").write_bytes(b"old")
    target_id = os.getxattr(ext / "target.txt", "user.synapse.id").decode()
    (ext / ".target.txt.tmp").write_bytes(b"new content")
    os.rename(ext / ".target.txt.tmp", ext / "target.txt")
    assert (ext / "target.txt").read_bytes() == b"new content"
    assert os.getxattr(ext / "target.txt", "user.synapse.id").decode() == target_id
    assert [v["versionNumber"] for v in versions(seeded, target_id)] == [2, 1]
    assert synapse_bytes(seeded, target_id, 1)[0] == b"old"
    assert sorted(os.listdir(ext)) == ["target.txt"]


def test_editor_style_save(seeded, ext):
    """Write a temp file in the same folder, fsync, rename over the original (vim/emacs-like)."""
    (ext / "notes.md").write_text("v1\n")
    notes_id = os.getxattr(ext / "notes.md", "user.synapse.id").decode()
    with open(ext / ".notes.md.swp", "w") as fh:
        fh.write("v2 edited\n")
        fh.flush()
        os.fsync(fh.fileno())
        os.rename(ext / ".notes.md.swp", ext / "notes.md")  # renamed while still open
    assert (ext / "notes.md").read_text() == "v2 edited\n"
    assert synapse_bytes(seeded, notes_id)[0] == b"v2 edited\n"
    assert os.listdir(ext) == ["notes.md"]


def test_move_across_storage_locations_is_exdev(wmount, ext):
    (ext / "x.txt").write_bytes(b"x")
    with pytest.raises(OSError) as exc:
        os.rename(ext / "x.txt", wmount.path / "plain" / "x.txt")
    assert exc.value.errno == errno.EXDEV
    # mv falls back to copy + unlink, which fails cleanly on the read-only side
    res = subprocess.run(["mv", str(ext / "x.txt"), str(wmount.path / "plain")],
                         capture_output=True, text=True)
    assert res.returncode != 0 and (ext / "x.txt").exists()


def test_names_synapse_cannot_store(ext):
    for bad in ("a#b.txt", "tab\there", "ünïcode.txt", " lead.txt"):
        with pytest.raises(OSError) as exc:
            open(ext / bad, "wb").close()
        assert exc.value.errno == errno.EINVAL, bad
    with pytest.raises(OSError) as exc:
        os.mkdir(ext / ("n" * 256 + "x"))
    assert exc.value.errno == errno.ENAMETOOLONG
    assert os.listdir(ext) == []


def test_erofs_outside_external_sts(wmount):
    for folder in ("synapse-sts", "plain", "."):
        with pytest.raises(OSError) as exc:
            open(wmount.path / folder / "nope.txt", "wb").close()
        assert exc.value.errno == errno.EROFS, folder
    with pytest.raises(OSError) as exc:
        open(wmount.path / "plain/hello.txt", "ab").close()
    assert exc.value.errno == errno.EROFS
    with pytest.raises(OSError) as exc:
        os.mkdir(wmount.path / "synapse-sts" / "dir")
    assert exc.value.errno == errno.EROFS


def test_read_only_mount_refuses_writes_everywhere(seeded, mounts):
    """Every kind of write, in a folder where a read-write mount could write: EROFS."""
    owner, layout = seeded
    m = mounts(owner.token, layout["externalStsFolder"], "ro-ext", ["--read-only"])
    f, d = m.path / "matrix.csv", m.path / "notes"
    before = f.read_bytes()
    listing = sorted(os.listdir(m.path)), sorted(os.listdir(d))
    assert "matrix.csv" in listing[0] and listing[1] == ["patient's notes.txt"]
    writes = {
        "create": lambda: os.close(os.open(m.path / "nope.txt", os.O_WRONLY | os.O_CREAT, 0o644)),
        "mknod": lambda: os.mknod(m.path / "nope.fifo", 0o644 | stat.S_IFIFO),
        "open for writing": lambda: os.close(os.open(f, os.O_WRONLY)),
        "open read-write": lambda: os.close(os.open(f, os.O_RDWR)),
        "open O_TRUNC": lambda: os.close(os.open(f, os.O_WRONLY | os.O_TRUNC)),
        "open O_APPEND": lambda: os.close(os.open(f, os.O_WRONLY | os.O_APPEND)),
        "truncate": lambda: os.truncate(f, 10),
        "mkdir": lambda: os.mkdir(m.path / "newdir"),
        "unlink": lambda: os.unlink(f),
        "rmdir": lambda: os.rmdir(d),
        "rename file": lambda: os.rename(f, m.path / "renamed.csv"),
        "rename folder": lambda: os.rename(d, m.path / "renamed"),
        "rename into folder": lambda: os.rename(f, d / "matrix.csv"),
        "chmod": lambda: os.chmod(f, 0o600),
        "chown": lambda: os.chown(f, os.getuid(), os.getgid()),
        "utime": lambda: os.utime(f, (1, 1)),
        "symlink": lambda: os.symlink("matrix.csv", m.path / "link"),
        "link": lambda: os.link(f, m.path / "hard"),
        "setxattr": lambda: os.setxattr(f, "user.synapse.note", b"x"),
        "removexattr": lambda: os.removexattr(f, "user.synapse.id"),
    }
    got = {}
    for what, action in writes.items():
        try:
            action()
            got[what] = "allowed"
        except OSError as exc:
            got[what] = errno.errorcode.get(exc.errno, exc.errno)
    assert got == {what: "EROFS" for what in writes}
    assert (sorted(os.listdir(m.path)), sorted(os.listdir(d))) == listing
    assert f.read_bytes() == before


def test_user_without_write_permission_gets_eacces(emulator, seeded, mounts):
    owner, layout = seeded
    reader = emulator.new_user("ext-reader")
    folder = layout["externalStsFolder"]
    acl_path = f"/entity/{layout['project']}/acl"
    acl = owner.api.ok(owner.api.get(acl_path))
    acl["resourceAccess"].append({"principalId": int(reader.id), "accessType": ["READ", "DOWNLOAD"]})
    owner.api.ok(owner.api.put(acl_path, acl))
    m = mounts(reader.token, folder, "reader-ext", ["--xattrs"])
    assert (m.path / "matrix.csv").stat().st_size == 64 * 1024
    for action in (lambda: open(m.path / "new.txt", "wb").close(),
                   lambda: open(m.path / "matrix.csv", "ab").close(),
                   lambda: os.mkdir(m.path / "d"),
                   lambda: os.unlink(m.path / "matrix.csv")):
        with pytest.raises(PermissionError):
            action()


def test_collaborator_who_does_not_own_the_bucket_writes_through_multipart(emulator, seeded,
                                                                           mounts):
    owner, layout = seeded
    collab = emulator.new_user("ext-collab")
    acl_path = f"/entity/{layout['project']}/acl"
    acl = owner.api.ok(owner.api.get(acl_path))
    acl["resourceAccess"].append({"principalId": int(collab.id), "accessType": [
        "READ", "DOWNLOAD", "UPDATE", "CREATE", "DELETE"]})
    owner.api.ok(owner.api.put(acl_path, acl))
    m = mounts(collab.token, layout["externalStsFolder"], "collab-ext", ["--xattrs"])
    data = os.urandom(9 * 1024 * 1024 + 5)
    (m.path / "from-collab.bin").write_bytes(data)
    syn_id = os.getxattr(m.path / "from-collab.bin", "user.synapse.id").decode()
    got, handle = synapse_bytes(seeded, syn_id)
    assert got == data and handle["createdBy"] == collab.id
    # Synapse's multipart upload names the object <baseKey>/<userId>/<uuid>/<fileName>; the
    # owner's STS upload would have written <baseKey>/<uuid>/<name> and registered it.
    location = owner.api.ok(owner.api.get(f"/storageLocation/{layout['externalStsLocation']}"))
    assert re.fullmatch(re.escape(f"{location['baseKey']}/{collab.id}/") + r"[0-9a-f-]{36}/"
                        + re.escape("from-collab.bin"), handle["key"]), handle["key"]
    assert handle["bucketName"] == location["bucket"]
    assert str(handle["storageLocationId"]) == str(layout["externalStsLocation"])
    os.unlink(m.path / "from-collab.bin")


def test_two_writers_last_close_wins(seeded, ext):
    (ext / "shared.txt").write_bytes(b"base")
    syn_id = os.getxattr(ext / "shared.txt", "user.synapse.id").decode()
    a = open(ext / "shared.txt", "r+b")
    b = open(ext / "shared.txt", "r+b")
    a.write(b"AAAA")
    b.write(b"BBBB")
    a.close()
    b.close()
    assert synapse_bytes(seeded, syn_id)[0] == b"BBBB"
    assert len(versions(seeded, syn_id)) >= 2


def test_tools_cp_rsync_tar_shutil(seeded, ext, tmp_path):
    src = tmp_path / "tree"
    (src / "a" / "b").mkdir(parents=True)
    files = {"top.txt": b"top\n", "a/one.bin": os.urandom(70_000), "a/b/two.txt": b"two\n"}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    subprocess.run(["cp", "-r", str(src), str(ext / "cp")], check=True)
    subprocess.run(["cp", "-p", str(src / "top.txt"), str(ext / "cp-p.txt")], check=True)
    subprocess.run(["rsync", "-a", f"{src}/", str(ext / "rsync")], check=True,
                   capture_output=True)
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        tar.add(src, arcname="tree")
    subprocess.run(["tar", "xf", str(tmp_path / "t.tar"), "-C", str(ext)], check=True)
    shutil.copytree(src, ext / "copytree")
    shutil.copy2(src / "top.txt", ext / "copy2.txt")
    for base in ("cp", "rsync", "tree", "copytree"):
        for rel, data in files.items():
            assert (ext / base / rel).read_bytes() == data, (base, rel)
    assert (ext / "cp-p.txt").read_bytes() == b"top\n"
    back = tmp_path / "back"
    subprocess.run(["cp", "-r", str(ext / "cp"), str(back)], check=True)
    for rel, data in files.items():
        assert (back / rel).read_bytes() == data
        syn_id = os.getxattr(ext / "cp" / rel, "user.synapse.id").decode()
        assert synapse_bytes(seeded, syn_id)[0] == data


def test_200_mib_file(seeded, ext):
    block = os.urandom(1024 * 1024)
    digest = hashlib.md5()
    with open(ext / "big.bin", "wb") as fh:
        for i in range(200):
            chunk = block[i:] + block[:i]
            digest.update(chunk)
            fh.write(chunk)
    syn_id = os.getxattr(ext / "big.bin", "user.synapse.id").decode()
    api = api_of(seeded)
    bundle = api.ok(api.post(f"/entity/{syn_id}/bundle2", {"includeFileHandles": True}))
    assert bundle["fileHandles"][0]["contentMd5"] == digest.hexdigest()
    assert bundle["fileHandles"][0]["contentSize"] == 200 * 1024 * 1024
    out = subprocess.run(["md5sum", str(ext / "big.bin")], capture_output=True, text=True,
                         check=True).stdout.split()[0]
    assert out == digest.hexdigest()


def test_create_of_a_name_made_elsewhere_meanwhile_saves_a_new_version(seeded, ext):
    """The mount's listing is cached; a file created by another client in the meantime is
    opened and updated (a new version), not duplicated and not an error."""
    from synfs.cli.demo_seed import Seeder

    owner, layout = seeded
    assert os.listdir(ext) == []                  # the (empty) listing is now cached
    folder_id = os.getxattr(ext, "user.synapse.id").decode()
    seeder = Seeder(owner.api.info, owner.token)
    other = seeder.entity("FileEntity", "race.txt", folder_id,
                          dataFileHandleId=seeder.sts_put(folder_id, layout["externalStsLocation"],
                                                          "race.txt", b"from elsewhere"))
    with open(ext / "race.txt", "w") as fh:
        fh.write("from the mount")
    assert os.getxattr(ext / "race.txt", "user.synapse.id").decode() == other
    assert synapse_bytes(seeded, other)[0] == b"from the mount"
    assert len(versions(seeded, other)) == 2


def test_each_tool_makes_exactly_one_version(seeded, ext, wmount, tmp_path):
    """No empty versions: the shell's dup2+close, dd, cp and tar x each make one version of a
    new file; `echo > existing` adds one version; `: > f` (truncate, nothing written) adds
    one empty version; `touch` of an existing file adds none."""
    def n_versions(name):
        return len(versions(seeded, os.getxattr(ext / name, "user.synapse.id").decode()))

    subprocess.run(["sh", "-c", f"echo hi > '{ext}/echo.txt'"], check=True)
    subprocess.run(["dd", "if=/dev/urandom", f"of={ext}/dd.bin", "bs=64k", "count=4",
                    "status=none"], check=True)
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(100_000))
    subprocess.run(["cp", str(src), str(ext / "cp.bin")], check=True)
    inner = tmp_path / "t"
    inner.mkdir()
    (inner / "member.txt").write_bytes(b"from tar")
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        tar.add(inner / "member.txt", arcname="member.txt")
    subprocess.run(["tar", "xf", str(tmp_path / "a.tar"), "-C", str(ext)], check=True)
    for name in ("echo.txt", "dd.bin", "cp.bin", "member.txt"):
        assert n_versions(name) == 1, name
    syn_id = os.getxattr(ext / "echo.txt", "user.synapse.id").decode()
    assert synapse_bytes(seeded, syn_id)[0] == b"hi\n"
    subprocess.run(["sh", "-c", f"echo again > '{ext}/echo.txt'"], check=True)
    assert n_versions("echo.txt") == 2 and synapse_bytes(seeded, syn_id)[0] == b"again\n"
    subprocess.run(["touch", str(ext / "echo.txt")], check=True)
    assert n_versions("echo.txt") == 2
    subprocess.run(["sh", "-c", f": > '{ext}/echo.txt'"], check=True)
    wait = time.monotonic() + 10          # the save owed at release runs after close returns
    while n_versions("echo.txt") < 3 and time.monotonic() < wait:
        time.sleep(0.05)
    assert n_versions("echo.txt") == 3 and synapse_bytes(seeded, syn_id)[0] == b""
    assert "saved echo.txt as a new file syn" in wmount.log_text()


def test_names_and_sizes_synfs_cannot_store_are_refused_up_front(seeded, ext):
    from synfs.write.names import MAX_NAME

    ok = "n" * MAX_NAME
    (ext / ok).write_bytes(b"longest name")
    syn_id = os.getxattr(ext / ok, "user.synapse.id").decode()
    assert synapse_bytes(seeded, syn_id)[0] == b"longest name"
    too_long = "n" * (MAX_NAME + 1)
    with pytest.raises(OSError) as exc:
        open(ext / too_long, "wb")
    assert exc.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as exc:
        os.rename(ext / ok, ext / too_long)
    assert exc.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as exc:
        os.truncate(ext / ok, 999_999_999_999_999)
    assert exc.value.errno == errno.EFBIG
    assert (ext / ok).read_bytes() == b"longest name"
    assert sorted(os.listdir(ext)) == [ok]
