"""The journal that makes ``synfs register`` resumable: MD5s computed and handles created.

Owns one append-only JSON-lines file per (Synapse endpoint, storage location). Each line is
written and fsynced before the step that depends on it, so a run killed at any point (even
``kill -9``) leaves at worst a torn last line, which is ignored:

* ``{"t": "md5", ...}``: the MD5 computed for an object (bucket, key, size, ETag), so a
  resumed or repeated run does not stream a multipart object again;
* ``{"t": "handle", ...}``: an external S3 file handle created for an object (same identity
  plus its MD5); a run that died before the File entity was created reuses that handle instead
  of leaking a second one.

An entry only matches an object with the same bucket, key, size and ETag: a changed object
never inherits a stale MD5 or handle. The file holds no secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "synfs" / "register"


def journal_path(state_dir: Path, endpoint: str, storage_location_id: int) -> Path:
    tag = hashlib.sha256(endpoint.encode()).hexdigest()[:10]
    return Path(state_dir) / f"{tag}-sl{storage_location_id}.jsonl"


def _ident(bucket: str, key: str, size: int, etag: str) -> tuple:
    return (bucket, key, int(size), etag)


class Journal:
    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._md5: dict[tuple, str] = {}
        self._handles: dict[tuple, int] = {}
        self.torn = 0
        self._load()
        self._file = None

    def _load(self) -> None:
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                rec = json.loads(line)
                ident = _ident(rec["bucket"], rec["key"], rec["size"], rec["etag"])
                if rec["t"] == "md5":
                    self._md5[ident] = rec["md5"]
                elif rec["t"] == "handle":
                    self._md5[ident] = rec["md5"]
                    self._handles[ident + (rec["md5"],)] = int(rec["id"])
            except (ValueError, KeyError, TypeError):
                self.torn += 1          # a line cut short by a crash: ignore it
        if self.torn:
            log.info("journal %s: ignored %d incomplete line(s)", self.path, self.torn)

    def md5(self, bucket: str, key: str, size: int, etag: str) -> str | None:
        return self._md5.get(_ident(bucket, key, size, etag))

    def handle(self, bucket: str, key: str, size: int, etag: str, md5: str) -> int | None:
        return self._handles.get(_ident(bucket, key, size, etag) + (md5,))

    def record_md5(self, bucket: str, key: str, size: int, etag: str, md5: str) -> None:
        self._md5[_ident(bucket, key, size, etag)] = md5
        self._append({"t": "md5", "bucket": bucket, "key": key, "size": size, "etag": etag,
                      "md5": md5})

    def record_handle(self, bucket: str, key: str, size: int, etag: str, md5: str,
                      handle_id: int) -> None:
        self._md5[_ident(bucket, key, size, etag)] = md5
        self._handles[_ident(bucket, key, size, etag) + (md5,)] = handle_id
        self._append({"t": "handle", "bucket": bucket, "key": key, "size": size, "etag": etag,
                      "md5": md5, "id": handle_id})

    def forget_handle(self, bucket: str, key: str, size: int, etag: str, md5: str) -> None:
        """A journaled handle Synapse no longer accepts (deleted): not reused again."""
        self._handles.pop(_ident(bucket, key, size, etag) + (md5,), None)

    def _append(self, rec: dict) -> None:
        if self.read_only:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._file = open(self.path, "ab")
            if self._file.tell() and not self._ends_with_newline():
                self._file.write(b"\n")          # after a torn line
        self._file.write(json.dumps(rec, separators=(",", ":")).encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
