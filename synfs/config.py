"""The mount's configuration: a frozen dataclass, parsed and validated without I/O to Synapse.

Exit codes used by the CLI live here too, so that every command documents the same values.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

PRODUCTION = {
    "repoEndpoint": "https://repo-prod.prod.sagebase.org/repo/v1",
    "fileHandleEndpoint": "https://file-prod.prod.sagebase.org/file/v1",
    "authEndpoint": "https://auth-prod.prod.sagebase.org/auth/v1",
}

# Exit codes (documented in docs/configuration.md).
EXIT_OK = 0
EXIT_FAILED = 1          # the mount failed for another reason (see the message / log)
EXIT_USAGE = 2           # bad command line
EXIT_AUTH = 3            # no token, or Synapse rejected it
EXIT_NOT_FOUND = 4       # the Synapse id does not exist, is in the trash, or is not readable
EXIT_NOT_CONTAINER = 5   # the id is a File (or another non-folder entity)
EXIT_MOUNTPOINT = 6      # mount point missing or not a directory
EXIT_BUSY = 7            # mount point already a mount
EXIT_UNAVAILABLE = 8     # Synapse could not be reached
EXIT_BAD_SNAPSHOT = 9    # not a synfs snapshot, corrupt, unfinished, or of a newer format
EXIT_VIEW_SCOPE = 10     # the file view does not cover the snapshot's root (or is no view)
EXIT_BAD_WHERE = 11      # --where is not a valid SQL condition over the view's columns
EXIT_OTHER_USER = 12     # the snapshot was taken by another Synapse user than the token's


class ConfigError(ValueError):
    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str, what: str) -> int:
    """``512M`` / ``10G`` / ``1048576`` -> bytes (binary units; a trailing ``B``/``iB`` is ok)."""
    raw = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    unit = raw[-1:] if raw[-1:] in _UNITS and raw[-1:] != "" else ""
    number = raw[: len(raw) - len(unit)] if unit else raw
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"{what} must be a size such as 512M or 10G, not {text!r}") from None
    if value < 0:
        raise ConfigError(f"{what} must not be negative")
    return int(value * _UNITS[unit])


def parse_mode(text: str, what: str) -> int:
    try:
        value = int(text, 8)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be an octal mode such as 0444, not {text!r}") from None
    if not 0 <= value <= 0o7777:
        raise ConfigError(f"{what} {text!r} is out of range")
    return value


@dataclasses.dataclass(frozen=True)
class Config:
    root_id: int
    mountpoint: Path
    token: str = dataclasses.field(repr=False)
    token_source: str = ""
    repo_endpoint: str = PRODUCTION["repoEndpoint"]
    file_endpoint: str = PRODUCTION["fileHandleEndpoint"]
    auth_endpoint: str = PRODUCTION["authEndpoint"]
    s3_endpoint: str | None = None        # None: AWS S3 (production)
    read_only: bool = False
    allow_other: bool = False
    uid: int = dataclasses.field(default_factory=os.getuid)
    gid: int = dataclasses.field(default_factory=os.getgid)
    file_mode: int = 0o444
    dir_mode: int = 0o555
    metadata_ttl: float = 60.0
    negative_ttl: float = 5.0
    retry_budget_s: float = 30.0
    max_memory: int = 512 * 1024 * 1024    # all read buffers (prefetch windows) together
    cache_dir: Path | None = None          # on-disk data cache and write staging area
    cache_size: int = 10 * 1024**3         # bytes the cache directory may use
    xattrs: bool = False                   # user.synapse.* extended attributes
    metadata_entries: int = 500_000        # file records kept on disk across remounts (0: none)
    fuse_options: tuple[str, ...] = ()
    foreground: bool = False
    log_level: str = "WARNING"
    log_file: Path | None = None
    debug_modules: tuple[str, ...] = ()    # loggers at DEBUG whatever log_level says
    snapshot: Path | None = None           # --snapshot: serve this snapshot file, read-only
    check_user: bool = False               # --check-user: refuse another user's snapshot
    view_id: int | None = None             # --view: file sizes of a live mount from this view

    def __post_init__(self):
        if self.metadata_ttl < 0:
            raise ConfigError("--metadata-ttl must be >= 0 seconds")
        if self.retry_budget_s <= 0:
            raise ConfigError("--retry-budget must be > 0 seconds")
        if self.max_memory < 16 * 1024 * 1024:
            raise ConfigError("--max-memory must be at least 16M")
        if self.cache_size < 0:
            raise ConfigError("--cache-size must be >= 0")
        if self.metadata_entries < 0:
            raise ConfigError("--metadata-cache-entries must be >= 0")

    def _cache_root(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        return Path(cache) / "synfs"

    def staging_dir(self) -> Path:
        return self._cache_root() / "staging"

    def metadata_store_path(self, user_id: str) -> Path:
        """One metadata store per Synapse user: what a user may see differs by user."""
        return self._cache_root() / "metadata" / f"user-{user_id}.sqlite"

    @property
    def allow_nonempty(self) -> bool:
        """``-o nonempty``: mount over a directory that holds files (they stay hidden until
        unmounted). libfuse 3 dropped the option, so synfs checks it and does not pass it on."""
        return "nonempty" in self._fuse_option_list()

    def _fuse_option_list(self) -> list[str]:
        return [o.strip() for item in self.fuse_options for o in item.split(",") if o.strip()]

    def fuse_option_set(self) -> set[str]:
        # fsname is the mount's source in /proc/mounts, df and findmnt: the Synapse id, so that
        # an fstab line "syn123 /mnt fuse.synfs ..." matches its mount (mount -a, umount).
        opts = {"subtype=synfs", "default_permissions", "noatime"}
        if self.read_only:
            opts.add("ro")
        if not any(o.strip().startswith("fsname=") for item in self.fuse_options
                   for o in item.split(",")):
            opts.add(f"fsname=syn{self.root_id}")
        if self.allow_other:
            opts.add("allow_other")
        for item in self.fuse_options:
            for opt in item.split(","):
                opt = opt.strip()
                if opt in ("ro", "rw"):
                    raise ConfigError(f"-o {opt}: use --read-only (or leave it out) instead")
                if opt and opt != "nonempty":
                    opts.add(opt)
        return opts
