"""Mounts under test and what the benchmark measures about them.

``SynfsMount`` runs the real CLI (``synfs mount``) against the bench world; ``RcloneMount``
runs Debian's ``rclone mount`` of the same bucket prefix with the same STS credentials
(``AWS_CA_BUNDLE`` unset: it breaks rclone here). ``peak_rss`` / ``reset_peak`` use
``/proc/<pid>/status`` VmHWM and ``clear_refs`` (root), the daemon's pid comes from scanning
``/proc/*/cmdline`` for the mount point, and ``rest_calls`` reads the Synapse request count
the daemon publishes in its status file. ``drop_caches`` empties the kernel page cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.world import ROOT, World
from synfs.service.mounts import is_mounted

MiB = 1024 * 1024
CODE = ROOT        # the synfs source tree mounts run (``bench.run --code``: before/after runs)


def drop_caches(level: int = 1) -> None:
    """1: the page cache (file contents); 2: dentries and inodes; 3: both."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text(f"{level}\n")
    except OSError:
        pass


def pid_of_mount(mountpoint: Path, needle: str) -> int | None:
    target = os.fsencode(str(mountpoint))
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if target in argv and any(needle.encode() in a for a in argv):
            if needle == "synfs" and b"-f" not in argv and b"--foreground" not in argv:
                continue                         # the launcher, not the daemon
            return int(entry.name)
    return None


def _status_field(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss(pid: int) -> int | None:
    return _status_field(pid, "VmHWM")


def reset_peak(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5\n")    # 5: reset VmHWM to VmRSS
    except OSError:
        pass


def minor_faults(pid: int) -> int:
    """Minor page faults of ``pid`` so far (``/proc/<pid>/stat`` minflt): pages it touched
    for the first time, each zeroed by the kernel (and, in a VM, possibly by its host)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def wait_mounted(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.ismount(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not get mounted")
        time.sleep(0.05)


class SynfsMount:
    def __init__(self, world: World, token: str, syn_id: str, path: Path, extra=()):
        self.world, self.syn_id, self.path = world, syn_id, Path(path)
        self.extra = list(extra)
        self.token_file = self.path.with_name(self.path.name + ".token")
        self.log = self.path.with_name(self.path.name + ".log")
        self.token_file.write_text(token + "\n")
        os.chmod(self.token_file, 0o600)
        self.pid: int | None = None

    def start(self) -> "SynfsMount":
        info = self.world.info
        self.path.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "synfs", "mount", self.syn_id, str(self.path),
                "--token-file", str(self.token_file), "--repo-endpoint", info["repoEndpoint"],
                "--file-endpoint", info["fileHandleEndpoint"],
                "--auth-endpoint", info["authEndpoint"], "--s3-endpoint", info["s3Endpoint"],
                "--read-only", "--log-file", str(self.log), "--log-level", "WARNING",
                *self.extra]
        env = dict(os.environ, PYTHONPATH=str(CODE))
        env.pop("SYNAPSE_AUTH_TOKEN", None)
        res = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(CODE),
                             timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"synfs mount failed: {res.stderr.strip()}")
        wait_mounted(self.path)
        self.pid = pid_of_mount(self.path, "synfs")
        return self

    def rest_calls(self, settle: float = 2.3) -> int | None:
        """Synapse requests the daemon has sent so far (from its status file)."""
        time.sleep(settle)                       # the status file is refreshed every 2 s
        try:
            from synfs.service.runtime import find_status_file

            path, _ = find_status_file(self.path)
            return int(json.loads(path.read_text())["requests"]["synapse"])
        except Exception:  # noqa: BLE001 - an older daemon: no count
            return None

    def calls_by_kind(self) -> dict[str, int]:
        """The daemon's Synapse requests by ``METHOD /path`` (retries counted), from its
        status file (read as it is; ``rest_calls`` waits for it to settle)."""
        try:
            from synfs.service.runtime import find_status_file

            path, _ = find_status_file(self.path)
            return dict(json.loads(path.read_text())["requests"]["by_call"])
        except Exception:  # noqa: BLE001 - an older daemon: no breakdown
            return {}

    def stop(self) -> None:
        # mountinfo, not stat, says whether it is mounted (a dead mount fails every stat)
        if is_mounted(self.path):
            subprocess.run([sys.executable, "-m", "synfs", "unmount", str(self.path)],
                           capture_output=True, cwd=str(ROOT), timeout=60)
        if is_mounted(self.path):
            subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True)
        deadline = time.monotonic() + 15
        while self.pid and Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def errors_logged(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(line for line in text.splitlines() if "Traceback" in line
                         or " ERROR " in line)[:2000]


class RcloneMount:
    def __init__(self, world: World, creds: dict, bucket: str, prefix: str, path: Path):
        self.world, self.path = world, Path(path)
        self.remote = f"bench:{bucket}/{prefix}"
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update({
            "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": world.info["s3Endpoint"],
            "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
            "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG_BENCH_NO_CHECK_BUCKET": "true",
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": creds["accessKeyId"],
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": creds["secretAccessKey"],
            "RCLONE_CONFIG_BENCH_SESSION_TOKEN": creds["sessionToken"]})
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None

    def start(self) -> "RcloneMount":
        self.path.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["rclone", "mount", self.remote, str(self.path), "--config", "/dev/null",
             "--read-only"], env=self.env, stdout=subprocess.DEVNULL,
            stderr=open(self.path.with_name(self.path.name + ".log"), "wb"))
        wait_mounted(self.path)
        self.pid = self.proc.pid
        return self

    def stop(self) -> None:
        subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True)
        if self.proc is not None:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if is_mounted(self.path):
            subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True)
