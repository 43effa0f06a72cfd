"""Data-path scenarios 1-4 and 6: synfs vs direct boto3 vs rclone, side by side in one run.

Every timed read starts from a cold page cache (``drop_caches``); tools take turns within
each repetition so that background noise hits them alike; the median is reported. Bytes are
checked outside the timed part (MD5 of what the mount returns, or a byte compare).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import random
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.mounts import RcloneMount, SynfsMount, drop_caches, peak_rss, reset_peak

MiB = 1024 * 1024


def dd(path: Path) -> float:
    started = time.monotonic()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M"], check=True,
                   capture_output=True)
    return time.monotonic() - started


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def direct_read(s3, bucket: str, objects: list[tuple[str, int]], *, part: int = 16 * MiB,
                threads: int = 8) -> float:
    """Parallel ranged GETs of whole objects (bytes read and dropped), as a tuned client."""
    ranges = [(key, off, min(part, size - off)) for key, size in objects
              for off in range(0, size, part)]
    ranges.sort(key=lambda r: r[1])                  # interleave the objects

    def get(r):
        key, off, n = r
        body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={off}-{off + n - 1}")["Body"]
        got = len(body.read())
        assert got == n, (key, off, got, n)
        return got

    started = time.monotonic()
    with cf.ThreadPoolExecutor(threads) as ex:
        total = sum(ex.map(get, ranges))
    assert total == sum(size for _, size in objects)
    return time.monotonic() - started


def parallel(fn, items) -> float:
    started = time.monotonic()
    with cf.ThreadPoolExecutor(len(items)) as ex:
        list(ex.map(fn, items))
    return time.monotonic() - started


ONE = "seq/one-GiB.bin"
FOUR = [f"four/part-{i}.bin" for i in range(4)]


def warm(m) -> None:
    """One untimed read of scenario 1's file and of scenario 2's four files through mount
    ``m`` (credentials, lookups, read buffers), so that timed reads see its steady state."""
    dd(m.path / ONE)
    parallel(lambda p: dd(m.path / p), FOUR)


def turns(rep: int) -> list[str]:
    """The order the tools take turns in for repetition ``rep`` (rotated each time)."""
    order = ["synfs", "direct", "rclone"]
    return order[rep % 3:] + order[:rep % 3]


class DataBench:
    def __init__(self, world, workdir: Path, reps: int = 3, log=print):
        self.world, self.workdir, self.reps, self.log = world, Path(workdir), reps, log
        lay = world.layout
        self.lay = lay
        self.creds = world.sts(lay["owner"]["token"], lay["data"])
        self.s3 = world.s3_client(self.creds, pool=64)
        self.results: dict = {}

    # ---- mounts ---------------------------------------------------------------------------
    def synfs(self, name: str, *extra: str) -> SynfsMount:
        return SynfsMount(self.world, self.lay["owner"]["token"], self.lay["data"],
                          self.workdir / name, extra).start()

    def rclone(self, name: str) -> RcloneMount:
        return RcloneMount(self.world, self.creds, self.lay["bucket"], self.lay["baseKey"],
                           self.workdir / name).start()

    def obj(self, path: str) -> tuple[str, int]:
        f = self.lay["files"][path]
        return f["key"], f["size"]

    # ---- scenario 1 and 2 ------------------------------------------------------------------
    def sequential(self, syn: SynfsMount, rc: RcloneMount) -> None:
        one, four = ONE, FOUR
        # one untimed read of each pattern by each mount first, as the direct client's process
        # (this one) is warm: else the first timed repetition of a mount alone pays its
        # credentials, lookups and first-touched buffers
        for m in (syn, rc):
            warm(m)
        for label, paths, threads in (("seq1", [one], 8), ("seq4", four, 16)):
            total = sum(self.lay["files"][p]["size"] for p in paths)
            times = {"synfs": [], "direct": [], "rclone": []}
            peaks = {"synfs": 0, "rclone": 0}
            for rep in range(self.reps):
                for tool in turns(rep):
                    drop_caches()
                    if tool == "direct":
                        t = direct_read(self.s3, self.lay["bucket"], [self.obj(p) for p in paths],
                                        threads=threads)
                    else:
                        m = syn if tool == "synfs" else rc
                        reset_peak(m.pid)
                        t = parallel(lambda p: dd(m.path / p), paths)
                        peaks[tool] = max(peaks[tool], peak_rss(m.pid) or 0)
                    times[tool].append(t)
                    self.log(f"  {label} {tool}: {total / t / MiB:.0f} MiB/s")
            for tool, m in (("synfs", syn), ("rclone", rc)):         # bytes, untimed
                for p in paths[:1]:
                    assert md5_of(m.path / p) == self.lay["files"][p]["md5"], (tool, p)
            self.results[label] = {
                "bytes": total, "seconds": {k: statistics.median(v) for k, v in times.items()},
                "all_seconds": times, "peak_rss": peaks}

    # ---- scenario 3 -------------------------------------------------------------------------
    def random_reads(self, syn: SynfsMount, rc: RcloneMount, runtime: int = 8) -> None:
        """Interleaved like scenarios 1-2: each repetition runs the three tools in a rotated
        order, and the table shows each tool's median IOPS (every run is in the JSON)."""
        runs: dict[str, list[float]] = {"synfs": [], "direct": [], "rclone": []}
        peaks = {"synfs": 0, "rclone": 0}
        rng = random.Random(5)
        for rep in range(self.reps):
            for tool in turns(rep):
                drop_caches()
                if tool == "direct":
                    iops = self._random_direct(rng, runtime)
                else:
                    m = syn if tool == "synfs" else rc
                    reset_peak(m.pid)
                    iops = self._random_fio(m, runtime)
                    peaks[tool] = max(peaks[tool], peak_rss(m.pid) or 0)
                runs[tool].append(iops)
                self.log(f"  random {tool}: {iops:.0f} IOPS")
        iops = {k: statistics.median(v) for k, v in runs.items()}
        self.results["random"] = {
            "runtime_s": runtime, "iops": iops, "all_iops": runs,
            "mib_s": {k: v * 256 * 1024 / MiB for k, v in iops.items()},
            "peak_rss": {k: v or None for k, v in peaks.items()}}

    def _random_fio(self, m, runtime: int) -> float:
        res = subprocess.run(
            ["fio", "--name=rand", f"--filename={m.path / ONE}",
             "--rw=randread", "--bs=256k", "--size=1G", f"--runtime={runtime}",
             "--time_based", "--ioengine=psync", "--iodepth=1", "--numjobs=1",
             "--direct=1", "--readonly", "--randrepeat=0",
             "--output-format=json"], capture_output=True, text=True, check=True)
        return json.loads(res.stdout)["jobs"][0]["read"]["iops"]

    def _random_direct(self, rng: random.Random, runtime: int) -> float:
        key, size = self.obj(ONE)
        n, started = 0, time.monotonic()
        while time.monotonic() - started < runtime:
            off = rng.randrange(0, size - 256 * 1024) // 4096 * 4096
            body = self.s3.get_object(Bucket=self.lay["bucket"], Key=key,
                                      Range=f"bytes={off}-{off + 256 * 1024 - 1}")["Body"]
            assert len(body.read()) == 256 * 1024
            n += 1
        return n / (time.monotonic() - started)

    # ---- scenario 4 -------------------------------------------------------------------------
    def copy_tree(self, rc_factory, syn_factory) -> None:
        small = sorted(p for p in self.lay["files"] if p.startswith("small/"))
        dest_root = Path("/dev/shm") / f"synfs-bench-cp-{time.time_ns()}"
        out: dict = {"files": len(small), "seconds": {}, "peak_rss": {}, "rest_calls": {}}

        def cp(src: Path, name: str) -> float:
            dest = dest_root / name
            drop_caches()
            started = time.monotonic()
            subprocess.run(["cp", "-r", str(src), str(dest)], check=True)
            took = time.monotonic() - started
            for p in small[::97]:                         # spot-check bytes
                assert (dest / p.split("/", 1)[1]).read_bytes() == self.world.expected(p), p
            shutil.rmtree(dest)
            return took

        dest_root.mkdir()
        try:
            syn = syn_factory("cp-synfs", "--metadata-ttl", "300")
            try:
                before = syn.rest_calls(settle=0)
                reset_peak(syn.pid)
                out["seconds"]["synfs_cold"] = cp(syn.path / "small", "a")
                out["rest_calls"]["synfs_cold"] = _delta(syn.rest_calls(), before)
                drop_caches(1)                            # page cache only: metadata stays
                out["seconds"]["synfs"] = cp(syn.path / "small", "b")
                out["peak_rss"]["synfs"] = peak_rss(syn.pid)
            finally:
                syn.stop()
            rc = rc_factory("cp-rclone")
            try:
                out["seconds"]["rclone_cold"] = cp(rc.path / "small", "c")
                out["seconds"]["rclone"] = cp(rc.path / "small", "d")
                out["peak_rss"]["rclone"] = peak_rss(rc.pid)
            finally:
                rc.stop()
            objects = [self.obj(p) for p in small]
            started = time.monotonic()
            for key, size in objects:                     # cp -r is one file at a time
                body = self.s3.get_object(Bucket=self.lay["bucket"], Key=key)["Body"]
                assert len(body.read()) == size
            out["seconds"]["direct"] = time.monotonic() - started
        finally:
            shutil.rmtree(dest_root, ignore_errors=True)
        self.log(f"  cp -r: {out['seconds']}")
        self.results["copy"] = out

    # ---- scenario 6 -------------------------------------------------------------------------
    def many_files(self, max_memory: str = "256M") -> None:
        paths = sorted(p for p in self.lay["files"] if p.startswith("rss/"))
        syn = self.synfs("rss-synfs", "--max-memory", max_memory)
        try:
            drop_caches()
            reset_peak(syn.pid)
            took = parallel(lambda p: dd(syn.path / p), paths)
            total = sum(self.lay["files"][p]["size"] for p in paths)
            peak = peak_rss(syn.pid)
            for p in paths[:3]:
                assert md5_of(syn.path / p) == self.lay["files"][p]["md5"], p
        finally:
            syn.stop()
        self.results["many"] = {"files": len(paths), "bytes": total, "seconds": took,
                                "max_memory": max_memory, "peak_rss": peak}
        self.log(f"  32 files at once: {total / took / MiB:.0f} MiB/s, peak RSS "
                 f"{(peak or 0) / MiB:.0f} MiB with --max-memory {max_memory}")


def _delta(after, before):
    return None if after is None or before is None else after - before
