"""Which mounts exist, read from ``/proc/self/mountinfo``: the one answer to "is it mounted".

Owns the parsing of mountinfo and the questions every lifecycle path asks (the daemon's mount
point check, ``synfs unmount``, the demo's cleanup, ``synfs status``). A ``stat`` cannot answer
them: on a dead FUSE mount (daemon gone) it fails with ENOTCONN, on another user's mount without
``allow_other`` with EACCES, and ``os.path.ismount`` then says False although the kernel still
holds the mount. The kernel's own table says True in every one of those cases.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
from pathlib import Path

FSTYPE = "fuse.synfs"
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclasses.dataclass
class MountEntry:
    mountpoint: str
    source: str
    fstype: str
    options: str
    super_options: dict
    device: str = ""            # "major:minor", the st_dev the kernel gave the mount

    @property
    def user_id(self) -> int | None:
        """The uid that mounted it (FUSE's ``user_id=``), None for other file systems."""
        try:
            return int(self.super_options.get("user_id", ""))
        except ValueError:
            return None

    @property
    def is_synfs(self) -> bool:
        return self.fstype == FSTYPE


def _unescape(field: str) -> str:
    raw = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), os.fsencode(field))
    return os.fsdecode(raw)


def parse_mountinfo(text: str, fstype: str | None = FSTYPE) -> list[MountEntry]:
    """The entries of a mountinfo text, only those of ``fstype`` unless it is None."""
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if "-" not in parts:
            continue
        sep = parts.index("-")
        if len(parts) < sep + 4 or len(parts) < 6:
            continue
        if fstype is not None and parts[sep + 1] != fstype:
            continue
        supers = {}
        for opt in parts[sep + 3].split(","):
            key, _, value = opt.partition("=")
            supers[key] = value
        out.append(MountEntry(mountpoint=_unescape(parts[4]), source=_unescape(parts[sep + 2]),
                              fstype=parts[sep + 1], options=parts[5], super_options=supers,
                              device=parts[2]))
    return out


def all_mounts(mountinfo: Path = MOUNTINFO) -> list[MountEntry]:
    return parse_mountinfo(mountinfo.read_text(errors="surrogateescape"), fstype=None)


def synfs_mounts(mountinfo: Path = MOUNTINFO) -> list[MountEntry]:
    return [m for m in all_mounts(mountinfo) if m.is_synfs]


def names(path: Path | str) -> set[str]:
    """Spellings of ``path`` that mountinfo may use (absolute, and with symlinks resolved;
    ``realpath`` tolerates a dead mount on the way)."""
    absolute = os.path.abspath(os.path.expanduser(str(path)))
    return {absolute, os.path.realpath(absolute)}


def mounted_at(path: Path | str, mountinfo: Path = MOUNTINFO) -> MountEntry | None:
    """The topmost mount at ``path`` (any file system), or None: whatever ``stat`` says."""
    wanted = names(path)
    found = None
    for entry in all_mounts(mountinfo):
        if entry.mountpoint in wanted:
            found = entry              # later lines are mounted on top of earlier ones
    return found


def is_mounted(path: Path | str) -> bool:
    return mounted_at(path) is not None


def liveness(path: Path | str) -> str:
    """"answering", "dead" (ENOTCONN: the daemon is gone), "denied" (EACCES/EPERM: another
    user's mount), or "error". ``statvfs`` always reaches the daemon; a ``stat`` may be answered
    from the kernel's attribute cache. Blocks if the daemon hangs: callers that must not hang
    run it in a thread (``synfs status``)."""
    try:
        os.statvfs(path)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            return "dead"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "denied"
        if exc.errno == errno.ENOSYS:
            return "answering"
        return "error"
    return "answering"


def liveness_within(path: Path | str, timeout: float) -> str:
    """``liveness`` bounded in time: "not answering" if the daemon does not answer (the
    probing thread is left behind, as a hung mount's caller would be)."""
    import threading

    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(liveness(path)), daemon=True,
                              name="synfs-liveness-probe")
    thread.start()
    thread.join(timeout)
    return result[0] if result else "not answering"
