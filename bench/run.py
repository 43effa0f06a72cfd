"""Run every benchmark scenario of issue 5 against one emulator + SeaweedFS and write the
report (``docs/benchmarks.md``, ``.png``, ``.json``). Usage (as root, after
``./scripts/bench.sh`` installed what it needs): ``python -m bench.run [--reps N]``.

Order, chosen to fit the time budget: start the world, seed the small files, start scenario
5's synapseclient walk in the background (its latency and throttling apply to the whole
emulator; rate-limited by design, it is about 10 minutes of mostly waiting); seed the large
files and run scenarios 1-2; then start scenario 5's three synfs cold runs (each keeps a daemon
busy with 10 requests a second, so they wait until the sequential reads are measured) and run
scenarios 3, 4 and 6 meanwhile; scenario 5's warm runs once those are over; then,
on a quiet machine, one more cold read of scenarios 1 and 2 by synfs (a new mount, warmed by
one read of each) and by direct boto3 with CPU accounting of every process involved (issue
14's CPU-per-GiB targets), and one under py-spy.

``--reads-only`` runs scenarios 1-3 and 6 and that accounting only (the read path's loop).

``--only-metadata`` runs scenario 5 alone (every run of it at once, the view runs included;
about 10 minutes, most of it synapseclient's rate-limited walk) and writes its report to
``WORKDIR/docs`` unless ``--docs`` says otherwise.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import report
from bench.metadata import MetadataBench
from bench.mounts import cpu_seconds, drop_caches, minor_faults
from bench.scenarios import FOUR, ONE, DataBench, dd, direct_read, parallel, warm
from bench.world import ROOT, World


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def weed_pid(world: World) -> int | None:
    needle = os.fsencode(str(world.emulator.data_dir))
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                argv = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if b"weed" in argv.split(b"\0")[0] and needle in argv:
                return int(entry.name)
    return None


def _accounted(procs: dict, read) -> tuple[dict, float]:
    """CPU seconds of each process in ``procs`` (name -> pid, or None for this process)
    while ``read()`` runs, and its wall time."""
    before = {k: cpu_seconds(p) if p else time.process_time() for k, p in procs.items()}
    wall = read()
    return {k: (cpu_seconds(p) if p else time.process_time()) - before[k]
            for k, p in procs.items()}, wall


def profile_and_cpu(bench: DataBench, world: World, workdir: Path) -> tuple[dict, dict]:
    """Once more, on a quiet machine: the 1 GiB file and the four files read cold by synfs
    and by direct boto3, with the CPU seconds of each process involved (the reader itself,
    SeaweedFS, the emulator's S3 proxy), then one synfs read under py-spy (GIL samples)."""
    syn = bench.synfs("profile-synfs")
    try:
        path, four = syn.path / ONE, FOUR
        # the direct client's process read both patterns in scenarios 1-2: the accounting then
        # compares steady states (a fresh daemon's first read of four files faults its windows in)
        warm(syn)
        server = {"SeaweedFS (weed)": weed_pid(world),
                  "emulator (REST + S3 proxy)": world.emulator.proc.pid}
        server = {k: p for k, p in server.items() if p}
        cpu_info: dict = {"cores": os.cpu_count()}
        for label, paths, threads in (("seq1", [ONE], 8), ("seq4", four, 16)):
            gib = sum(bench.lay["files"][p]["size"] for p in paths) / 2**30
            drop_caches()
            usage0, faults0 = os.times(), minor_faults(syn.pid)
            mine, wall = _accounted({"synfs daemon": syn.pid, **server},
                                    lambda: parallel(lambda p: dd(syn.path / p), paths))
            usage1, faults1 = os.times(), minor_faults(syn.pid)
            mine["dd (the reader)"] = usage1.children_user + usage1.children_system - (
                usage0.children_user + usage0.children_system)
            drop_caches()
            direct, dwall = _accounted(
                {"direct boto3 client": None, **server},
                lambda: direct_read(bench.s3, bench.lay["bucket"],
                                    [bench.obj(p) for p in paths], threads=threads))
            cpu_info[label] = {
                "gib": gib,
                "synfs": {"processes": mine, "wall_s": wall, "daemon_minflt": faults1 - faults0,
                          "busy": min(sum(mine.values()) / (wall * os.cpu_count()), 1.0)},
                "direct": {"processes": direct, "wall_s": dwall,
                           "busy": min(sum(direct.values()) / (dwall * os.cpu_count()), 1.0)}}
        raw = workdir / "profile.txt"
        drop_caches()
        py_spy = Path(sys.executable).with_name("py-spy")
        spy = subprocess.Popen([str(py_spy) if py_spy.exists() else "py-spy", "record",
                                "--gil", "-p", str(syn.pid),
                                "-d", "30", "-r", "250", "-f", "raw", "-o", str(raw),
                                "--nonblocking"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        dd(path)
        spy.send_signal(signal.SIGINT)      # py-spy writes its output on SIGINT
        spy.wait(30)
        prof = summarize(raw) if raw.exists() else {}
    finally:
        syn.stop()
    return prof, cpu_info


def summarize(raw: Path) -> dict:
    own, incl, total = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames, n = stack.split(";"), int(n)
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            if "synfs/" in f or "pyfuse3" in f or "botocore/" in f or "socket.py" in f:
                incl[f] += n
    pct = (lambda c: [(v * 100 / total, k) for k, v in c.most_common(25)]) if total else (
        lambda c: [])
    return {"samples": total, "self": pct(own), "inclusive": pct(incl)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/synfs-bench"))
    p.add_argument("--docs", type=Path, default=None,
                   help="report directory (default docs/; WORKDIR/docs with --only-metadata)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--skip-metadata", action="store_true", help="leave out scenario 5")
    p.add_argument("--only-metadata", action="store_true",
                   help="run scenario 5 alone (its view runs included)")
    p.add_argument("--reads-only", action="store_true",
                   help="only the read scenarios 1-3 and 6 and the CPU accounting (implies "
                        "--skip-metadata; no small files seeded, no scenario 4)")
    p.add_argument("--code", type=Path, default=None,
                   help="mount synfs from this source tree (e.g. an older commit checked out "
                        "elsewhere, for before/after runs); default: this one")
    args = p.parse_args(argv)
    if args.reads_only and args.only_metadata:
        p.error("--reads-only and --only-metadata exclude each other")
    if args.skip_metadata and args.only_metadata:
        p.error("--skip-metadata and --only-metadata exclude each other")
    if args.code is not None:
        from bench import mounts
        mounts.CODE = args.code.resolve()
    args.skip_metadata = args.skip_metadata or args.reads_only
    if args.docs is None:
        args.docs = args.workdir / "docs" if args.only_metadata else ROOT / "docs"
    if os.geteuid() != 0:
        print("bench: run as root (drop_caches, clear_refs, FUSE mounts)", file=sys.stderr)
        return 2
    started = time.monotonic()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    res: dict = {"meta": {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
                          "host": f"{os.cpu_count()} cores, Linux {platform.release()}",
                          "load_before": load(), "reps": args.reps}}
    world = World(args.workdir / "world", log=log)
    try:
        log("starting the emulator and SeaweedFS")
        world.start()
        world.setup()
        if not args.reads_only:
            world.seed_small()
        if args.only_metadata:
            log("scenario 5 alone (metadata, throttled): every run at once")
            meta = MetadataBench(world, args.workdir, log=log)
            meta.start()
            meta.start_synfs()
            meta.quiet.set()
            res["metadata"] = meta.wait()
        else:
            run_all(res, args, world)
    finally:
        world.stop()
    return finish(res, args, started)


def run_all(res: dict, args, world: World) -> None:
    """Scenarios 1-6 side by side (scenario 5 in the background), then the CPU profile."""
    meta = None
    if not args.skip_metadata:
        log("scenario 5 (metadata, throttled): synapseclient's walk starts in the background")
        meta = MetadataBench(world, args.workdir, log=log)
        meta.start()
    world.seed_large()
    bench = DataBench(world, args.workdir, reps=args.reps, log=log)
    syn, rc = bench.synfs("synfs"), bench.rclone("rclone")
    try:
        log("scenarios 1 and 2: sequential reads")
        bench.sequential(syn, rc)
        log("scenario 3: random reads")
        bench.random_reads(syn, rc)
        if meta is not None:        # after scenario 3: its snapshot and mounts take CPU
            log("scenario 5: the synfs cold runs start in the background")
            meta.start_synfs()
    finally:
        syn.stop()
        rc.stop()
    if not args.reads_only:
        log("scenario 4: cp -r" + (" (scenario 5's latency applies)" if meta else ""))
        bench.copy_tree(bench.rclone, bench.synfs)
    log("scenario 6: 32 files at once")
    bench.many_files()
    res.update(bench.results)
    if "copy" in res:
        res["copy"]["during_metadata"] = meta is not None
    if meta is not None:
        meta.quiet.set()                      # its warm runs wait for a quiet machine
        log("waiting for scenario 5")
        res["metadata"] = meta.wait()
    log("CPU accounting of scenarios 1 and 2, and a profile of one more scenario-1 read")
    res["profile"], res["cpu"] = profile_and_cpu(bench, world, args.workdir)


def finish(res: dict, args, started: float) -> int:
    res["meta"]["load_after"] = load()
    res["meta"]["duration_s"] = time.monotonic() - started
    notes_file = ROOT / "bench" / "analysis.md"
    report.write(res, args.docs, notes_file.read_text() if notes_file.exists() else "")
    for t in res["targets"]:
        log(f"{t['target']}: {report._fmt(t)} -> {report._gap(t)}")
    log(f"done in {res['meta']['duration_s'] / 60:.1f} min; report in {args.docs}/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
