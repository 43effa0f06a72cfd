"""Fixtures for real FUSE mounts: the CLI runs as a subprocess against the emulator and its S3.

FUSE must work here: a missing /dev/fuse fails these tests (see tests/test_fuse_environment.py);
nothing is skipped. Every mount made is unmounted at teardown, lazily if it is stuck, and the
daemon's log is checked for tracebacks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synfs.cli.demo_seed import Seeder
from synfs.service import mounts as mountinfo
from tests.harness import ROOT


class Mount:
    def __init__(self, emulator, token: str, syn_id: str, mnt: Path, workdir: Path,
                 extra: list[str] | None = None):
        self.emulator = emulator
        self.syn_id = syn_id
        self.path = mnt
        self.log = workdir / f"synfs-{mnt.name}.log"
        self.token_file = workdir / f"token-{mnt.name}"
        self.token_file.write_text(token + "\n")
        os.chmod(self.token_file, 0o600)
        self.extra = extra or []

    def argv(self, *more: str) -> list[str]:
        info = self.emulator.info
        return [sys.executable, "-m", "synfs", "mount", self.syn_id, str(self.path),
                "--token-file", str(self.token_file),
                "--repo-endpoint", info["repoEndpoint"],
                "--file-endpoint", info["fileHandleEndpoint"],
                "--auth-endpoint", info["authEndpoint"],
                "--s3-endpoint", info["s3Endpoint"], "--log-file", str(self.log),
                "--log-level", "INFO", *self.extra, *more]

    def start(self) -> "Mount":
        self.path.mkdir(parents=True, exist_ok=True)
        res = run_synfs(self.argv())
        assert res.returncode == 0, f"mount failed ({res.returncode}): {res.stderr}"
        assert os.path.ismount(self.path)
        return self

    def stop(self) -> None:
        # mountinfo, not stat, says whether it is mounted (a dead mount fails every stat)
        if mountinfo.is_mounted(self.path):
            res = run_synfs(["-m", "synfs", "unmount", str(self.path)], raw=True)
            if res.returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", str(self.path)], check=False)
        deadline = time.monotonic() + 10
        while mountinfo.is_mounted(self.path) and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def run_synfs(argv: list[str], raw: bool = False, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *argv] if raw else argv
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SYNAPSE_AUTH_TOKEN", None)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT),
                          timeout=120, **kw)


@pytest.fixture(scope="session")
def seeded(emulator):
    """A user and the demo's sample project (every storage kind), seeded once per session."""
    owner = emulator.new_user("mount-owner")
    seeder = Seeder(emulator.info, owner.token, owner_s3=emulator.s3_admin_client())
    layout = seeder.seed(progress=lambda _msg: None, project_name="synfs mount tests")
    return owner, layout


def mount_factory(emulator, base: Path):
    """``make(token, syn_id, name, extra)`` mounts with the real CLI under ``base``; the
    generator stops every mount when it resumes, then fails on a daemon's traceback."""
    made: list[Mount] = []

    def make(token: str, syn_id: str, name: str = "mnt", extra: list[str] | None = None) -> Mount:
        m = Mount(emulator, token, syn_id, base / name, base, extra)
        made.append(m)
        return m.start()

    yield make
    for m in made:
        m.stop()
    for m in made:
        log = m.log_text()
        assert "Traceback" not in log, f"daemon for {m.path} logged a traceback:\n{log[-5000:]}"


@pytest.fixture(scope="session")
def mounts(emulator, tmp_path_factory):
    """Factory for mounts; all are stopped at the end of the session."""
    yield from mount_factory(emulator, tmp_path_factory.mktemp("mounts"))


@pytest.fixture(scope="session")
def project_mount(seeded, mounts):
    owner, layout = seeded
    return mounts(owner.token, layout["project"], "project", ["--read-only", "--xattrs"])
