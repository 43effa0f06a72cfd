"""pyfuse3 ``Operations`` for synfs: translation only.

Bytes names become ``str`` (UTF-8, surrogateescape), core ``Attr`` values become
``EntryAttributes``, core exceptions become ``FUSEError`` through one boundary
(``synfs.errors.to_errno``). No handler lets any other exception escape; ``forget`` and
``release`` never raise. No requests or boto3 here. ``flush`` (every close) and ``fsync``
save written data to Synapse and report failures; ``release`` cannot report anything.
``statfs`` reports as ``f_namemax`` the write path's one name limit (``synfs.write.names``).
"""

from __future__ import annotations

import errno
import functools
import logging
import os

import pyfuse3

from synfs.errors import to_errno
from synfs.fs.core import Attr, Filesystem
from synfs.write.names import MAX_NAME

log = logging.getLogger(__name__)

_NS = 1_000_000_000


def boundary(fn):
    """Turn any exception from the core into a FUSEError with the right errno."""

    @functools.wraps(fn)
    async def wrapper(self, *args):
        try:
            return await fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except Exception as exc:  # noqa: BLE001 - the single error boundary
            raise pyfuse3.FUSEError(to_errno(exc)) from None

    return wrapper


def decode(name: bytes) -> str:
    return os.fsdecode(name)


class SynfsOperations(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self, fs: Filesystem, entry_timeout: float, attr_timeout: float,
                 xattrs: bool = True):
        super().__init__()
        self.fs = fs
        self.xattrs = xattrs
        self.entry_timeout = entry_timeout
        self.attr_timeout = attr_timeout

    def entry(self, attr: Attr) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = attr.ino
        e.generation = 0
        e.entry_timeout = self.entry_timeout
        e.attr_timeout = 0 if attr.provisional else self.attr_timeout   # size not known yet
        e.st_mode = attr.mode
        e.st_nlink = attr.nlink
        e.st_uid = attr.uid
        e.st_gid = attr.gid
        e.st_rdev = 0
        e.st_size = attr.size
        e.st_blksize = attr.blksize
        e.st_blocks = (attr.size + 511) // 512
        e.st_atime_ns = int(attr.mtime * _NS)
        e.st_mtime_ns = int(attr.mtime * _NS)
        e.st_ctime_ns = int(attr.ctime * _NS)
        return e

    @boundary
    async def lookup(self, parent_inode, name, ctx=None):
        attr = await self.fs.lookup(parent_inode, decode(name))
        self.fs.remember(attr.ino)
        return self.entry(attr)

    @boundary
    async def getattr(self, inode, ctx=None):
        return self.entry(await self.fs.getattr(inode))

    async def forget(self, inode_list):
        try:
            self.fs.forget(list(inode_list))
        except Exception:  # noqa: BLE001 - forget must never raise
            log.exception("forget failed")

    @boundary
    async def opendir(self, inode, ctx):
        return await self.fs.opendir(inode)

    @boundary
    async def readdir(self, fh, start_id, token):
        offset = start_id
        while True:
            batch = await self.fs.readdir(fh, offset)
            if not batch:
                return
            for next_offset, name, attr in batch:
                if not pyfuse3.readdir_reply(token, os.fsencode(name), self.entry(attr),
                                             next_offset):
                    return
                self.fs.remember(attr.ino)
                offset = next_offset

    async def releasedir(self, fh):
        try:
            self.fs.releasedir(fh)
        except Exception:  # noqa: BLE001
            log.exception("releasedir failed")

    @boundary
    async def open(self, inode, flags, ctx):
        writable = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND))
        fh, keep_cache = await self.fs.open(inode, writable, truncate=bool(flags & os.O_TRUNC))
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep_cache)

    @boundary
    async def create(self, parent_inode, name, mode, flags, ctx):
        fh, attr = await self.fs.create(parent_inode, decode(name),
                                        exclusive=bool(flags & os.O_EXCL),
                                        truncate=bool(flags & os.O_TRUNC))
        self.fs.remember(attr.ino)
        return pyfuse3.FileInfo(fh=fh), self.entry(attr)

    @boundary
    async def write(self, fh, off, buf):
        return await self.fs.write(fh, off, bytes(buf))

    @boundary
    async def flush(self, fh):
        await self.fs.flush(fh)

    @boundary
    async def fsync(self, fh, datasync):
        await self.fs.fsync(fh)

    @boundary
    async def setattr(self, inode, attr, fields, fh, ctx):
        size = attr.st_size if fields.update_size else None
        other = bool(fields.update_mode or fields.update_uid or fields.update_gid
                     or fields.update_atime or fields.update_mtime)
        return self.entry(await self.fs.setattr(inode, size, fh, other))

    @boundary
    async def mkdir(self, parent_inode, name, mode, ctx):
        attr = await self.fs.mkdir(parent_inode, decode(name))
        self.fs.remember(attr.ino)
        return self.entry(attr)

    @boundary
    async def rmdir(self, parent_inode, name, ctx):
        await self.fs.rmdir(parent_inode, decode(name))

    @boundary
    async def unlink(self, parent_inode, name, ctx):
        await self.fs.unlink(parent_inode, decode(name))

    @boundary
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        await self.fs.rename(parent_inode_old, decode(name_old), parent_inode_new,
                             decode(name_new), flags)

    @boundary
    async def read(self, fh, off, size):
        return await self.fs.read(fh, off, size)

    async def release(self, fh):
        try:
            self.fs.release(fh)
            await self.fs.settle()      # saves owed at a last close (e.g. `touch new`)
        except Exception:  # noqa: BLE001 - release must never raise
            log.exception("release failed")

    @boundary
    async def statfs(self, ctx):
        st = pyfuse3.StatvfsData()
        st.f_bsize = 1024 * 1024
        st.f_frsize = 1024 * 1024
        st.f_blocks = st.f_bfree = st.f_bavail = 0
        st.f_files = st.f_ffree = st.f_favail = 0
        st.f_namemax = MAX_NAME         # pathconf(_PC_NAME_MAX) asks statfs too
        return st

    # Without --xattrs, ENOSYS tells the kernel once that there are no extended attributes:
    # it then answers every getxattr itself (EOPNOTSUPP), which spares the daemon the SELinux
    # label and ACL requests GNU ls -l sends for every file.
    @boundary
    async def getxattr(self, inode, name, ctx):
        if not self.xattrs:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        if not name.startswith(b"user.synapse."):   # ls -l asks every file for ACLs/labels
            raise pyfuse3.FUSEError(errno.ENODATA)
        return (await self.fs.getxattr(inode, decode(name))).encode()

    @boundary
    async def listxattr(self, inode, ctx):
        if not self.xattrs:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        return [name.encode() for name in await self.fs.xattrs(inode)]

    @boundary
    async def access(self, inode, mode, ctx):
        if mode & os.W_OK and self.fs.read_only:
            raise pyfuse3.FUSEError(errno.EROFS)
        await self.fs.getattr(inode)
