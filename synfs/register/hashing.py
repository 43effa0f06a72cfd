"""The MD5 of an object whose ETag is not its MD5 (multipart uploads, ``--hash-all``).

Owns streaming an object through MD5 with parallel ranged reads: ``workers`` threads fetch
consecutive parts of ``part_size`` bytes (smaller when the budget is, down to 64 KiB) while the
caller's thread hashes them in order. At most ``memory_budget // part_size`` parts are fetched
or waiting at any time (at least one),
so hashing a 1 TB object holds no more than the budget in memory. A part shorter than asked
(the object shrank while it was read) raises ``ContentChanged``: never a guessed MD5.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
from typing import Callable

from synfs.errors import ContentChanged

PART_SIZE = 8 * 1024 * 1024
MEMORY_BUDGET = 128 * 1024 * 1024
WORKERS = 4
MIN_PART = 64 * 1024


def window_for(part_size: int, memory_budget: int, workers: int) -> int:
    """Parts in flight or waiting: bounded by the budget, no more than keeps workers busy."""
    return max(1, min(memory_budget // max(1, part_size), 2 * workers))


def object_md5(read_range: Callable[[int, int], bytes], size: int, *,
               part_size: int = PART_SIZE, memory_budget: int = MEMORY_BUDGET,
               workers: int = WORKERS, on_bytes: Callable[[int], None] | None = None,
               what: str = "object") -> str:
    """Hex MD5 of ``size`` bytes read with ``read_range(start, length)``."""
    part_size = max(MIN_PART, min(part_size, memory_budget))     # one part fits the budget
    window = window_for(part_size, memory_budget, workers)
    digest = hashlib.md5()
    pending: collections.deque = collections.deque()
    offset = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers),
                                               thread_name_prefix="register-md5") as pool:
        try:
            while offset < size or pending:
                while offset < size and len(pending) < window:
                    length = min(part_size, size - offset)
                    pending.append((offset, length, pool.submit(read_range, offset, length)))
                    offset += length
                start, length, future = pending.popleft()
                data = future.result()
                if len(data) != length:
                    raise ContentChanged(f"{what} is shorter than listed ({start + len(data)} of "
                                         f"{size} bytes): it changed while being hashed")
                digest.update(data)
                del data
                if on_bytes is not None:
                    on_bytes(length)
        finally:
            for _, _, future in pending:
                future.cancel()
    return digest.hexdigest()
