"""Signals never leave a dead mount: storms of SIGINT/SIGTERM/SIGHUP sent to a foreground daemon's
whole process group (as a terminal's Ctrl-C does, followed by a supervisor's SIGTERM), in various
orders and paces, always end in a clean unmount: no synfs entry is left in /proc/self/mountinfo.
Also: the lifecycle paths (`synfs unmount`, `synfs mount` over a dead mount) decide from
mountinfo, not from stat."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import pytest

from synfs import config
from synfs.service import mounts
from tests.harness import ROOT
from tests.mount.conftest import Mount
from tests.service.conftest import (USER, force_unmount, one_line, run, synfs_cmd, user_argv,
                                    user_env, wait_for)

INT, TERM, HUP = signal.SIGINT, signal.SIGTERM, signal.SIGHUP

# (signals in order, seconds between them): Ctrl-C then the supervisor's SIGTERM, at once and
# a little later; mixed orders; a long storm that lands while the daemon is already closing.
STORMS = {
    "int-then-term": ([INT, TERM], 0.0),
    "int-then-term-paced": ([INT, TERM], 0.05),
    "term-int-hup-mixed": ([TERM, INT, HUP, INT, TERM, HUP], 0.01),
    "hup-storm": ([HUP] * 4 + [INT, TERM] * 4, 0.02),
}
UNTIL_EXIT = "until-exit"    # INT, TERM, HUP in turn every 5 ms until the daemon has exited:
                             # some land while FUSE closes and while Python shuts down


def start_foreground(emulator, world, tmp_path, name: str,
                     extra: list[str] | None = None) -> tuple[Mount, subprocess.Popen]:
    m = Mount(emulator, world.owner.token, world.sts, tmp_path / name, tmp_path, extra)
    m.path.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(m.argv("-f"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, start_new_session=True)    # its own group, as a terminal's
    try:
        wait_for(lambda: proc.poll() is not None or mounts.is_mounted(m.path), timeout=60)
        assert proc.poll() is None, proc.stderr.read()
        wait_for(lambda: "mounted syn" in m.log_text(), timeout=30)
    except BaseException:
        proc.kill()
        raise
    return m, proc


def storm_until_exit(proc: subprocess.Popen, limit_s: float = 60.0,
                     every_s: float = 0.005) -> int:
    """Send INT, TERM, HUP in turn to the group every ``every_s`` until the daemon exits."""
    deadline = time.monotonic() + limit_s
    sent = 0
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, (INT, TERM, HUP)[sent % 3])
        except ProcessLookupError:
            break
        sent += 1
        time.sleep(every_s)
    return sent


def assert_ended_cleanly(proc: subprocess.Popen, m, label: str) -> None:
    """The daemon exited 0 after a clean unmount: nothing left in mountinfo, no traceback."""
    rc = proc.wait(60)
    assert mounts.mounted_at(m.path) is None, f"{label}: mount left behind (rc {rc})"
    assert rc == 0, f"{label}: daemon exited {rc}: {proc.stderr.read()}"
    log = m.log_text()
    assert "unmounted" in log and "Traceback" not in log, log[-3000:]


def stop(proc: subprocess.Popen, m) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    force_unmount(m.path)


@pytest.mark.parametrize("storm", sorted(STORMS) + [UNTIL_EXIT])
def test_signal_storm_to_the_process_group_unmounts_cleanly(storm, emulator, world, tmp_path):
    m, proc = start_foreground(emulator, world, tmp_path, storm)
    try:
        reader = subprocess.Popen(["cat", str(m.path / "data.txt")], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)      # a request in flight
        if storm == UNTIL_EXIT:
            assert storm_until_exit(proc) > 3
        else:
            sigs, pace = STORMS[storm]
            for signum in sigs:
                try:
                    os.killpg(proc.pid, signum)
                except ProcessLookupError:
                    break                       # already gone: the assertions below decide
                if pace:
                    time.sleep(pace)
        reader.wait(30)
        assert_ended_cleanly(proc, m, storm)
    finally:
        stop(proc, m)


@pytest.mark.parametrize("attempt", range(3))
def test_a_storm_against_an_ordinary_users_mount_unmounts_cleanly(attempt, emulator, world,
                                                                  user_home):
    """As HPC users run it: an ordinary user's foreground daemon, whose unmount goes through
    fusermount3, a child in the daemon's process group that a terminal's Ctrl-C reaches too.
    A dense storm lasting until the daemon exits must not kill that child half-way (which
    leaves the mount behind with exit status 0). Three attempts: the window is milliseconds."""
    m = Mount(emulator, world.owner.token, world.sts, user_home / "mnt", user_home)
    m.path.mkdir()
    for path in (m.path, m.token_file):
        os.chown(path, USER, USER)
    proc = subprocess.Popen(user_argv(m.argv("-f")), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=user_env(user_home),
                            cwd=str(user_home), start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or "mounted syn" in m.log_text(), timeout=60)
        assert proc.poll() is None, proc.stderr.read()
        [entry] = [e for e in mounts.synfs_mounts() if e.mountpoint == str(m.path)]
        assert entry.user_id == USER
        assert storm_until_exit(proc, every_s=0.001) > 3
        assert_ended_cleanly(proc, m, "storm")
    finally:
        stop(proc, m)


def test_unmount_and_mount_over_a_dead_mount(emulator, world, tmp_path):
    """A dead mount fails every stat; mountinfo still lists it. `synfs mount` over it says it is
    dead and what to run; `synfs unmount` (no --lazy needed) cleans it up. With attributes not
    cached (ttl 0) even the root's stat fails, so only mountinfo can tell it is mounted."""
    m, proc = start_foreground(emulator, world, tmp_path, "dead", ["--metadata-ttl", "0"])
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert mounts.is_mounted(m.path) and mounts.liveness(m.path) == "dead"
        with pytest.raises(OSError) as exc:
            os.stat(m.path)
        assert exc.value.errno == errno.ENOTCONN and not os.path.ismount(m.path)
        again = run(m.argv())
        assert again.returncode == config.EXIT_BUSY, again.stderr
        line = one_line(again)
        assert "dead synfs mount" in line and f"synfs unmount {m.path}" in line
        res = run(synfs_cmd("unmount", str(m.path)))
        assert res.returncode == 0, res.stderr
        assert not mounts.is_mounted(m.path)
        res = run(synfs_cmd("unmount", str(m.path)))
        assert res.returncode == config.EXIT_MOUNTPOINT and "is not mounted" in one_line(res)
    finally:
        if proc.poll() is None:
            proc.kill()
        force_unmount(m.path)


def test_unmount_refuses_a_mount_that_is_not_synfs(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    try:
        res = run(synfs_cmd("unmount", str(target)))
        assert res.returncode == config.EXIT_MOUNTPOINT
        assert "not a synfs mount (it is tmpfs" in one_line(res)
        assert mounts.is_mounted(target)
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_a_reader_during_the_stop_gets_its_bytes_or_an_error(emulator, world, tmp_path):
    """Ctrl-C then SIGTERM while a read waits for a slow S3: the request the daemon is serving
    is answered, one the kernel had not handed over yet fails with ECONNABORTED when FUSE
    closes; the reader never sees short or wrong data, and the mount goes away cleanly."""
    import json
    import threading

    m, proc = start_foreground(emulator, world, tmp_path, "inflight")
    got: list = []
    try:
        emulator.set_faults(s3_latency_ms=1500)

        def read() -> None:
            try:
                got.append((m.path / "data.txt").read_bytes())
            except OSError as exc:
                got.append(exc)

        reader = threading.Thread(target=read)
        reader.start()

        def open_now():
            res = run(synfs_cmd("status", "--json", str(m.path)))
            return json.loads(res.stdout or "[{}]")[0].get("open_files", 0) >= 1

        wait_for(open_now, timeout=30)           # the file is open: its read is under way
        os.killpg(proc.pid, INT)
        os.killpg(proc.pid, TERM)
        reader.join(60)
        assert proc.wait(60) == 0
        assert got and (got[0] == world.data or isinstance(got[0], OSError)), got and type(got[0])
        if isinstance(got[0], OSError):
            assert got[0].errno == errno.ECONNABORTED, got[0]
        assert mounts.mounted_at(m.path) is None
    finally:
        emulator.reset_faults()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        force_unmount(m.path)


def test_demo_cleanup_detaches_a_dead_mount_that_stat_cannot_see(emulator, world, tmp_path):
    """The demo's cleanup after its daemon died: with attributes not cached (ttl 0), every stat
    of the dead mount fails, so os.path.ismount says False; mountinfo still lists it."""
    from synfs.cli.demo import unmount_project

    m, proc = start_foreground(emulator, world, tmp_path, "demo-dead", ["--metadata-ttl", "0"])
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert not os.path.ismount(m.path) and mounts.is_mounted(m.path)
        unmount_project(proc, m.path)
        assert not mounts.is_mounted(m.path)
    finally:
        force_unmount(m.path)


def test_signals_before_the_loop_are_acted_on_and_later_ones_never_stop_twice(monkeypatch):
    """In-process: a stop signal that arrives before the trio loop (while FUSE is being
    mounted) terminates the loop as soon as it starts; further ones only log; a stop signal
    after ``ignore_from_now()`` (while Python shuts down) cannot kill the process."""
    import trio

    from synfs.service import lifecycle

    calls = []
    monkeypatch.setattr(lifecycle.pyfuse3, "terminate", lambda: calls.append("terminate"))
    sig = lifecycle.Signals()
    sig.install()
    try:
        os.kill(os.getpid(), TERM)            # before the loop: recorded, nothing else
        assert sig.pending == [TERM] and calls == []
        refreshed = []

        async def main():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sig.watch, lambda: refreshed.append(1))
                await trio.sleep(0.05)
                assert calls == ["terminate"]
                for signum in (INT, HUP, TERM, signal.SIGUSR1):
                    os.kill(os.getpid(), signum)
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()

        trio.run(main)
        assert calls == ["terminate"] and refreshed == [1] and sig.stopping
        os.kill(os.getpid(), INT)             # between loop and close: recorded only
        assert sig.pending == [INT]
        sig.ignore_from_now()
        os.kill(os.getpid(), TERM)            # would end the test run with the default action
        os.kill(os.getpid(), INT)
    finally:
        sig.restore()                         # the handlers pytest had
