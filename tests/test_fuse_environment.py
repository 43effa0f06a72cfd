"""FUSE must work on every machine that runs this suite: a missing /dev/fuse, fusermount3 or
pyfuse3 fails loudly here (never skipped), and a real mount of a minimal filesystem is made."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time


def test_dev_fuse_and_tools_present():
    assert os.path.exists("/dev/fuse"), "/dev/fuse is missing: FUSE tests cannot run here"
    assert shutil.which("fusermount3"), "fusermount3 missing: apt-get install fuse3"
    import pyfuse3  # noqa: F401  (must import: it is a runtime dependency)


MINIMAL_FS = textwrap.dedent('''
    import errno, os, stat, sys
    import pyfuse3, trio

    class Hello(pyfuse3.Operations):
        async def getattr(self, inode, ctx=None):
            if inode != pyfuse3.ROOT_INODE:
                raise pyfuse3.FUSEError(errno.ENOENT)
            attr = pyfuse3.EntryAttributes()
            attr.st_ino = inode
            attr.st_mode = stat.S_IFDIR | 0o755
            attr.st_nlink = 2
            return attr

    ops = Hello()
    opts = set(pyfuse3.default_options)
    opts.add("fsname=synfs-envcheck")
    pyfuse3.init(ops, sys.argv[1], opts)
    print("mounted", flush=True)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close()
''')


def test_real_fuse_mount_and_unmount(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", MINIMAL_FS, str(mnt)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mnt):
            assert proc.poll() is None, f"FUSE mount failed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "FUSE mount did not appear"
            time.sleep(0.05)
        assert stat_mode_is_dir(mnt)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
    assert not os.path.ismount(mnt)
    assert proc.returncode == 0, proc.stderr.read()


def stat_mode_is_dir(path) -> bool:
    import stat

    return stat.S_ISDIR(os.stat(path).st_mode)
