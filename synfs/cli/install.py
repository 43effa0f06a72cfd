"""``synfs install-units``: put the systemd units and the fstab mount helper in place.

Owns installation only (it never starts, enables or reloads anything). It writes
``synfs@.service`` into the unit directory with ``ExecStart`` pointing at this synfs, links
``/sbin/mount.fuse.synfs`` to the ``mount.fuse.synfs`` console script (or writes a two-line
wrapper when there is none), and creates ``/etc/synfs`` (0700) with an example instance
configuration and the example ``.mount`` unit. The sources are the files in the repository's
``systemd/`` directory (installed to ``<prefix>/share/synfs/systemd`` by pip).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from synfs.config import EXIT_FAILED, EXIT_OK

PLACEHOLDER = "/usr/local/bin/synfs"
UNIT = "synfs@.service"
MOUNT_EXAMPLE = "mnt-synapse.mount"
CONF_EXAMPLE = "synfs.conf.example"
HELPER = "mount.fuse.synfs"

INSTALL_EPILOG = """examples:  (as root)
  synfs install-units                       # units, mount helper and /etc/synfs
  synfs install-units --dry-run             # show what would be written
  synfs install-units --root /tmp/img       # into an image or chroot
then:
  cp /etc/synfs/example.conf /etc/synfs/data.conf && $EDITOR /etc/synfs/data.conf
  install -m 600 /dev/stdin /etc/synfs/data.token <<< "$TOKEN"
  systemctl daemon-reload && systemctl enable --now synfs@data

exit codes: 0 installed, 1 failed (permissions, or a different file exists: use --force), 2 usage
"""


class InstallError(Exception):
    pass


def add_install_parser(sub) -> None:
    p = sub.add_parser("install-units", help="install the systemd units and the fstab mount helper",
                       description="Install synfs@.service, /sbin/mount.fuse.synfs and /etc/synfs.",
                       epilog=INSTALL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("/"),
                   help="install below this directory (default /)")
    p.add_argument("--unit-dir", default="/etc/systemd/system",
                   help="systemd unit directory (default /etc/systemd/system)")
    p.add_argument("--sbin-dir", default="/sbin",
                   help="where mount(8) looks for helpers (default /sbin)")
    p.add_argument("--conf-dir", default="/etc/synfs", help="configuration directory (default /etc/synfs)")
    p.add_argument("--synfs", type=Path, help="the synfs executable the units run "
                                              "(default: the one next to this Python)")
    p.add_argument("--force", action="store_true", help="replace files that differ")
    p.add_argument("--dry-run", action="store_true", help="print what would be done")


def source_dir() -> Path:
    here = Path(__file__).resolve().parents[2] / "systemd"      # the source tree
    for candidate in (here, Path(sys.prefix) / "share" / "synfs" / "systemd"):
        if (candidate / UNIT).is_file():
            return candidate
    raise InstallError(f"cannot find {UNIT} (looked in {here} and {sys.prefix}/share/synfs/systemd)")


def synfs_executable(explicit: Path | None = None) -> Path:
    if explicit is not None:
        if not os.access(explicit, os.X_OK):
            raise InstallError(f"{explicit} is not an executable")
        return explicit.absolute()
    for candidate in (Path(sys.executable).parent / "synfs", shutil.which("synfs")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate).absolute()
    raise InstallError("no synfs executable found; pass --synfs PATH")


def render_unit(text: str, synfs: Path) -> str:
    return text.replace(PLACEHOLDER, str(synfs))


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


class Installer:
    def __init__(self, root: Path, dry_run: bool, force: bool):
        self.root = root
        self.dry_run = dry_run
        self.force = force
        self.done: list[str] = []

    def write(self, dest: Path, text: str, mode: int, *, keep_existing: bool = False) -> None:
        if dest.exists() or dest.is_symlink():
            if dest.is_file() and not dest.is_symlink() and dest.read_text() == text:
                self.done.append(f"unchanged {dest}")
                return
            if keep_existing:
                self.done.append(f"kept      {dest} (exists)")
                return
            if not self.force:
                raise InstallError(f"{dest} exists and differs (use --force to replace it)")
        self.done.append(f"write     {dest}")
        if not self.dry_run:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            tmp.write_text(text)
            os.chmod(tmp, mode)
            os.replace(tmp, dest)

    def symlink(self, dest: Path, target: Path) -> None:
        if dest.is_symlink() and os.readlink(dest) == str(target):
            self.done.append(f"unchanged {dest} -> {target}")
            return
        if (dest.exists() or dest.is_symlink()) and not self.force:
            raise InstallError(f"{dest} exists and differs (use --force to replace it)")
        self.done.append(f"link      {dest} -> {target}")
        if not self.dry_run:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
            tmp.symlink_to(target)
            os.replace(tmp, dest)

    def private_dir(self, path: Path) -> None:
        if path.is_dir():
            return
        self.done.append(f"mkdir     {path} (0700)")
        if not self.dry_run:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path, 0o700)


def install(args) -> list[str]:
    src = source_dir()
    synfs = synfs_executable(args.synfs)
    inst = Installer(args.root, args.dry_run, args.force)
    unit = render_unit((src / UNIT).read_text(), synfs)
    inst.write(_under(args.root, args.unit_dir) / UNIT, unit, 0o644)
    helper_dest = _under(args.root, args.sbin_dir) / HELPER
    console = synfs.parent / HELPER
    if os.access(console, os.X_OK):
        inst.symlink(helper_dest, console)
    else:
        python = Path(sys.executable).absolute()
        run = "import sys; from synfs.cli.main import helper_main; sys.exit(helper_main())"
        inst.write(helper_dest, f'#!/bin/sh\nexec {python} -c "{run}" "$@"\n', 0o755)
    conf = _under(args.root, args.conf_dir)
    inst.private_dir(conf)
    inst.write(conf / "example.conf", (src / CONF_EXAMPLE).read_text(), 0o600, keep_existing=True)
    inst.write(conf / f"{MOUNT_EXAMPLE}.example", (src / MOUNT_EXAMPLE).read_text(), 0o644,
               keep_existing=True)
    return inst.done


def run_install(args) -> int:
    try:
        done = install(args)
    except (InstallError, OSError) as exc:
        message = str(exc) if isinstance(exc, InstallError) else f"{exc.filename}: {exc.strerror}"
        print(f"synfs: install-units: {message}", file=sys.stderr)
        return EXIT_FAILED
    prefix = "would " if args.dry_run else ""
    for line in done:
        print(prefix + line)
    if not args.dry_run:
        print("next: write /etc/synfs/NAME.conf (from example.conf) and /etc/synfs/NAME.token "
              "(mode 0600), then: systemctl daemon-reload && systemctl enable --now synfs@NAME")
    return EXIT_OK
