"""Logging for every synfs command: where lines go, how they look, and that no secret is in them.

Owns the root logger's handler. Lines go to ``--log-file`` if given; else, for a detached
daemon, to syslog (``/dev/log``); else to stderr. When stderr is the systemd journal
(``$JOURNAL_STREAM`` names stderr's device and inode) lines carry a ``<priority>`` prefix
instead of a timestamp, since journald adds its own. ``--log-level`` sets the level of
everything; ``--debug-modules synfs.fs,synfs.s3`` turns on DEBUG for just those loggers (and
their children). Third-party HTTP loggers stay at WARNING unless named there.

Every line passes through ``synfs.redact.redact`` (registered secrets and values that look
like secrets become ``<redacted>``). Code must still never log a secret; this is the safety
net.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from pathlib import Path

from synfs.redact import REDACTED, redact, register_secret  # noqa: F401 (re-exported)

TIME_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLAIN_FORMAT = "%(levelname)s %(name)s: %(message)s"
THIRD_PARTY = ("botocore", "boto3", "urllib3", "s3transfer", "requests")


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class JournalFormatter(RedactingFormatter):
    """``<priority>`` on every line (journald reads it; tracebacks keep their priority)."""

    def __init__(self):
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, 6 if record.levelno < 30 else 3)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def stderr_is_journal(stream=None) -> bool:
    """True when ``stream`` (stderr) is connected to journald (``$JOURNAL_STREAM``)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    stream = stream or sys.stderr
    try:
        st = os.fstat(stream.fileno())
        dev, ino = (int(x) for x in value.split(":", 1))
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_debug_modules(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"synfs.fs,synfs.s3"`` (or a list of such strings) -> ``("synfs.fs.core", "synfs.s3")``."""
    if not text:
        return ()
    items = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in items:
        for name in item.split(","):
            name = name.strip()
            if not name:
                continue
            if not _NAME.match(name):
                raise ValueError(f"--debug-modules: {name!r} is not a logger name "
                                 "(e.g. synfs.fs,synfs.s3)")
            if name not in names:
                names.append(name)
    return tuple(names)


def _file_handler(path: Path) -> logging.Handler:
    path = Path(path).expanduser()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    return logging.FileHandler(path, encoding="utf-8")


def setup(level: str | int = "WARNING", log_file: Path | None = None,
          debug_modules: tuple[str, ...] = (), detached: bool = False) -> logging.Handler:
    """Configure the root logger (replacing earlier handlers); returns the new handler."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    if log_file:
        handler: logging.Handler = _file_handler(log_file)
        handler.setFormatter(RedactingFormatter(TIME_FORMAT))
    elif detached and os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler("/dev/log")
        handler.setFormatter(RedactingFormatter("synfs[%(process)d]: " + PLAIN_FORMAT))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JournalFormatter() if stderr_is_journal()
                             else RedactingFormatter(TIME_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    _applied[:] = [tuple(debug_modules)]
    reapply_levels()
    return handler


_applied: list[tuple[str, ...]] = []


def reapply_levels() -> None:
    """Set the third-party and ``--debug-modules`` levels again: modules imported after
    ``setup`` (the S3 and Synapse clients) quiet the HTTP loggers when they load."""
    if not _applied:
        return
    debug_modules = _applied[0]
    root_level = logging.getLogger().level
    for name in THIRD_PARTY:
        if name not in debug_modules:
            logging.getLogger(name).setLevel(max(logging.WARNING, root_level))
    for name in debug_modules:
        logging.getLogger(name).setLevel(logging.DEBUG)
