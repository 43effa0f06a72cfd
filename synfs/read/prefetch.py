"""Sequential prefetching per open file (design lesson 9; mountpoint-s3's prefetcher is the
reference design), over the mount's shared single-flight part downloads (``synfs.read.downloads``).

Owns ``Prefetcher`` (one per open file, trio thread only): it keeps parts covering the window
ahead of the reader. The window starts at ``initial`` (1 MiB + 128 KiB), grows each time the
reader finishes a part (x4 up to ``RAMP_UNTIL``, then x2: every GET costs milliseconds of
Python, so the ramp of small parts is kept short), and is capped by ``maximum`` and by the open
file's fair share of the memory budget and of ``total`` (all files' windows together); up to
``parallel`` parts of up to ``part_max`` bytes download at once, and each part that lands tops
the window up, so one slow GET never stalls the others. Parts end on a grid, so that readers of
the same file share them. Reads inside what is held or downloading (small forward and backward
seeks, the kernel's out-of-order readahead) are served from it; any other read resets the
window. Two resets in a row mean random access: then only the bytes asked for are fetched until
the reads turn sequential again. When the budget refuses a part a read needs, the read is
served by one direct ranged GET of just its bytes. Replies are read-only views of the parts (no
copy) unless a read spans parts.
"""

from __future__ import annotations

import dataclasses
import logging

from synfs import errors
from synfs.read.downloads import Downloads, Part
from synfs.synapse.models import Entity

log = logging.getLogger(__name__)

MiB = 1024 * 1024
RAMP_UNTIL = 16 * MiB              # the window quadruples up to here, then doubles


@dataclasses.dataclass(frozen=True)
class ReadaheadPolicy:
    initial: int = MiB + 128 * 1024     # first window after open or a reset
    maximum: int = 128 * MiB            # largest window of one open file (bytes ahead)
    total: int = 256 * MiB              # the windows of all reading files together
    parallel: int = 4                   # most ranged GETs in flight for one open file
    part_min: int = MiB                 # smallest prefetch part (grid alignment)
    part_max: int = 32 * MiB            # largest single ranged GET
    keep_behind: int = 4 * MiB          # backward seeks within this are served from memory
    forward_seek: int = 4 * MiB         # forward seeks this far past the window fill the gap


class Prefetcher:
    """The read window of one open file (see the module docstring)."""

    def __init__(self, entity: Entity, downloads: Downloads, policy: ReadaheadPolicy):
        self.entity = entity
        self.size = entity.file_handle.size
        self.downloads = downloads
        self.policy = policy
        self.parts: list[Part] = []
        self.next_seq = 0
        self.window = policy.initial
        self.streak = 0                 # consecutive non-sequential reads
        self.random = False
        self.reads = 0
        self.resets = 0
        self.requests = 0               # downloads this file started (parts + direct reads)
        self.last_active = downloads.clock()
        self._grow_at = -1              # when the reader gets here, the window grows
        self._closed = False
        downloads.budget.register(self)

    # ---- the window ----------------------------------------------------------------------
    def _near(self, offset: int) -> bool:
        """Does ``offset`` continue the current window? Inside what is held, a little before
        it (the kernel's readahead arrives out of order), or up to ``forward_seek`` past it."""
        if not self.parts:
            return offset == self.next_seq and self.reads > 0
        if self.random:
            return self.parts[0].start <= offset < self.parts[-1].end
        low = self.parts[0].start - self.policy.keep_behind
        high = max(self.parts[-1].end, self.next_seq) + self.policy.forward_seek
        return low <= offset < high

    def _reset(self, offset: int) -> None:
        self._drop(len(self.parts))
        if self.reads > 0:
            self.resets += 1
            self.streak += 1
        self.random = self.streak >= 2
        self.window = self.policy.initial
        self.next_seq = offset
        self._grow_at = -1

    def _cap(self) -> int:
        # the file's fair share of the budget, and of ``total``: beyond two files more memory
        # does not stream faster (each window is fed by ``parallel`` GETs either way) but
        # costs page faults and zeroing (four files held 450 MiB and faulted in 200 MiB fresh
        # after one file's read; at 256 MiB they reuse its buffers and read as fast)
        budget = self.downloads.budget
        share = min(budget.fair_share(), self.policy.total // max(1, budget.active_owners()))
        return min(self.policy.maximum, max(self.policy.initial, share))

    def _part_size(self) -> int:
        p = self.policy
        size = 1 << max(0, (self.window // 4).bit_length() - 1)
        return max(p.part_min, min(p.part_max, size))

    def _schedule(self, offset: int, needed_end: int, ahead: bool) -> bool:
        """Hold parts covering ``[offset, needed_end)`` (False if the budget refused one),
        then, if ``ahead``, up to the window beyond the reader while the budget allows."""
        if self.parts and offset < self.parts[0].start:       # arrived out of order
            front, pos = [], offset
            while pos < self.parts[0].start:
                part = self.downloads.part_at(self.entity, pos, self.parts[0].start, self)
                if part is None:
                    for p in front:
                        p.owners.discard(self)
                        self.downloads.unref(p)
                    return False
                front.append(part)
                part.owners.add(self)
                self.requests += part.refs == 1
                pos = part.end
            self.parts[:0] = front
        pos = self.parts[-1].end if self.parts else offset
        target = needed_end
        if ahead and not self.random:
            # top up once the reader used half a part of the window, not for every byte
            slack = min(self._part_size(), self.window) // 2
            if pos - self.next_seq < self.window - slack:
                target = max(needed_end, self.next_seq + self.window)
        target = min(target, self.size)
        # a slow GET must not stall the others: the window counts bytes ahead of the reader
        # (downloaded or not), the GETs in flight are capped separately
        in_flight = sum(1 for p in self.parts if not p.done.is_set())
        while pos < target and (pos < needed_end or in_flight < self.policy.parallel):
            if not self.parts:
                # the first part: the window (or just the read, for random access); with a
                # disk cache, whole cache blocks so that the cache can keep them
                align = self.downloads.align
                if align:
                    pos -= pos % align
                want = max(needed_end, pos + (0 if self.random else self.window))
                if align:
                    want = -(-want // align) * align
            else:
                step = self._part_size()
                want = (pos // step + 1) * step          # parts end on a grid: readers line up
                if want - pos < step // 4:
                    want += step
            part = self.downloads.part_at(self.entity, pos, want, self)
            if part is None:
                return pos >= needed_end
            self.parts.append(part)
            part.owners.add(self)
            self.requests += part.refs == 1
            in_flight += not part.done.is_set()
            pos = part.end
        return True

    def _holder(self, pos: int) -> Part | None:
        return next((p for p in self.parts if p.start <= pos < p.end), None)

    def _advance(self, end: int) -> None:
        """The reader got to ``end``: grow the window when it finished a part, and let go of
        parts more than ``keep_behind`` behind it."""
        self.next_seq = max(self.next_seq, end)
        if self._grow_at < 0:
            holder = self._holder(self.next_seq)
            self._grow_at = holder.end if holder else -1
        elif self.next_seq >= self._grow_at:
            self.window = min(self.window * (4 if self.window < RAMP_UNTIL else 2), self._cap())
            holder = self._holder(self.next_seq)
            self._grow_at = holder.end if holder else -1
        drop = 0
        for part in self.parts[:-1]:
            if part.end > self.next_seq - self.policy.keep_behind:
                break
            drop += 1
        if drop:
            self._drop(drop)

    def _drop(self, n: int) -> int:
        """Let go of the first ``n`` parts; returns the buffer bytes that freed."""
        freed = 0
        gone, self.parts = self.parts[:n], self.parts[n:]
        for part in gone:
            part.owners.discard(self)
            if part.refs == 1 and part.done.is_set() and part.buf is not None:
                freed += part.buf.capacity
            self.downloads.unref(part)
        return freed

    # ---- reads ---------------------------------------------------------------------------
    async def read(self, offset: int, size: int) -> bytes:
        if self._closed:
            raise errors.SynfsError("read on a closed file")
        if offset >= self.size or size <= 0:
            return b""
        end = min(offset + size, self.size)
        self.last_active = self.downloads.clock()
        self.downloads.read_sizes[size] += 1
        if self._near(offset):
            if self.streak:
                self.streak = 0
                self.random = False
        else:
            self._reset(offset)
        self.reads += 1
        if not self._schedule(offset, end, ahead=True):
            self.requests += 1
            data = await self.downloads.read_direct(self.entity, offset, end)
            self.next_seq = max(self.next_seq, end)
            return data
        needed = [p for p in self.parts if p.start < end and p.end > offset]
        for part in needed:
            part.refs += 1
        try:
            for part in needed:
                await part.done.wait()
            for part in needed:
                if part.error is not None:
                    raise part.error
            data = _copy_out(needed, offset, end)
        except BaseException:
            if any(p.error is not None for p in needed):
                self._reset(offset)
            raise
        finally:
            for part in needed:
                self.downloads.unref(part)
        if not self._closed:
            self._advance(end)
            self._schedule(self.next_seq, self.next_seq, ahead=True)
        return data

    def top_up(self) -> None:
        """A part arrived: start the next GETs of the window without waiting for a read."""
        if not self._closed and self.parts and not self.random:
            self._schedule(self.next_seq, self.next_seq, ahead=True)

    def shrink(self) -> int:
        """The budget asks an idle file to give its buffered parts back."""
        return self._drop(len(self.parts))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drop(len(self.parts))
        budget = self.downloads.budget
        budget.unregister(self)
        if not budget.owners():
            budget.trim_later()     # no file open: the kept buffers go back to the system soon
        if self.reads:
            log.debug("closed syn%d: %d reads, %d downloads, %d resets, window %d; request "
                      "sizes so far %s", self.entity.id, self.reads, self.requests, self.resets,
                      self.window, dict(self.downloads.read_sizes.most_common(4)))


def _copy_out(parts: list[Part], start: int, end: int) -> bytes:
    """``[start, end)`` out of parts sorted by start (shared parts may overlap)."""
    chunks, cur = [], start
    for p in sorted(parts, key=lambda p: p.start):
        if p.end <= cur:
            continue
        if p.start > cur:
            break
        hi = min(end, p.end)
        chunks.append(p.view()[cur - p.start:hi - p.start])
        cur = hi
        if cur >= end:
            break
    if cur < end:
        raise errors.SynfsError(f"internal: parts do not cover {cur}-{end}")
    return chunks[0].toreadonly() if len(chunks) == 1 else b"".join(chunks)

