"""Domain errors of synfs and the one place where they become errno values.

Every error the Synapse and S3 seams raise is a ``SynfsError`` subclass carrying its errno and
the log level it deserves. ``to_errno`` is the exhaustive mapping used by the FUSE boundary:
a ``SynfsError`` maps to its errno; anything else is a bug, logged with a traceback, and
becomes EIO. The FUSE layer never lets a non-FUSEError exception escape a handler.
``to_errno`` also counts every answer by errno and error class (``status()``, thread-safe)
for ``synfs status``, except replays (``SynfsError.replayed``: the same error answered again
to the kernel's retry of a failed request), so that the counts are errors callers saw.
"""

from __future__ import annotations

import collections
import copy
import errno
import logging
import threading
import time

log = logging.getLogger(__name__)


class SynfsError(Exception):
    errno = errno.EIO
    level = logging.WARNING

    replay = False          # the same error answered again (not counted, logged at DEBUG)

    def __init__(self, message: str = "", *, entity: str | None = None):
        super().__init__(message)
        self.message = message
        self.entity = entity

    def replayed(self) -> "SynfsError":
        """A copy to answer a retry of the request that failed with this error."""
        again = copy.copy(self)
        again.replay = True
        return again


class NotFound(SynfsError):
    """Name not in folder; entity 404 or in the trash."""

    errno = errno.ENOENT
    level = logging.DEBUG


class PermissionDenied(SynfsError):
    """Synapse 403, S3 AccessDenied, missing DOWNLOAD permission or unmet access requirement."""

    errno = errno.EACCES
    level = logging.WARNING


class AuthenticationFailed(SynfsError):
    """The token was rejected (401)."""

    errno = errno.EACCES
    level = logging.ERROR


class AlreadyExists(SynfsError):
    errno = errno.EEXIST
    level = logging.INFO


class StaleUpdate(SynfsError):
    """412: the entity changed since it was read."""

    errno = errno.ESTALE
    level = logging.INFO


class ContentChanged(SynfsError):
    """The file's content changed under an open handle."""

    errno = errno.ESTALE
    level = logging.INFO


class OpenForReading(SynfsError):
    """Writing a file this mount has open for reading: the kernel keeps one size and one page
    cache per inode, so the readers' pinned version could not stay intact."""

    errno = errno.ETXTBSY
    level = logging.INFO


class InvalidRequest(SynfsError):
    """Synapse said 400: the request cannot be honoured as made."""

    errno = errno.EINVAL
    level = logging.WARNING


class ReadOnly(SynfsError):
    errno = errno.EROFS
    level = logging.DEBUG


class NotADirectory(SynfsError):
    errno = errno.ENOTDIR
    level = logging.DEBUG


class IsADirectory(SynfsError):
    errno = errno.EISDIR
    level = logging.DEBUG


class NoAttribute(SynfsError):
    """getxattr of an extended attribute the file does not have."""

    errno = errno.ENODATA
    level = logging.DEBUG


class NoSpace(SynfsError):
    """The local staging area is full."""

    errno = errno.ENOSPC
    level = logging.WARNING


class CrossDevice(SynfsError):
    """A move between storage locations (Synapse cannot move data across them)."""

    errno = errno.EXDEV
    level = logging.INFO


class NotEmpty(SynfsError):
    errno = errno.ENOTEMPTY
    level = logging.DEBUG


class InvalidName(SynfsError):
    """A name Synapse cannot store."""

    errno = errno.EINVAL
    level = logging.INFO


class NameTooLong(SynfsError):
    errno = errno.ENAMETOOLONG
    level = logging.INFO


class Unavailable(SynfsError):
    """Synapse or S3 did not answer usefully within the retry budget."""

    errno = errno.EIO
    level = logging.ERROR


class Unsupported(SynfsError):
    errno = errno.ENOTSUP
    level = logging.DEBUG


class QuotaExceeded(SynfsError):
    """The object store refused the write for lack of quota or space."""

    errno = errno.EDQUOT
    level = logging.WARNING


class FileTooLarge(SynfsError):
    """The object store refused the object as too large (S3 EntityTooLarge)."""

    errno = errno.EFBIG
    level = logging.WARNING


def to_errno(exc: BaseException) -> int:
    """The errno for an exception raised by the filesystem core (logging it appropriately)."""
    if isinstance(exc, SynfsError) and exc.replay:
        log.debug("%s again at once (a retry of a failed request): %s", type(exc).__name__,
                  exc.message or "")
        return exc.errno
    if isinstance(exc, SynfsError):
        log.log(exc.level, "%s: %s%s", type(exc).__name__, exc.message or "",
                f" ({exc.entity})" if exc.entity else "")
        _count(type(exc).__name__, exc.errno, exc.level, exc.entity)
        return exc.errno
    log.error("internal error, answering EIO", exc_info=exc)
    _count("InternalError", errno.EIO, logging.ERROR, None)
    return errno.EIO


# ---- error counts for `synfs status` (thread-safe: to_errno runs in the trio thread, but
# worker threads may count too) ----------------------------------------------------------
_counts_lock = threading.Lock()
_by_errno: collections.Counter = collections.Counter()
_by_error: collections.Counter = collections.Counter()
_failures_by_errno: collections.Counter = collections.Counter()   # sums to _failures
_failures = 0
_last_failure: dict | None = None


def _count(name: str, code: int, level: int, entity: str | None) -> None:
    global _failures, _last_failure
    with _counts_lock:
        _by_errno[errno.errorcode.get(code, str(code))] += 1
        _by_error[name] += 1
        if level >= logging.WARNING:   # ENOENT, EROFS... are answers, not failures
            _failures += 1
            _failures_by_errno[errno.errorcode.get(code, str(code))] += 1
            _last_failure = {"error": name, "errno": errno.errorcode.get(code, str(code)),
                             "entity": entity, "at": time.time()}


def status() -> dict:
    """Counts of errno answers since start: ``failures`` counts only WARNING-level errors
    and internal errors (not ENOENT and other normal answers)."""
    with _counts_lock:
        return {"failures": _failures, "failures_by_errno": dict(_failures_by_errno),
                "by_errno": dict(_by_errno),
                "by_error": dict(_by_error),
                "last_failure": dict(_last_failure) if _last_failure else None}


def reset_status() -> None:
    global _failures, _last_failure
    with _counts_lock:
        _by_errno.clear()
        _by_error.clear()
        _failures_by_errno.clear()
        _failures = 0
        _last_failure = None
