"""The mount helper behind ``/etc/fstab``: ``mount -t fuse.synfs SOURCE DIR -o OPTIONS``.

Owns the translation of fstab options into a ``synfs mount`` command line. Two ways in:

- util-linux ``mount`` runs ``/sbin/mount.fuse.synfs SOURCE DIR [-sfnv] [-N NS] -o OPTIONS``
  (``synfs install-units`` links that name to the ``mount.fuse.synfs`` console script);
- without that helper, ``mount`` falls back to fuse3's ``mount.fuse``, which runs
  ``synfs SOURCE DIR -o OPTIONS`` (``synfs`` found on root's PATH); ``synfs.cli.main`` hands such
  a call here. ``mount.fuse`` also consumes ``setuid=USER`` and ``drop_privileges``.

Translation: ``key=value`` becomes ``--key value`` for every ``synfs mount`` option
(``token_file=/etc/synfs/token`` -> ``--token-file /etc/synfs/token``; dashes or underscores),
a bare flag such as ``allow_other`` becomes ``--allow-other``; kernel/FUSE flags (``nosuid``,
``nodev``, ``noexec``, ``noatime``, ``auto_unmount``, ...) pass through as ``-o``; options
that belong to ``mount`` or systemd (``_netdev``, ``nofail``, ``noauto``, ``user``,
``x-systemd.*``, ``comment=``...) and atime variants are dropped; ``ro`` becomes
``--read-only`` and ``rw`` (which mount(8) adds when neither is given) is synfs's default. Anything else is an
error (one line, exit 2) unless ``mount -s`` (sloppy) was given. The mount then runs in the
background and the helper returns once it answers, as ``mount`` expects.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from typing import Callable

from synfs import __version__
from synfs.cli.parser import build_parser

EXIT_USAGE = 2

# Kernel / libfuse options accepted by pyfuse3.init, passed through with -o.
FUSE_FLAGS = {"nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime", "sync",
              "async", "dirsync", "auto_unmount", "default_permissions",
              "nonempty"}      # checked by synfs mount itself (libfuse 3 dropped it)
FUSE_VALUED = {"max_read"}
# Options for mount(8), systemd or fstab bookkeeping, and atime variants FUSE does not take.
DROPPED = {"_netdev", "nofail", "noauto", "auto", "user", "users", "nouser", "owner", "group",
           "defaults", "relatime", "norelatime", "strictatime", "nostrictatime", "lazytime",
           "nolazytime", "diratime", "nodiratime", "silent", "loud"}
DROPPED_PREFIXES = ("x-", "comment=", "_", "helper=")
# synfs mount options that make no sense from fstab.
REFUSED = {"foreground", "token_stdin", "ready_fd", "fuse_options", "syn_id", "mountpoint",
           "help"}

HELPER_EPILOG = """examples (as root):
  mount -t fuse.synfs -o allow_other,token_file=/etc/synfs/token syn12345 /mnt/synapse
  # /etc/fstab:
  syn12345 /mnt/synapse fuse.synfs _netdev,allow_other,ro,token_file=/etc/synfs/token 0 0
  mount /mnt/synapse && umount /mnt/synapse

exit codes: those of synfs mount (0 mounted, 2 usage or unknown option, 3 token, ...)
"""


class HelperError(ValueError):
    pass


def _mount_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """``dest -> action`` of every ``synfs mount`` option, from the real parser."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    mount = sub.choices["mount"]
    return {a.dest: a for a in mount._actions if a.option_strings}


def split_options(text: str) -> list[str]:
    return [o.strip() for o in text.split(",") if o.strip()]


def translate(source: str, mountpoint: str, options: list[str], *,
              sloppy: bool = False, parser: argparse.ArgumentParser | None = None) -> list[str]:
    """fstab options -> ``synfs mount`` arguments (without the program name)."""
    actions = _mount_actions(parser if parser is not None else build_parser())
    args: list[str] = []
    fuse: list[str] = []
    mode = None
    for opt in options:
        key, eq, value = opt.partition("=")
        dest = key.replace("-", "_")
        if opt in ("ro", "rw"):
            mode = opt                      # the last one wins, as with mount(8)
            continue
        if opt in DROPPED or key in DROPPED or opt.startswith(DROPPED_PREFIXES):
            continue
        if (not eq and opt in FUSE_FLAGS) or (eq and key in FUSE_VALUED):
            fuse.append(opt)
            continue
        action = actions.get(dest)
        if action is None or dest in REFUSED:
            if sloppy:
                continue
            raise HelperError(f"unknown mount option {opt!r} (see synfs mount --help; "
                              "mount -s ignores unknown options)")
        flag = action.option_strings[-1]
        takes_value = action.nargs != 0
        if takes_value and not eq:
            raise HelperError(f"mount option {key!r} needs a value ({key}=...)")
        if not takes_value and eq:
            raise HelperError(f"mount option {key!r} takes no value")
        args += [flag, value] if takes_value else [flag]
    wanted = {"ro": "read_only", "rw": "read_write"}.get(mode or "")
    if wanted in actions and actions[wanted].nargs == 0:
        args.append(actions[wanted].option_strings[-1])
    if fuse:
        args += ["-o", ",".join(fuse)]
    return ["mount", source, mountpoint, *args]


def parse_helper_argv(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mount.fuse.synfs", add_help=True,
                                description="fstab mount helper for synfs (called by mount(8))",
                                epilog=HELPER_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="the Synapse Project or Folder, e.g. syn12345")
    p.add_argument("mountpoint")
    p.add_argument("-o", dest="options", action="append", default=[],
                   help="comma-separated mount options")
    p.add_argument("-s", dest="sloppy", action="store_true", help="ignore unknown options")
    p.add_argument("-f", dest="fake", action="store_true", help="print, do not mount")
    p.add_argument("-n", dest="no_mtab", action="store_true", help="ignored (no mtab)")
    p.add_argument("-v", dest="verbose", action="store_true", help="print the synfs command")
    p.add_argument("-r", dest="read_only", action="store_true", help="read-only (the default)")
    p.add_argument("-t", dest="type", help="ignored (fuse.synfs)")
    p.add_argument("-N", dest="namespace", help="not supported")
    p.add_argument("-V", "--version", action="version", version=f"synfs {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None, run: Callable[[list[str]], int],
         parser: argparse.ArgumentParser | None = None) -> int:
    """Translate a helper call and hand the ``synfs mount`` arguments to ``run``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = parse_helper_argv(argv)
    source = ns.source.split("#", 1)[-1]          # legacy "synfs#syn123" sources
    if ns.namespace:
        print("synfs: mount -N (namespaces) is not supported", file=sys.stderr)
        return EXIT_USAGE
    options = [o for chunk in ns.options for o in split_options(chunk)]
    if ns.read_only:
        options.append("ro")
    try:
        synfs_argv = translate(source, ns.mountpoint, options, sloppy=ns.sloppy, parser=parser)
    except HelperError as exc:
        print(f"synfs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if ns.verbose or ns.fake:
        print("synfs " + shlex.join(synfs_argv), file=sys.stderr)
    if ns.fake:
        return 0
    return run(synfs_argv)


_SOURCE = re.compile(r"^(synfs#)?syn\d+$", re.IGNORECASE)


def looks_like_helper_call(argv: list[str]) -> bool:
    """``synfs SOURCE DIR -o ...`` as fuse3's mount.fuse runs it (SOURCE is ``synNNN``)."""
    return (len(argv) >= 2 and bool(_SOURCE.match(argv[0]))
            and not argv[1].startswith("-"))
