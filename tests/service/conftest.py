"""Fixtures for the service tests: a small seeded world (an STS folder on Synapse storage, an
STS folder on an external bucket, a plain folder), token files, and mounts made by the real
CLI (or by mount(8)) that are always unmounted at the end."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest

from synfs.cli.demo_seed import CT, Seeder
from tests.harness import ROOT
from tests.mount.conftest import mount_factory

SYNFS = Path(sys.executable).parent / "synfs"
USER = 1000          # an ordinary user (fusermount3 needs its passwd entry), as on HPC


def synfs_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "synfs", *args]


def run(cmd: list[str], *, env: dict | None = None, timeout: float = 120, **kw):
    full = dict(os.environ, PYTHONPATH=str(ROOT))
    full.pop("SYNAPSE_AUTH_TOKEN", None)
    full.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=full, cwd=str(ROOT),
                          timeout=timeout, **kw)


def one_line(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("synfs: "), lines[0]
    assert "Traceback" not in res.stderr
    return lines[0]


def endpoint_args(info: dict) -> list[str]:
    return ["--repo-endpoint", info["repoEndpoint"], "--file-endpoint", info["fileHandleEndpoint"]]


@pytest.fixture(scope="session")
def world(emulator, tmp_path_factory):
    owner = emulator.new_user("service-owner")
    seeder = Seeder(emulator.info, owner.token, owner_s3=emulator.s3_admin_client())
    project = seeder.entity("Project", f"synfs service tests {time.time_ns()}", None)
    sts, sts_loc = seeder.sts_folder(project, "synapse-sts", {
        "concreteType": CT + "project.S3StorageLocationSetting", "uploadType": "S3",
        "stsEnabled": True})
    data = b"synfs service test data\n" * 4000
    handle = seeder.multipart("data.txt", data, sts_loc)
    sts_file = seeder.entity("FileEntity", "data.txt", sts, dataFileHandleId=handle)

    bucket, base_key = emulator.info["externalBucket"], f"synfs-service-{project}"
    seeder._owner_txt(bucket, base_key)
    ext, ext_loc = seeder.sts_folder(project, "external-sts", {
        "concreteType": CT + "project.ExternalS3StorageLocationSetting", "uploadType": "S3",
        "bucket": bucket, "baseKey": base_key, "stsEnabled": True})
    notes = b"external notes\n" * 10
    ext_file = seeder.entity("FileEntity", "notes.txt", ext,
                             dataFileHandleId=seeder.sts_put(ext, ext_loc, "notes.txt", notes))
    plain = seeder.entity("Folder", "plain", project)

    fh = owner.api.ok(owner.api.get(f"/entity/{sts_file}/filehandles"))["list"][0]
    token_file = tmp_path_factory.mktemp("tokens") / "owner.token"
    token_file.write_text(owner.token + "\n")
    os.chmod(token_file, 0o600)
    return types.SimpleNamespace(
        owner=owner, project=project, sts=sts, sts_loc=sts_loc, sts_file=sts_file, data=data,
        md5=hashlib.md5(data).hexdigest(), bucket=fh["bucketName"], key=fh["key"],
        ext=ext, ext_loc=ext_loc, ext_file=ext_file, ext_bucket=bucket, ext_base_key=base_key,
        notes=notes, plain=plain, token_file=token_file, info=emulator.info)


@pytest.fixture
def service_mounts(emulator, tmp_path):
    """Factory: ``make(token, syn_id, name, extra)`` mounts with the real CLI (backgrounded)."""
    yield from mount_factory(emulator, tmp_path)


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def force_unmount(path: Path) -> None:
    """Detach whatever mountinfo lists at ``path`` (a stat cannot see a dead mount, another
    user's, or one whose token was revoked)."""
    from synfs.service import mounts

    if mounts.is_mounted(path):
        subprocess.run(["fusermount3", "-u", "-z", str(path)], check=False, capture_output=True)


# ---- an ordinary user -------------------------------------------------------------------
def as_user(cmd: list[str], home: Path, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` as uid/gid 1000. The test interpreter lives under /root (0700), so the
    process keeps CAP_DAC_READ_SEARCH to reach it; it is otherwise an ordinary user: FUSE
    mounts go through fusermount3 and carry user_id=1000."""
    return subprocess.run(user_argv(cmd), capture_output=True, text=True, env=user_env(home),
                          cwd=str(home), timeout=120, **kw)


def user_argv(cmd: list[str]) -> list[str]:
    """``cmd`` run as uid/gid 1000 (``setpriv`` execs it: same pid), see ``as_user``."""
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", *cmd]


def user_env(home: Path) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(ROOT),
            "LANG": "C.UTF-8"}


@pytest.fixture
def user_home():
    """A home for the user, and /dev/fuse usable by ordinary users for the test's duration:
    fusermount3 opens it with the caller's rights. Distributions ship it 0666; this machine
    has 0600, which the test restores afterwards."""
    home = Path(tempfile.mkdtemp(prefix="synfs-user-", dir="/tmp"))
    home.chmod(0o755)
    os.chown(home, USER, USER)
    mode = os.stat("/dev/fuse").st_mode & 0o7777
    os.chmod("/dev/fuse", mode | 0o666)
    try:
        yield home
    finally:
        os.chmod("/dev/fuse", mode)
        shutil.rmtree(home, ignore_errors=True)
