"""``synfs status [MOUNTPOINT]``: the synfs mounts on this machine and how each one is doing.

Owns the reading side of the status files that ``synfs.service.runtime`` publishes. Mounts come from
``/proc/self/mountinfo`` (file system type ``fuse.synfs``); for each one the command probes
the mount point (a ``stat`` with a timeout: answering, dead, or not answering) and reads the
daemon's status file when it can (root's mounts are readable by root only): Synapse root,
credential expiry per storage location, cache use and uploads when the daemon reports them,
error counts. A part the daemon does not report is simply absent.

Exit codes: 0 every listed mount answers (also when there are none); 1 a mount is dead or not
answering; 6 MOUNTPOINT is not a synfs mount; 2 usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import errno
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

from synfs.service import runtime
from synfs.config import EXIT_FAILED, EXIT_MOUNTPOINT, EXIT_OK

FSTYPE = "fuse.synfs"
PROBE_TIMEOUT_S = 3.0

STATUS_EPILOG = """examples:
  synfs status                      # every synfs mount on this machine
  synfs status /mnt/synapse         # one mount; exit 1 if it is dead or hangs
  synfs status --json | jq '.[0].credentials'

exit codes: 0 every listed mount answers (or there are none), 1 a mount is dead or not
  answering, 6 MOUNTPOINT is not a synfs mount, 2 usage
"""


@dataclasses.dataclass
class MountEntry:
    mountpoint: str
    source: str
    fstype: str
    options: str
    super_options: dict

    @property
    def user_id(self) -> int | None:
        try:
            return int(self.super_options.get("user_id", ""))
        except ValueError:
            return None


def _unescape(field: str) -> str:
    raw = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), os.fsencode(field))
    return os.fsdecode(raw)


def parse_mountinfo(text: str, fstype: str = FSTYPE) -> list[MountEntry]:
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if "-" not in parts:
            continue
        sep = parts.index("-")
        if len(parts) < sep + 4 or parts[sep + 1] != fstype:
            continue
        supers = {}
        for opt in parts[sep + 3].split(","):
            key, _, value = opt.partition("=")
            supers[key] = value
        out.append(MountEntry(mountpoint=_unescape(parts[4]), source=_unescape(parts[sep + 2]),
                              fstype=parts[sep + 1], options=parts[5], super_options=supers))
    return out


def synfs_mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[MountEntry]:
    return parse_mountinfo(mountinfo.read_text(errors="surrogateescape"))


def probe(path: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[str, str]:
    """("answering" | "dead" | "not answering" | "no access" | "error", detail)."""
    return probe_all([path], timeout)[path]


def probe_all(paths: list[str], timeout: float = PROBE_TIMEOUT_S) -> dict[str, tuple[str, str]]:
    """Probe every mount point at once (a hung mount costs ``timeout``, not one each)."""
    threads = {path: _start_probe(path) for path in dict.fromkeys(paths)}
    deadline = time.monotonic() + timeout
    out = {}
    for path, (thread, result) in threads.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        out[path] = _verdict(result, timeout)
    return out


def _start_probe(path: str):
    result: list = []

    def target() -> None:
        try:
            # statfs always reaches the daemon; a stat may be answered from the kernel's
            # attribute cache for a while after the daemon died.
            os.statvfs(path)
            result.append(("answering", ""))
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True, name="synfs-status-probe")
    thread.start()
    return thread, result


def _verdict(result: list, timeout: float) -> tuple[str, str]:
    if not result:
        return "not answering", f"no answer within {timeout:g}s"
    if isinstance(result[0], tuple):
        return result[0]
    exc = result[0]
    if exc.errno == errno.ENOTCONN:
        return "dead", "transport endpoint is not connected (the daemon is gone)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "no access", "mounted by another user without allow_other"
    if exc.errno == errno.ENOSYS:        # a daemon without statfs still answered
        return "answering", ""
    return "error", exc.strerror or str(exc)


def collect(mountpoint: Path | None = None, *, timeout: float = PROBE_TIMEOUT_S) -> list[dict]:
    entries = synfs_mounts()
    if mountpoint is not None:
        wanted = os.path.abspath(os.path.expanduser(str(mountpoint)))
        entries = [e for e in entries if e.mountpoint == wanted]
    out = []
    states = probe_all([e.mountpoint for e in entries], timeout)
    for entry in entries:
        state, detail = states[entry.mountpoint]
        item: dict = {"mountpoint": entry.mountpoint, "source": entry.source, "state": state,
                      "owner_uid": entry.user_id, "mount_options": entry.options}
        if detail:
            item["detail"] = detail
        path, why = runtime.find_status_file(entry.mountpoint, entry.user_id)
        if path is None:
            item["status_unavailable"] = why
        else:
            try:
                data = json.loads(path.read_text())
            except PermissionError:
                item["status_unavailable"] = f"{path} is readable only by its owner"
            except (OSError, ValueError) as exc:
                item["status_unavailable"] = f"cannot read {path}: {exc}"
            else:
                age = time.time() - float(data.get("updated", 0))
                data["age_s"] = round(age, 1)
                if age > max(3 * float(data.get("interval_s", runtime.INTERVAL_S)), 10.0):
                    data["stale"] = True
                item.update({k: v for k, v in data.items() if k not in item})
        out.append(item)
    return out


# ---- rendering --------------------------------------------------------------------------
def human_size(n) -> str:
    try:
        n = float(n)
    except (TypeError, ValueError):
        return str(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_duration(seconds) -> str:
    seconds = int(max(0, float(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def _when(ts) -> str:
    return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _generic(value) -> str:
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and (
                    k.endswith("bytes") or k in ("used", "size", "capacity", "limit", "max")):
                v = human_size(v)
            elif isinstance(v, list):
                v = f"{len(v)}" + (f" ({', '.join(map(str, v[:3]))}{', ...' if len(v) > 3 else ''})"
                                   if v else "")
            elif isinstance(v, dict):
                v = "{" + _generic(v) + "}"
            parts.append(f"{k.replace('_', ' ')} {v}")
        return ", ".join(parts) if parts else "none"
    if isinstance(value, list):
        return f"{len(value)}"
    return str(value)


KNOWN = {"version", "synfs", "pid", "uid", "mountpoint", "root", "endpoint", "options", "started",
         "updated", "interval_s", "errors", "credentials", "requests", "age_s", "stale",
         "source", "state", "owner_uid", "mount_options", "detail", "status_unavailable"}


def render_one(m: dict) -> list[str]:
    root = m.get("root") or {}
    title = root.get("id") or m.get("source", "?")
    if root.get("name"):
        title += f' "{root["name"]}"'
    lines = [f"{m['mountpoint']}: {title} - {m['state']}"
             + (f" ({m['detail']})" if m.get("detail") else "")]

    def row(name: str, text: str) -> None:
        lines.append(f"  {name:<12}{text}")

    if "status_unavailable" in m:
        row("details", f"unavailable: {m['status_unavailable']}")
        return lines
    now = time.time()
    row("daemon", f"pid {m.get('pid')}, up {human_duration(now - float(m.get('started', now)))}"
        f", status updated {human_duration(m.get('age_s', 0))} ago"
        + (" (STALE: the daemon may be hung)" if m.get("stale") else ""))
    opts = m.get("options") or {}
    bits = ["read-only" if opts.get("read_only", True) else "read-write"]
    if opts.get("allow_other"):
        bits.append("allow_other")
    bits.append(f"files uid {opts.get('uid')} gid {opts.get('gid')}")
    if opts.get("metadata_ttl") is not None:
        bits.append(f"metadata ttl {opts['metadata_ttl']:g}s")
    row("mount", ", ".join(bits))
    creds = m.get("credentials")
    if isinstance(creds, dict) and "locations" in creds:
        if not creds["locations"]:
            row("credentials", "none fetched yet")
        for loc in creds["locations"]:
            where = f"s3://{loc.get('bucket')}" + (f"/{loc['base_key']}" if loc.get("base_key") else "")
            remaining = float(loc.get("remaining_s", 0))
            when = ("EXPIRED" if remaining <= 0 else f"in {human_duration(remaining)}")
            row("credentials", f"storage location {loc.get('storage_location_id')} "
                f"({loc.get('permission')}, {where}): expires {loc.get('expiration')} ({when})")
    elif creds is not None:
        row("credentials", _generic(creds))
    for key in [k for k in m if k not in KNOWN]:
        row(key.replace("_", " "), _generic(m[key]))
    errs = m.get("errors")
    if isinstance(errs, dict) and "by_errno" in errs:
        failures = int(errs.get("failures", 0))
        text = f"{failures} failure{'s' if failures != 1 else ''}"
        counts = errs.get("by_errno") or {}
        bad = {k: v for k, v in counts.items() if k not in ("ENOENT", "ENODATA")}
        if bad:
            text += " (" + ", ".join(f"{k} {v}" for k, v in sorted(bad.items())) + ")"
        last = errs.get("last_failure")
        if last:
            text += f"; last: {last.get('error')}" + (f" on {last['entity']}" if last.get("entity")
                                                      else "") + f" at {_when(last['at'])}"
        normal = {k: v for k, v in counts.items() if k in ("ENOENT", "ENODATA")}
        if normal:
            text += "; normal answers: " + ", ".join(f"{k} {v}" for k, v in normal.items())
        row("errors", text)
    reqs = m.get("requests")
    if isinstance(reqs, dict) and "synapse" in reqs:
        row("requests", f"{reqs['synapse']} to Synapse")
    return lines


def render(mounts: list[dict]) -> str:
    if not mounts:
        return "no synfs mounts"
    return "\n".join("\n".join(render_one(m)) for m in mounts)


# ---- command ----------------------------------------------------------------------------
def add_status_parser(sub) -> None:
    p = sub.add_parser("status", help="show synfs mounts: root, credentials, cache, uploads, errors",
                       description="Show the synfs mounts on this machine and how each is doing.",
                       epilog=STATUS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mountpoint", nargs="?", type=Path, help="only this mount (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON (a list, one object a mount)")
    p.add_argument("--timeout", type=float, default=PROBE_TIMEOUT_S,
                   help=f"seconds to wait for a mount to answer (default {PROBE_TIMEOUT_S:g})")


def run_status(args) -> int:
    mounts = collect(args.mountpoint, timeout=args.timeout)
    if args.mountpoint is not None and not mounts:
        where = os.path.abspath(os.path.expanduser(str(args.mountpoint)))
        print(f"synfs: {where} is not a synfs mount", file=sys.stderr)
        return EXIT_MOUNTPOINT
    if args.json:
        print(json.dumps(mounts, indent=2, default=str))
    else:
        print(render(mounts))
    healthy = all(m["state"] in ("answering", "no access") for m in mounts)
    return EXIT_OK if healthy else EXIT_FAILED
