"""Domain errors of synfs and the one place where they become errno values.

Every error the Synapse and S3 seams raise is a ``SynfsError`` subclass carrying its errno and
the log level it deserves. ``to_errno`` is the exhaustive mapping used by the FUSE boundary:
a ``SynfsError`` maps to its errno; anything else is a bug, logged with a traceback, and
becomes EIO. The FUSE layer never lets a non-FUSEError exception escape a handler.
"""

from __future__ import annotations

import errno
import logging

log = logging.getLogger(__name__)


class SynfsError(Exception):
    errno = errno.EIO
    level = logging.WARNING

    def __init__(self, message: str = "", *, entity: str | None = None):
        super().__init__(message)
        self.message = message
        self.entity = entity


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


class Unavailable(SynfsError):
    """Synapse or S3 did not answer usefully within the retry budget."""

    errno = errno.EIO
    level = logging.ERROR


class Unsupported(SynfsError):
    errno = errno.ENOTSUP
    level = logging.DEBUG


def to_errno(exc: BaseException) -> int:
    """The errno for an exception raised by the filesystem core (logging it appropriately)."""
    if isinstance(exc, SynfsError):
        log.log(exc.level, "%s: %s%s", type(exc).__name__, exc.message or "",
                f" ({exc.entity})" if exc.entity else "")
        return exc.errno
    log.error("internal error, answering EIO", exc_info=exc)
    return errno.EIO
