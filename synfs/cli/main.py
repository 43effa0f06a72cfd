"""The ``synfs`` command: dispatch to each command's module, one-line user-facing errors.

The parser is ``synfs.cli.parser``; commands live in ``mount`` (mount, unmount), ``status``,
``ststoken``, ``install`` and ``demo``, plus ``emulator serve|add-user`` here.
``synfs SOURCE DIR -o OPTIONS``, the form fuse3's ``mount.fuse`` uses for fstab entries of type
``fuse.synfs``, and the ``mount.fuse.synfs`` entry point (``helper_main``) go through
``synfs.cli.mounthelper``. Logging for every command is set up by ``synfs.service.logs``.
"""

from __future__ import annotations

import sys

from synfs.cli.parser import EXIT_FAILED, EXIT_OK, EXIT_USAGE, build_parser

def main(argv: list[str] | None = None) -> int:
    from synfs.cli import mounthelper
    from synfs.service import logs

    argv = list(sys.argv[1:] if argv is None else argv)
    if mounthelper.looks_like_helper_call(argv):
        return helper_main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.debug_modules = logs.parse_debug_modules(args.debug_modules)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        logs.setup(args.log_level, getattr(args, "log_file", None), args.debug_modules)
    except OSError as exc:
        print(f"synfs: cannot open log file {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "emulator":
            return _emulator(args)
        if args.command == "mount":
            from synfs.cli.mount import run_mount

            return run_mount(args)
        if args.command == "unmount":
            from synfs.cli.mount import run_unmount

            return run_unmount(args)
        if args.command == "status":
            from synfs.cli.status import run_status

            return run_status(args)
        if args.command == "sts-token":
            from synfs.cli.ststoken import run_sts_token

            return run_sts_token(args)
        if args.command == "recover":
            from synfs.cli.recover import run_recover

            return run_recover(args)
        if args.command == "register":
            from synfs.cli.register import run_register

            return run_register(args)
        if args.command == "snapshot":
            from synfs.cli.snapshot import run_snapshot

            return run_snapshot(args)
        if args.command == "install-units":
            from synfs.cli.install import run_install

            return run_install(args)
        if args.command == "demo":
            from synfs.cli.demo import run_demo

            from synfs.cli.demo import DemoError

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


def helper_main(argv: list[str] | None = None) -> int:
    """``mount.fuse.synfs SOURCE DIR -o OPTIONS`` (fstab): translated, then run as ``synfs``."""
    from synfs.cli import mounthelper

    return mounthelper.main(argv, run=main, parser=build_parser())
