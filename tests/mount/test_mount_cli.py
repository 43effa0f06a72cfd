"""`synfs mount` / `synfs unmount` on the command line: every bad input gets one clear line and
a distinct exit code; a good mount returns only once it answers and unmounts cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from synfs import config
from tests.harness import ROOT
from tests.mount.conftest import Mount, run_synfs


def attempt(emulator, tmp_path, token: str, syn_id: str, mnt=None, *extra):
    m = Mount(emulator, token, syn_id, mnt or (tmp_path / "mnt"), tmp_path)
    if mnt is None:
        m.path.mkdir(exist_ok=True)
    return run_synfs(m.argv(*extra))


def one_line(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("synfs: ")
    assert "Traceback" not in res.stderr
    return lines[0]


def test_bad_token(emulator, seeded, tmp_path):
    _, layout = seeded
    res = attempt(emulator, tmp_path, "bogus-token", layout["project"])
    assert res.returncode == config.EXIT_AUTH
    assert "rejected the token" in one_line(res)
    assert "bogus-token" not in res.stderr


def test_unknown_id(emulator, seeded, tmp_path):
    owner, _ = seeded
    res = attempt(emulator, tmp_path, owner.token, "syn999999999")
    assert res.returncode == config.EXIT_NOT_FOUND
    assert "does not exist" in one_line(res)


def test_file_id_is_refused(emulator, seeded, tmp_path):
    owner, layout = seeded
    res = attempt(emulator, tmp_path, owner.token, layout["files"]["plain/hello.txt"])
    assert res.returncode == config.EXIT_NOT_CONTAINER
    assert "not a Project or Folder" in one_line(res)


def test_not_a_synapse_id(emulator, seeded, tmp_path):
    owner, _ = seeded
    res = attempt(emulator, tmp_path, owner.token, "hello")
    assert res.returncode == config.EXIT_USAGE
    assert "not a Synapse id" in one_line(res)


def test_missing_mountpoint(emulator, seeded, tmp_path):
    owner, layout = seeded
    res = attempt(emulator, tmp_path, owner.token, layout["project"], tmp_path / "nowhere")
    assert res.returncode == config.EXIT_MOUNTPOINT
    assert "does not exist" in one_line(res)


def test_mountpoint_is_a_file(emulator, seeded, tmp_path):
    owner, layout = seeded
    f = tmp_path / "afile"
    f.write_text("x")
    res = attempt(emulator, tmp_path, owner.token, layout["project"], f)
    assert res.returncode == config.EXIT_MOUNTPOINT
    assert "not a directory" in one_line(res)


def test_busy_mountpoint(emulator, seeded, project_mount, tmp_path):
    owner, layout = seeded
    res = attempt(emulator, tmp_path, owner.token, layout["project"], project_mount.path)
    assert res.returncode == config.EXIT_BUSY
    assert "already a mount point" in one_line(res)


def test_no_token_anywhere(emulator, seeded, tmp_path):
    _, layout = seeded
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    env.pop("SYNAPSE_AUTH_TOKEN", None)
    (tmp_path / "m").mkdir()
    res = subprocess.run([sys.executable, "-m", "synfs", "mount", layout["project"],
                          str(tmp_path / "m"), "--repo-endpoint", emulator.info["repoEndpoint"]],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == config.EXIT_AUTH
    assert "no Synapse token" in one_line(res)


def test_token_from_environment_and_config_file(emulator, seeded, tmp_path):
    """SYNAPSE_AUTH_TOKEN works; a ~/.synapseConfig [default] authtoken takes precedence."""
    owner, layout = seeded
    info = emulator.info
    (tmp_path / "m").mkdir()
    base = [sys.executable, "-m", "synfs", "mount", layout["project"], str(tmp_path / "m"),
            "--repo-endpoint", info["repoEndpoint"], "--file-endpoint", info["fileHandleEndpoint"],
            "--s3-endpoint", info["s3Endpoint"]]
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(ROOT), SYNAPSE_AUTH_TOKEN=owner.token)
    try:
        res = subprocess.run(base, capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode == 0, res.stderr
        assert "plain" in os.listdir(tmp_path / "m")
    finally:
        subprocess.run([sys.executable, "-m", "synfs", "unmount", str(tmp_path / "m")], env=env,
                       check=True, timeout=60)
    (tmp_path / ".synapseConfig").write_text("[default]\nauthtoken = wrong-token\n")
    res = subprocess.run(base, capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == config.EXIT_AUTH, res.stderr
    assert ".synapseConfig [default]" in res.stderr


def test_foreground_mount_stops_cleanly_on_sigterm(emulator, seeded, tmp_path):
    owner, layout = seeded
    m = Mount(emulator, owner.token, layout["project"], tmp_path / "fg", tmp_path)
    m.path.mkdir()
    proc = subprocess.Popen(m.argv("-f"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(m.path):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "plain" in os.listdir(m.path)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not os.path.ismount(m.path)
    finally:
        if proc.poll() is None:
            proc.kill()
        m.stop()
    assert "Traceback" not in m.log_text()


def test_unmount_errors(tmp_path):
    res = run_synfs(["-m", "synfs", "unmount", str(tmp_path)], raw=True)
    assert res.returncode == config.EXIT_MOUNTPOINT
    assert "is not mounted" in one_line(res)


def test_allow_other_uid_gid_and_modes(emulator, seeded, tmp_path):
    """--allow-other lets another user in; --uid/--gid/--file-mode/--dir-mode are what stat
    shows, and the kernel enforces them (default_permissions)."""
    import shutil
    import tempfile

    from synfs.cli.demo_seed import content

    owner, layout = seeded
    public = Path(tempfile.mkdtemp(prefix="synfs-public-", dir="/tmp"))
    public.chmod(0o755)       # other users must be able to reach the mount points
    made = []

    def mount(name, *extra):
        m = Mount(emulator, owner.token, layout["plainFolder"], public / name, tmp_path,
                  ["--read-only", *extra])
        made.append(m)
        return m.start()

    def as_user(uid, gid, *cmd):
        return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                               *cmd], capture_output=True)

    hello = content("hello.txt", 13)
    try:
        shared = mount("shared", "--allow-other", "--uid", "4242", "--gid", "4343",
                       "--file-mode", "0440", "--dir-mode", "0750")
        st = os.stat(shared.path / "hello.txt")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4242, 4343, 0o440)
        assert os.stat(shared.path / "data").st_mode & 0o777 == 0o750
        owner_read = as_user(4242, 4343, "cat", str(shared.path / "hello.txt"))
        assert owner_read.returncode == 0 and owner_read.stdout == hello
        group_read = as_user(5000, 4343, "cat", str(shared.path / "hello.txt"))
        assert group_read.returncode == 0 and group_read.stdout == hello
        denied = as_user(65534, 65534, "cat", str(shared.path / "hello.txt"))
        assert denied.returncode != 0 and b"Permission denied" in denied.stderr

        open_to_all = mount("all", "--allow-other")
        ok = as_user(65534, 65534, "cat", str(open_to_all.path / "hello.txt"))
        assert ok.returncode == 0 and ok.stdout == hello
        private = mount("private")       # no --allow-other: only the mounting user gets in
        refused = as_user(65534, 65534, "ls", str(private.path))
        assert refused.returncode != 0 and b"Permission denied" in refused.stderr
    finally:
        for m in made:
            m.stop()
        shutil.rmtree(public, ignore_errors=True)


def test_non_empty_mountpoint_is_refused_unless_nonempty(emulator, seeded, tmp_path):
    """Mounting over files would hide them: refused with one line naming -o nonempty, which
    allows it (libfuse 3 dropped the option; synfs checks it and does not pass it on)."""
    owner, layout = seeded
    mnt = tmp_path / "full"
    mnt.mkdir()
    (mnt / "mine.txt").write_text("local file\n")
    res = attempt(emulator, tmp_path, owner.token, layout["project"], mnt)
    assert res.returncode == config.EXIT_MOUNTPOINT
    line = one_line(res)
    assert "is not empty" in line and "-o nonempty" in line
    m = Mount(emulator, owner.token, layout["project"], mnt, tmp_path, ["-o", "nonempty"])
    try:
        m.start()
        assert "plain" in os.listdir(mnt) and "mine.txt" not in os.listdir(mnt)
    finally:
        m.stop()
    assert (mnt / "mine.txt").read_text() == "local file\n"
