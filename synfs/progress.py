"""Terminal progress for long-running commands (``synfs register``, ``synfs snapshot``).

Owns how progress looks, not what is counted: ``human`` (byte counts for people) and
``StatusLine``, one status line on a stream. On a terminal it is a bar redrawn in place at
most every ``interval`` seconds (``clear`` before printing any other line, ``end`` to keep
it); elsewhere nothing, or with ``plain_every`` a plain line that often. A foundation module:
it imports nothing from synfs.
"""

from __future__ import annotations

import time
from typing import Callable, TextIO


def human(n: float) -> str:
    """``512 B``, ``1.5 KiB`` ... ``2.0 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class StatusLine:
    def __init__(self, stream: TextIO, *, enabled: bool = True, tty: bool | None = None,
                 interval: float = 0.2, plain_every: float | None = None, width: int = 24,
                 fill: str = ".", clock: Callable[[], float] = time.monotonic):
        """``tty``: draw the bar (default: whether ``stream`` is a terminal); ``plain_every``:
        elsewhere, print a plain line this often (the first one after that long)."""
        self.stream = stream
        self.tty = enabled and (stream.isatty() if tty is None else tty)
        self.plain = enabled and not self.tty and plain_every is not None
        self.every = interval if self.tty else (plain_every or 0.0)
        self.width = width
        self.fill = fill
        self.clock = clock
        self._last = clock() if self.plain else 0.0
        self._drawn = False

    def show(self, text: str, fraction: float, *, force: bool = False) -> None:
        """Show ``text`` after a bar ``fraction`` full, unless it was shown too recently."""
        if not (self.tty or self.plain):
            return
        now = self.clock()
        if not force and now - self._last < self.every:
            return
        self._last = now
        if self.tty:
            filled = int(max(0.0, min(1.0, fraction)) * self.width)
            self.stream.write(f"\r[{'#' * filled}{self.fill * (self.width - filled)}] {text}"
                              "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Erase the bar (before another line is printed)."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def end(self) -> None:
        """Keep the last bar on screen and move below it."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
