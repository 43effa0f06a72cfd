"""Scenario 7, a simulated cluster: N synfs daemons at once (separate mount points and cache
directories, as N compute nodes of one user) each copy the same 1,000-file tree cold, under
Synapse's production throttling (600 requests per minute and 3 at once per user, shared by all
of that user's nodes). Live mounts and snapshot mounts side by side, in one run:

- building the snapshot: seconds and REST calls, from listings + bundles and (when the
  emulator serves file views) from a temporary file view, against synapseclient's walk +
  each file's size over the same tree;
- the cluster: every node's REST calls and the wall time until the last node is done;
- one fresh snapshot mount's ``cp -r`` against a fresh ``rclone mount`` of the same prefix;
- the extrapolation to 1,000 nodes at 600 requests per minute;
- the targets of issue 12: a snapshot node makes at most (storage locations + ceil(files
  needing pre-signed URLs / 100)) REST calls (the bound is computed from the snapshot file,
  with the rule the snapshot tree applies), and a fresh snapshot mount's ``cp -r`` takes at
  most 1.5x a fresh ``rclone mount``'s. The machine's load average is sampled through the run
  and reported (the cores may be shared).

Live mounts get a time cap: at 10 requests per second for the whole user, N live nodes need
about N x 100 s. Within the cap the files copied and the calls made are measured; the time to
finish is projected from the measured call rate, and the report says which figures are
projected. Nothing here is a test.

    python -m bench.cluster [--nodes 8] [--live-cap 120] [--workdir DIR] [--docs docs/]
    python -m bench.cluster --report-only        # rewrite the report from its .json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.mounts import RcloneMount, SynfsMount, drop_caches
from bench.world import CT, ROOT, World

RATE_PER_MIN = 600


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def endpoint_args(info: dict) -> list[str]:
    """The Synapse endpoints, as ``synfs snapshot`` takes them."""
    return ["--repo-endpoint", info["repoEndpoint"], "--file-endpoint",
            info["fileHandleEndpoint"]]


def count_files(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def throttled_requests(log_file: Path) -> int:
    """Requests the daemon saw answered 429 (``synfs.synapse.client`` at DEBUG logs each
    request's status): Synapse turned them away, they do not count against its 600 a minute,
    and the daemon sent them again."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return 0
    return len(re.findall(r" -> 429 in ", text))


def gave_up(log_file: Path) -> int:
    """Calls the daemon gave up on after its retry budget (each an EIO to the reader)."""
    try:
        return log_file.read_text(errors="replace").count(": gave up after ")
    except OSError:
        return 0


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class LoadSampler:
    """The 1-minute load average every few seconds, from a daemon thread."""

    def __init__(self, every_s: float = 5.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.samples.append(loadavg()[0])

    def __enter__(self) -> "LoadSampler":
        self.before = loadavg()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.after = loadavg()

    def summary(self) -> dict:
        xs = self.samples or [0.0]
        return {"before": self.before, "after": self.after, "cores": os.cpu_count(),
                "min_1m": min(xs), "max_1m": max(xs), "mean_1m": round(sum(xs) / len(xs), 2)}


def url_bound(snapshot: Path) -> dict:
    """Issue 12's REST budget of one snapshot node: storage locations + ceil(files needing
    pre-signed URLs / 100). A file needs a URL unless it is an S3 file handle with bucket and
    key in an STS-enabled storage location (``synfs.fs.snaptree``'s rule)."""
    from synfs.snapshot.store import Snapshot

    snap = Snapshot(snapshot)
    try:
        locs = snap.locations()
        sts = {loc for loc, (enabled, _, _) in locs.items() if enabled}
        urls = sum(1 for n in snap.files() if n.file_handle_id is not None and n.size is not None
                   and not (n.storage_location_id in sts and n.bucket and n.key
                            and (n.concrete_type or "").endswith("S3FileHandle")))
    finally:
        snap.close()
    return {"locations": len(locs), "files_needing_urls": urls,
            "bound": len(locs) + math.ceil(urls / 100)}


class Cluster:
    def __init__(self, world: World, workdir: Path, nodes: int, live_cap: float):
        self.world, self.workdir, self.nodes, self.live_cap = world, workdir, nodes, live_cap
        self.results: dict = {"nodes": nodes, "live_cap_s": live_cap}

    # ---- set-up ----------------------------------------------------------------------------
    def seed(self) -> None:
        started = time.monotonic()
        self.world.setup()
        self.files = self.world.seed_copy_tree()
        self.folder = self.world.layout["folders"]["small"]
        self.user = self.world.new_user("cluster")
        self.token_file = self.workdir / "cluster.token"
        self.token_file.write_text(self.user.token + "\n")
        os.chmod(self.token_file, 0o600)
        self.results["files"] = self.files
        # the user's own project, where --create-view may put its temporary view
        self.scratch = self.world.call(self.world._session(self.user.token), "POST", "/entity", {
            "name": "cluster scratch", "concreteType": CT + "Project"})["id"]
        log(f"seeded {self.files} files in {time.monotonic() - started:.0f}s")

    def synfs(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("SYNAPSE_AUTH_TOKEN", None)
        return subprocess.run([sys.executable, "-m", "synfs", *args], capture_output=True,
                              text=True, env=env, cwd=str(ROOT), timeout=timeout)

    # ---- building the snapshot ---------------------------------------------------------------
    def build_snapshots(self) -> None:
        out = {}
        sources = {"listings": [], "view": ["--create-view", self.scratch]}
        for name, extra in sources.items():
            path = self.workdir / f"tree-{name}.synfs"
            path.unlink(missing_ok=True)
            started = time.monotonic()
            res = self.synfs("snapshot", self.folder, "-o", str(path), "--token-file",
                             str(self.token_file), "--no-progress",
                             *endpoint_args(self.world.info), *extra)
            took = time.monotonic() - started
            if res.returncode != 0:
                out[name] = {"error": (res.stderr.strip() or res.stdout.strip())[-300:]}
                log(f"  snapshot from {name}: failed: {out[name]['error']}")
                continue
            calls = re.search(r"(\d[\d,]*) (?:REST )?calls", res.stdout + res.stderr)
            out[name] = {"seconds": took, "path": str(path),
                         "calls": int(calls.group(1).replace(",", "")) if calls else None,
                         "summary": (res.stdout.strip().splitlines() or [""])[-1][:300]}
            log(f"  snapshot from {name}: {took:.1f}s, {out[name]['calls']} calls")
        out["synapseclient"] = self.sc_walk()
        self.results["snapshot_build"] = out
        built = [v for v in out.values() if isinstance(v, dict) and "path" in v]
        self.snapshot = Path(built[-1]["path"]) if built else None
        if self.snapshot is not None:
            self.results["snapshot_used"] = str(self.snapshot)
            self.results["call_bound"] = url_bound(self.snapshot)
            log(f"  per-node REST budget of a snapshot node: {self.results['call_bound']}")

    def sc_walk(self) -> dict:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        res = subprocess.run([sys.executable, "-m", "bench.sc_walk",
                              str(self.world.emulator.data_dir / "emulator.json"), self.folder],
                             input=self.user.token + "\n", capture_output=True, text=True,
                             env=env, cwd=str(ROOT), timeout=1800)
        try:
            out = json.loads(res.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out = {"error": res.stderr.strip()[-300:]}
        log(f"  synapseclient walk + sizes: {out}")
        return out

    # ---- the cluster ---------------------------------------------------------------------------
    def mounts(self, kind: str, extra: list[str]) -> list[SynfsMount]:
        out = []
        for i in range(self.nodes):
            path = self.workdir / f"{kind}-node{i}" / "mnt"
            shutil.rmtree(path.parent, ignore_errors=True)
            path.parent.mkdir(parents=True)
            cache = path.parent / "cache"
            m = SynfsMount(self.world, self.user.token, self.folder, path,
                           ["--cache-dir", str(cache), *extra,   # each request's status:
                            "--debug-modules", "synfs.synapse.client"])
            out.append(m)
        return out

    def run_cluster(self, kind: str, extra: list[str], cap: float | None) -> dict:
        nodes = self.mounts(kind, extra)
        dest_root = Path("/dev/shm") / f"synfs-cluster-{kind}-{time.time_ns()}"
        dest_root.mkdir()
        procs: list[subprocess.Popen] = []
        try:
            for m in nodes:
                m.start()
            drop_caches(3)
            started = time.monotonic()
            procs = [subprocess.Popen(["cp", "-r", str(m.path), str(dest_root / f"n{i}")],
                                      stderr=subprocess.DEVNULL)
                     for i, m in enumerate(nodes)]
            ends: list[float | None] = [None] * len(procs)
            deadline = started + cap if cap else None
            while any(e is None for e in ends):
                for i, p in enumerate(procs):
                    if ends[i] is None and p.poll() is not None:
                        ends[i] = time.monotonic() - started
                if deadline and time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            copied = [count_files(dest_root / f"n{i}") for i in range(len(nodes))]
            calls = [m.rest_calls() for m in nodes]
            by_call = [m.calls_by_kind() for m in nodes]
            throttled = [throttled_requests(m.log) for m in nodes]
            failed = [gave_up(m.log) for m in nodes]
            answered = [(c or 0) - t for c, t in zip(calls, throttled)]
            done = all(e is not None for e in ends)
            out = {"finished": done, "seconds": max(e for e in ends) if done else elapsed,
                   "node_seconds": ends, "files_copied": copied, "calls": calls,
                   "total_calls": sum(c or 0 for c in calls), "throttled": throttled,
                   "answered": answered, "total_answered": sum(answered),
                   "gave_up": failed,
                   "calls_by_kind": by_call}
            if not done:               # projected from the calls made so far
                left = self.files * len(nodes) / max(1, sum(copied))
                out["projected_total_calls"] = round(out["total_calls"] * left)
                out["projected_total_answered"] = round(out["total_answered"] * left)
                rate = out["total_answered"] / elapsed
                out["projected_seconds"] = round(out["projected_total_answered"] / rate)
            errors = [m.errors_logged() for m in nodes if m.errors_logged()]
            if errors:
                out["daemon_errors"] = errors[0][:500]
            shown = {k: v for k, v in out.items() if k not in ("node_seconds", "calls_by_kind")}
            log(f"  {kind} cluster: {json.dumps(shown)}")
            return out
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for m in nodes:
                m.stop()
            shutil.rmtree(dest_root, ignore_errors=True)

    # ---- one node: snapshot mount vs rclone, fresh ----------------------------------------------
    def single_node(self) -> dict:
        out = {}
        dest_root = Path("/dev/shm") / f"synfs-cluster-one-{time.time_ns()}"
        dest_root.mkdir()
        try:
            creds = self.world.sts(self.user.token, self.folder)
            bucket, base = self.world.layout["bucket"], self.world.layout["baseKey"]
            for name in ("rclone", "synfs-snapshot", "rclone ", "synfs-snapshot "):
                path = self.workdir / f"one-{name.strip()}-{time.time_ns()}" / "mnt"
                path.parent.mkdir(parents=True)
                if name.startswith("rclone"):
                    m = RcloneMount(self.world, creds, bucket, f"{base}/small", path)
                else:
                    m = SynfsMount(self.world, self.user.token, self.folder, path,
                                   ["--cache-dir", str(path.parent / "cache"),
                                    "--snapshot", str(self.snapshot)])
                m.start()
                try:
                    drop_caches(3)
                    started = time.monotonic()
                    subprocess.run(["cp", "-r", str(m.path), str(dest_root / "c")], check=True)
                    took = time.monotonic() - started
                    assert count_files(dest_root / "c") == self.files
                    out.setdefault(name.strip(), []).append(took)
                finally:
                    m.stop()
                    shutil.rmtree(dest_root / "c", ignore_errors=True)
        finally:
            shutil.rmtree(dest_root, ignore_errors=True)
        out = {k: min(v) for k, v in out.items()}       # best of two fresh mounts each
        log(f"  one fresh node, cp -r: {out}")
        return out

    # ---- all of it ---------------------------------------------------------------------------
    def run(self) -> dict:
        self.seed()
        self.world.emulator.set_faults(throttling=True)
        try:
            log("building the snapshot")
            self.build_snapshots()
            if self.snapshot is None:
                raise RuntimeError("no snapshot could be built")
            log(f"{self.nodes} snapshot mounts at once")
            self.results["snapshot_cluster"] = self.run_cluster(
                "snapshot", ["--snapshot", str(self.snapshot)], cap=None)
            log(f"{self.nodes} live mounts at once (cap {self.live_cap:.0f}s)")
            self.results["live_cluster"] = self.run_cluster(
                "live", ["--metadata-ttl", "300"], cap=self.live_cap)
        finally:
            self.world.emulator.reset_faults()
        log("one fresh node: snapshot mount vs rclone")
        self.results["single_node"] = self.single_node()
        return self.results


def targets(r: dict) -> list[dict]:
    """Issue 12's cluster targets, each with what was measured and whether it was met."""
    out = []
    snap, bound = r.get("snapshot_cluster") or {}, r.get("call_bound") or {}
    calls = [c for c in snap.get("calls") or [] if c is not None]
    answered = snap.get("answered") or calls
    if calls and bound:
        retried = sum(snap.get("throttled") or [])
        out.append({"target": "REST calls per snapshot node <= storage locations + "
                              "ceil(files needing URLs / 100)",
                    "measured": f"at most {max(answered)} per node (bound {bound['bound']}: "
                                f"{bound['locations']} location(s), "
                                f"{bound['files_needing_urls']} files needing URLs); requests "
                                f"sent, retries after a 429 included: at most {max(calls)} per "
                                f"node ({retried} answered 429 in all)",
                    "met": len(calls) == r["nodes"] and max(answered) <= bound["bound"]})
    one = r.get("single_node") or {}
    if one.get("rclone") and one.get("synfs-snapshot"):
        ratio = one["synfs-snapshot"] / one["rclone"]
        out.append({"target": "`cp -r` from a fresh snapshot mount within 1.5x of a fresh "
                              "`rclone mount`",
                    "measured": f"{ratio:.2f}x rclone's time ({one['synfs-snapshot']:.2f} s "
                                f"vs {one['rclone']:.2f} s)", "met": ratio <= 1.5})
    return out


def extrapolate(results: dict, nodes_target: int = 1000) -> dict:
    files = results["files"]
    out = {}
    for kind in ("live", "snapshot"):
        c = results.get(f"{kind}_cluster") or {}
        total = c.get("projected_total_answered") or c.get("total_answered")
        sent = c.get("projected_total_calls") or c.get("total_calls")
        if not total:
            continue
        per_node = total / results["nodes"]
        calls = per_node * nodes_target
        out[kind] = {"calls_per_node": round(per_node, 1), "calls": round(calls),
                     "minutes_of_quota": round(calls / RATE_PER_MIN, 1),
                     "requests_sent_per_node": round((sent or 0) / results["nodes"], 1)}
    out["files"] = files
    out["nodes"] = nodes_target
    return out


def report(results: dict, docs: Path) -> str:
    r = results
    ex = r["extrapolation"] = extrapolate(r)
    r["targets"] = targets(r)
    load = r.get("load") or {}
    build = r.get("snapshot_build", {})
    sc = build.get("synapseclient", {})
    one = r.get("single_node", {})
    live, snap = r.get("live_cluster", {}), r.get("snapshot_cluster", {})
    load_text = (f" Load average (1 min) {load['before'][0]:.2f} before, "
                 f"{load['mean_1m']:.2f} on average during the run (max {load['max_1m']:.2f}), "
                 f"{load['after'][0]:.2f} after, on {load['cores']} cores that other work "
                 "on the machine shares." if load else "")
    lines = ["# Benchmark: a simulated cluster (scenario 7)", "",
             f"Measured by `python -m bench.cluster` on {r.get('date', '?')}, one run; "
             f"{r['nodes']} daemons at once (separate mount points and cache "
             f"directories, one user) each `cp -r` the same {r['files']} files of 64 KiB, "
             "cold, with production throttling on (600 requests/minute and 3 at once per "
             f"user, shared by all nodes).{load_text} Raw numbers: "
             "`docs/benchmarks-cluster.json`.", "", "## Targets", "",
             "| target | measured | |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {'met' if t['met'] else 'missed'} |"
              for t in r["targets"]] or ["| (none measured) | | |"]
    lines += ["",
             "## Building the snapshot (the 1,000-file tree; issue 12's 20x target is "
             "measured on scenario 5's 5,000-file tree, in `docs/benchmarks.md`)", "",
             "| source | seconds | REST calls | vs synapseclient walk + sizes |", "|---|---|---|---|"]
    for name in ("listings", "view"):
        b = build.get(name, {})
        if "seconds" in b:
            ratio = (f"{sc['seconds'] / b['seconds']:.1f}x faster" if sc.get("seconds")
                     else "-")
            lines.append(f"| {name} | {b['seconds']:.1f} | {b.get('calls', '?')} | {ratio} |")
        else:
            lines.append(f"| {name} | failed: {b.get('error', 'not run')[:120]} | | |")
    if sc.get("seconds"):
        lines.append(f"| synapseclient walk + sizes | {sc['seconds']:.1f} | "
                     f"{sc.get('requests', '?')} | 1x |")
    lines += ["", f"## {r['nodes']} nodes at once", "",
              "| mounts | wall time (s) | REST calls answered, all nodes | per node | requests "
              "answered 429 (sent again) | files copied |",
              "|---|---|---|---|---|---|"]
    for name, c in (("snapshot", snap), ("live", live)):
        if not c:
            continue
        answered = c.get("answered") or c.get("calls", [])
        total = c.get("total_answered", c.get("total_calls"))
        wall = (f"{c['seconds']:.1f}" if c.get("finished") else
                f"> {c['seconds']:.0f} (capped; projected {c.get('projected_seconds')})")
        calls = (str(total) if c.get("finished") else
                 f"{total} in the cap (projected "
                 f"{c.get('projected_total_answered', c.get('projected_total_calls'))})")
        per_node = ", ".join(str(x) for x in answered)
        throttled = ", ".join(str(x) for x in c.get("throttled", [])) or "?"
        lines.append(f"| {name} | {wall} | {calls} | {per_node} | {throttled} | "
                     f"{sum(c.get('files_copied', []))} of {r['files'] * r['nodes']} |")
    for name, c in (("snapshot", snap), ("live", live)):
        if sum(c.get("gave_up") or []):
            lines += ["", f"The {name} nodes gave up on {sum(c['gave_up'])} calls after their "
                      "retry budget (30 s of 429 answers), each an EIO to `cp` (per node: "
                      f"{', '.join(str(x) for x in c['gave_up'])})."]
    lines += ["", "A request answered 429 (too many at once, or over 600 a minute) is not "
              "served and does not count against the quota; the daemon sends it again. The "
              "calls by kind of every node are in the `.json` (`calls_by_kind`).", ""]
    lines += ["", "## One fresh node: snapshot mount vs rclone mount", ""]
    if one.get("rclone") and one.get("synfs-snapshot"):
        lines.append(f"`cp -r` of {r['files']} files: synfs --snapshot {one['synfs-snapshot']:.2f} s, "
                     f"rclone {one['rclone']:.2f} s: **{one['synfs-snapshot'] / one['rclone']:.2f}x "
                     "rclone's time** (target: at most 1.5x); best of two fresh mounts each.")
    lines += ["", f"## Extrapolated to {ex['nodes']} nodes at {RATE_PER_MIN} requests/minute", "",
              "| mounts | calls answered per node | calls for 1,000 nodes | minutes of one user's "
              "quota | requests sent per node (429s included) |",
              "|---|---|---|---|---|"]
    for kind in ("snapshot", "live"):
        if kind in ex:
            e = ex[kind]
            lines.append(f"| {kind} | {e['calls_per_node']} | {e['calls']:,} | "
                         f"{e['minutes_of_quota']:,} | {e.get('requests_sent_per_node', '?')} |")
    lines += ["", "Live figures marked projected come from the calls made within the cap: "
              "calls per file copied times the files left, at the measured rate of calls "
              "answered.", ""]
    lines += ["## Notes", "", *[f"- {n}" for n in r["notes"]], ""] if r.get("notes") else []
    text = "\n".join(lines)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks-cluster.md").write_text(text)
    (docs / "benchmarks-cluster.json").write_text(json.dumps(r, indent=1, default=str))
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="scenario 7: a simulated cluster")
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument("--live-cap", type=float, default=120.0)
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/synfs-bench-cluster"))
    p.add_argument("--docs", type=Path, default=ROOT / "docs")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the report from DOCS/benchmarks-cluster.json (no run)")
    args = p.parse_args(argv)
    if args.report_only:
        results = json.loads((args.docs / "benchmarks-cluster.json").read_text())
        print(report(results, args.docs))
        return 0
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    world = World(args.workdir / "world", log=log).start()
    try:
        with LoadSampler() as load:
            results = Cluster(world, args.workdir, args.nodes, args.live_cap).run()
    finally:
        world.stop()
    results.update(date=date, load=load.summary())
    print(report(results, args.docs))
    return 0

if __name__ == "__main__":
    sys.exit(main())
