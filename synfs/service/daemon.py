"""Composition root and lifecycle of a mount.

``build`` wires the Synapse client, credential store, S3 and URL readers, the async
``Remote`` and the filesystem core. ``preflight`` checks everything a user can get wrong
(mount point, token, the Synapse id) and maps each failure to one clear message and a
distinct exit code. ``serve`` mounts and runs the trio loop until unmounted or signalled
(SIGTERM/SIGINT/SIGHUP call ``pyfuse3.terminate()``), then closes FUSE cleanly in ``finally``.
While mounted it refreshes the status file ``synfs status`` reads (``synfs.service.runtime``) and,
once the mount answers, tells systemd ``READY=1`` (``synfs.service.sdnotify``; a no-op elsewhere).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from typing import Callable

import pyfuse3
import trio

from synfs import errors
from synfs.service import sdnotify
from synfs.config import (EXIT_AUTH, EXIT_BUSY, EXIT_FAILED, EXIT_MOUNTPOINT, EXIT_NOT_CONTAINER,
                          EXIT_NOT_FOUND, EXIT_UNAVAILABLE, Config, ConfigError)
from synfs.fs.core import Filesystem, Options
from synfs.fs.fuse_ops import SynfsOperations
from synfs.read.datacache import DataCache, private_dir
from synfs.diskbudget import DiskBudget
from synfs.read.downloads import Downloads
from synfs.read.membudget import MemoryBudget
from synfs.read.prefetch import tune_kernel_readahead
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
    mnt = cfg.mountpoint
    if os.path.ismount(mnt):
        raise ConfigError(f"{mnt} is already a mount point (unmount it first: "
                          f"synfs unmount {mnt})", EXIT_BUSY)
    try:
        os.stat(mnt)
    except OSError as exc:
        if exc.errno == 107:  # ENOTCONN: a dead FUSE mount left behind
            raise ConfigError(f"{mnt} is a dead mount (transport endpoint is not connected); "
                              f"recover with: synfs unmount --lazy {mnt}", EXIT_BUSY) from None
        raise ConfigError(f"mount point {mnt} does not exist", EXIT_MOUNTPOINT) from None
    if not mnt.is_dir():
        raise ConfigError(f"mount point {mnt} is not a directory", EXIT_MOUNTPOINT)


def preflight(cfg: Config, client) -> Entity:
    """Validate mount point, token and root entity; return the root entity."""
    check_mountpoint(cfg)
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
                    staging=None, store=None) -> Filesystem:
    return Filesystem(remote, root.id, Options(
        metadata_ttl=cfg.metadata_ttl, negative_ttl=cfg.negative_ttl, uid=cfg.uid, gid=cfg.gid,
        file_mode=cfg.file_mode, dir_mode=cfg.dir_mode), writer=writer, staging=staging,
        read_only=cfg.read_only, store=store)


def serve(cfg: Config, parts: Parts, root: Entity,
          on_ready: Callable[[], None] = lambda: None) -> int:
    store = open_metastore(cfg, getattr(parts.client, "user_id", None))
    fs = make_filesystem(cfg, parts.remote, root, parts.writer, parts.staging, store)
    ops = SynfsOperations(fs, entry_timeout=cfg.metadata_ttl, attr_timeout=cfg.metadata_ttl,
                          xattrs=cfg.xattrs)
    try:
        pyfuse3.init(ops, str(cfg.mountpoint), cfg.fuse_option_set())
    except RuntimeError as exc:
        raise ConfigError(f"FUSE mount of {cfg.mountpoint} failed: {exc} (is /dev/fuse "
                          "usable and fusermount3 installed?)", EXIT_FAILED) from None
    log.info("mounted syn%d (%s) on %s", root.id, root.name, cfg.mountpoint)
    try:
        trio.run(_main, cfg, on_ready, StatusPublisher(cfg, root, parts, fs), store)
    finally:
        pyfuse3.close(unmount=True)
        if store is not None:
            store.close()
        log.info("unmounted %s", cfg.mountpoint)
    return 0


async def _main(cfg: Config, on_ready: Callable[[], None],
                status: StatusPublisher | None = None, store=None) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals)
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


async def _watch_signals() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("signal %d: unmounting", signum)
            sdnotify.stopping("unmounting")
            pyfuse3.terminate()
            return


async def _announce_ready(cfg: Config, on_ready: Callable[[], None]) -> None:
    """Report readiness only once the mount answers a stat through our own loop."""
    await trio.to_thread.run_sync(os.stat, cfg.mountpoint)
    tune_kernel_readahead(cfg.mountpoint)       # after FUSE INIT, which would undo it
    on_ready()
    sdnotify.ready(f"mounted syn{cfg.root_id} on {cfg.mountpoint}")
