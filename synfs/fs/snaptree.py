"""The tree of a ``--snapshot`` mount: every name and attribute from the snapshot file.

Offers what ``synfs.fs.core.Filesystem`` asks of ``synfs.fs.tree.Tree`` (identity, lookup
counts, listings, entities, headers), answered from ``synfs.snapshot.store.Snapshot`` with
no REST call: files are pinned to the snapshot's versions and file handles. Listings are kept
in a small LRU (the file is local and indexed; a lookup is one SQLite query). Inode numbers
are the Synapse ids, the root is inode 1, as in a live mount. The mount is read-only, so the
write-path hooks (temporary inodes, aliases) are inert.

Also owns which files need pre-signed URLs (not S3 with an STS-enabled storage location) and
hands the URL cache the next ones to fetch in the same ``POST /fileHandle/batch`` call.
"""

from __future__ import annotations

import collections
import logging

from synfs import errors
from synfs.fs.attrs import ROOT_INO
from synfs.fs import lookups
from synfs.snapshot.store import Node, Snapshot
from synfs.synapse.models import ChildHeader, Entity, Kind

log = logging.getLogger(__name__)

LISTINGS_KEPT = 256
BATCH_LIMIT = 100


class SnapTree:
    def __init__(self, snapshot: Snapshot):
        self.snap = snapshot
        self.root_id = snapshot.root_id
        self.store = None
        self.lookups: dict[int, int] = {}
        self.in_use = lambda ino: False
        self.writing = lambda ino: False
        self._info = snapshot.info()
        self._listings: collections.OrderedDict[int, dict[str, ChildHeader]] = \
            collections.OrderedDict()
        self._nodes: collections.OrderedDict[int, Node] = collections.OrderedDict()
        sts = {loc for loc, (enabled, _, _) in snapshot.locations().items() if enabled}
        self.sts_locations = {loc: enabled for loc, (enabled, _, _) in
                              snapshot.locations().items()}
        # files read through pre-signed URLs, in tree order (folder by folder)
        self._url_files: list[tuple[int, int]] = []
        self._url_pos: dict[int, int] = {}
        for node in sorted(snapshot.files(), key=lambda n: (n.parent_id or 0, n.name)):
            if node.file_handle_id is None or node.size is None:
                continue
            if node.storage_location_id in sts and node.bucket and node.key and \
                    (node.concrete_type or "").endswith("S3FileHandle"):
                continue
            self._url_pos[node.id] = len(self._url_files)
            self._url_files.append((node.id, node.file_handle_id))

    # ---- identity and lookup counts --------------------------------------------------------
    def entity_id(self, ino: int) -> int:
        return self.root_id if ino == ROOT_INO else ino

    def ino_of(self, entity_id: int) -> int:
        return ROOT_INO if entity_id == self.root_id else entity_id

    def is_known_ino(self, ino: int) -> bool:
        return True

    def remember(self, ino: int) -> None:
        lookups.remember(self.lookups, ino)

    def forget(self, inodes: list[tuple[int, int]]) -> None:
        lookups.forget(self.lookups, inodes)

    # ---- nodes -----------------------------------------------------------------------------
    def _node(self, entity_id: int) -> Node:
        node = self._nodes.get(entity_id)
        if node is None:
            node = self.snap.node(entity_id)
            if node is None:
                raise errors.NotFound(f"syn{entity_id} is not in the snapshot")
            self._nodes[entity_id] = node
            if len(self._nodes) > 50_000:
                self._nodes.popitem(last=False)
        return node

    async def entity(self, entity_id: int, fresh: bool = False) -> Entity:
        return self._node(entity_id).entity()

    async def fetch_file(self, entity_id: int) -> Entity:
        return self._node(entity_id).entity()

    async def listing(self, entity_id: int, fresh: bool = False) -> dict[str, ChildHeader]:
        shown = self._listings.get(entity_id)
        if shown is not None:
            self._listings.move_to_end(entity_id)
            return shown
        shown = {}
        for child in self.snap.children(entity_id):
            if child.id == ROOT_INO:
                continue
            shown[child.name] = child.header()
            self._nodes[child.id] = child
        self._listings[entity_id] = shown
        if len(self._listings) > LISTINGS_KEPT:
            self._listings.popitem(last=False)
        while len(self._nodes) > 50_000:
            self._nodes.popitem(last=False)
        return shown

    def header(self, entity_id: int) -> ChildHeader | None:
        try:
            return self._node(entity_id).header()
        except errors.NotFound:
            return None

    def known(self, child: ChildHeader) -> Entity | None:
        try:
            return self._node(child.id).entity()
        except errors.NotFound:
            return None

    async def container_kind(self, ino: int, entity_id: int) -> Kind:
        return Kind(self._node(entity_id).kind)

    async def check_container(self, ino: int, entity_id: int) -> None:
        if not self._node(entity_id).is_container:
            raise errors.NotADirectory(f"syn{entity_id} is not a folder")

    # ---- caches a live tree has: nothing changes in a snapshot -----------------------------
    def is_negative(self, parent_id: int, name: str) -> bool:
        return False

    def set_negative(self, parent_id: int, name: str) -> None:
        pass

    def invalidate(self, *, entity_id: int | None = None, parent_id: int | None = None,
                   name: str | None = None) -> None:
        pass

    def cache_entity(self, ent: Entity) -> None:
        pass

    def new_temp_ino(self) -> int:
        raise errors.ReadOnly("a snapshot mount is read-only")

    def alias(self, ino: int, entity_id: int) -> None:
        pass

    def drop_alias_if_unused(self, ino: int) -> None:
        pass

    # ---- pinning: every inode stays at the snapshot's version, nothing is ever retired ----
    def frozen(self, ino: int) -> Entity | None:
        return None

    def retire(self, ino: int, pinned: Entity) -> None:
        pass

    def modified_on(self, entity_id: int) -> float:
        try:
            return self._node(entity_id).entity().modified_on
        except errors.NotFound:
            return 0.0

    # ---- pre-signed URLs in batches --------------------------------------------------------
    @property
    def files_needing_urls(self) -> int:
        return len(self._url_files)

    def url_batch(self, entity_id: int) -> list[tuple[int, int]]:
        """The files to ask URLs for along with ``entity_id``'s: the next ones in tree order
        (its own folder first), up to ``BATCH_LIMIT`` in all (thread-safe: read-only data)."""
        pos = self._url_pos.get(entity_id)
        if pos is None:
            return []
        return self._url_files[pos + 1:pos + BATCH_LIMIT] + \
            self._url_files[:max(0, pos + BATCH_LIMIT - len(self._url_files))][:pos]

    def status(self) -> dict:
        info = self._info
        return {"path": info["path"], "root": info["root"], "created": info["created"],
                "source": info["source"], "where": info["where"], "files": info["files"],
                "folders": info["folders"], "files_needing_urls": len(self._url_files)}
