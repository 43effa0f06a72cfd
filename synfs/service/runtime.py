"""The daemon's status file: where it lives, what it holds, and the trio task that refreshes it.

Owns the runtime directory and the status JSON that ``synfs status`` reads. The directory is
private (0700, owned by the daemon's user, not a symlink): ``$SYNFS_RUNTIME_DIR`` if set; else
``/run/synfs`` for root; else ``$XDG_RUNTIME_DIR/synfs``; else ``/tmp/synfs-<uid>``. Each mount
writes ``mount-<hash of the mount point>.json`` (0600, replaced atomically) every few seconds,
and at once when asked (``refresh()``, which the daemon calls on SIGUSR1: ``synfs status``
sends it and waits for the new report), and removes it when it stops.

The JSON is assembled from components' ``status() -> dict`` methods, duck-typed so that a
component without one simply leaves its part out: ``CredentialStore.status()`` (expiry per
storage location), ``synfs.errors.status()`` (errno counts), the Synapse client's request
counts and, when the filesystem core has it, ``Filesystem.status()`` (cache use, uploads).
No secret is ever part of it. A failing component is reported as unavailable; publishing never
takes the mount down.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from pathlib import Path

from synfs import __version__, errors

log = logging.getLogger(__name__)

STATUS_VERSION = 1
INTERVAL_S = 2.0


class RuntimeDirError(OSError):
    pass


def default_runtime_dir(uid: int | None = None) -> Path:
    """Where this process (or user ``uid``) keeps status files."""
    env = os.environ.get("SYNFS_RUNTIME_DIR")
    if env and uid is None:
        return Path(env)
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return Path("/run/synfs")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and uid == os.geteuid() and Path(xdg).is_dir():
        return Path(xdg) / "synfs"
    if Path(f"/run/user/{uid}").is_dir():
        return Path(f"/run/user/{uid}/synfs")
    return Path(tempfile.gettempdir()) / f"synfs-{uid}"


def candidate_dirs(uid: int | None = None) -> list[Path]:
    """Every directory a status file for a mount owned by ``uid`` may be in (for readers)."""
    me = os.geteuid()
    out: list[Path] = []
    env = os.environ.get("SYNFS_RUNTIME_DIR")
    if env:
        out.append(Path(env))
    for who in dict.fromkeys([uid if uid is not None else me, me]):
        out.append(default_runtime_dir(who))
        if who != 0:
            out.append(Path(f"/run/user/{who}/synfs"))
            out.append(Path(tempfile.gettempdir()) / f"synfs-{who}")
    out.append(Path("/run/synfs"))
    return list(dict.fromkeys(out))


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` 0700 if missing; refuse one that others could tamper with."""
    try:
        path.mkdir(mode=0o700, parents=False, exist_ok=True)
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeDirError(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        raise RuntimeDirError(f"{path} belongs to uid {st.st_uid}, not to us")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def status_name(mountpoint: Path | str) -> str:
    digest = hashlib.sha256(os.fsencode(str(mountpoint))).hexdigest()[:16]
    return f"mount-{digest}.json"


def find_status_file(mountpoint: Path | str, uid: int | None = None) -> tuple[Path | None, str]:
    """(path, "") of the status file for ``mountpoint``, or (None, why not)."""
    name = status_name(mountpoint)
    denied = ""
    for directory in candidate_dirs(uid):
        path = directory / name
        try:
            if path.is_file():
                return path, ""
        except PermissionError:
            denied = f"{directory} is readable only by its owner"
            continue
        if not denied and directory.exists() and not os.access(directory, os.R_OK | os.X_OK):
            denied = f"{directory} is readable only by its owner"
    return None, denied or "no status file (the daemon may be starting, or is an older synfs)"


def _safe(what: str, fn, warned: set):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - status must never take the mount down
        if what not in warned:
            warned.add(what)
            log.warning("status of %s unavailable: %s", what, type(exc).__name__)
        return {"unavailable": type(exc).__name__}


class StatusPublisher:
    """Writes the mount's status file every ``interval`` seconds (a task in the daemon's
    nursery; ``run`` removes the file when cancelled)."""

    def __init__(self, cfg, root, parts, fs, *, interval: float = INTERVAL_S,
                 directory: Path | None = None):
        self.cfg = cfg
        self.root = root
        self.parts = parts
        self.fs = fs
        self.interval = interval
        self.directory = directory
        self.started = time.time()
        self.path: Path | None = None
        self._warned: set[str] = set()
        self._wake = None          # a trio.Event while run() waits between reports

    def snapshot(self) -> dict:
        cfg, root = self.cfg, self.root
        out: dict = {
            "version": STATUS_VERSION, "synfs": __version__, "pid": os.getpid(),
            "uid": os.geteuid(), "mountpoint": str(cfg.mountpoint),
            "root": {"id": f"syn{root.id}", "name": root.name, "kind": root.kind.value},
            "endpoint": cfg.repo_endpoint,
            "options": {
                "read_only": getattr(cfg, "read_only", True), "allow_other": cfg.allow_other,
                "uid": cfg.uid, "gid": cfg.gid, "metadata_ttl": cfg.metadata_ttl,
                "max_memory": getattr(cfg, "max_memory", None),
                "cache_dir": str(cfg.cache_dir) if getattr(cfg, "cache_dir", None) else None,
                "cache_size": getattr(cfg, "cache_size", None)},
            "started": self.started, "updated": time.time(), "interval_s": self.interval,
            "refresh_signal": "SIGUSR1",        # synfs status may ask for a fresh report
            "errors": _safe("errors", errors.status, self._warned),
        }
        tree = getattr(self.parts, "tree", None)
        if callable(getattr(tree, "status", None)):
            out["snapshot"] = _safe("snapshot", tree.status, self._warned)
        creds = getattr(self.parts, "creds", None)
        if callable(getattr(creds, "status", None)):
            out["credentials"] = _safe("credentials", creds.status, self._warned)
        stats = getattr(getattr(self.parts, "client", None), "stats", None)
        if callable(getattr(stats, "snapshot", None)):
            calls = _safe("requests", stats.snapshot, self._warned)
            out["requests"] = {"synapse": sum(v for v in calls.values() if isinstance(v, int)),
                               "by_call": calls}
        client = getattr(self.parts, "client", None)
        if client is not None and hasattr(client, "rejected_since"):
            since = client.rejected_since
            out["auth"] = ({"state": "unauthorized", "since": since} if since is not None
                            else {"state": "accepted"})
        limiter = getattr(client, "limiter", None)
        if callable(getattr(limiter, "status", None)):
            out["rate_limit"] = _safe("rate_limit", limiter.status, self._warned)
        if callable(getattr(self.fs, "status", None)):
            extra = _safe("filesystem", self.fs.status, self._warned)
            for key, value in (extra.items() if isinstance(extra, dict) else ()):
                if key in out:     # never let the core overwrite the daemon's own fields
                    out.setdefault("fs", {})[key] = value
                else:
                    out[key] = value
        return out

    def publish(self) -> None:
        if self.path is None:
            directory = ensure_private_dir(self.directory or default_runtime_dir())
            self.path = directory / status_name(self.cfg.mountpoint)
        data = json.dumps(self.snapshot(), default=str, indent=1).encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove status file %s: %s", self.path, exc.strerror)

    def refresh(self) -> None:
        """Publish now rather than at the next interval (trio thread)."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        import trio

        try:
            while True:
                self._wake = trio.Event()
                try:
                    self.publish()
                except OSError as exc:
                    if "publish" not in self._warned:
                        self._warned.add("publish")
                        log.warning("cannot publish status (synfs status will not see this "
                                    "mount's details): %s", exc)
                with trio.move_on_after(self.interval):
                    await self._wake.wait()
        finally:
            self.remove()
