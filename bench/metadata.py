"""Scenario 5: ``ls -lR``, ``find`` and ``du`` over 5,000 files in 50 folders, with 50 ms
added Synapse latency and production throttling (3 concurrent, 600 per minute per user),
cold and warm, against synapseclient's ``synapseutils.walk`` plus each file's size.

The 600-per-minute limit puts a floor of about (calls - 600) / 10 seconds under any cold
enumeration, so the four cold runs (synfs x 3 commands, synapseclient) overlap, each as its
own user with its own fresh mount, to fit the benchmark's time budget (``start`` begins
synapseclient's walk, ``start_synfs`` the three synfs runs once scenarios 1-2 are done); the warm
runs follow on the same mounts, one at a time, once the data scenarios and the synapseclient
walk are over (a quiet machine), then one run after a remount (the metadata store). REST calls
come from the daemon's status file (synfs) and from the transport (synapseclient).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

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
        self.users = {name: world.new_user(f"meta{i}")
                      for i, name in enumerate([*COMMANDS, "synapseclient"])}

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
        for name in COMMANDS:
            t = threading.Thread(target=self._synfs, args=(name,), daemon=True)
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
        try:
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
        except Exception as exc:  # noqa: BLE001 - reported, the other runs go on
            out["error"] = f"{type(exc).__name__}: {exc}"
            self.log(f"  {name}: failed: {out['error']}")
        finally:
            out["daemon_errors"] = m.errors_logged()
            m.stop()

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
