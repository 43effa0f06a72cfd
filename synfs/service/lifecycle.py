"""Signals over the daemon's whole life: any number of them, in any order, end in a clean unmount.

Owns how the daemon reacts to SIGTERM, SIGINT and SIGHUP (stop) and SIGUSR1 (refresh the status
file now, for ``synfs status``). ``Signals.install()`` runs before the FUSE mount is made and its
handlers stay until the daemon is done, so no signal ever meets Python's default action (which
would kill the process, or raise KeyboardInterrupt, before ``pyfuse3.close(unmount=True)`` and
leave a dead mount behind):

* outside the trio loop (before it starts, while FUSE closes) a signal is only recorded;
* inside the loop, ``watch()`` holds a trio signal receiver for the loop's whole life. The first
  stop signal (or one recorded before the loop) calls ``pyfuse3.terminate()``: requests in flight
  finish (each within the retry budget), the loop ends and the caller closes FUSE. A later stop
  signal is logged and changes nothing: cancelling requests in flight would not shorten waits
  in worker threads (they cannot be cancelled) and could cut a save short, so it does not;
* ``blocked()`` holds the stop signals back while ``pyfuse3.close()`` unmounts, so that neither
  the daemon nor the ``fusermount3`` it may start (same process group: a terminal's Ctrl-C
  reaches both) is interrupted half-way. They are delivered, and recorded, afterwards;
* ``ignore_from_now()``, once FUSE is closed: there is nothing left to stop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Callable

import pyfuse3
import trio

from synfs.service import sdnotify

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
REFRESH_SIGNAL = signal.SIGUSR1


class Signals:
    def __init__(self):
        self.pending: list[int] = []       # recorded outside the trio loop, not yet acted on
        self.stopping = False
        self._previous: dict[int, object] = {}

    # ---- process-wide handlers ------------------------------------------------------------
    def install(self) -> None:
        for signum in (*STOP_SIGNALS, REFRESH_SIGNAL):
            self._previous[signum] = signal.signal(signum, self._record)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def ignore_from_now(self) -> None:
        """Once unmounted: ignore these signals for the rest of the process. Python hands its
        own handlers back to the default action while the interpreter shuts down, and a storm
        still arriving then would kill the process (exit status -N) after a clean unmount."""
        for signum in (*STOP_SIGNALS, REFRESH_SIGNAL):
            signal.signal(signum, signal.SIG_IGN)

    def _record(self, signum, _frame) -> None:
        if signum in STOP_SIGNALS:
            self.pending.append(signum)

    @contextlib.contextmanager
    def blocked(self):
        """Hold the stop signals back (this thread, and processes it starts) meanwhile."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    # ---- inside the trio loop ---------------------------------------------------------------
    async def watch(self, refresh: Callable[[], None] = lambda: None) -> None:
        """React to signals until cancelled (the caller cancels it after the loop ends)."""
        with trio.open_signal_receiver(*STOP_SIGNALS, REFRESH_SIGNAL) as received:
            while self.pending:
                self._stop(self.pending.pop(0))
            async for signum in received:
                if signum == REFRESH_SIGNAL:
                    refresh()
                else:
                    self._stop(signum)

    def _stop(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self.stopping:
            self.stopping = True
            log.info("%s: unmounting", name)
            sdnotify.stopping("unmounting")
            pyfuse3.terminate()
        else:
            log.info("%s: already unmounting (waiting for requests in flight)", name)
