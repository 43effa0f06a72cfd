"""The ``synfs`` argument parser: global options, the ``emulator`` and ``demo`` commands, and
each other command's subparser (added by its own module). Used by ``synfs.cli.main`` and, to
know every ``synfs mount`` option, by the fstab helper."""

from __future__ import annotations

import argparse
from pathlib import Path

from synfs import __version__

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 1

EPILOG_EMULATOR = """examples:
  synfs emulator serve --data-dir /tmp/syn            # Synapse emulator + local S3 on 127.0.0.1
  synfs emulator serve --data-dir /tmp/syn --throttling
  synfs emulator add-user --data-dir /tmp/syn alice   # prints a new access token for alice

exit codes: 0 ok (serve: stopped cleanly), 1 failed (one line on stderr), 2 usage
"""

EPILOG_MAIN = """examples:
  synfs mount syn12345 /mnt/synapse          # see: synfs mount --help
  synfs status                               # what is mounted, credentials, errors
  synfs sts-token syn12345 read_only         # S3 credentials for other tools
  synfs --debug-modules synfs.fs,synfs.s3 mount -f syn12345 /mnt/synapse

exit codes: 0 ok, 1 failed, 2 usage, 3 token missing or rejected, 4 id not found or not
  readable, 5 id is not a Project or Folder, 6 mount point missing / not a (synfs) mount,
  7 mount point busy, 8 Synapse unreachable (each command's --help lists its own)
"""

EPILOG_DEMO = """examples:
  synfs demo                       # fresh temporary data dir, seed a sample project
  synfs demo --data-dir ~/syn-demo --no-mount

exit codes: 0 ok (stopped with Ctrl-C), 1 failed (one line on stderr), 2 usage
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synfs", description=(
        "Mount Synapse folder trees as a POSIX filesystem, with file bytes read straight "
        "from S3 using Synapse STS credentials."), epilog=EPILOG_MAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-V", "--version", action="version", version=f"synfs {__version__}")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default WARNING")
    parser.add_argument("--log-file", type=Path, help="log here instead of stderr")
    parser.add_argument("--debug-modules", default="",
                        help="DEBUG logging for these loggers only, e.g. synfs.fs,synfs.s3")
    sub = parser.add_subparsers(dest="command", required=True)

    emu = sub.add_parser("emulator", help="run or administer the local Synapse emulator",
                         epilog=EPILOG_EMULATOR,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    emu_sub = emu.add_subparsers(dest="emu_command", required=True)
    serve = emu_sub.add_parser("serve", help="serve the emulator and a local S3 server",
                               epilog=EPILOG_EMULATOR,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--data-dir", type=Path, required=True,
                       help="state directory (SQLite, S3 data); reused across restarts")
    serve.add_argument("--port", type=int, default=0, help="REST port on 127.0.0.1 (0: any free)")
    serve.add_argument("--throttling", action="store_true",
                       help="limit each user to 3 concurrent and 600 requests/minute, like Synapse")
    add = emu_sub.add_parser("add-user", help="create a user and print a new access token",
                             epilog=EPILOG_EMULATOR,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    add.add_argument("--data-dir", type=Path, required=True)
    add.add_argument("user_name")
    add.add_argument("--email")
    add.add_argument("--uncertified", action="store_true", help="user is not certified")
    add.add_argument("--admin", action="store_true", help="emulator admin (fault injection)")

    from synfs.cli.mount import add_mount_parser

    add_mount_parser(sub)

    from synfs.cli.install import add_install_parser
    from synfs.cli.register import add_register_parser
    from synfs.cli.status import add_status_parser
    from synfs.cli.ststoken import add_sts_parser

    add_status_parser(sub)
    add_sts_parser(sub)
    add_install_parser(sub)
    add_register_parser(sub)

    from synfs.cli.recover import add_recover_parser

    add_recover_parser(sub)

    from synfs.cli.snapshot import add_snapshot_parser

    add_snapshot_parser(sub)

    demo = sub.add_parser("demo", help="start emulator + S3, seed a sample project (and mount it)",
                          epilog=EPILOG_DEMO, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--data-dir", type=Path, help="state directory (default: a fresh temp dir)")
    demo.add_argument("--mountpoint", type=Path, help="where to mount the sample project")
    demo.add_argument("--no-mount", action="store_true", help="seed and print endpoints only")
    return parser
