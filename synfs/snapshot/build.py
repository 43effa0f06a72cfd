"""Building a snapshot: walk the tree's listings, then learn every file's details.

Owns the build's order of REST calls and its resumability. One walk of ``POST
/entity/children`` (every folder, one call per 50 children) records the tree's shape, each
file's version and modifiedOn; then each file's details come from the fastest source:

- a file view (``synfs.snapshot.views``): one query for the whole tree; a row is trusted only
  if its ``currentVersion`` and ``modifiedOn`` equal the listing's (views are eventually
  consistent), then ``POST /fileHandle/batch`` gives sizes, MD5s and storage locations 100
  files per call, ``CONCURRENCY`` calls at a time;
- otherwise (no view, no row, a stale row) the file's entity bundle (one call per file).

Finally each storage location is asked once whether it is STS-enabled. Requests run on
``CONCURRENCY`` worker threads (Synapse allows 3 concurrent calls per user; the client's
throttle keeps to it). Everything learned is committed to the partial file as it arrives, so
a rerun after an interruption fetches only what is missing.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import time
from typing import Callable

from synfs import errors
from synfs.config import EXIT_NOT_CONTAINER, EXIT_NOT_FOUND
from synfs.snapshot.store import Node, SnapshotError, SnapshotWriter
from synfs.synapse.models import Entity, Kind

log = logging.getLogger(__name__)

CONCURRENCY = 3
SHOWN = (Kind.PROJECT, Kind.FOLDER, Kind.FILE)
BATCH_LIMIT = 100
BUNDLE_CHUNK = 30        # bundles fetched (and committed) together


@dataclasses.dataclass
class Progress:
    """What the build has done so far (passed to the progress callback)."""

    phase: str = "listing"
    files_done: int = 0
    files_total: int = 0
    folders: int = 0
    calls: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Builder:
    def __init__(self, client, writer: SnapshotWriter, *,
                 on_progress: Callable[[Progress], None] = lambda p: None):
        self.client = client
        self.writer = writer
        self.on_progress = on_progress
        self.progress = Progress()
        self._calls0 = self._total_calls()
        self.pool = concurrent.futures.ThreadPoolExecutor(CONCURRENCY,
                                                          thread_name_prefix="snapshot")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _total_calls(self) -> int:
        return sum(self.client.stats.snapshot().values())

    def calls(self) -> int:
        return self._total_calls() - self._calls0

    def tick(self, phase: str | None = None, files: int = 0) -> None:
        if phase:
            self.progress.phase = phase
        self.progress.files_done += files
        self.progress.calls = self.calls()
        self.on_progress(self.progress)

    # ---- the root --------------------------------------------------------------------------
    def root(self, root_id: int) -> Entity:
        try:
            root = self.client.get_entity(root_id)
        except (errors.NotFound, errors.PermissionDenied):
            raise SnapshotError(f"syn{root_id} does not exist or is not readable",
                                EXIT_NOT_FOUND) from None
        if not root.kind.is_container:
            raise SnapshotError(f"syn{root_id} ({root.name}) is a {root.kind.value}, not a "
                                "Project or Folder", EXIT_NOT_CONTAINER)
        if not self.writer.has(root_id):
            self.writer.put([Node.from_entity(root, parent_id=None)])
        return root

    # ---- the walk --------------------------------------------------------------------------
    def walk(self) -> None:
        """List every folder not yet listed (breadth first), recording the children."""
        while True:
            todo = self.writer.unlisted_folders()
            if not todo:
                break
            for folder, children in zip(todo, self.pool.map(self.client.list_children, todo)):
                nodes = [Node.from_header(c, folder) for c in children if c.kind in SHOWN]
                self.writer.put(nodes, listed=folder)
                self.progress.folders += 1
                self.progress.files_total += sum(1 for n in nodes if n.kind == "file")
                self.tick("listing")
        self.progress.files_total = self.writer.count("file")
        self.progress.files_done = self.progress.files_total - len(self.writer.pending_files())
        self.tick()

    # ---- file details ----------------------------------------------------------------------
    def from_bundles(self, pending: list[Node]) -> None:
        """One entity bundle per file (the listings-only source and the view's fallback)."""
        def fetch(node: Node):
            try:
                return node, self.client.get_entity(node.id)
            except errors.NotFound:
                return node, None          # deleted since the listing: not in the snapshot
        for i in range(0, len(pending), BUNDLE_CHUNK):
            chunk = pending[i:i + BUNDLE_CHUNK]
            found = []
            gone = []
            for node, ent in self.pool.map(fetch, chunk):
                if ent is None:
                    gone.append(node.id)
                else:
                    found.append(Node.from_entity(ent, parent_id=node.parent_id))
            self.writer.put(found)
            self.writer.delete(gone)
            self.tick("files", len(chunk))

    def handles(self, nodes: list[Node]) -> list[Node]:
        """Fill storage locations (and check bucket/key) from ``POST /fileHandle/batch``;
        returns the nodes whose handle the batch could not give (to fetch by bundle)."""
        missing = []
        chunks = [nodes[i:i + BATCH_LIMIT] for i in range(0, len(nodes), BATCH_LIMIT)]
        batches = self.pool.map(
            lambda chunk: self.client.get_file_handles([(n.id, n.file_handle_id) for n in chunk]),
            chunks)                               # CONCURRENCY batches in flight
        for chunk, got in zip(chunks, batches):
            done = []
            for n in chunk:
                fh = got.get(n.file_handle_id)
                if fh is None or isinstance(fh, Exception):
                    missing.append(n)
                    continue
                done.append(dataclasses.replace(
                    n, size=fh.size, md5=fh.md5, concrete_type=fh.concrete_type,
                    storage_location_id=fh.storage_location_id, bucket=fh.bucket, key=fh.key,
                    file_name=fh.file_name, content_type=fh.content_type, done=True))
            self.writer.put(done)
            self.tick("files", len(done))
        return missing

    def locations(self) -> None:
        """Whether each storage location is STS-enabled (one call per new location)."""
        known = self.writer.locations()
        for loc, entity_id in self.writer.location_of_files().items():
            if loc in known:
                continue
            try:
                dest = self.client.upload_destination(entity_id, loc)
            except errors.SynfsError as exc:
                log.warning("storage location %d (via syn%d): %s; reads will use pre-signed "
                            "URLs", loc, entity_id, exc)
                self.writer.put_location(loc, False, None, None)
                continue
            self.writer.put_location(loc, bool(dest.sts_enabled), dest.bucket, dest.base_key)
        self.tick("done")


def build_from_listings(builder: Builder, root_id: int) -> None:
    builder.root(root_id)
    builder.walk()
    builder.from_bundles(builder.writer.pending_files())
    builder.locations()
