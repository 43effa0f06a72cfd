"""`synfs demo`: one command starts emulator + S3, seeds the sample project, mounts it, and
stops cleanly on Ctrl-C; a second run on the same data directory reuses the seeded state."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

from synfs.cli.demo_seed import content
from synfs.service import mounts
from tests.harness import ROOT


def start_demo(data_dir, *extra, session: bool = False):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "synfs", "demo", "--data-dir", str(data_dir),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=str(ROOT), start_new_session=session)


def wait_for_line(proc, needle: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"{needle!r} never printed:\n" + "".join(seen))


def stop(proc) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_demo_seeds_mounts_and_stops_cleanly(tmp_path):
    data, mnt = tmp_path / "demo", tmp_path / "mnt"
    proc = start_demo(data, "--mountpoint", str(mnt))
    try:
        printed = wait_for_line(proc, "press Ctrl-C")
        doc = json.loads((data / "demo.json").read_text())
        assert os.stat(data / "demo.json").st_mode & 0o077 == 0
        assert doc["token"] not in printed  # the token is in demo.json only
        for key in ("repoEndpoint", "fileHandleEndpoint", "authEndpoint", "s3Endpoint"):
            assert doc[key].startswith("http://127.0.0.1:")
        seeded = doc["seeded"]
        assert set(os.listdir(mnt)) == {"synapse-sts", "external-sts", "plain"}
        big = mnt / "synapse-sts/big/random-100MiB.bin"
        assert os.stat(big).st_size == 100 * 1024 * 1024
        copy = tmp_path / "hello.txt"
        subprocess.run(["cp", str(mnt / "plain/hello.txt"), str(copy)], check=True)
        assert copy.read_bytes() == content("hello.txt", 13)
        digest = hashlib.md5((mnt / "external-sts/matrix.csv").read_bytes()).hexdigest()
        assert digest == hashlib.md5(content("matrix.csv", 64 * 1024)).hexdigest()
        assert seeded["files"]["plain/hello.txt"].startswith("syn")
    finally:
        out = stop(proc)
    assert not os.path.ismount(mnt)
    assert "Traceback" not in out
    assert "Traceback" not in (data / "mount.log").read_text()

    # Same data directory again, without a mount: state and token are reused, nothing re-seeded.
    again = start_demo(data, "--no-mount")
    try:
        printed = wait_for_line(again, "press Ctrl-C")
        assert "already seeded" in printed
        doc2 = json.loads((data / "demo.json").read_text())
        assert doc2["seeded"] == doc["seeded"] and doc2["token"] == doc["token"]
        assert not os.path.ismount(mnt)
    finally:
        stop(again)

    # Ctrl-C in a terminal: SIGINT to the whole process group (demo, its mount daemon, S3),
    # then the demo's SIGTERM to the daemon, and an impatient user's second Ctrl-C and SIGTERM.
    storm = start_demo(data, "--mountpoint", str(mnt), session=True)
    try:
        wait_for_line(storm, "press Ctrl-C")
        assert mounts.is_mounted(mnt)
        for signum in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.killpg(storm.pid, signum)
        out, _ = storm.communicate(timeout=90)
        assert storm.returncode == 0, out          # stopped through its cleanup
    finally:
        if storm.poll() is None:
            os.killpg(storm.pid, signal.SIGKILL)
        leftover = mounts.is_mounted(mnt)
        if leftover:
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
    assert not leftover, "the signal storm left the demo's mount behind"
    assert not processes_using(data), "the demo left a process (its S3 server?) running"
    assert "Traceback" not in (data / "mount.log").read_text()


def processes_using(path) -> list[int]:
    needle = os.fsencode(str(path))
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found
