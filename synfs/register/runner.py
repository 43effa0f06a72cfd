"""One ``synfs register`` run: check the folder, index it, list the bucket, act on each object.

Owns the order of the steps and the handling of their errors. ``Registrar`` takes its seams
as arguments (a ``SynapseClient``, a ``SynapseWriter``, an ``S3Lister`` and an ``S3Reader``
over the folder's ``read_only`` STS credentials, a ``Journal`` and a ``Progress``):

1. ``locate``: the folder exists and is a container, its upload destination is an external
   S3 bucket with STS enabled, and the caller created that storage location (only the creator
   may register ``POST /externalFileHandle/s3`` handles: synapse-api.md §4.2, step 8).
2. ``index``: every folder and File below it, with each File's current handle (one bundle
   call per File, three at a time through the client's scheduler).
3. the listing (all pages first, so the progress bar knows the total), then each object in
   key order: ``plan.decide``, then the MD5 (the ETag when it is one,
   the journal, or streamed by ``hashing``), the handle (journaled before use; a journaled one
   is reused), then the folders of its path (created once) and the File or its new version,
   so a refused handle leaves no empty folder behind.

A failure of one object (bad name, name taken, changed while hashed, Synapse refusing the
handle's fields) is reported and the run goes on; the caller not owning the location, or
Synapse/S3 unreachable after the retry budget, stops the run (``RegisterError``). Every step
is idempotent, so an interrupted run resumes by running it again.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import mimetypes

from synfs import errors
from synfs.config import (EXIT_FAILED, EXIT_NOT_CONTAINER, EXIT_NOT_FOUND, EXIT_UNAVAILABLE)
from synfs.register import hashing
from synfs.register.plan import Index, Known, Verdict, decide, listing_prefix
from synfs.synapse.models import Kind

log = logging.getLogger(__name__)

EXTERNAL_S3_DEST = "org.sagebionetworks.repo.model.file.ExternalS3UploadDestination"
OWNER_RULE = ("Synapse lets only the creator of an external storage location register its "
              "objects (POST /externalFileHandle/s3)")


class RegisterError(Exception):
    """A condition that stops the run: one line for the user and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


class ObjectFailed(Exception):
    def __init__(self, reason: str, kind: str):
        super().__init__(reason)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class Location:
    storage_location_id: int
    bucket: str
    base_key: str | None


@dataclasses.dataclass(frozen=True)
class Options:
    folder_id: int
    prefix: str = ""                  # normalized, below the base key
    dry_run: bool = False
    hash_all: bool = False
    verbose: bool = False
    memory_budget: int = hashing.MEMORY_BUDGET
    workers: int = hashing.WORKERS


def content_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def _kind_of_failure(reason: str) -> str:
    for needle, kind in (("bad ", "bad name"), ("taken", "name taken"),
                         ("not a folder", "name taken"), ("already exists", "name taken"),
                         ("outside", "outside base key")):
        if needle in reason:
            return kind
    return "other"


class Registrar:
    def __init__(self, client, writer, lister, reader, journal, progress, opts: Options):
        self.client = client
        self.writer = writer
        self.lister = lister
        self.reader = reader
        self.journal = journal
        self.progress = progress
        self.opts = opts
        self.loc: Location | None = None
        self.index = Index()

    # ---- 1. the folder and its storage location -----------------------------------------
    def locate(self) -> Location:
        fid = self.opts.folder_id
        try:
            entity = self.client.get_entity(fid)
        except (errors.NotFound, errors.PermissionDenied) as exc:
            raise RegisterError(f"syn{fid}: not found or not readable ({_reason(exc)})",
                                EXIT_NOT_FOUND) from None
        if not entity.kind.is_container:
            raise RegisterError(f"syn{fid} is not a Folder or Project", EXIT_NOT_CONTAINER)
        dest = self.client.upload_destination(fid)
        if dest.concrete_type != EXTERNAL_S3_DEST or not dest.sts_enabled or not dest.bucket:
            what = dest.concrete_type.rsplit(".", 1)[-1] or "unknown storage"
            raise RegisterError(
                f"syn{fid} is not on an external STS bucket (its upload destination is "
                f"{what}{', STS disabled' if not dest.sts_enabled else ''}); register works on "
                "folders whose storage location is an ExternalS3StorageLocationSetting with "
                "stsEnabled")
        loc = Location(dest.storage_location_id, dest.bucket, dest.base_key or None)
        if not self.writer.owns_storage_location(loc.storage_location_id):
            raise RegisterError(f"you did not create storage location {loc.storage_location_id} "
                                f"(s3://{loc.bucket}/{loc.base_key or ''}) of syn{fid}: "
                                f"{OWNER_RULE}; ask its creator to run synfs register")
        self.loc = loc
        return loc

    # ---- 2. what the folder holds ---------------------------------------------------------
    def build_index(self) -> Index:
        index = self.index
        index.folders[()] = self.opts.folder_id
        queue = [((), self.opts.folder_id)]
        files: list[tuple[tuple[str, ...], int]] = []
        while queue:
            path, fid = queue.pop()
            for child in self.client.list_children(fid):
                cpath = path + (child.name,)
                if child.kind in (Kind.FOLDER, Kind.PROJECT):
                    index.folders[cpath] = child.id
                    queue.append((cpath, child.id))
                elif child.kind == Kind.FILE:
                    files.append((cpath, child.id))
                else:
                    index.others.add(cpath)
        with concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix="register-index") as pool:
            for cpath, entity in zip((p for p, _ in files),
                                     pool.map(self.client.get_entity, (i for _, i in files))):
                fh = entity.file_handle
                index.add_file(Known(entity.id, cpath, fh.bucket if fh else None,
                                     fh.key if fh else None, fh.size if fh else 0,
                                     fh.md5 if fh else None))
        return index

    # ---- 3. the objects ---------------------------------------------------------------
    def run(self) -> None:
        loc = self.loc or self.locate()
        self.build_index()
        prefix = listing_prefix(loc.base_key, self.opts.prefix)
        objects = []                       # listed first, so the bar knows the total
        for obj in self.lister.list_objects(loc.storage_location_id, self.opts.folder_id,
                                            loc.bucket, prefix):
            objects.append(obj)
            self.progress.listed()
        for obj in objects:
            self.one(obj, prefix)

    def _decide(self, obj, prefix: str) -> Verdict:
        return decide(obj, bucket=self.loc.bucket, base_key=self.loc.base_key,
                      list_prefix=prefix, index=self.index,
                      trust_etag=obj.etag_is_md5 and not self.opts.hash_all)

    def one(self, obj, prefix: str) -> None:
        loc = self.loc
        verdict = self._decide(obj, prefix)
        shown = obj.key[len(prefix):] or obj.key
        try:
            if (verdict.action in ("register", "new_version") and obj.etag_is_md5
                    and not self.opts.hash_all):
                # the ETag is about to be taken for the MD5: a listing does not say whether
                # the object is encrypted with SSE-KMS (whose ETag is no MD5); HeadObject does
                obj = self.lister.head(loc.storage_location_id, self.opts.folder_id, loc.bucket,
                                       obj.key)
                verdict = self._decide(obj, prefix)
            if verdict.action == "check":
                verdict = self._compare(obj, verdict)
            if verdict.action == "skip":
                self.progress.result("skipped", f"skipped {shown}: {verdict.reason}"
                                     if self.opts.verbose else "")
            elif verdict.action == "fail":
                raise ObjectFailed(verdict.reason, _kind_of_failure(verdict.reason))
            elif verdict.action == "register":
                self._register(obj, verdict, shown)
            elif verdict.action == "new_version":
                self._new_version(obj, verdict, shown)
        except ObjectFailed as exc:
            self.progress.result("failed", f"synfs: failed: {shown}: {exc}", reason_kind=exc.kind)
        except errors.ContentChanged as exc:
            self.progress.result("failed", f"synfs: failed: {shown}: {_reason(exc)}; run again",
                                 reason_kind="changed while hashed")
        except errors.NotFound as exc:
            self.progress.result("failed", f"synfs: failed: {shown}: gone ({_reason(exc)})",
                                 reason_kind="gone")
        except (errors.InvalidRequest, errors.AlreadyExists, errors.StaleUpdate) as exc:
            self.progress.result("failed", f"synfs: failed: {shown}: Synapse refused it "
                                           f"({_reason(exc)})", reason_kind="refused by Synapse")
        except errors.PermissionDenied as exc:
            raise RegisterError(f"{shown}: permission denied ({_reason(exc)})") from None
        except errors.Unavailable as exc:
            raise RegisterError(f"{shown}: gave up within the retry budget ({_reason(exc)}); "
                                "run the same command again to resume", EXIT_UNAVAILABLE) from None

    def _compare(self, obj, verdict: Verdict) -> Verdict:
        known = verdict.known
        md5 = self.journal.md5(self.loc.bucket, obj.key, obj.size, obj.etag)
        if md5 is None and self.opts.dry_run:
            return Verdict("skip", "unchanged size, ETag not an MD5 (hashing it is left to "
                                   "the real run)", verdict.path, known)
        md5 = md5 or self._md5(obj)
        if known.md5 and md5 == known.md5.lower():
            return Verdict("skip", f"already registered as syn{known.entity_id}", known.path,
                           known)
        return Verdict("new_version", "content changed (MD5 differs)", known.path, known)

    def _register(self, obj, verdict: Verdict, shown: str) -> None:
        path = verdict.path
        where = "/".join(path)
        if self.opts.dry_run:
            for i in range(1, len(path)):
                if path[:i] not in self.index.folders:
                    self.index.folders[path[:i]] = -1
                    self.progress.say(f"would create folder {'/'.join(path[:i])}/")
            self.index.add_file(Known(-1, path, self.loc.bucket, obj.key, obj.size, None))
            how = "MD5 from the ETag" if obj.etag_is_md5 and not self.opts.hash_all else \
                "MD5 to be computed"
            self.progress.result("registered", f"would register {where} ({obj.size} bytes, "
                                               f"{how}) from s3://{self.loc.bucket}/{obj.key}")
            return
        md5 = self._md5(obj)
        handle, reused = self._handle(obj, md5, path[-1])    # first: a refusal leaves nothing
        parent = self._folder(path[:-1])
        try:
            eid = self.writer.create_file(parent, path[-1], handle)
        except (errors.NotFound, errors.InvalidRequest) as exc:
            if not reused:
                raise ObjectFailed(f"Synapse refused the File: {_reason(exc)}",
                                   "refused by Synapse") from None
            log.info("journaled handle %d no longer usable (%s): creating a new one", handle,
                     _reason(exc))
            self.journal.forget_handle(self.loc.bucket, obj.key, obj.size, obj.etag, md5)
            handle, _ = self._handle(obj, md5, path[-1])
            eid = self.writer.create_file(parent, path[-1], handle)
        except errors.AlreadyExists:
            raise ObjectFailed("the name was taken in Synapse meanwhile", "name taken") from None
        self.index.add_file(Known(eid, path, self.loc.bucket, obj.key, obj.size, md5))
        self.progress.result("registered", f"registered {where} -> syn{eid}")

    def _new_version(self, obj, verdict: Verdict, shown: str) -> None:
        known = verdict.known
        where = "/".join(known.path)
        if self.opts.dry_run:
            self.progress.result("new_version", f"would add a new version to {where} "
                                                f"(syn{known.entity_id}): {verdict.reason}")
            return
        md5 = self._md5(obj)
        handle, _ = self._handle(obj, md5, known.path[-1] if known.path else obj.key)
        self.writer.new_version(known.entity_id, handle)
        self.index.add_file(dataclasses.replace(known, size=obj.size, md5=md5))
        self.progress.result("new_version", f"new version of {where} (syn{known.entity_id}): "
                                            f"{verdict.reason}")

    # ---- steps ------------------------------------------------------------------------
    def _md5(self, obj) -> str:
        loc = self.loc
        if obj.etag_is_md5 and not self.opts.hash_all:
            return obj.etag.lower()
        known = self.journal.md5(loc.bucket, obj.key, obj.size, obj.etag)
        if known:
            return known

        def read(start: int, length: int) -> bytes:
            return self.reader.read_range(loc.storage_location_id, self.opts.folder_id,
                                          loc.bucket, obj.key, start, length)

        md5 = hashing.object_md5(read, obj.size, memory_budget=self.opts.memory_budget,
                                 workers=self.opts.workers, on_bytes=self.progress.add_hashed,
                                 what=f"s3://{loc.bucket}/{obj.key}")
        now = self.lister.head(loc.storage_location_id, self.opts.folder_id, loc.bucket, obj.key)
        if now.size != obj.size or now.etag != obj.etag:
            raise errors.ContentChanged(f"s3://{loc.bucket}/{obj.key} changed while it was "
                                        "hashed")
        self.journal.record_md5(loc.bucket, obj.key, obj.size, obj.etag, md5)
        return md5

    def _handle(self, obj, md5: str, name: str) -> tuple[int, bool]:
        loc = self.loc
        reuse = self.journal.handle(loc.bucket, obj.key, obj.size, obj.etag, md5)
        if reuse is not None:
            return reuse, True
        try:
            handle = self.writer.external_s3_handle(
                bucket=loc.bucket, key=obj.key, file_name=name, md5=md5, size=obj.size,
                storage_location_id=loc.storage_location_id, content_type=content_type(name))
        except errors.PermissionDenied as exc:
            raise RegisterError(f"Synapse refused the file handle for s3://{loc.bucket}/"
                                f"{obj.key}: {OWNER_RULE} ({_reason(exc)})") from None
        except errors.InvalidRequest as exc:
            raise ObjectFailed(f"Synapse refused the file handle: {_reason(exc)}",
                               "refused by Synapse") from None
        self.journal.record_handle(loc.bucket, obj.key, obj.size, obj.etag, md5, handle)
        return handle, False

    def _folder(self, path: tuple[str, ...]) -> int:
        index = self.index
        for i in range(1, len(path) + 1):
            sub = path[:i]
            if sub in index.folders:
                continue
            parent = index.folders[path[:i - 1]]
            try:
                folder_id = self.writer.create_folder(parent, sub[-1]).id
            except errors.AlreadyExists:
                found = self.client.child_id(parent, sub[-1])
                if found is None:
                    raise
                folder_id = found
            index.folders[sub] = folder_id
            self.progress.say(f"created folder {'/'.join(sub)}/ (syn{folder_id})")
        return index.folders[path]


def _reason(exc: errors.SynfsError) -> str:
    """The server's reason without our request key (``POST /x (syn1): 400 ...``)."""
    text = exc.message or type(exc).__name__
    head, sep, tail = text.partition("): ")
    if sep:
        return tail
    head, sep, tail = text.partition(": ")
    return tail if sep and head.split(" ", 1)[0] in ("GET", "POST", "PUT", "DELETE") else text
