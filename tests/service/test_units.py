"""`synfs install-units` and the systemd units: they install where asked, pass
`systemd-analyze verify` without a warning, and keep the properties the service relies on."""

from __future__ import annotations

import configparser
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.harness import ROOT
from tests.service.conftest import SYNFS, run, synfs_cmd

UNITS = ROOT / "systemd"


def install(root: Path, *extra: str):
    return run(synfs_cmd("install-units", "--root", str(root), "--synfs", str(SYNFS), *extra))


def verify(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def unit_sections(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


@pytest.fixture
def installed(tmp_path):
    res = install(tmp_path)
    assert res.returncode == 0, res.stderr
    return tmp_path


def test_install_units_writes_units_helper_and_config(installed):
    unit = installed / "etc/systemd/system/synfs@.service"
    text = unit.read_text()
    assert f"ExecStart={SYNFS} mount -f" in text and "/usr/local/bin/synfs" not in text
    helper = installed / "sbin/mount.fuse.synfs"
    assert helper.is_symlink() and os.access(helper, os.X_OK)
    conf = installed / "etc/synfs"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o700
    assert (conf / "example.conf").read_text() == (UNITS / "synfs.conf.example").read_text()
    assert (conf / "mnt-synapse.mount.example").exists()


def test_template_unit_passes_systemd_analyze_verify(installed):
    res = verify(installed / "etc/systemd/system/synfs@.service")
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "", res.stderr           # not even a warning


def test_example_mount_unit_passes_systemd_analyze_verify():
    res = verify(UNITS / "mnt-synapse.mount")
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "", res.stderr


def test_verify_catches_mistakes(tmp_path):
    """The check above is meaningful: a typo in a directive is reported."""
    broken = tmp_path / "synfs@.service"
    broken.write_text((UNITS / "synfs@.service").read_text()
                      .replace("/usr/local/bin/synfs", str(SYNFS)).replace("Type=notify", "Type=notfy"))
    assert "notfy" in verify(broken).stderr


def test_service_properties():
    unit = unit_sections(UNITS / "synfs@.service")
    service = dict(unit.items("Service"))
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["LoadCredential"] == "token:/etc/synfs/%i.token"
    assert "--token-file %d/token" in service["ExecStart"]
    assert " -f " in service["ExecStart"]                 # the main process is the daemon
    for line in (service["ExecStart"], service["ExecStartPre"], service["ExecStopPost"]):
        assert "TOKEN" not in line.upper().replace("--TOKEN-FILE %D/TOKEN", "")
    assert "unmount --if-dead" in service["ExecStopPost"]
    assert service["DeviceAllow"] == "/dev/fuse rw"
    assert "CAP_SYS_ADMIN" in service["CapabilityBoundingSet"]
    assert "@mount" in service["SystemCallFilter"]
    # Anything that gives the service its own mount namespace would hide the mount.
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
                "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "TemporaryFileSystem",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                "ProtectControlGroups", "ProtectProc", "PrivateUsers", "DynamicUser",
                "BindPaths", "RootDirectory"):
        assert key not in service, key
    mount = unit_sections(UNITS / "mnt-synapse.mount")
    assert mount.get("Mount", "Type") == "fuse.synfs"
    assert "_netdev" in mount.get("Mount", "Options")


def test_install_is_idempotent_and_does_not_clobber(installed):
    again = install(installed)
    assert again.returncode == 0
    assert not any(line.startswith(("write", "link", "mkdir")) for line in again.stdout.splitlines())
    unit = installed / "etc/systemd/system/synfs@.service"
    unit.write_text(unit.read_text() + "# local edit\n")
    res = install(installed)
    assert res.returncode == 1
    assert "exists and differs" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert install(installed, "--force").returncode == 0
    assert "# local edit" not in unit.read_text()


def test_dry_run_writes_nothing(tmp_path):
    res = install(tmp_path, "--dry-run")
    assert res.returncode == 0 and "would write" in res.stdout
    assert list(tmp_path.iterdir()) == []


# ---- the unit's command lines, run the way systemd would run them ---------------------------
def _expand(line: str, env: dict, specifiers: dict) -> list[str]:
    """systemd's rules: specifiers first; ${VAR} is one word, $VAR splits on whitespace."""
    for key, value in specifiers.items():
        line = line.replace(key, value)
    words = []
    for word in line.split():
        if word.startswith("${") and word.endswith("}"):
            words.append(env.get(word[2:-1], ""))
        elif word.startswith("$"):
            words += env.get(word[1:], "").split()
        else:
            words.append(word)
    return words


def test_unit_command_lines_work_as_systemd_runs_them(world, tmp_path):
    """ExecStartPre, ExecStart (Type=notify, token as a credential), SIGTERM, ExecStopPost."""
    import signal
    import socket

    from tests.service.conftest import force_unmount

    res = install(tmp_path / "root")
    assert res.returncode == 0, res.stderr
    unit = unit_sections(tmp_path / "root/etc/systemd/system/synfs@.service")
    service = dict(unit.items("Service"))
    info = world.info
    mnt, log = tmp_path / "mnt", tmp_path / "service.log"
    mnt.mkdir()
    conf = tmp_path / "data.conf"
    conf.write_text(
        f"SYNFS_ID={world.sts}\nSYNFS_MOUNTPOINT={mnt}\n"
        f"SYNFS_OPTIONS=--read-only --log-level INFO --log-file {log} "
        f"--repo-endpoint {info['repoEndpoint']} --file-endpoint {info['fileHandleEndpoint']} "
        f"--auth-endpoint {info['authEndpoint']} --s3-endpoint {info['s3Endpoint']}\n")
    env = dict(line.split("=", 1) for line in conf.read_text().splitlines() if "=" in line)
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    (creds / "token").write_text(world.owner.token + "\n")
    (creds / "token").chmod(0o400)
    specifiers = {"%d": str(creds), "%i": "data"}
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(60)
    run_env = dict(os.environ, **env, PYTHONPATH=str(ROOT), NOTIFY_SOCKET=str(sock_path),
                   CREDENTIALS_DIRECTORY=str(creds))
    run_env.pop("SYNAPSE_AUTH_TOKEN", None)
    proc = None
    try:
        pre = subprocess.run(_expand(service["ExecStartPre"], env, specifiers), env=run_env,
                             capture_output=True, text=True, timeout=60)
        assert pre.returncode == 0, pre.stderr
        argv = _expand(service["ExecStart"], env, specifiers)
        assert world.owner.token not in " ".join(argv)
        proc = subprocess.Popen(argv, env=run_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        assert b"READY=1" in sock.recv(4096)
        assert os.path.ismount(mnt) and (mnt / "data.txt").read_bytes() == world.data
        proc.send_signal(signal.SIGTERM)                 # systemctl stop
        assert b"STOPPING=1" in sock.recv(4096)
        assert proc.wait(30) == 0, proc.stderr.read()
        assert not os.path.ismount(mnt)
        post = subprocess.run(_expand(service["ExecStopPost"], env, specifiers), env=run_env,
                              capture_output=True, text=True, timeout=60)
        assert post.returncode == 0, post.stderr

        # A crash: the daemon is killed; ExecStopPost clears the dead mount for the restart.
        proc = subprocess.Popen(argv, env=run_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        assert b"READY=1" in sock.recv(4096)
        proc.kill()
        proc.wait(30)
        assert os.path.ismount(mnt)
        post = subprocess.run(_expand(service["ExecStopPost"], env, specifiers), env=run_env,
                              capture_output=True, text=True, timeout=60)
        assert post.returncode == 0, post.stderr
        assert not os.path.ismount(mnt)
        assert "Traceback" not in log.read_text()
    finally:
        sock.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        force_unmount(mnt)
