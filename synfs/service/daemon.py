"""Composition root and lifecycle of a mount.

``build`` wires the Synapse client, credential store, S3 and URL readers, the async
``Remote`` and the filesystem core. ``preflight`` checks everything a user can get wrong
(mount point, token, the Synapse id) and maps each failure to one clear message and a
distinct exit code. ``serve`` mounts and runs the trio loop until unmounted or signalled, then
closes FUSE cleanly in ``finally``; ``synfs.service.lifecycle`` owns the signals, from before the
mount until after the unmount, so that no signal can skip ``pyfuse3.close(unmount=True)``.
While mounted it refreshes the status file ``synfs status`` reads (``synfs.service.runtime``) and,
once the mount answers, tells systemd ``READY=1`` (``synfs.service.sdnotify``; a no-op elsewhere).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable

import pyfuse3
import trio

from synfs import errors
from synfs.service import lifecycle, mounts, sdnotify, sources
from synfs.config import (EXIT_AUTH, EXIT_BUSY, EXIT_FAILED, EXIT_MOUNTPOINT, EXIT_NOT_CONTAINER,
                          EXIT_NOT_FOUND, EXIT_UNAVAILABLE, Config, ConfigError)
from synfs.fs.core import Filesystem, Options
from synfs.fs.fuse_ops import SynfsOperations
from synfs.localdirs import private_dir
from synfs.read.datacache import DataCache
from synfs.diskbudget import DiskBudget
from synfs.read.downloads import Downloads
from synfs.read.membudget import MemoryBudget
from synfs.service import kernel
from synfs.remote.facade import Remote
from synfs.service.runtime import StatusPublisher
from synfs.synapse.models import Entity

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Parts:
    client: object
    remote: Remote
    creds: object = None      # the STS CredentialStore (its status() feeds synfs status)
    writer: object = None     # RemoteWriter; None on read-only mounts
    staging: object = None    # StagingArea for writes
    tree: object = None       # SnapTree of a --snapshot mount (None: a live tree)
    view_files: list = dataclasses.field(default_factory=list)   # --view: file attributes


def build(cfg: Config) -> Parts:
    from synfs.s3.reader import S3Reader, UrlReader
    from synfs.synapse.client import Endpoints, SynapseClient
    from synfs.synapse.credentials import CredentialStore

    client = SynapseClient(Endpoints(repo=cfg.repo_endpoint, file=cfg.file_endpoint,
                                     auth=cfg.auth_endpoint), cfg.token,
                           retry_budget_s=cfg.retry_budget_s)
    creds = CredentialStore(client)
    s3 = S3Reader(cfg.s3_endpoint, creds, retry_budget_s=cfg.retry_budget_s)
    urls = UrlReader(retry_budget_s=cfg.retry_budget_s)
    remote = Remote(client, s3, urls)
    private_dir(cfg.staging_dir().parent)   # the cache directory: 0700 if created here
    # One --cache-size for the cache directory: staged writes first, cached data in the rest.
    disk = DiskBudget(cfg.cache_size)
    cache = (DataCache(cfg.cache_dir, disk)
             if cfg.cache_dir is not None and cfg.cache_size > 0 else None)
    remote.downloads = Downloads(remote, MemoryBudget(cfg.max_memory), cache)
    if cfg.snapshot is not None:
        tree = sources.open_snapshot_tree(cfg)
        remote.pin_locations(tree.sts_locations, tree.url_batch)
        return Parts(client=client, remote=remote, creds=creds, tree=tree)
    if cfg.read_only:
        return Parts(client=client, remote=remote, creds=creds)
    from synfs.remote.writer import RemoteWriter
    from synfs.s3.uploader import S3Uploader
    from synfs.write.staging import StagingArea
    from synfs.synapse.writer import SynapseWriter

    writer = RemoteWriter(SynapseWriter(client),
                          S3Uploader(cfg.s3_endpoint, creds, retry_budget_s=cfg.retry_budget_s),
                          remote)
    return Parts(client=client, remote=remote, creds=creds, writer=writer,
                 staging=StagingArea(cfg.staging_dir(), disk))


def check_mountpoint(cfg: Config) -> None:
    """The mount point exists, is a directory, is not mounted on (mountinfo decides, not stat:
    a dead mount fails every stat) and is empty unless ``-o nonempty``."""
    mnt = cfg.mountpoint
    entry = mounts.mounted_at(mnt)
    if entry is not None:
        if entry.is_synfs and mounts.liveness_within(mnt, 5.0) == "dead":
            raise ConfigError(f"{mnt} is a dead synfs mount (its daemon is gone); clean it up "
                              f"with: synfs unmount {mnt}", EXIT_BUSY)
        raise ConfigError(f"{mnt} is already a mount point ({entry.fstype} {entry.source}); "
                          f"unmount it first: synfs unmount {mnt}", EXIT_BUSY)
    try:
        os.stat(mnt)
    except OSError:
        raise ConfigError(f"mount point {mnt} does not exist", EXIT_MOUNTPOINT) from None
    if not mnt.is_dir():
        raise ConfigError(f"mount point {mnt} is not a directory", EXIT_MOUNTPOINT)
    if not cfg.allow_nonempty:
        try:
            with os.scandir(mnt) as it:
                first = next(it, None)
        except OSError as exc:
            raise ConfigError(f"cannot list mount point {mnt}: {exc.strerror}",
                              EXIT_MOUNTPOINT) from None
        if first is not None:
            raise ConfigError(f"mount point {mnt} is not empty ({first.name!r} ...): the mount "
                              "would hide its files; use an empty directory, or add -o nonempty",
                              EXIT_MOUNTPOINT)


def preflight(cfg: Config, client, tree=None) -> Entity:
    """Validate mount point, token and root entity; return the root entity."""
    check_mountpoint(cfg)
    if tree is not None:
        return sources.snapshot_preflight(cfg, client, tree)
    try:
        client.user_profile()
    except errors.AuthenticationFailed:
        raise ConfigError(f"Synapse rejected the token from {cfg.token_source} "
                          "(invalid or expired)", EXIT_AUTH) from None
    except errors.Unavailable as exc:
        raise ConfigError(f"cannot reach Synapse at {cfg.repo_endpoint}: {exc}",
                          EXIT_UNAVAILABLE) from None
    try:
        root = client.get_entity(cfg.root_id)
    except errors.NotFound:
        raise ConfigError(f"syn{cfg.root_id} does not exist (or is in the trash)",
                          EXIT_NOT_FOUND) from None
    except errors.PermissionDenied:
        raise ConfigError(f"no READ access to syn{cfg.root_id}", EXIT_NOT_FOUND) from None
    except errors.Unavailable as exc:
        raise ConfigError(f"cannot reach Synapse: {exc}", EXIT_UNAVAILABLE) from None
    if not root.kind.is_container:
        raise ConfigError(f"syn{cfg.root_id} ({root.name}) is a {root.kind.value}, not a "
                          "Project or Folder; mount its parent folder instead",
                          EXIT_NOT_CONTAINER)
    return root


def open_metastore(cfg: Config, user_id: str | None):
    """The user's persistent metadata store, or None (turned off, or the user is unknown)."""
    if cfg.metadata_entries <= 0 or not user_id:
        return None
    from synfs.fs.metastore import MetaStore

    store = MetaStore(cfg.metadata_store_path(user_id), cfg.metadata_entries)
    return store if store.enabled else None


def make_filesystem(cfg: Config, remote, root: Entity, writer=None,
                    staging=None, store=None, tree=None) -> Filesystem:
    return Filesystem(remote, root.id, Options(
        metadata_ttl=cfg.metadata_ttl, negative_ttl=cfg.negative_ttl, uid=cfg.uid, gid=cfg.gid,
        file_mode=cfg.file_mode, dir_mode=cfg.dir_mode), writer=writer, staging=staging,
        read_only=cfg.read_only, store=store, tree=tree)


def serve(cfg: Config, parts: Parts, root: Entity,
          on_ready: Callable[[], None] = lambda: None) -> int:
    store = None if parts.tree is not None else open_metastore(
        cfg, getattr(parts.client, "user_id", None))
    fs = make_filesystem(cfg, parts.remote, root, parts.writer, parts.staging, store, parts.tree)
    if parts.view_files:
        fs.tree.remember_files(parts.view_files)      # --view (sources.load_view)
    recover = start_recovery(parts, fs)
    ops = SynfsOperations(fs, entry_timeout=cfg.metadata_ttl, attr_timeout=cfg.metadata_ttl,
                          xattrs=cfg.xattrs)
    # Installed before the mount exists, ignored once unmounted (nothing left to stop) until
    # the process exits: no signal can skip pyfuse3.close().
    signals = lifecycle.Signals()
    signals.install()
    try:
        pyfuse3.init(ops, str(cfg.mountpoint), cfg.fuse_option_set())
    except RuntimeError as exc:
        raise ConfigError(f"FUSE mount of {cfg.mountpoint} failed: {exc} (is /dev/fuse "
                          "usable and fusermount3 installed?)", EXIT_FAILED) from None
    log.info("mounted syn%d (%s) on %s", root.id, root.name, cfg.mountpoint)
    try:
        trio.run(_main, cfg, on_ready, StatusPublisher(cfg, root, parts, fs), store, signals,
                 recover)
    finally:
        with signals.blocked():
            pyfuse3.close(unmount=True)
            signals.ignore_from_now()
        if store is not None:
            store.close()
        log.info("unmounted %s", cfg.mountpoint)
    return 0


def start_recovery(parts: Parts, fs: Filesystem):
    """What an earlier crash kept in this cache directory: found and counted now (before the
    mount serves), saved by a task once it runs (``synfs.write.recovery``)."""
    if parts.staging is None:
        return None
    from synfs.write.recovery import Saver, StartupRecovery

    user_id = getattr(parts.client, "user_id", None)
    parts.staging.owner = user_id
    w = parts.writer
    recover = StartupRecovery(parts.staging, fs.writes,
                              Saver(parts.client, w.writer, w.uploader), user_id)
    recover.scan()
    return recover


async def _main(cfg: Config, on_ready: Callable[[], None],
                status: StatusPublisher | None = None, store=None,
                signals: lifecycle.Signals | None = None, recover=None) -> None:
    signals = signals or lifecycle.Signals()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(signals.watch, status.refresh if status is not None else (lambda: None))
        if recover is not None:
            nursery.start_soon(recover.run)
        if status is not None:
            nursery.start_soon(status.run)
        if store is not None:
            nursery.start_soon(_flush_periodically, store)
        nursery.start_soon(_announce_ready, cfg, on_ready)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


async def _flush_periodically(store, every_s: float = 5.0) -> None:
    while True:
        await trio.sleep(every_s)
        store.flush()


async def _announce_ready(cfg: Config, on_ready: Callable[[], None]) -> None:
    """Report readiness only once the mount answers a stat through our own loop."""
    # abandon_on_cancel: if a signal ends the loop first, this stat can no longer be answered
    await trio.to_thread.run_sync(os.stat, cfg.mountpoint, abandon_on_cancel=True)
    # after FUSE INIT, which would undo it; sysfs writes and maybe a mount(8): a worker thread
    await trio.to_thread.run_sync(kernel.tune, cfg.mountpoint, abandon_on_cancel=True)
    on_ready()
    sdnotify.ready(f"mounted syn{cfg.root_id} on {cfg.mountpoint}")
