"""Progress and results of a ``synfs register`` run: the bar, per-object lines, the summary.

Owns the counters (registered, new versions, skipped, failed with their reasons; bytes
hashed; calls) and what they say: on a terminal a one-line bar on stderr (drawn by
``synfs.progress.StatusLine``: redrawn at most every ``interval`` seconds and cleared before
any other line is printed); elsewhere no bar. Per-object lines go to ``out`` (stdout),
failures to ``err`` (stderr), and ``summary()`` is the one line a run ends with.
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Callable, TextIO

from synfs.progress import StatusLine, human


class Progress:
    def __init__(self, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
                 bar: bool | None = None, calls: Callable[[], int] = lambda: 0,
                 interval: float = 0.2, clock: Callable[[], float] = time.monotonic,
                 width: int = 24):
        self.out = out
        self.err = err
        self.line = StatusLine(err, tty=bar, interval=interval, width=width, clock=clock)
        self.calls = calls
        self.clock = clock
        self.started = clock()
        self.total = 0                     # objects listed so far
        self.done = 0
        self.hashed = 0
        self.counts: collections.Counter = collections.Counter()
        self.reasons: collections.Counter = collections.Counter()   # failures by reason kind

    # ---- counting ----------------------------------------------------------------------
    def listed(self, n: int = 1) -> None:
        self.total += n
        self._tick()

    def add_hashed(self, n: int) -> None:
        self.hashed += n
        self._tick()

    def result(self, outcome: str, line: str, *, reason_kind: str | None = None) -> None:
        """One object finished: ``outcome`` is registered, new_version, skipped or failed."""
        self.done += 1
        self.counts[outcome] += 1
        if outcome == "failed":
            self.reasons[reason_kind or "other"] += 1
            self.say(line, err=True)
        elif line:
            self.say(line)
        self._tick()

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    # ---- output ------------------------------------------------------------------------
    def say(self, line: str, *, err: bool = False) -> None:
        self.line.clear()
        stream = self.err if err else self.out
        print(line, file=stream, flush=True)
        self._tick(force=True)

    def _tick(self, force: bool = False) -> None:
        if self.line.tty:
            self.line.show(f"{self.done}/{self.total} objects  {human(self.hashed)} hashed  "
                           f"{self.calls()} calls",
                           self.done / self.total if self.total else 0.0, force=force)

    def finish(self) -> None:
        self.line.clear()

    def summary(self, *, dry_run: bool = False, interrupted: bool = False,
                note: str = "") -> str:
        c = self.counts
        would = "would be " if dry_run else ""
        text = (f"{c['registered']} {would}registered, {c['new_version']} new version"
                f"{'s' if c['new_version'] != 1 else ''}, {c['skipped']} skipped, "
                f"{c['failed']} failed")
        if self.reasons:
            text += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items())) + ")"
        text += (f"; {human(self.hashed)} hashed, {self.calls()} calls, "
                 f"{self.clock() - self.started:.1f}s")
        if note:
            text += f"; {note}"
        if interrupted:
            text += f"; interrupted after {self.done} of {self.total} objects listed: run the " \
                    "same command again to resume"
        return text
