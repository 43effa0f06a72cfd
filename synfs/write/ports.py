"""What the write path needs from the tree, as an explicit interface.

``synfs.fs.tree.Tree`` provides it; the write path never imports ``synfs.fs`` (imports point
from the core down to the write path), and unit tests may pass any object with these methods.
"""

from __future__ import annotations

from typing import Protocol

from synfs.synapse.models import ChildHeader, Entity


class TreePort(Protocol):
    async def entity(self, entity_id: int, fresh: bool = False) -> Entity: ...

    async def listing(self, entity_id: int, fresh: bool = False) -> dict[str, ChildHeader]: ...

    def cache_entity(self, ent: Entity) -> None: ...

    def invalidate(self, *, entity_id: int | None = None, parent_id: int | None = None,
                   name: str | None = None) -> None: ...

    def entity_id(self, ino: int) -> int: ...

    def ino_of(self, entity_id: int) -> int: ...

    def new_temp_ino(self) -> int: ...

    def alias(self, ino: int, entity_id: int) -> None: ...

    def drop_alias_if_unused(self, ino: int) -> None: ...
