"""What the daemon asks of the kernel for its FUSE connection once the mount answers.

Owns two tunings, both root-only (sysfs), both about sequential reads, both best effort: a
refusal costs CPU and throughput, never correctness, and is logged at debug level.

- **Readahead** (``/sys/class/bdi/<dev>/read_ahead_kb``): FUSE INIT sets it to the connection's
  ``max_readahead`` (128 KiB); at 4 MiB, sequential reads arrive as ``max_pages``-sized requests
  (1 MiB with libfuse 3.14) several at a time.
- **The background queue** (``/sys/fs/fuse/connections/<minor>/max_background`` and
  ``congestion_threshold``): readahead requests are "background" requests, 12 at most in flight
  by default, and past the congestion threshold (9) the kernel stops issuing readahead and the
  reader falls back to synchronous 1 MiB reads it waits for one by one. Four files read at once
  with 4 MiB of readahead each want 16 in flight: raising the queue to 64 (threshold 48) took
  four files read together from 0.78x to 0.87-0.90x of a direct S3 reader and cut the readers'
  own CPU per GiB from 0.48 to 0.28 s in an interleaved A/B probe (docs/benchmarks-read.md).
  pyfuse3 does not expose libfuse's ``conn->max_background``, so the value goes through the
  ``fusectl`` file system, which systemd mounts at boot; a bare machine without it gets it
  mounted here when the daemon runs as root.

The device comes from ``/proc/self/mountinfo``, never from a ``stat`` of the mount point.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from synfs.service import mounts

log = logging.getLogger(__name__)

READAHEAD_KIB = 4096
MAX_BACKGROUND = 64
FUSECTL = Path("/sys/fs/fuse/connections")


def tune(mountpoint) -> dict[str, int]:
    """Apply both tunings to the FUSE mount at ``mountpoint``; the values set, by name."""
    entry = mounts.mounted_at(mountpoint)
    if entry is None or ":" not in entry.device:
        log.debug("kernel tuning of %s skipped: not in mountinfo", mountpoint)
        return {}
    done = {}
    if _write(Path(f"/sys/class/bdi/{entry.device}/read_ahead_kb"), READAHEAD_KIB):
        done["read_ahead_kb"] = READAHEAD_KIB
    conn = _fusectl() / entry.device.split(":")[1]
    # the queue first, then the threshold: a refusal half-way leaves the threshold below the
    # queue (as the defaults are), never a threshold that would stop readahead early
    threshold = MAX_BACKGROUND * 3 // 4
    if (_write(conn / "max_background", MAX_BACKGROUND)
            and _write(conn / "congestion_threshold", threshold)):
        done["max_background"] = MAX_BACKGROUND
        done["congestion_threshold"] = threshold
    log.debug("kernel tuning of %s: %s", mountpoint, done or "none applied")
    return done


def _fusectl() -> Path:
    """``FUSECTL``, mounted first if it is not and the daemon may (root)."""
    if os.geteuid() == 0 and FUSECTL.is_dir() and not mounts.is_mounted(FUSECTL):
        try:
            res = subprocess.run(["mount", "-t", "fusectl", "fusectl", str(FUSECTL)],
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as exc:     # no mount(8), or it hung
            log.debug("could not mount fusectl: %s", exc)
            return FUSECTL
        if res.returncode == 0:
            log.info("mounted the fusectl file system on %s (to tune the FUSE queue)", FUSECTL)
        else:
            log.debug("could not mount fusectl: %s", res.stderr.strip())
    return FUSECTL


def _write(path: Path, value: int) -> bool:
    try:
        path.write_text(str(value))
        return True
    except OSError as exc:
        log.debug("left %s as is: %s", path, exc)
        return False
