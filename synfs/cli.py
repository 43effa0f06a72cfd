"""Command line of synfs: argument parsing, exit codes and one-line user-facing errors.

Subcommands: ``mount``, ``unmount`` (in ``synfs.mountcmd``), ``emulator serve``,
``emulator add-user`` and ``demo``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 1

EPILOG_EMULATOR = """examples:
  synfs emulator serve --data-dir /tmp/syn            # Synapse emulator + local S3 on 127.0.0.1
  synfs emulator serve --data-dir /tmp/syn --throttling
  synfs emulator add-user --data-dir /tmp/syn alice   # prints a new access token for alice
"""

EPILOG_DEMO = """examples:
  synfs demo                       # fresh temporary data dir, seed a sample project
  synfs demo --data-dir ~/syn-demo --no-mount
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synfs", description=(
        "Mount Synapse folder trees as a POSIX filesystem, with file bytes read straight "
        "from S3 using Synapse STS credentials."))
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
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
    add = emu_sub.add_parser("add-user", help="create a user and print a new access token")
    add.add_argument("--data-dir", type=Path, required=True)
    add.add_argument("user_name")
    add.add_argument("--email")
    add.add_argument("--uncertified", action="store_true", help="user is not certified")
    add.add_argument("--admin", action="store_true", help="emulator admin (fault injection)")

    from synfs.mountcmd import add_mount_parser

    add_mount_parser(sub)

    demo = sub.add_parser("demo", help="start emulator + S3, seed a sample project (and mount it)",
                          epilog=EPILOG_DEMO, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--data-dir", type=Path, help="state directory (default: a fresh temp dir)")
    demo.add_argument("--mountpoint", type=Path, help="where to mount the sample project")
    demo.add_argument("--no-mount", action="store_true", help="seed and print endpoints only")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "emulator":
            return _emulator(args)
        if args.command == "mount":
            from synfs.mountcmd import run_mount

            return run_mount(args)
        if args.command == "unmount":
            from synfs.mountcmd import run_unmount

            return run_unmount(args)
        if args.command == "demo":
            from synfs.demo import run_demo

            from synfs.demo import DemoError

            try:
                return run_demo(args.data_dir, args.mountpoint, mount=not args.no_mount)
            except DemoError as exc:
                raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        return EXIT_OK
    except UserError as exc:
        print(f"synfs: {exc}", file=sys.stderr)
        return exc.exit_code
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


class UserError(Exception):
    """An error the user can act on: printed as one line, with a distinct exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def _emulator(args) -> int:
    if args.emu_command == "serve":
        from synfs.emulator.server import run_foreground

        return run_foreground(args.data_dir, port=args.port, throttling=args.throttling)
    if args.emu_command == "add-user":
        from synfs.emulator.db import Store

        if not args.data_dir.is_dir():
            raise UserError(f"no emulator data directory at {args.data_dir}")
        store = Store(args.data_dir / "synapse.sqlite")
        try:
            uid = store.create_user(args.user_name, email=args.email,
                                    certified=not args.uncertified, is_admin=args.admin)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        token = store.issue_token(uid)
        store.close()
        print(token)
        return EXIT_OK
    return EXIT_USAGE
