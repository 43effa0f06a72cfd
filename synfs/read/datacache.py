"""The optional on-disk data cache (``--cache-dir``, ``--cache-size``).

Owns ``<cache_dir>/data/``: file content kept in fixed-size blocks, keyed by Synapse file
handle id. A file handle's content never changes, so a cached block never goes stale and the
cache is kept across remounts. Layout::

    data/<file handle id>/meta.json      {"size", "md5", "verified"}
    data/<file handle id>/<index>.blk    32-byte header + payload (``block_size`` bytes, or
                                         the tail of the file for the last block)

The header (magic, file handle id, block index, payload length, CRC-32 of the payload) lets
every read detect a truncated, corrupted or misplaced block; such a block is deleted, logged
and read from S3 again. The size limit is the mount's ``DiskBudget`` (``synfs.diskbudget``),
shared with the write staging area, whose staged bytes come first: the cache holds at most
``max_bytes`` (``--cache-size`` minus staged bytes, headers included). It claims a block's
bytes before writing it, evicting least-recently-used blocks until the claim fits, and evicts
again after a write and whenever staging needs room (``_reclaim``). Recency survives remounts
through file mtimes. Once every block of a file handle is present, the whole content is
checked against the handle's MD5 (once); on a mismatch all its blocks are dropped and the
mismatch is logged.

Private to the mounting user: the cache directory (when this creates it), ``data/`` and every
``data/<file handle id>/`` are mode 0700 and every file in them 0600 (``private_dir``), so
other local users cannot see which files were read, their sizes or MD5s; directories an older
version left 0755 under ``data/`` are tightened at start-up.

Blocking and thread-safe (called from worker threads; ``_reclaim`` from the trio thread when
staging grows). One lock guards the index and every change of which blocks exist on disk:
a block's bytes are read and written outside it (a write goes to a temporary file), but the
rename that puts a block in place and the unlink that removes one happen under the lock
together with the index update, so the index and the directory always agree. A file
handle's directory (and its meta.json) is removed only when it holds no indexed block and
no thread is writing or verifying in it (``_busy``), so a writer never finds its directory
gone. A crash never leaves a half-written block under a block's name.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import struct
import threading
import time
import zlib
from pathlib import Path

from synfs.diskbudget import DiskBudget
from synfs.localdirs import private_dir

log = logging.getLogger(__name__)

MAGIC = b"SYNFSBLK"
HEADER = struct.Struct("<8sQQII")        # magic, file handle id, index, length, crc32
DEFAULT_BLOCK = 1024 * 1024
TOUCH_EVERY_S = 30.0                     # persist recency (mtime) at most this often per block


class DataCache:
    def __init__(self, root: Path, budget: "DiskBudget | int", *,
                 block_size: int = DEFAULT_BLOCK):
        """``budget``: the mount's shared ``DiskBudget``, or a byte count for a budget of its
        own (nothing staged)."""
        if not isinstance(budget, DiskBudget):
            if budget <= 0:
                raise ValueError("cache size must be positive")
            budget = DiskBudget(budget)
        self.dir = private_dir(Path(root) / "data")
        os.chmod(self.dir, 0o700)           # ours: tighten one an older version made 0755
        self.budget = budget
        self.block_size = block_size
        self._lock = threading.Lock()
        self._lru: collections.OrderedDict[tuple[int, int], int] = collections.OrderedDict()
        self._touched: dict[tuple[int, int], float] = {}
        self._count: collections.Counter[int] = collections.Counter()   # blocks per handle
        self._verifying: set[int] = set()
        self._busy: collections.Counter[int] = collections.Counter()    # threads in a dir
        self.total = 0
        self.stats = collections.Counter()
        self._scan()
        budget.set_reclaimer(self._reclaim)

    @property
    def max_bytes(self) -> int:
        """What the cache may hold now: the budget less the bytes staged for writes."""
        return self.budget.room

    def __repr__(self) -> str:
        return f"DataCache({str(self.dir)!r}, {self.total}/{self.max_bytes} bytes)"

    # ---- index -------------------------------------------------------------------------
    def _scan(self) -> None:
        found = []
        for hdir in self.dir.iterdir():
            if not hdir.is_dir() or not hdir.name.isdigit():
                continue
            fh_id = int(hdir.name)
            _tighten(hdir)
            for entry in os.scandir(hdir):
                name = entry.name
                if name.endswith(".tmp"):
                    _unlink(entry.path)
                elif name.endswith(".blk") and name[:-4].isdigit():
                    st = entry.stat()
                    found.append((st.st_mtime, (fh_id, int(name[:-4])), st.st_size))
        for _, key, size in sorted(found):
            self._lru[key] = size
            self._count[key[0]] += 1
            self.total += size
        self.budget.claim(self.total, force=True)
        if found:
            log.info("data cache %s: %d blocks, %d bytes", self.dir, len(found), self.total)
        self._evict()

    def _path(self, fh_id: int, index: int | None = None) -> Path:
        base = self.dir / str(fh_id)
        return base if index is None else base / f"{index}.blk"

    def blocks_of(self, size: int) -> int:
        return max(1, -(-size // self.block_size))

    def _block_len(self, size: int, index: int) -> int:
        return min(self.block_size, size - index * self.block_size)

    def has(self, fh_id: int, index: int) -> bool:
        with self._lock:
            return (fh_id, index) in self._lru

    def cached_bytes(self, fh_id: int) -> int:
        with self._lock:
            return sum(size for (fh, _), size in self._lru.items() if fh == fh_id)

    def _forget(self, key: tuple[int, int]) -> int:
        """Take a block out of the index (lock held); its bytes stay claimed in the budget
        until its file is gone. Returns its size (0 if it was not there)."""
        size = self._lru.pop(key, None)
        if size is not None:
            self.total -= size
            self._count[key[0]] -= 1
            if self._count[key[0]] <= 0:
                del self._count[key[0]]
        self._touched.pop(key, None)
        return size or 0

    def _drop_block(self, key: tuple[int, int]) -> None:
        with self._lock:
            self._discard([(key, self._forget(key))], evicted=False)

    def drop(self, fh_id: int) -> None:
        """Remove every cached block of a file handle."""
        with self._lock:
            self._discard([(key, self._forget(key)) for key in
                           [k for k in self._lru if k[0] == fh_id]], evicted=False)
            self._prune(fh_id)

    def _pop_lru(self, nbytes: int) -> list[tuple[tuple[int, int], int]]:
        """Take least-recently-used blocks out of the index (lock held) until they add up to
        at least ``nbytes`` or none is left."""
        victims, freed = [], 0
        while freed < nbytes and self._lru:
            key = next(iter(self._lru))
            size = self._forget(key)
            victims.append((key, size))
            freed += size
        return victims

    def _discard(self, victims: list[tuple[tuple[int, int], int]], evicted: bool = True) -> int:
        """Delete the files of blocks just taken out of the index (lock held, so no writer
        can put a new block under the same name in between), prune their handles'
        directories, then give their bytes back to the budget."""
        for key, _ in victims:
            if evicted:
                self.stats["evicted"] += 1
            _unlink(self._path(*key))
        for fh_id in {key[0] for key, _ in victims}:
            self._prune(fh_id)
        freed = sum(size for _, size in victims)
        self.budget.unclaim(freed)
        return freed

    def _prune(self, fh_id: int) -> None:
        """Remove a handle's directory and meta.json (lock held) once it has no indexed
        block and no thread is writing or verifying in it."""
        if self._count.get(fh_id) or self._busy.get(fh_id):
            return
        hdir = self._path(fh_id)
        _unlink(hdir / "meta.json")
        try:
            hdir.rmdir()
        except OSError:
            pass

    def _evict(self) -> None:
        """Evict until staged plus cached bytes are within the budget again."""
        while (over := self.budget.over()) > 0:
            with self._lock:
                if not self._discard(self._pop_lru(over)):
                    return          # the rest is blocks still being written

    def _reclaim(self, nbytes: int) -> int:
        """Staging needs ``nbytes`` more: evict that much, oldest first (the budget's
        reclaimer; runs in the trio thread)."""
        with self._lock:
            return self._discard(self._pop_lru(nbytes))

    def _make_room(self, need: int) -> bool:
        """Claim ``need`` bytes for a new block, evicting older blocks for them; False if
        they cannot fit next to the staged data (nothing is evicted then)."""
        if need > self.budget.room:
            return False
        while True:
            with self._lock:
                if self.budget.claim(need):
                    return True
                victims = self._pop_lru(max(1, self.budget.over(need)))
                if not victims:
                    return False
                self._discard(victims)

    def _touch(self, key: tuple[int, int]) -> None:
        now = time.monotonic()
        with self._lock:
            if key not in self._lru:
                return
            self._lru.move_to_end(key)
            due = now - self._touched.get(key, 0.0) >= TOUCH_EVERY_S
            if due:
                self._touched[key] = now
        if due:
            try:
                os.utime(self._path(*key))
            except OSError:
                pass

    # ---- reads -------------------------------------------------------------------------
    def read_into(self, fh_id: int, size: int, start: int, out: memoryview) -> bool:
        """Fill ``out`` with the content at ``start`` if every block it needs is cached and
        intact; False (``out`` partly written) otherwise."""
        end = min(start + len(out), size)
        if end <= start:
            return False
        first, last = start // self.block_size, (end - 1) // self.block_size
        with self._lock:
            if any((fh_id, i) not in self._lru for i in range(first, last + 1)):
                self.stats["miss"] += 1
                return False
        intact = True
        for index in range(first, last + 1):      # check every block: drop all bad ones
            b_start = index * self.block_size
            lo, hi = max(start, b_start), min(end, b_start + self.block_size)
            payload = self._read_block(fh_id, size, index)
            if payload is None:
                intact = False
                continue
            if intact:
                out[lo - start:hi - start] = payload[lo - b_start:hi - b_start]
                self._touch((fh_id, index))
        self.stats["hit" if intact else "miss"] += 1
        return intact

    def _read_block(self, fh_id: int, size: int, index: int) -> bytes | None:
        want = self._block_len(size, index)
        path = self._path(fh_id, index)
        try:
            with open(path, "rb", buffering=0) as f:
                raw = f.read(HEADER.size + want + 1)
        except FileNotFoundError:
            self._drop_block((fh_id, index))
            return None
        except OSError as exc:
            log.warning("data cache: cannot read %s: %s", path, exc)
            return None
        problem = None
        if len(raw) < HEADER.size:
            problem = "truncated header"
        else:
            magic, fh, idx, length, crc = HEADER.unpack_from(raw)
            payload = memoryview(raw)[HEADER.size:]
            if magic != MAGIC or fh != fh_id or idx != index or length != want:
                problem = "wrong header"
            elif len(payload) != want:
                problem = f"truncated ({len(payload)} of {want} bytes)"
            elif zlib.crc32(payload) != crc:
                problem = "checksum mismatch"
        if problem:
            self.stats["corrupt"] += 1
            log.warning("data cache: block %d of file handle %d is corrupt (%s); dropped, "
                        "reading it from S3 again", index, fh_id, problem)
            self._drop_block((fh_id, index))
            return None
        return payload

    # ---- writes ------------------------------------------------------------------------
    def store(self, fh_id: int, size: int, md5: str | None, start: int, data: memoryview) -> None:
        """Keep the whole blocks inside ``data`` (content at ``start``); may verify the MD5
        once the file handle is complete."""
        end = start + len(data)
        first = -(-start // self.block_size)
        wrote = False
        index = first
        while index * self.block_size < end:
            b_start = index * self.block_size
            length = self._block_len(size, index)
            if length <= 0 or b_start + length > end:
                break
            if not self.has(fh_id, index):
                if not self._make_room(HEADER.size + length):
                    self.stats["no_room"] += 1
                    break
                if not self._write_block(fh_id, size, md5, index,
                                         data[b_start - start:b_start - start + length]):
                    break
                wrote = True
            index += 1
        if wrote:
            self._evict()
            self._maybe_verify(fh_id, size, md5)

    def _write_block(self, fh_id: int, size: int, md5: str | None, index: int,
                     payload: memoryview) -> bool:
        """Write one block whose bytes ``_make_room`` has claimed (given back on failure)."""
        hdir = self._path(fh_id)
        path = self._path(fh_id, index)
        tmp = path.with_name(f"{index}.{threading.get_ident()}.tmp")
        header = HEADER.pack(MAGIC, fh_id, index, len(payload), zlib.crc32(payload))
        key, length = (fh_id, index), HEADER.size + len(payload)
        with self._busy_in(fh_id):          # the directory stays while we write in it
            try:
                if not hdir.exists():
                    hdir.mkdir(mode=0o700, exist_ok=True)
                    _write_json(hdir / "meta.json", {"size": size, "md5": md5, "verified": False})
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    _write_all(fd, header, payload)
                finally:
                    os.close(fd)
                with self._lock:            # in place and in the index at once
                    os.replace(tmp, path)
                    old = self._lru.get(key)
                    if old is None:
                        self._count[fh_id] += 1
                    else:                   # another thread wrote it too: one file, one claim
                        self.total -= old
                        self.budget.unclaim(old)
                    self.total += length
                    self._lru[key] = length
                    self._lru.move_to_end(key)
            except OSError as exc:
                _unlink(tmp)
                self.budget.unclaim(length)
                self.stats["write_errors"] += 1
                log.warning("data cache: cannot write %s: %s", path, exc)
                return False
        self.stats["stored"] += 1
        return True

    @contextlib.contextmanager
    def _busy_in(self, fh_id: int):
        """A thread writes or verifies in a handle's directory: nobody removes it meanwhile;
        the last one out prunes it if it ended up with no block."""
        with self._lock:
            self._busy[fh_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[fh_id] -= 1
                if self._busy[fh_id] <= 0:
                    del self._busy[fh_id]
                self._prune(fh_id)

    def _maybe_verify(self, fh_id: int, size: int, md5: str | None) -> None:
        blocks = self.blocks_of(size)
        with self._lock:
            complete = self._count.get(fh_id, 0) >= blocks and all(
                (fh_id, i) in self._lru for i in range(blocks))
            if not complete or fh_id in self._verifying:
                return
            self._verifying.add(fh_id)
        try:
            with self._busy_in(fh_id):
                self._verify(fh_id, size, md5, blocks)
        finally:
            with self._lock:
                self._verifying.discard(fh_id)

    def _verify(self, fh_id: int, size: int, md5: str | None, blocks: int) -> None:
        """Check a complete handle's blocks against its MD5 once (``meta.json`` remembers)."""
        meta_path = self._path(fh_id) / "meta.json"
        meta = _read_json(meta_path)
        if meta.get("verified") or not md5:
            return
        digest = hashlib.md5()
        for index in range(blocks):
            payload = self._read_block(fh_id, size, index)
            if payload is None:
                return          # a block went bad meanwhile: it will be fetched again
            digest.update(payload)
        if digest.hexdigest() != md5:
            self.stats["md5_mismatch"] += 1
            log.warning("data cache: content of file handle %d does not match its MD5 "
                        "(%s != %s); dropped its %d cached blocks", fh_id,
                        digest.hexdigest(), md5, blocks)
            self.drop(fh_id)
            return
        self.stats["verified"] += 1
        _write_json(meta_path, dict(meta, size=size, md5=md5, verified=True))

    def is_verified(self, fh_id: int) -> bool:
        return bool(_read_json(self._path(fh_id) / "meta.json").get("verified"))


def _write_all(fd: int, header: bytes, payload: memoryview) -> None:
    bufs = [memoryview(header), payload]
    while bufs:
        n = os.writev(fd, bufs)
        while n and bufs:
            if n >= len(bufs[0]):
                n -= len(bufs[0])
                bufs.pop(0)
            else:
                bufs[0] = bufs[0][n:]
                n = 0


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + f".{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data))
    os.replace(tmp, path)


def _tighten(hdir: Path) -> None:
    """One file handle's directory and its meta.json to 0700/0600 (left 0755/0644 by older
    versions)."""
    try:
        if hdir.stat().st_mode & 0o077:
            os.chmod(hdir, 0o700)
            meta = hdir / "meta.json"
            if meta.exists():
                os.chmod(meta, 0o600)
    except OSError as exc:
        log.warning("data cache: cannot make %s private: %s", hdir, exc)


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
