"""Renames in the filesystem core (mixed into ``synfs.fs.Filesystem``; trio thread only).

``rename`` changes only ``name``/``parentId`` in Synapse (no S3 copy). Both folders must be
writable and in the same storage location, otherwise EXDEV (Synapse cannot move data across
storage locations). A rename over an existing file makes the source's content a new version of
the target, so the target keeps its history (editors and rsync save by writing a temporary file
and renaming it over the original), and the source entity goes to the trash; the kernel's inode
for the source becomes an alias of the target. A rename over an empty folder replaces it;
over a non-empty one it fails with ENOTEMPTY. Unsaved new files are renamed locally and saved
under their new name (over an existing file: as its new version).
"""

from __future__ import annotations

from synfs import errors
from synfs.remote.writer import WriteTarget
from synfs.synapse.models import Entity, Kind
from synfs.write.names import check_key, check_name
from synfs.write.path import WritePath
from synfs.write.ports import TreePort

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


class Namespace:
    def __init__(self, tree: TreePort, writes: WritePath):
        self.tree = tree
        self.writes = writes
        self.writer = writes.writer

    async def mkdir(self, parent_ino: int, name: str) -> Entity:
        check_name(name)
        parent_id = self.tree.entity_id(parent_ino)
        await self.writes.folder_for_write(parent_id, "CREATE")
        if name in await self.tree.listing(parent_id) or self.writes.pending_ino(parent_id, name):
            raise errors.AlreadyExists(f"{name} exists in syn{parent_id}")
        folder = await self.writer.create_folder(parent_id, name)
        self.tree.invalidate(parent_id=parent_id, name=name)
        self.tree.cache_entity(folder)
        return folder

    async def _child(self, parent_id: int, name: str) -> Entity:
        child = (await self.tree.listing(parent_id, fresh=True)).get(name)
        if child is None:
            raise errors.NotFound(f"{name!r} not in syn{parent_id}")
        return await self.tree.entity(child.id, fresh=True)

    async def unlink(self, parent_ino: int, name: str) -> None:
        parent_id = self.tree.entity_id(parent_ino)
        temp = self.writes.pending_ino(parent_id, name)
        if temp is not None:            # never saved: forget it (open handles keep their data)
            self.writes.forget_pending(parent_id, name)
            return
        await self.writes.folder_for_write(parent_id, "DELETE")
        ent = await self._child(parent_id, name)
        if ent.kind.is_container:
            raise errors.IsADirectory(f"{name} is a folder: use rmdir")
        self.writes.require(ent, ent.can_delete, "DELETE")
        await self.writer.delete(ent.id)
        h = self.writes.active_handle(self.tree.ino_of(ent.id))
        if h is not None:
            self.writes.mark_unlinked(h)
        self.tree.invalidate(entity_id=ent.id, parent_id=parent_id, name=name)

    async def rmdir(self, parent_ino: int, name: str) -> None:
        parent_id = self.tree.entity_id(parent_ino)
        await self.writes.folder_for_write(parent_id, "DELETE")
        ent = await self._child(parent_id, name)
        if not ent.kind.is_container:
            raise errors.NotADirectory(f"{name} is not a folder")
        self.writes.require(ent, ent.can_delete, "DELETE")
        self.tree.invalidate(parent_id=ent.id)
        if await self.tree.listing(ent.id) or self.writes.pending_names(ent.id):
            raise errors.NotEmpty(f"{name} is not empty")
        await self.writer.delete(ent.id)
        self.tree.invalidate(entity_id=ent.id, parent_id=parent_id, name=name)


    async def rename(self, old_parent_ino: int, old_name: str, new_parent_ino: int,
                     new_name: str, flags: int) -> None:
        if flags & RENAME_EXCHANGE:
            raise errors.Unsupported("RENAME_EXCHANGE is not supported")
        check_name(new_name)
        src_parent = self.tree.entity_id(old_parent_ino)
        dst_parent = self.tree.entity_id(new_parent_ino)
        _, src_target = await self.writes.folder_for_write(src_parent, "CREATE")
        try:
            _, dst_target = await self.writes.folder_for_write(dst_parent, "CREATE")
        except errors.ReadOnly:
            raise errors.CrossDevice(f"syn{dst_parent} is in another storage location") from None
        if src_target.storage_location_id != dst_target.storage_location_id:
            raise errors.CrossDevice("moving between storage locations is not possible in "
                                     "Synapse; copy instead")
        check_key(dst_target.base_key, new_name)
        dst_children = await self.tree.listing(dst_parent, fresh=True)
        existing = dst_children.get(new_name)
        dst_temp = self.writes.pending_ino(dst_parent, new_name)
        if (existing or dst_temp) and flags & RENAME_NOREPLACE:
            raise errors.AlreadyExists(f"{new_name} exists")
        if (src_parent, old_name) == (dst_parent, new_name):
            return
        temp = self.writes.pending_ino(src_parent, old_name)
        if temp is not None:
            await self._rename_pending(temp, src_parent, old_name, dst_parent, new_name,
                                       dst_target, existing, dst_temp)
            return
        src = await self._child(src_parent, old_name)
        if dst_temp is not None:            # replacing a file that was never saved
            self.writes.forget_pending(dst_parent, new_name)
        if existing is None:
            await self.writer.move(src.id, dst_parent, new_name)
        elif src.kind.is_container:
            await self._replace_folder(src, existing, dst_parent, new_name)
        else:
            await self._replace_file(src, existing, dst_parent, new_name)
        h = self.writes.active_handle(self.tree.ino_of(src.id))
        if h is not None and h.entity_id is not None:
            self.writes.retarget(h, dst_parent, new_name, dst_target)
        self.tree.invalidate(entity_id=src.id, parent_id=src_parent, name=old_name)
        self.tree.invalidate(parent_id=dst_parent, name=new_name)

    async def _replace_folder(self, src: Entity, existing, dst_parent: int, name: str) -> None:
        if existing.kind is not Kind.FOLDER:
            raise errors.NotADirectory(f"{name} is not a folder")
        if await self.tree.listing(existing.id, fresh=True):
            raise errors.NotEmpty(f"{name} is not empty")
        await self.writer.delete(existing.id)
        await self.writer.move(src.id, dst_parent, name)

    async def _replace_file(self, src: Entity, existing, dst_parent: int, name: str) -> None:
        """The source's bytes become a new version of the target; the source goes to trash."""
        if existing.kind.is_container:
            raise errors.IsADirectory(f"{name} is a folder")
        target = await self.tree.entity(existing.id, fresh=True)
        self.writes.require(target, target.can_update, "UPDATE")
        try:
            await self.writer.new_version(target.id, src.file_handle_id)
        except errors.PermissionDenied:     # not the creator of the source's file handle
            await self.writer.delete(target.id)
            await self.writer.move(src.id, dst_parent, name)
            return
        await self.writer.delete(src.id)
        src_ino = self.tree.ino_of(src.id)
        self.tree.alias(src_ino, target.id)
        h = self.writes.active_handle(src_ino)
        if h is not None:
            self.writes.retarget(h, dst_parent, name, h.target, await self.tree.entity(
                target.id, fresh=True))
        self.tree.invalidate(entity_id=target.id)

    async def _rename_pending(self, temp: int, src_parent: int, old_name: str, dst_parent: int,
                              new_name: str, dst_target: WriteTarget, existing,
                              dst_temp: int | None) -> None:
        target = None
        if existing is not None:
            if existing.kind.is_container:
                raise errors.IsADirectory(f"{new_name} is a folder")
            target = await self.tree.entity(existing.id, fresh=True)
        self.writes.forget_pending(src_parent, old_name, unlink=False)
        h = self.writes.active_handle(temp)
        if dst_temp is not None:
            self.writes.forget_pending(dst_parent, new_name)
        if existing is not None:
            self.tree.alias(temp, existing.id)      # its next save is a new version of the target
        else:
            self.writes.set_pending(dst_parent, new_name, temp)
        if h is not None:
            self.writes.retarget(h, dst_parent, new_name, dst_target, target)
        self.tree.invalidate(parent_id=dst_parent, name=new_name)
