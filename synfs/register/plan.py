"""What ``synfs register`` does with each listed object: pure decisions, no I/O.

Owns the mapping from an object key to a place in the Synapse folder (the key's path below the
listing prefix: its directories become folders, its last segment the File's name), the index of
what the folder already holds (``Index``: folders by path, files by path and by the bucket/key
of their current handle), and the verdict for one object (``decide``):

* ``skip``: a folder marker (``key/``), the ownership proof ``<baseKey>/owner.txt``, an object
  already represented by a file's current handle with the same content, or an upload made by
  synfs/synapseclient (``<baseKey>/<uuid>/<name>``) that no current file holds (an older
  version or a trashed file: registering it again would duplicate it);
* ``fail``: a key outside the base key, a path segment Synapse would refuse as a name
  (never renamed silently), a name already taken by a different object or by a folder;
* ``register`` a new File, or ``new_version`` of the file whose handle points at the same
  bucket/key when the object's size or ETag changed (``check`` when only its MD5 can tell: a
  multipart ETag with an unchanged size).
"""

from __future__ import annotations

import dataclasses
import re

from synfs.synapse.names import name_problem

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
OWNER_TXT = "owner.txt"


@dataclasses.dataclass(frozen=True)
class Known:
    """A File in the folder's tree and its current handle."""

    entity_id: int
    path: tuple[str, ...]
    bucket: str | None
    key: str | None
    size: int
    md5: str | None


@dataclasses.dataclass(frozen=True)
class Verdict:
    action: str                  # register | new_version | check | skip | fail
    reason: str = ""
    path: tuple[str, ...] = ()   # where the File is (or goes), relative to the folder
    known: Known | None = None   # the file that already holds this bucket/key


@dataclasses.dataclass
class Index:
    """What the folder holds: folder ids by path (``()`` is the folder itself), files by path
    and by (bucket, key) of their current handle, and names held by other entity types."""

    folders: dict[tuple[str, ...], int] = dataclasses.field(default_factory=dict)
    files: dict[tuple[str, ...], Known] = dataclasses.field(default_factory=dict)
    by_key: dict[tuple[str, str], Known] = dataclasses.field(default_factory=dict)
    others: set[tuple[str, ...]] = dataclasses.field(default_factory=set)

    def add_file(self, known: Known) -> None:
        self.files[known.path] = known
        if known.bucket and known.key:
            self.by_key[(known.bucket, known.key)] = known


def normalize_prefix(prefix: str | None, bucket: str, base_key: str | None) -> str:
    """PREFIX as a path below the base key (``raw/2024``), from ``raw/2024/`` or
    ``s3://bucket/<baseKey>/raw/2024``; ValueError (one line) when it leaves the base key."""
    text = (prefix or "").strip()
    if text.startswith("s3://"):
        rest = text[len("s3://"):]
        got_bucket, _, key = rest.partition("/")
        if got_bucket != bucket:
            raise ValueError(f"{text} is outside the folder's storage location "
                             f"(s3://{bucket}/{base_key or ''})")
        root = f"{base_key}/" if base_key else ""
        if base_key and key.rstrip("/") == base_key:
            key = ""
        elif not key.startswith(root):
            raise ValueError(f"{text} is outside the base key {base_key!r} of the folder's "
                             f"storage location (s3://{bucket}/{base_key})")
        text = key[len(root):]
    parts = [p for p in text.split("/") if p]
    if text.startswith("/") or any(p in (".", "..") for p in parts):
        raise ValueError(f"{prefix!r}: PREFIX must be a path below the base key, without "
                         "'.', '..' or a leading '/'")
    return "/".join(parts)


def listing_prefix(base_key: str | None, prefix: str) -> str:
    """The S3 ``Prefix`` to list: ``<baseKey>/<prefix>/`` (directories, never a partial name)."""
    head = [p for p in (base_key or "").split("/") if p] + [p for p in prefix.split("/") if p]
    return "/".join(head) + "/" if head else ""


def _synfs_upload(rel_to_base: str) -> bool:
    """``<uuid>/<name>``: the key synfs and synapseclient give each upload."""
    first, sep, rest = rel_to_base.partition("/")
    return bool(sep) and "/" not in rest and bool(_UUID.match(first))


def decide(obj, *, bucket: str, base_key: str | None, list_prefix: str, index: Index,
           trust_etag: bool | None = None) -> Verdict:
    """The verdict for one listed object (``obj`` has ``key``, ``size``, ``etag``,
    ``etag_is_md5``). ``trust_etag=False`` (``--hash-all``) never takes the ETag for an MD5."""
    etag_is_md5 = obj.etag_is_md5 if trust_etag is None else trust_etag
    key = obj.key
    root = f"{base_key.strip('/')}/" if base_key else ""
    if not key.startswith(root) or not key.startswith(list_prefix):
        return Verdict("fail", f"outside the base key {base_key!r}")
    rel = key[len(list_prefix):]
    if key.endswith("/"):
        return Verdict("skip", "folder marker")
    if key == root + OWNER_TXT:
        return Verdict("skip", "the bucket owner's proof of ownership for Synapse")
    known = index.by_key.get((bucket, key))
    parts = tuple(rel.split("/"))
    if known is not None:
        if obj.size != known.size:
            return Verdict("new_version", f"size changed ({known.size} -> {obj.size} bytes)",
                           known.path, known)
        if etag_is_md5:
            if known.md5 and obj.etag.lower() != known.md5.lower():
                return Verdict("new_version", "content changed (ETag differs from the MD5)",
                               known.path, known)
            return Verdict("skip", f"already registered as syn{known.entity_id}", known.path,
                           known)
        return Verdict("check", "object of unchanged size whose ETag is not an MD5", known.path,
                       known)
    if _synfs_upload(key[len(root):]):
        return Verdict("skip", "an upload by synfs or synapseclient (<baseKey>/<uuid>/<name>) "
                               "that no current file holds (an older version or a deleted file)")
    for i, part in enumerate(parts):
        problem = name_problem(part) if part else "an empty path segment ('//')"
        if part in (".", ".."):
            problem = f"{part!r} cannot be a Synapse name"
        if problem:
            what = "file name" if i == len(parts) - 1 else "folder name"
            return Verdict("fail", f"bad {what} {part[:60]!r}: {problem}; not registered "
                                   "(rename the object in the bucket)")
    for i in range(1, len(parts)):
        if parts[:i] in index.files or parts[:i] in index.others:
            return Verdict("fail", f"{'/'.join(parts[:i])} is not a folder in Synapse")
    if parts in index.folders:
        return Verdict("fail", "a folder of that name already exists")
    if parts in index.others:
        return Verdict("fail", "a non-file entity of that name already exists")
    taken = index.files.get(parts)
    if taken is not None:
        where = f"s3://{taken.bucket}/{taken.key}" if taken.key else "other storage"
        return Verdict("fail", f"the name is taken by syn{taken.entity_id}, which holds a "
                               f"different object ({where})", parts, taken)
    return Verdict("register", "", parts)
