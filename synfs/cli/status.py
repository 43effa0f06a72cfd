"""``synfs status [MOUNTPOINT]``: the synfs mounts on this machine and how each one is doing.

Owns the reading side of the status files that ``synfs.service.runtime`` publishes. Mounts come
from ``/proc/self/mountinfo`` (``synfs.service.mounts``); for each one the command probes the
mount point (a ``statvfs`` with a timeout: answering, dead, not answering, or "not yours / not
readable" for another user's mount without allow_other), asks each of the caller's answering
daemons for a fresh report (SIGUSR1, waiting at most ``REFRESH_WAIT_S``) and reads the status
file when it can: Synapse root, whether Synapse still accepts the token ("unauthorized"
otherwise), credential expiry per storage location, the request rate limiter, cache use and
uploads, error counts. A part the daemon does not report is simply absent; the report's age is
always shown. Rendering is ``synfs.cli.status_render``; ``--json`` prints the same data.

Exit codes: 0 every listed mount answers or is not the caller's (also when there are none);
1 a mount is dead, not answering or unauthorized; 6 MOUNTPOINT is not a synfs mount; 2 usage.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from synfs.cli.status_render import render, render_one  # noqa: F401 - the command's API
from synfs.config import EXIT_FAILED, EXIT_MOUNTPOINT, EXIT_OK
from synfs.service import mounts, runtime
from synfs.service.mounts import FSTYPE, MountEntry, parse_mountinfo  # noqa: F401

NOT_YOURS = "not yours / not readable"
REFRESH_WAIT_S = 1.5
PROBE_TIMEOUT_S = 3.0

STATUS_EPILOG = """examples:
  synfs status                      # every synfs mount on this machine
  synfs status /mnt/synapse         # one mount; exit 1 if it is dead or hangs
  synfs status --json | jq '.[0].credentials'

exit codes: 0 every listed mount answers or is another user's (or there are none),
  1 a mount is dead, not answering or unauthorized, 6 MOUNTPOINT is not a synfs mount, 2 usage
"""


def synfs_mounts(mountinfo: Path = mounts.MOUNTINFO) -> list[MountEntry]:
    return mounts.synfs_mounts(mountinfo)


def probe(path: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[str, str]:
    """("answering" | "dead" | "not answering" | NOT_YOURS | "error", detail)."""
    return probe_all([path], timeout)[path]


def probe_all(paths: list[str], timeout: float = PROBE_TIMEOUT_S,
              others: frozenset = frozenset()) -> dict[str, tuple[str, str]]:
    """Probe every mount point at once (a hung mount costs ``timeout``, not one each);
    ``others`` are the mount points of other users' mounts."""
    threads = {path: _start_probe(path, path in others) for path in dict.fromkeys(paths)}
    deadline = time.monotonic() + timeout
    out = {}
    for path, (thread, result) in threads.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        out[path] = _verdict(result, timeout)
    return out


def _start_probe(path: str, other_users: bool = False):
    result: list = []

    def target() -> None:
        try:
            if other_users:
                # FUSE answers statfs with zeros, without asking the daemon, to a process
                # the mount does not allow in; stat is refused (EACCES) instead.
                os.stat(path)
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
        return NOT_YOURS, "another user's mount without allow_other"
    if exc.errno == errno.ENOSYS:        # a daemon without statfs still answered
        return "answering", ""
    return "error", exc.strerror or str(exc)


def _read_status(path: Path) -> dict:
    return json.loads(path.read_text())


def _ask_for_refresh(data: dict) -> bool:
    """Signal the daemon (only one that says it understands the signal, and only if it is
    still the synfs process for this mount) to publish a fresh report now."""
    pid = data.get("pid")
    if data.get("refresh_signal") != "SIGUSR1" or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    mountpoint = data.get("mountpoint")
    if b"synfs" not in b" ".join(cmdline) or not isinstance(mountpoint, str):
        return False
    if not any(arg.startswith(b"/") and os.path.normpath(os.fsdecode(arg)) == mountpoint
               for arg in cmdline):          # not (or no longer) the daemon of this mount
        return False
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError:                      # not ours to signal (another user's daemon)
        return False
    return True


def _fresh(path: Path, old: dict, deadline: float) -> dict:
    """The report published after ``old``, or ``old`` if none came before ``deadline``."""
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            data = _read_status(path)
        except (OSError, ValueError):
            continue
        if float(data.get("updated", 0)) > float(old.get("updated", 0)):
            data["refreshed"] = True
            return data
    return old


def collect(mountpoint: Path | None = None, *, timeout: float = PROBE_TIMEOUT_S,
            refresh: bool = True) -> list[dict]:
    entries = synfs_mounts()
    if mountpoint is not None:
        wanted = mounts.names(mountpoint)
        entries = [e for e in entries if e.mountpoint in wanted]
    out = []
    others = frozenset(e.mountpoint for e in entries
                       if e.user_id is not None and e.user_id != os.geteuid())
    states = probe_all([e.mountpoint for e in entries], timeout, others)
    reports: dict[int, tuple[Path, dict]] = {}
    for n, entry in enumerate(entries):
        state, detail = states[entry.mountpoint]
        mine = entry.user_id is None or entry.user_id == os.geteuid()
        item: dict = {"mountpoint": entry.mountpoint, "source": entry.source, "state": state,
                      "owner_uid": entry.user_id, "mine": mine, "mount_options": entry.options}
        if detail:
            item["detail"] = detail if state != NOT_YOURS else (
                f"mounted by uid {entry.user_id} without allow_other")
        path, why = runtime.find_status_file(entry.mountpoint, entry.user_id)
        if path is None:
            item["status_unavailable"] = (why if mine or os.geteuid() == 0 else
                                          f"{NOT_YOURS}: the report belongs to uid "
                                          f"{entry.user_id}")
        else:
            try:
                data = _read_status(path)
            except PermissionError:
                item["status_unavailable"] = f"{path} is readable only by its owner"
            except (OSError, ValueError) as exc:
                item["status_unavailable"] = f"cannot read {path}: {exc}"
            else:
                reports[n] = (path, data)
        out.append(item)
    # Ask every answering daemon for a fresh report at once, then wait (bounded) for them.
    if refresh:
        asked = [n for n, (path, data) in reports.items()
                 if out[n]["state"] == "answering" and _ask_for_refresh(data)]
        deadline = time.monotonic() + REFRESH_WAIT_S
        for n in asked:
            path, data = reports[n]
            reports[n] = (path, _fresh(path, data, deadline))
    for n, (path, data) in reports.items():
        item = out[n]
        age = time.time() - float(data.get("updated", 0))
        data["age_s"] = round(max(age, 0.0), 1)
        if age > max(3 * float(data.get("interval_s", runtime.INTERVAL_S)), 10.0):
            data["stale"] = True
        item.update({k: v for k, v in data.items() if k not in item})
        if item["state"] == "answering" and (data.get("auth") or {}).get("state") == "unauthorized":
            item["state"] = "unauthorized"
            item["detail"] = "Synapse rejects the mount's token: revoked or expired"
    return out


HEALTHY = ("answering", NOT_YOURS)


def add_status_parser(sub) -> None:
    p = sub.add_parser("status", help="show synfs mounts: root, credentials, cache, uploads, errors",
                       description="Show the synfs mounts on this machine and how each is doing.",
                       epilog=STATUS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mountpoint", nargs="?", type=Path, help="only this mount (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON (a list, one object a mount)")
    p.add_argument("--timeout", type=float, default=PROBE_TIMEOUT_S,
                   help=f"seconds to wait for a mount to answer (default {PROBE_TIMEOUT_S:g})")
    p.add_argument("--no-refresh", action="store_true",
                   help="show the daemons' last reports as they are (default: ask each of your "
                        "daemons for a fresh one, waiting at most "
                        f"{REFRESH_WAIT_S:g}s, and say how old it is)")


def run_status(args) -> int:
    found = collect(args.mountpoint, timeout=args.timeout, refresh=not args.no_refresh)
    if args.mountpoint is not None and not found:
        where = os.path.abspath(os.path.expanduser(str(args.mountpoint)))
        print(f"synfs: {where} is not a synfs mount", file=sys.stderr)
        return EXIT_MOUNTPOINT
    if args.json:
        print(json.dumps(found, indent=2, default=str))
    else:
        print(render(found))
    healthy = all(m["state"] in HEALTHY for m in found)
    return EXIT_OK if healthy else EXIT_FAILED
