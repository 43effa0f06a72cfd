"""Where a mount's metadata comes from, besides Synapse one call at a time.

Owns the two bulk sources the composition root wires in: a snapshot file (``--snapshot``:
the ``SnapTree`` the core uses instead of a live tree, its checks before mounting) and a
file view (``--view``: every file's attributes from one query, handed to the live tree).
Each failure a user can cause becomes a ``ConfigError`` with its own exit code.
"""

from __future__ import annotations

import logging

from synfs import errors
from synfs.config import EXIT_AUTH, EXIT_OTHER_USER, EXIT_UNAVAILABLE, Config, ConfigError
from synfs.synapse.models import Entity

log = logging.getLogger(__name__)


def open_snapshot_tree(cfg: Config):
    from synfs.fs.snaptree import SnapTree
    from synfs.snapshot.store import Snapshot, SnapshotError

    try:
        return SnapTree(Snapshot(cfg.snapshot))
    except SnapshotError as exc:
        raise ConfigError(str(exc), exc.exit_code) from None


def snapshot_preflight(cfg: Config, client, tree) -> Entity:
    """A snapshot mount makes no call here, unless ``--check-user`` (one ``GET
    /userProfile``) asks to refuse a snapshot another Synapse user took."""
    if cfg.check_user:
        try:
            client.user_profile()
        except errors.AuthenticationFailed:
            raise ConfigError(f"Synapse rejected the token from {cfg.token_source} "
                              "(invalid or expired)", EXIT_AUTH) from None
        except errors.Unavailable as exc:
            raise ConfigError(f"cannot reach Synapse: {exc}", EXIT_UNAVAILABLE) from None
        owner = tree.snap.meta.get("user_id")
        if owner and client.user_id and owner != client.user_id:
            raise ConfigError(f"{cfg.snapshot} was taken by Synapse user {owner}, not by this "
                              f"token's user {client.user_id}", EXIT_OTHER_USER)
    return tree.snap.root.entity()


def load_view(cfg: Config, parts) -> None:
    """``--view``: every file's attributes from one query of the view (before mounting),
    into ``parts.view_files``. A view that does not cover the root is a ConfigError; any other
    failure is logged and the mount goes on without the view."""
    if cfg.view_id is None:
        return
    from synfs.snapshot.store import SnapshotError
    from synfs.snapshot.views import view_entities
    from synfs.synapse.tables import Tables

    try:
        parts.view_files = view_entities(Tables(parts.client), cfg.view_id, cfg.root_id)
    except SnapshotError as exc:
        raise ConfigError(str(exc), exc.exit_code) from None
    except errors.SynfsError as exc:
        log.warning("view syn%d unusable (%s): sizes will be fetched file by file",
                    cfg.view_id, exc)
        return
    log.info("view syn%d: attributes of %d files", cfg.view_id, len(parts.view_files))
