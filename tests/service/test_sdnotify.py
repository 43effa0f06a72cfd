"""systemd readiness: `synfs mount -f` under NOTIFY_SOCKET sends READY=1 only once the mount
answers, STOPPING=1 on SIGTERM, then unmounts; a backgrounded mount hands systemd the
daemon's pid (MAINPID) and the daemon itself stays quiet."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from synfs.service import sdnotify
from tests.harness import ROOT
from tests.mount.conftest import Mount
from tests.service.conftest import force_unmount


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(60)
    yield sock, path
    sock.close()


def receive(sock) -> dict:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_notify_without_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready("x") is False


def test_notify_to_path_and_abstract_sockets(notify_socket, monkeypatch):
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    assert sdnotify.ready("hello")
    assert receive(sock) == {"READY": "1", "STATUS": "hello"}
    name = f"synfs-test-{os.getpid()}-{time.time_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind("\0" + name)
        abstract.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.stopping()
        assert receive(abstract) == {"STOPPING": "1"}


def test_foreground_mount_notifies_ready_then_stopping(emulator, world, notify_socket, tmp_path):
    sock, path = notify_socket
    m = Mount(emulator, world.owner.token, world.sts, tmp_path / "mnt", tmp_path)
    m.path.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), NOTIFY_SOCKET=str(path))
    proc = subprocess.Popen(m.argv("-f"), env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        msg = receive(sock)
        assert msg.get("READY") == "1", msg
        assert os.path.ismount(m.path)                   # ready means mounted and answering
        assert msg["STATUS"] == f"mounted {world.sts} on {m.path}"
        assert (m.path / "data.txt").read_bytes() == world.data
        proc.send_signal(signal.SIGTERM)
        assert receive(sock).get("STOPPING") == "1"
        assert proc.wait(30) == 0
        assert not os.path.ismount(m.path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        force_unmount(m.path)
    assert "Traceback" not in m.log_text()


def test_background_mount_reports_the_daemon_pid(emulator, world, notify_socket, tmp_path):
    sock, path = notify_socket
    m = Mount(emulator, world.owner.token, world.sts, tmp_path / "mnt", tmp_path)
    m.path.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), NOTIFY_SOCKET=str(path))
    try:
        res = subprocess.run(m.argv(), env=env, cwd=str(ROOT), capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        msg = receive(sock)
        assert msg.get("READY") == "1"
        pid = int(msg["MAINPID"])
        assert os.path.exists(f"/proc/{pid}")            # the detached daemon
        sock.settimeout(3)
        with pytest.raises(socket.timeout):              # the daemon itself sends nothing
            sock.recv(4096)
    finally:
        m.stop()
        force_unmount(m.path)
