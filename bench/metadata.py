"""Scenario 5: ``ls -lR``, ``find`` and ``du`` over 5,000 files in 50 folders, with 50 ms
added Synapse latency and production throttling (3 concurrent, 600 per minute per user),
cold and warm, against synapseclient's ``synapseutils.walk`` plus each file's size; and the
file-view sources over the same tree (a view the bench creates, scoped to the tree's root):
``synfs snapshot ROOT --view VIEW`` (seconds and REST calls of the build) and a cold ``ls -lR``
of a fresh ``synfs mount --view VIEW`` (timed from the mount command, which runs the view
query, to the end of ``ls``; calls counted from the daemon's start).

The 600-per-minute limit puts a floor of about (calls - 600) / 10 seconds under any cold
enumeration, so the cold runs (synfs x 3 commands, the two view runs, synapseclient) overlap, each as its
own user with its own fresh mount, to fit the benchmark's time budget (``start`` begins
synapseclient's walk, ``start_synfs`` the synfs runs once scenarios 1-2 are done); the warm
runs follow on the same mounts, one at a time, once the data scenarios and the synapseclient
walk are over (a quiet machine), then one run after a remount (the metadata store). REST calls
come from the daemon's status file (synfs) and from the transport (synapseclient).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.cluster import endpoint_args
from bench.mounts import SynfsMount, drop_caches, peak_rss, reset_peak
from bench.world import ROOT

COMMANDS = {
    "ls -lR": ["ls", "-lR"],
    "find": ["find", "."],
    "du": ["du", "-s", "-b", "--apparent-size", "."],
}


def run_in(cwd: Path, argv: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


@contextlib.contextmanager
def reported(out: dict, log, what: str, mount: SynfsMount | None = None):
    """Run one measurement: an exception is recorded in ``out["error"]`` and logged, and the
    other runs go on; a mount's logged daemon errors are kept and the mount is stopped."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - reported, the other runs go on
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(f"  {what}: failed: {out['error']}")
    finally:
        if mount is not None:
            out["daemon_errors"] = mount.errors_logged()
            mount.stop()


class MetadataBench:
    def __init__(self, world, workdir: Path, *, latency_ms: int = 50, warm_reps: int = 3,
                 sc_timeout: float = 780.0, log=print):
        self.world, self.workdir, self.log = world, Path(workdir), log
        self.latency_ms, self.warm_reps, self.sc_timeout = latency_ms, warm_reps, sc_timeout
        self.folder = world.layout["folders"]["meta"]
        self.results: dict = {"commands": {}, "synapseclient": None, "files": sum(
            1 for p in world.layout["files"] if p.startswith("meta/"))}
        self._threads: list[threading.Thread] = []
        self.quiet = threading.Event()            # set once the data scenarios are over
        self.sc_done = threading.Event()          # set once synapseclient's walk is over
        self._warm_lock = threading.Lock()        # warm runs one at a time
        self.users = {name: world.new_user(f"meta{i}") for i, name in
                      enumerate([*COMMANDS, "synapseclient", "snapshot", "view ls"])}
        self.view = world.create_file_view("meta", "scenario 5 view")
        self.results["view"] = {"id": self.view}

    def start(self) -> None:
        """Faults on, and synapseclient's walk (the longest run) starts."""
        self.world.emulator.set_faults(latency_ms=self.latency_ms, throttling=True)
        self.started = time.monotonic()
        t = threading.Thread(target=self._synapseclient, daemon=True)
        t.start()
        self._threads.append(t)

    def start_synfs(self) -> None:
        """The three synfs cold runs (called once scenarios 1-2 are measured: a cold run
        keeps a daemon and the emulator busy with 10 requests a second)."""
        runs = [(self._synfs, (name,)) for name in COMMANDS]
        runs += [(self._view_snapshot, ()), (self._view_ls, ())]
        for target, args in runs:
            t = threading.Thread(target=target, args=args, daemon=True)
            t.start()
            self._threads.append(t)

    def wait(self) -> dict:
        for t in self._threads:
            t.join()
        self.world.emulator.reset_faults()
        self.results["wall_s"] = time.monotonic() - self.started
        return self.results

    def _synfs(self, name: str) -> None:
        out: dict = {"error": None}
        self.results["commands"][name] = out
        tag = name.split()[0]
        cache = self.workdir / f"meta-{tag}-cache"       # empty: the cold run is cold
        m = SynfsMount(self.world, self.users[name].token, self.folder,
                       self.workdir / f"meta-{tag}",
                       ["--metadata-ttl", "3600", "--cache-dir", str(cache)])
        with reported(out, self.log, name, mount=m):
            m.start()
            drop_caches(2)
            before = m.rest_calls(settle=2.2)
            reset_peak(m.pid)
            out["cold_s"] = run_in(m.path, COMMANDS[name])
            after = m.rest_calls()
            out["cold_calls"] = None if None in (before, after) else after - before
            self.log(f"  {name} cold: {out['cold_s']:.1f}s, {out['cold_calls']} REST calls")
            self.quiet.wait()
            self.sc_done.wait()                    # warm runs on a quiet machine only
            with self._warm_lock:
                warm = [run_in(m.path, COMMANDS[name]) for _ in range(self.warm_reps)]
            out["warm_s"] = sorted(warm)[len(warm) // 2]
            out["warm_all_s"] = warm
            final = m.rest_calls()
            out["warm_calls"] = None if None in (after, final) else final - after
            out["peak_rss"] = peak_rss(m.pid)
            self.log(f"  {name} warm: {out['warm_s']:.3f}s, {out['warm_calls']} REST calls")
            with self._warm_lock:                   # remount: the metadata store is all it has
                m.stop()
                m.start()
                drop_caches(2)
                before = m.rest_calls(settle=2.2)
                out["remount_s"] = run_in(m.path, COMMANDS[name])
                after = m.rest_calls()
            out["remount_calls"] = None if None in (before, after) else after - before
            self.log(f"  {name} after a remount: {out['remount_s']:.1f}s, "
                     f"{out['remount_calls']} REST calls")

    def _view_snapshot(self) -> None:
        """``synfs snapshot ROOT --view VIEW``: wall time of the command, its own call count."""
        from synfs.snapshot.store import Snapshot

        out: dict = {"error": None}
        self.results["view"]["snapshot"] = out
        token = self.workdir / "meta-snapshot.token"
        token.write_text(self.users["snapshot"].token + "\n")
        os.chmod(token, 0o600)
        path = self.workdir / "meta-view.synfs"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("SYNAPSE_AUTH_TOKEN", None)
        argv = [sys.executable, "-m", "synfs", "snapshot", self.folder, "-o", str(path),
                "--view", self.view, "--token-file", str(token), "--no-progress",
                *endpoint_args(self.world.info)]
        with reported(out, self.log, "snapshot from the view"):
            started = time.monotonic()
            res = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(ROOT),
                                 timeout=self.sc_timeout)
            out["seconds"] = time.monotonic() - started
            if res.returncode != 0:
                raise RuntimeError(f"exit {res.returncode}: {res.stderr.strip()[-300:]}")
            out["summary"] = (res.stdout.strip().splitlines() or [""])[-1][:300]
            snap = Snapshot(path)
            info = snap.info()
            snap.close()
            out.update(calls=info["calls"], files=info["files"], source=info["source"])
            if info["files"] != self.results["files"]:
                raise RuntimeError(f"the snapshot holds {info['files']} files, not "
                                   f"{self.results['files']}")
            self.log(f"  snapshot from view {self.view}: {out['seconds']:.1f}s, "
                     f"{out['calls']} REST calls")

    def _view_ls(self) -> None:
        """Cold ``ls -lR`` of a fresh ``--view`` mount, timed from the mount command (which
        queries the view before mounting); REST calls from the daemon's start."""
        out: dict = {"error": None}
        self.results["view"]["ls -lR"] = out
        m = SynfsMount(self.world, self.users["view ls"].token, self.folder,
                       self.workdir / "meta-view", ["--view", self.view, "--metadata-ttl",
                                                    "3600", "--cache-dir",
                                                    str(self.workdir / "meta-view-cache")])
        listing = self.workdir / "meta-view-ls.txt"
        with reported(out, self.log, "ls -lR on a --view mount", mount=m):
            drop_caches(2)
            started = time.monotonic()
            m.start()
            out["mount_s"] = time.monotonic() - started
            with listing.open("wb") as f:
                subprocess.run(["ls", "-lR"], cwd=m.path, check=True, stdout=f)
            out["cold_s"] = time.monotonic() - started
            out["ls_s"] = out["cold_s"] - out["mount_s"]
            out["calls"] = m.rest_calls()
            files = sum(1 for line in listing.read_text().splitlines() if line.startswith("-"))
            if files != self.results["files"]:
                raise RuntimeError(f"ls -lR showed {files} files, not {self.results['files']}")
            self.log(f"  ls -lR on a fresh --view mount: {out['cold_s']:.1f}s (mount "
                     f"{out['mount_s']:.1f}s), {out['calls']} REST calls")

    def _synapseclient(self) -> None:
        try:
            out = self._sc_walk()
        except Exception as exc:  # noqa: BLE001 - reported; the warm runs must not wait forever
            out = {"seconds": None, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            self.sc_done.set()
        self.results["synapseclient"] = out
        self.log(f"  synapseclient walk + sizes: {out}")

    def _sc_walk(self) -> dict:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        argv = [sys.executable, "-m", "bench.sc_walk",
                str(self.world.emulator.data_dir / "emulator.json"), self.folder]
        try:
            res = subprocess.run(argv, input=self.users["synapseclient"].token + "\n",
                                 capture_output=True, text=True, env=env, cwd=str(ROOT),
                                 timeout=self.sc_timeout)
        except subprocess.TimeoutExpired:
            return {"seconds": None, "timeout_s": self.sc_timeout}
        try:
            return json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"seconds": None, "error": (res.stderr or "")[-1000:]}
