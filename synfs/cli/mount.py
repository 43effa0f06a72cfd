"""``synfs mount`` and ``synfs unmount``: arguments to ``Config``, foreground and background runs.

Without ``-f`` the command validates everything in the calling process (so errors come back
as one line and an exit code), then starts a detached daemon (``synfs mount -f`` with the
token handed over a pipe, never on a command line or in the environment) and returns once
that daemon reports that the mount answers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from synfs.cli import auth
from synfs.config import (EXIT_AUTH, EXIT_FAILED, EXIT_MOUNTPOINT, EXIT_OK, Config, ConfigError,
                          parse_mode, parse_size)
from synfs.synapse.models import parse_id

MOUNT_EPILOG = """examples:
  synfs mount syn12345 /mnt/synapse                 # token from ~/.synapseConfig or SYNAPSE_AUTH_TOKEN
  synfs mount syn12345 /mnt/synapse --token-file ~/.synapse-token --metadata-ttl 300
  synfs mount syn12345 /mnt/synapse -f --log-level INFO      # stay in the foreground
  synfs mount syn12345 /mnt/synapse --allow-other --uid 1000 --gid 1000
  synfs mount --snapshot tree.synfs /mnt/synapse    # read-only, no metadata call (synfs snapshot)
  synfs unmount /mnt/synapse                        # also a dead mount (daemon gone)

exit codes: 0 mounted, 1 mount failed, 2 usage, 3 token missing or rejected,
  4 id not found / not readable, 5 id is not a Project or Folder,
  6 mount point missing, not a directory, or not empty (add -o nonempty),
  7 mount point already mounted (or a dead mount: synfs unmount it), 8 Synapse unreachable,
  9 --snapshot file is not a synfs snapshot (or damaged, unfinished, newer format),
  10 --view does not cover the id, 12 --check-user: the snapshot was taken by another user
"""


def add_mount_parser(sub) -> None:
    p = sub.add_parser("mount", help="mount a Synapse Project or Folder",
                       epilog=MOUNT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("syn_id", help="the Project or Folder to mount, e.g. syn12345 (left out "
                   "with --snapshot)")
    p.add_argument("mountpoint", type=Path, nargs="?")
    p.add_argument("--snapshot", type=Path, metavar="FILE",
                   help="serve this snapshot (synfs snapshot): read-only, names and attributes "
                        "from the file, no metadata call")
    p.add_argument("--view", metavar="synVIEW",
                   help="a file view covering the tree: sizes for the whole tree from one query "
                        "(rows checked against listings) instead of one call per file")
    p.add_argument("--check-user", action="store_true",
                   help="with --snapshot: one GET /userProfile to refuse a snapshot another "
                        "user took (exit 12)")
    p.add_argument("-f", "--foreground", action="store_true", help="do not detach")
    auth.add_options(p)
    p.add_argument("--read-only", action="store_true",
                   help="never write, even in external-bucket STS folders")
    p.add_argument("--allow-other", action="store_true",
                   help="let other users use the mount (needs user_allow_other in /etc/fuse.conf)")
    p.add_argument("--uid", type=int, help="owner of all files (default: you)")
    p.add_argument("--gid", type=int, help="group of all files (default: your group)")
    p.add_argument("--file-mode", help="permission bits of files, octal (default 0644, "
                   "or 0444 with --read-only)")
    p.add_argument("--dir-mode", help="permission bits of directories, octal (default 0755, "
                   "or 0555 with --read-only)")
    p.add_argument("--metadata-ttl", type=float, default=60.0,
                   help="seconds to trust cached names and attributes (default 60)")
    p.add_argument("--retry-budget", type=float, default=30.0,
                   help="seconds to keep retrying Synapse/S3 before answering EIO (default 30)")
    p.add_argument("--max-memory", default="512M",
                   help="memory for all read buffers together, e.g. 512M, 2G (default 512M)")
    p.add_argument("--cache-dir", type=Path,
                   help="directory for the on-disk data cache and write staging (default: none)")
    p.add_argument("--cache-size", default="10G",
                   help="how much the cache directory may hold (default 10G)")
    p.add_argument("--xattrs", action="store_true",
                   help="show user.synapse.* extended attributes (id, version, md5, ...); off by "
                        "default: ls -l then costs the daemon 2 extra requests per file")
    p.add_argument("--metadata-cache-entries", type=int, default=500_000,
                   help="file records (size, MD5, handle) kept on disk so a remount lists "
                        "without a call per file; 0 turns it off (default 500000)")
    p.add_argument("-o", dest="fuse_options", action="append", default=[],
                   help="extra FUSE mount options, comma separated")
    p.add_argument("--log-level", default=argparse.SUPPRESS,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default WARNING")
    p.add_argument("--log-file", type=Path, default=argparse.SUPPRESS,
                   help="log here (default: stderr, or the journal under systemd; syslog when "
                        "detached)")
    p.add_argument("--debug-modules", default=argparse.SUPPRESS,
                   help="DEBUG logging for these loggers only, e.g. synfs.fs,synfs.s3")
    p.add_argument("--token-stdin", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)

    u = sub.add_parser("unmount", help="unmount a synfs mount",
                       epilog="examples:\n  synfs unmount /mnt/synapse\n"
                              "  synfs unmount --lazy /mnt/synapse   # detach even if busy\n"
                              "  synfs unmount --if-dead /mnt/synapse  # systemd ExecStopPost\n"
                              "\nexit codes: 0 unmounted (or nothing to do with --if-dead), "
                              "1 failed or busy, 6 not mounted\n",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    u.add_argument("mountpoint", type=Path)
    u.add_argument("--lazy", action="store_true", help="detach now, clean up when no longer busy")
    u.add_argument("--if-dead", action="store_true",
                   help="only clean up a dead mount (daemon gone); otherwise do nothing, exit 0")


def config_from_args(args, token: auth.FoundToken) -> Config:
    try:
        view_id = parse_id(args.view) if args.view else None
    except ValueError:
        raise ConfigError(f"--view {args.view!r} is not a Synapse id") from None
    snapshot = args.snapshot.expanduser().absolute() if args.snapshot else None
    if snapshot is not None and view_id is not None:
        raise ConfigError("--view and --snapshot exclude each other (a snapshot needs no view)")
    if args.mountpoint is None:
        if snapshot is None:
            raise ConfigError("usage: synfs mount SYN_ID MOUNTPOINT (or --snapshot FILE "
                              "MOUNTPOINT)")
        args.syn_id, args.mountpoint = None, Path(args.syn_id)
    if snapshot is not None:
        from synfs.snapshot.store import Snapshot, SnapshotError

        try:
            snap = Snapshot(snapshot)
        except SnapshotError as exc:
            raise ConfigError(str(exc), exc.exit_code) from None
        root_id = snap.root_id
        snap.close()
        if args.syn_id is not None and args.syn_id not in (f"syn{root_id}", str(root_id)):
            raise ConfigError(f"{snapshot} is a snapshot of syn{root_id}, not {args.syn_id}")
        args.read_only = True
    else:
        try:
            root_id = parse_id(args.syn_id)
        except ValueError:
            raise ConfigError(f"{args.syn_id!r} is not a Synapse id (expected e.g. "
                              "syn12345)") from None
    endpoints = auth.endpoints(args)
    return Config(
        root_id=root_id, mountpoint=args.mountpoint.expanduser().absolute(), token=token.token,
        token_source=token.source, repo_endpoint=endpoints["repoEndpoint"],
        file_endpoint=endpoints["fileHandleEndpoint"], auth_endpoint=endpoints["authEndpoint"],
        s3_endpoint=args.s3_endpoint, allow_other=args.allow_other,
        uid=os.getuid() if args.uid is None else args.uid,
        gid=os.getgid() if args.gid is None else args.gid,
        read_only=args.read_only,
        file_mode=parse_mode(args.file_mode or ("0444" if args.read_only else "0644"),
                             "--file-mode"),
        dir_mode=parse_mode(args.dir_mode or ("0555" if args.read_only else "0755"),
                            "--dir-mode"),
        metadata_ttl=args.metadata_ttl, retry_budget_s=args.retry_budget,
        max_memory=parse_size(args.max_memory, "--max-memory"),
        cache_dir=args.cache_dir.expanduser().absolute() if args.cache_dir else None,
        cache_size=parse_size(args.cache_size, "--cache-size"),
        metadata_entries=args.metadata_cache_entries, xattrs=args.xattrs,
        fuse_options=tuple(args.fuse_options), foreground=args.foreground,
        log_level=args.log_level, log_file=getattr(args, "log_file", None),
        debug_modules=tuple(getattr(args, "debug_modules", ()) or ()),
        snapshot=snapshot, check_user=args.check_user, view_id=view_id)


def setup_logging(cfg: Config, detached: bool) -> None:
    from synfs.service import logs

    logs.setup(cfg.log_level, cfg.log_file, getattr(cfg, "debug_modules", ()), detached)
    logs.register_secret(cfg.token)


def run_mount(args) -> int:
    from synfs.service import daemon, sources

    try:
        if args.token_stdin:
            token = auth.FoundToken(sys.stdin.readline().strip(), "the parent synfs process")
        else:
            token = auth.find_token(args.token_file, args.config, args.profile)
    except auth.TokenError as exc:
        return fail(str(exc), EXIT_AUTH)
    from synfs.service import logs

    logs.register_secret(token.token)
    ready_fd = args.ready_fd
    try:
        cfg = config_from_args(args, token)
        if not cfg.foreground:
            return start_detached(args, cfg)
        setup_logging(cfg, detached=ready_fd is not None)
        parts = daemon.build(cfg)
        logs.reapply_levels()       # build() imported clients that quiet HTTP loggers
        root = daemon.preflight(cfg, parts.client, parts.tree)
        sources.load_view(cfg, parts)

        def ready() -> None:
            if ready_fd is not None:
                os.write(ready_fd, b"READY\n")
                os.close(ready_fd)

        return daemon.serve(cfg, parts, root, on_ready=ready)
    except ConfigError as exc:
        if ready_fd is not None:
            os.write(ready_fd, f"ERROR {exc.exit_code} {exc}\n".encode())
        return fail(str(exc), exc.exit_code)


def start_detached(args, cfg: Config) -> int:
    """Validate here, then run ``synfs mount -f`` detached and wait for it to answer."""
    from synfs.service import daemon

    parts = daemon.build(cfg)
    daemon.preflight(cfg, parts.client, parts.tree)
    read_end, write_end = os.pipe()
    argv = _child_argv(args, cfg, write_end)
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)     # only this (main) process talks to systemd
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, pass_fds=(write_end,),
                            start_new_session=True, close_fds=True, env=env)
    os.close(write_end)
    proc.stdin.write((cfg.token + "\n").encode())
    proc.stdin.close()
    with os.fdopen(read_end, "rb") as pipe:
        line = pipe.readline().decode(errors="replace").strip()
    if line == "READY":
        from synfs.service import sdnotify

        sdnotify.notify(f"MAINPID={proc.pid}", "READY=1")
        return EXIT_OK
    if line.startswith("ERROR "):
        _, code, message = line.split(" ", 2)
        return fail(message, int(code))
    rc = proc.wait()
    return fail(f"the synfs daemon exited ({rc}) before the mount was ready; "
                "run with -f --log-level DEBUG to see why", EXIT_FAILED)


def _child_argv(args, cfg: Config, ready_fd: int) -> list[str]:
    argv = [sys.executable, "-m", "synfs", "--log-level", cfg.log_level, "mount",
            f"syn{cfg.root_id}", str(cfg.mountpoint), "-f", "--token-stdin",
            "--ready-fd", str(ready_fd),
            "--repo-endpoint", cfg.repo_endpoint, "--file-endpoint", cfg.file_endpoint,
            "--auth-endpoint", cfg.auth_endpoint,
            "--uid", str(cfg.uid), "--gid", str(cfg.gid),
            "--file-mode", oct(cfg.file_mode), "--dir-mode", oct(cfg.dir_mode),
            "--metadata-ttl", str(cfg.metadata_ttl), "--retry-budget", str(cfg.retry_budget_s),
            "--max-memory", str(cfg.max_memory), "--cache-size", str(cfg.cache_size),
            "--metadata-cache-entries", str(cfg.metadata_entries)]
    if cfg.cache_dir:
        argv += ["--cache-dir", str(cfg.cache_dir)]
    if cfg.view_id:
        argv += ["--view", f"syn{cfg.view_id}"]
    if cfg.snapshot:
        argv += ["--snapshot", str(cfg.snapshot)] + (["--check-user"] if cfg.check_user else [])
    if cfg.s3_endpoint:
        argv += ["--s3-endpoint", cfg.s3_endpoint]
    if cfg.allow_other:
        argv.append("--allow-other")
    if cfg.read_only:
        argv.append("--read-only")
    if cfg.xattrs:
        argv.append("--xattrs")
    for opt in cfg.fuse_options:
        argv += ["-o", opt]
    if cfg.log_file:
        argv += ["--log-file", str(cfg.log_file.absolute())]
    if getattr(cfg, "debug_modules", ()):
        argv += ["--debug-modules", ",".join(cfg.debug_modules)]
    return argv


def run_unmount(args) -> int:
    """Unmount what /proc/self/mountinfo lists as a synfs mount at MOUNTPOINT, whatever a
    ``stat`` of it says (a dead mount, or one whose token was revoked, fails every stat)."""
    from synfs.service import mounts

    mnt = args.mountpoint.expanduser().absolute()
    entry = mounts.mounted_at(mnt)
    if getattr(args, "if_dead", False):
        if entry is None or not entry.is_synfs:
            return EXIT_OK            # nothing mounted there, or not ours to judge
        if mounts.liveness_within(entry.mountpoint, 5.0) != "dead":
            return EXIT_OK            # alive (or hung, or someone else's): leave it
        args.lazy = True
    if entry is None:
        if not os.path.lexists(mnt):
            return fail(f"{mnt} does not exist", EXIT_MOUNTPOINT)
        return fail(f"{mnt} is not mounted", EXIT_MOUNTPOINT)
    if not entry.is_synfs:
        return fail(f"{mnt} is not a synfs mount (it is {entry.fstype} {entry.source}); "
                    "use umount or fusermount3 -u", EXIT_MOUNTPOINT)
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        return fail("fusermount3 not found (apt-get install fuse3)", EXIT_FAILED)
    target = entry.mountpoint
    res = _fusermount(tool, target, args.lazy)
    if res.returncode != 0 and not args.lazy and mounts.mounted_at(target) is not None \
            and mounts.liveness_within(target, 5.0) == "dead":
        res = _fusermount(tool, target, lazy=True)     # a dead mount: nothing left to wait for
    if res.returncode != 0:
        msg = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "unmount failed"
        return fail(f"{msg}" + ("" if args.lazy else " (busy? try --lazy)"), EXIT_FAILED)
    return EXIT_OK


def _fusermount(tool: str, target: str, lazy: bool) -> subprocess.CompletedProcess:
    cmd = [tool, "-u"] + (["-z"] if lazy else []) + ["--", target]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def fail(message: str, code: int) -> int:
    print(f"synfs: {message}", file=sys.stderr)
    return code
