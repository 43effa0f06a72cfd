"""The tree: inode identity and what the mount knows of Synapse's entities and listings.

Owns (trio thread only): the ino <-> Synapse id mapping, kernel lookup counts, and the
explicit, bounded, TTL'd caches of entities, listings and negative lookups, with single-flight
fetches so that concurrent requests for one entity or listing share one REST call.

Identity: inode numbers are the numeric Synapse ids (stable across remounts); the mount's root
entity is inode 1. Files this mount creates have no id until their first save: they get
temporary inodes (from 2**48 up). Once saved, the temporary inode stays an alias of the new
entity for as long as the kernel remembers it, but is shown (``st_ino``, lookups, listings)
only while the file is being written: once it is saved and closed, every answer names the
entity by its Synapse id, and the kernel's next lookup of the name moves it to that inode.
Pinned inodes: an inode whose open files read a version that is no longer the file's current
one (a new version was saved, here or elsewhere) is *frozen* to that version (``retire``):
it keeps answering the old version for its readers, and the entity gets a fresh inode number
for its new version, so the kernel's per-inode size and page cache of the two never mix.
Projects and Folders are directories, FileEntities regular files; other
entity types are not shown.

Names: the Synapse names unchanged, except "." and "..", which Synapse accepts and POSIX
reserves: they are listed as "%2E" and "%2E%2E" (``DOT_NAMES``; "%" cannot occur in a Synapse
name), and logged once at INFO.

REST frugality: a listing (one call per 50 children) gives every child's name, type, version
and modifiedOn, but not a file's size. A file's entity is fixed by (id, version, modifiedOn),
so known file entities are kept with no TTL (in memory and in the persistent
``synfs.fs.metastore``) and reused while the listing shows the same version. A run of misses
in one folder (``ls -l``) fetches the next siblings alongside (3 calls at once, Synapse's
concurrency limit).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import outcome
import trio

from synfs import errors
from synfs.fs import lookups
from synfs.fs.attrs import ROOT_INO, Options
from synfs.cache import SingleFlight, TTLCache
from synfs.synapse.models import ChildHeader, Entity, Kind

log = logging.getLogger(__name__)

TEMP_INO_BASE = 1 << 48
READ_AHEAD_SIBLINGS = 2     # with the file asked for: 3 calls, Synapse's concurrency limit
SHOWN_KINDS = (Kind.PROJECT, Kind.FOLDER, Kind.FILE)
# Synapse accepts "." and ".." as names; POSIX reserves them. They are shown percent-encoded:
# "%" is not allowed in Synapse names, so no real name can collide with these.
DOT_NAMES = {".": "%2E", "..": "%2E%2E"}


class Tree:
    def __init__(self, remote, root_id: int, options: Options,
                 clock: Callable[[], float] = time.monotonic, store=None):
        self.remote = remote
        self.root_id = root_id
        n = options.cache_entries
        self._entities: TTLCache[int, Entity] = TTLCache(n, options.metadata_ttl, clock)
        self._listings: TTLCache[int, dict[str, ChildHeader]] = TTLCache(
            max(16, n // 100), options.metadata_ttl, clock)
        # child id -> (parent id, position in the parent's listing, header)
        self._headers: TTLCache[int, tuple[int, int, ChildHeader]] = TTLCache(
            n, options.metadata_ttl, clock)
        self._rows: TTLCache[int, list[ChildHeader]] = TTLCache(
            max(16, n // 100), options.metadata_ttl, clock)
        # file entities by id, good while the listing shows the same version and modifiedOn
        self._stored: TTLCache[int, Entity] = TTLCache(n, float("inf"), clock)
        self.store = store                 # synfs.fs.metastore.MetaStore or None
        self._last_miss: tuple[int, int] | None = None    # (folder, file) of the last fetch
        self._negative: TTLCache[tuple[int, str], bool] = TTLCache(10_000, options.negative_ttl,
                                                                  clock)
        self._entity_flight: SingleFlight[int, Entity] = SingleFlight()
        self._listing_flight: SingleFlight[int, dict] = SingleFlight()
        self.lookups: dict[int, int] = {}
        self._ino_to_id: dict[int, int] = {}               # temp/aliased ino -> entity id
        self._aliases: dict[int, set[int]] = {}            # entity id -> inos aliased to it
        self._id_to_ino: dict[int, int] = {}               # entity id -> ino the kernel knows
        self._next_temp = TEMP_INO_BASE
        self._frozen: dict[int, Entity] = {}               # ino -> the version it stays at
        self._dot_logged: set[int] = set()
        self.in_use: Callable[[int], bool] = lambda ino: False   # set by the core: any handle
        self.writing: Callable[[int], bool] = lambda ino: False  # set by the core: being written

    # ---- identity --------------------------------------------------------------------------
    def entity_id(self, ino: int) -> int:
        if ino == ROOT_INO:
            return self.root_id
        return self._ino_to_id.get(ino, ino)

    def ino_of(self, entity_id: int) -> int:
        if entity_id == self.root_id:
            return ROOT_INO
        ino = self._id_to_ino.get(entity_id, entity_id)
        # an inode kept at an old version of this entity may still show its id
        held = any(old.id == entity_id for old in self._frozen.values())
        if ino != entity_id and ino not in self._frozen and not held and not self.writing(ino):
            ino = entity_id             # saved, not being written: the Synapse id
        if ino in self._frozen or (ino == entity_id and held):
            ino = self.new_temp_ino()   # the current version needs an inode of its own
            self.alias(ino, entity_id)
        return ino

    def frozen(self, ino: int) -> Entity | None:
        """The old version a retired inode stays at (see ``retire``), or None."""
        return self._frozen.get(ino)

    def retire(self, ino: int, pinned: Entity) -> None:
        """``ino`` stays at version ``pinned`` (its open files read it) while the entity moves
        on to a newer version or is gone: from now on the entity has another inode number."""
        self._frozen[ino] = pinned
        log.debug("inode %d stays at syn%d version %s for its open files", ino, pinned.id,
                  pinned.version)

    def is_known_ino(self, ino: int) -> bool:
        """False for a temporary inode whose file is gone (never saved, handle closed)."""
        return ino <= TEMP_INO_BASE or ino in self._ino_to_id

    def new_temp_ino(self) -> int:
        self._next_temp += 1
        return self._next_temp

    def _map(self, ino: int, entity_id: int | None) -> None:
        """Set (or with None, remove) the entity ``ino`` stands for, keeping the index."""
        before = self._ino_to_id.pop(ino, None)
        if before is not None:
            inos = self._aliases.get(before)
            if inos is not None:
                inos.discard(ino)
                if not inos:
                    del self._aliases[before]
        if entity_id is not None and entity_id != ino:
            self._ino_to_id[ino] = entity_id
            self._aliases.setdefault(entity_id, set()).add(ino)

    def alias(self, ino: int, entity_id: int) -> None:
        """From now on ``ino`` (which the kernel knows) stands for ``entity_id``, and so does
        every other inode the kernel may still hold for the entity ``ino`` stood for."""
        before = self.entity_id(ino)
        others = sorted(self._aliases.get(before, set()) - {ino}) if before != entity_id else []
        for other in others:
            self._map(other, entity_id)
        if others and ino == before and ino < TEMP_INO_BASE and ino not in self.lookups:
            # a Synapse id the kernel does not hold keeps its meaning; the temporary inodes
            # the kernel holds for that entity stand for ``entity_id`` now
            if self._id_to_ino.get(before) in others:
                del self._id_to_ino[before]
            self._id_to_ino[entity_id] = others[-1]
            return
        old = self._ino_to_id.get(ino)
        if old is not None and self._id_to_ino.get(old) == ino:
            del self._id_to_ino[old]
        self._map(ino, entity_id)
        if ino != entity_id:
            self._id_to_ino[entity_id] = ino

    def drop_alias_if_unused(self, ino: int) -> None:
        if ino in self.lookups or self.in_use(ino):
            return
        self._frozen.pop(ino, None)
        eid = self._ino_to_id.get(ino)
        self._map(ino, None)
        if eid is not None and self._id_to_ino.get(eid) == ino:
            del self._id_to_ino[eid]

    # ---- kernel lookup counts --------------------------------------------------------------
    def remember(self, ino: int) -> None:
        lookups.remember(self.lookups, ino)

    def forget(self, inodes: list[tuple[int, int]]) -> None:
        for ino in lookups.forget(self.lookups, inodes):
            self.drop_alias_if_unused(ino)

    # ---- remote access with caches ---------------------------------------------------------
    async def entity(self, entity_id: int, fresh: bool = False) -> Entity:
        if not fresh:
            cached = self._entities.get(entity_id)
            if cached is not None:
                return cached

        async def fetch() -> Entity:
            ent = await self.remote.get_entity(entity_id)
            self._entities.set(entity_id, ent)
            if ent.kind is Kind.FILE:
                self._stored.set(entity_id, ent)
                if self.store is not None:
                    self.store.put(ent)
            return ent

        return await self._entity_flight.do(entity_id, fetch)

    def remember_files(self, entities) -> None:
        """Attributes-only file entities known in bulk (a file view): used, like the
        metadata store's, only while the listing shows the same version and modifiedOn."""
        for ent in entities:
            self._stored.set(ent.id, ent)

    def cache_entity(self, ent: Entity) -> None:
        self._entities.set(ent.id, ent)

    async def listing(self, entity_id: int, fresh: bool = False) -> dict[str, ChildHeader]:
        if fresh:
            self.invalidate(parent_id=entity_id)
        cached = self._listings.get(entity_id)
        if cached is not None:
            return cached

        async def fetch() -> dict[str, ChildHeader]:
            children = await self.remote.list_children(entity_id)
            shown = {}
            rows = []
            for child in children:
                if child.kind not in SHOWN_KINDS:
                    continue
                if child.id == ROOT_INO:  # cannot collide with the root inode
                    log.warning("skipping entity syn%d: id reserved for the mount root", child.id)
                    continue
                name = DOT_NAMES.get(child.name, child.name)
                if name != child.name and child.id not in self._dot_logged:
                    self._dot_logged.add(child.id)
                    log.info("syn%d is named %r, a name POSIX reserves: shown as %r",
                             child.id, child.name, name)
                shown[name] = child
                self._headers.set(child.id, (entity_id, len(rows), child))
                rows.append(child)
            self._listings.set(entity_id, shown)
            self._rows.set(entity_id, rows)
            return shown

        return await self._listing_flight.do(entity_id, fetch)

    def header(self, entity_id: int) -> ChildHeader | None:
        """The entity's header from its parent's cached listing, if any."""
        place = self._headers.get(entity_id)
        return place[2] if place is not None else None

    def modified_on(self, entity_id: int) -> float:
        """What the caches know of the entity's modifiedOn (0 when nothing), without a call."""
        place = self._headers.get(entity_id)
        if place is not None:
            return place[2].modified_on
        ent = self._entities.get(entity_id)
        return ent.modified_on if ent is not None else 0.0

    def known(self, child: ChildHeader) -> Entity | None:
        """The entity behind a listing header if it is known for that version, without a call."""
        if child.kind.is_container:
            return self._entities.get(child.id)
        ent = self._stored.get(child.id)
        if ent is not None and ent.version == child.version and \
                ent.modified_on == child.modified_on:
            return ent
        if self.store is not None and child.kind is Kind.FILE:
            ent = self.store.get(child.id, child.version, child.modified_on)
            if ent is not None:
                self._stored.set(child.id, ent)
                return ent
        return None

    async def fetch_file(self, entity_id: int) -> Entity:
        """One file's entity; in a run of misses within one folder, its next siblings too."""
        place = self._headers.get(entity_id)
        siblings: list[int] = []
        if place is not None:
            parent, pos, _ = place
            if self._last_miss is not None and self._last_miss[0] == parent and \
                    self._last_miss[1] != entity_id:
                rows = self._rows.get(parent) or []
                for child in rows[pos + 1:pos + 1 + 4 * READ_AHEAD_SIBLINGS]:
                    if len(siblings) >= READ_AHEAD_SIBLINGS:
                        break
                    if child.kind is Kind.FILE and self.known(child) is None:
                        siblings.append(child.id)
            self._last_miss = (parent, entity_id)
        fresh = self._entities.get(entity_id) is not None   # cached, but not this version
        if not siblings:
            return await self.entity(entity_id, fresh=fresh)

        async def quietly(sibling: int) -> None:
            try:
                await self.entity(sibling)
            except errors.SynfsError:
                pass                    # its own stat will report it

        # The file asked for is fetched outside the nursery's error handling: its error goes
        # to the caller as itself (ENOENT, EIO...), never wrapped in an exception group.
        async with trio.open_nursery() as nursery:
            for sibling in siblings:
                nursery.start_soon(quietly, sibling)
            result = await outcome.acapture(self.entity, entity_id, fresh)
        return result.unwrap()

    async def container_kind(self, ino: int, entity_id: int) -> Kind:
        """The entity's kind, from its listing header when there is one."""
        place = self._headers.get(entity_id)
        if place is None or ino == ROOT_INO:
            return (await self.entity(entity_id)).kind
        return place[2].kind

    async def check_container(self, ino: int, entity_id: int) -> None:
        """NotADirectory unless the entity is a Project or Folder (from its header if listed)."""
        if not (await self.container_kind(ino, entity_id)).is_container:
            raise errors.NotADirectory(f"syn{entity_id} is not a folder")

    # ---- negative lookups and invalidation -------------------------------------------------
    def is_negative(self, parent_id: int, name: str) -> bool:
        return (parent_id, name) in self._negative

    def set_negative(self, parent_id: int, name: str) -> None:
        self._negative.set((parent_id, name), True)

    def invalidate(self, *, entity_id: int | None = None, parent_id: int | None = None,
                   name: str | None = None) -> None:
        if entity_id is not None:
            self._entities.pop(entity_id)
            self._stored.pop(entity_id)
            self._headers.pop(entity_id)
        if parent_id is not None:
            self._listings.pop(parent_id)
            self._rows.pop(parent_id)
            if name is not None:
                self._negative.pop((parent_id, name))
