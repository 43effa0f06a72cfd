"""The local staging area for writes: one file per open-for-write handle, within a byte budget,
each with a durable record (``synfs.write.journal``) saying what it is for.

Files live in ``<cache-dir>/staging/`` (default ``~/.cache/synfs/staging``), their records in
``<cache-dir>/staging.journal/``. The record is written before the first byte is accepted and
follows the file through its life (open, closing, uploaded, saved); a staged file and its record
are deleted once the content is safely in Synapse; when a save fails both are kept and the path
is logged, so no user data is ever lost, and a later mount (``synfs.write.recovery``) or
``synfs recover`` finishes the job. ``reserve`` counts staged bytes in the mount's
``DiskBudget`` (``synfs.diskbudget``, the ``--cache-size`` shared with the data cache): staged
data has priority, so the data cache gives room back, and growing staged data is refused with
ENOSPC only when staged data alone (including files kept from earlier crashes) would exceed the
budget. A size beyond what synfs can ever store (``MAX_FILE_SIZE``) is EFBIG. Called from the
trio thread.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from synfs import errors
from synfs.diskbudget import DiskBudget
from synfs.localdirs import private_dir
from synfs.write import journal

log = logging.getLogger(__name__)

# The largest object S3 stores (5 TiB); no file synfs saves can be larger.
MAX_FILE_SIZE = 5 * 1024 ** 4


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class StagedFile:
    """One staging file, opened read-write for the life of the handle that owns it."""

    def __init__(self, area: "StagingArea", path: Path, fd: int, record: journal.Record):
        self.area = area
        self.path = path
        self.fd = fd
        self.size = 0
        self.closed = False
        self.record = record

    def write(self, offset: int, data: bytes) -> int:
        end = offset + len(data)
        if end > self.size:
            self.area.reserve(end - self.size, end)
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
            self.area.reserve(size - self.size, size)
        else:
            self.area.release(self.size - size)
        os.ftruncate(self.fd, size)
        self.size = size

    def sync(self) -> None:
        os.fsync(self.fd)

    def note(self, **fields) -> None:
        """Change the durable record (state, target, base) when what it says changed."""
        if all(getattr(self.record, k) == v for k, v in fields.items()):
            return
        for key, value in fields.items():
            setattr(self.record, key, value)
        if not self.closed or self.path.exists():
            journal.write(self.area.root, self.record)

    def discard(self) -> None:
        """Delete the file and its record (its content is in Synapse, or it was never wanted)."""
        self._close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        journal.remove(self.area.root, self.record.stem)

    def keep(self, why: str) -> None:
        """Leave the file and its record on disk after a failed save, and say where."""
        self._close()
        log.error("data kept locally: %s (%s); `synfs recover list` shows it", self.path, why)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.area.release(self.size)
            os.close(self.fd)


class StagingArea:
    def __init__(self, root: Path, limit: "int | DiskBudget", owner: str | None = None):
        """``limit``: the mount's shared ``DiskBudget``, or a byte count for a budget of its own;
        ``owner``: the Synapse user id written into each record."""
        self.root = Path(root)
        self.budget = limit if isinstance(limit, DiskBudget) else DiskBudget(limit)
        self.owner = owner
        self.kept_bytes = 0           # counted bytes of files kept from earlier mounts

    @property
    def limit(self) -> int:
        return self.budget.limit

    @property
    def used(self) -> int:
        return self.budget.staged

    def ensure(self) -> None:
        private_dir(self.root)          # and a missing cache directory above it: 0700

    def new(self, label: str, **target) -> StagedFile:
        """A new empty staged file and its record (``target``: ``journal.Record`` fields),
        both durable before any byte is accepted."""
        self.ensure()
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in label)[:80]
        stem = f"{uuid.uuid4().hex[:12]}-{safe}"
        path = self.root / stem
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        rec = journal.Record(stem=stem, user_id=self.owner, pid=os.getpid(), **target)
        try:
            journal.write(self.root, rec)
            journal.fsync_dir(self.root)
        except OSError:
            os.close(fd)
            path.unlink()
            raise
        return StagedFile(self, path, fd, rec)

    def reserve(self, nbytes: int, new_size: int | None = None) -> None:
        if new_size is not None and new_size > MAX_FILE_SIZE:
            raise errors.FileTooLarge(
                f"{_human(new_size)} is more than synfs can store in one file "
                f"({_human(MAX_FILE_SIZE)}, the largest S3 object)")
        if not self.budget.stage(nbytes):
            kept = (f", {_human(self.kept_bytes)} of it kept from earlier mounts "
                    "(see `synfs recover list`)" if self.kept_bytes else "")
            raise errors.NoSpace(
                f"staging area {self.root} cannot take {nbytes} more bytes: {self.used} of "
                f"{self.limit} bytes (--cache-size {_human(self.limit)}) hold unsaved "
                f"data{kept}; raise --cache-size or close files being written")

    def adopt(self, nbytes: int) -> None:
        """Count a file kept from an earlier mount (it is on disk whatever the budget says)."""
        self.budget.stage(nbytes, force=True)
        self.kept_bytes += nbytes

    def disown(self, nbytes: int) -> None:
        """A kept file was saved or discarded."""
        self.budget.unstage(nbytes)
        self.kept_bytes = max(0, self.kept_bytes - nbytes)

    def release(self, nbytes: int) -> None:
        self.budget.unstage(nbytes)
