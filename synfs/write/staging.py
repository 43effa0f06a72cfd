"""The local staging area for writes: one file per open-for-write handle, within a byte budget.

Files live in ``<cache-dir>/staging/`` (default ``~/.cache/synfs/staging``). A staged file is
deleted once its content is safely in Synapse; when a commit fails it is kept, and its path
is logged, so no user data is ever lost. ``reserve`` counts staged bytes in the mount's
``DiskBudget`` (``synfs.diskbudget``, the ``--cache-size`` shared with the data cache): staged
data has priority, so the data cache gives room back, and growing staged data is refused with
ENOSPC only when staged data alone would exceed the budget. Called from the trio thread.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from synfs import errors
from synfs.diskbudget import DiskBudget

log = logging.getLogger(__name__)


class StagedFile:
    """One staging file, opened read-write for the life of the handle that owns it."""

    def __init__(self, area: "StagingArea", path: Path, fd: int):
        self.area = area
        self.path = path
        self.fd = fd
        self.size = 0
        self.closed = False

    def write(self, offset: int, data: bytes) -> int:
        end = offset + len(data)
        if end > self.size:
            self.area.reserve(end - self.size)
        written = os.pwrite(self.fd, data, offset)
        if offset + written > self.size:
            self.size = offset + written
        return written

    def read(self, offset: int, size: int) -> bytes:
        if offset >= self.size:
            return b""
        return os.pread(self.fd, min(size, self.size - offset), offset)

    def truncate(self, size: int) -> None:
        if size > self.size:
            self.area.reserve(size - self.size)
        else:
            self.area.release(self.size - size)
        os.ftruncate(self.fd, size)
        self.size = size

    def sync(self) -> None:
        os.fsync(self.fd)

    def discard(self) -> None:
        """Delete the file (its content is in Synapse, or it was never wanted)."""
        self._close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def keep(self, why: str) -> None:
        """Leave the file on disk after a failed commit, and say where."""
        self._close()
        log.error("data kept locally: %s (%s)", self.path, why)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.area.release(self.size)
            os.close(self.fd)


class StagingArea:
    def __init__(self, root: Path, limit: "int | DiskBudget"):
        """``limit``: the mount's shared ``DiskBudget``, or a byte count for a budget of its own."""
        self.root = Path(root)
        self.budget = limit if isinstance(limit, DiskBudget) else DiskBudget(limit)

    @property
    def limit(self) -> int:
        return self.budget.limit

    @property
    def used(self) -> int:
        return self.budget.staged

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def new(self, label: str) -> StagedFile:
        self.ensure()
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in label)[:80]
        path = self.root / f"{uuid.uuid4().hex[:12]}-{safe}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        return StagedFile(self, path, fd)

    def reserve(self, nbytes: int) -> None:
        if not self.budget.stage(nbytes):
            raise errors.NoSpace(
                f"staging area {self.root} is full ({self.used} of {self.limit} bytes used); "
                "raise --cache-size or close files being written")

    def release(self, nbytes: int) -> None:
        self.budget.unstage(nbytes)
