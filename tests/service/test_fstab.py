"""The fstab path for real: /sbin/mount.fuse.synfs (installed by `synfs install-units`) turns
`mount` / `mount -t fuse.synfs` into a backgrounded synfs mount, `umount` ends it; the
`synfs SOURCE DIR -o OPTS` form that fuse3's mount.fuse uses works too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from synfs.cli.status import synfs_mounts
from tests.service.conftest import SYNFS, force_unmount, run, synfs_cmd, wait_for

HELPER = Path("/sbin/mount.fuse.synfs")


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    """Install the real helper into /sbin (mount(8) looks only there), restore it after."""
    scratch = tmp_path_factory.mktemp("install")
    previous = os.readlink(HELPER) if HELPER.is_symlink() else (
        HELPER.read_bytes() if HELPER.exists() else None)
    res = run(synfs_cmd("install-units", "--synfs", str(SYNFS), "--force", "--sbin-dir", "/sbin",
                        "--unit-dir", str(scratch / "units"), "--conf-dir", str(scratch / "etc")))
    assert res.returncode == 0, res.stderr
    assert HELPER.is_symlink() or HELPER.exists()
    yield HELPER
    HELPER.unlink()
    if isinstance(previous, str):
        HELPER.symlink_to(previous)
    elif previous is not None:
        HELPER.write_bytes(previous)
        HELPER.chmod(0o755)


def options(world, log: Path, *more: str) -> str:
    info = world.info
    return ",".join(["_netdev", "allow_other", "ro", f"token_file={world.token_file}",
                     f"repo_endpoint={info['repoEndpoint']}",
                     f"file_endpoint={info['fileHandleEndpoint']}",
                     f"auth_endpoint={info['authEndpoint']}", f"s3_endpoint={info['s3Endpoint']}",
                     f"log_file={log}", "log_level=INFO", *more])


def mounted(path: Path) -> list:
    return [m for m in synfs_mounts() if m.mountpoint == str(path)]


def check_umount(path: Path, log: Path) -> None:
    res = subprocess.run(["umount", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert not os.path.ismount(path)
    wait_for(lambda: "unmounted" in log.read_text())      # the daemon noticed and exited
    assert "Traceback" not in log.read_text()


def test_fstab_line_with_mount_and_umount(world, helper, tmp_path):
    mnt, log = tmp_path / "data", tmp_path / "fstab-mount.log"
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"# synfs\n{world.sts} {mnt} fuse.synfs {options(world, log)} 0 0\n")
    try:
        res = subprocess.run(["mount", "-T", str(fstab), str(mnt)], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr + log.read_text()
        [entry] = mounted(mnt)
        assert entry.source == world.sts and entry.fstype == "fuse.synfs"
        assert "allow_other" in entry.super_options
        assert entry.options.split(",")[0] == "ro"
        assert (mnt / "data.txt").read_bytes() == world.data
        # mount -a sees it as mounted already (source and target match the fstab line)
        res = subprocess.run(["mount", "-a", "-T", str(fstab)], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        assert len(mounted(mnt)) == 1
        check_umount(mnt, log)
    finally:
        force_unmount(mnt)


def test_mount_t_fuse_synfs(world, helper, tmp_path):
    mnt, log = tmp_path / "t", tmp_path / "t.log"
    mnt.mkdir()
    try:
        res = subprocess.run(["mount", "-t", "fuse.synfs", "-o", options(world, log, "nosuid"),
                              world.sts, str(mnt)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert "nosuid" in mounted(mnt)[0].options
        assert sorted(os.listdir(mnt)) == ["data.txt"]
        check_umount(mnt, log)
    finally:
        force_unmount(mnt)


def test_bad_option_fails_mount_with_one_line(world, helper, tmp_path):
    mnt = tmp_path / "bad"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "fuse.synfs", "-o", "no_such_option=1", world.sts,
                          str(mnt)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "synfs: unknown mount option 'no_such_option=1'" in res.stderr
    assert not os.path.ismount(mnt)


def test_mount_fuse3_calling_form(world, tmp_path):
    """What /sbin/mount.fuse3 runs for type fuse.synfs when no mount.fuse.synfs exists."""
    mnt, log = tmp_path / "m3", tmp_path / "m3.log"
    mnt.mkdir()
    try:
        res = run([str(SYNFS), world.sts, str(mnt), "-o", options(world, log, "dev", "suid")])
        assert res.returncode == 0, res.stderr
        assert (mnt / "data.txt").read_bytes() == world.data
        check_umount(mnt, log)
    finally:
        force_unmount(mnt)


def test_token_is_not_on_any_command_line(world, helper, tmp_path):
    mnt, log = tmp_path / "ps", tmp_path / "ps.log"
    mnt.mkdir()
    try:
        res = subprocess.run(["mount", "-t", "fuse.synfs", "-o", options(world, log), world.sts,
                              str(mnt)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        seen = 0                    # daemons of this mount among the processes looked at
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            assert world.owner.token.encode() not in cmdline
            assert world.owner.token.encode() not in environ
            seen += b"synfs" in cmdline and os.fsencode(mnt) in cmdline
        assert seen, "the mount's daemon was not among the processes checked"
        check_umount(mnt, log)
    finally:
        force_unmount(mnt)
