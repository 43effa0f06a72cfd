"""Every command's --help shows examples and its exit codes."""

from __future__ import annotations

import pytest

from tests.harness import ROOT as SYNFS_ROOT
from tests.service.conftest import SYNFS, run, synfs_cmd

COMMANDS = [[], ["mount"], ["unmount"], ["status"], ["sts-token"], ["install-units"], ["snapshot"],
            ["emulator", "serve"], ["emulator", "add-user"], ["demo"], ["register"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "synfs")
def test_help_has_examples_and_exit_codes(command):
    res = run(synfs_cmd(*command, "--help"))
    assert res.returncode == 0, res.stderr
    assert "examples:" in res.stdout
    assert "exit codes" in res.stdout


def test_mount_helper_help():
    res = run([str(SYNFS.parent / "mount.fuse.synfs"), "--help"])
    assert res.returncode == 0
    assert "examples" in res.stdout and "fuse.synfs" in res.stdout


ENTRY_POINTS = {"python -m synfs": synfs_cmd(), "synfs": [str(SYNFS)],
                "mount.fuse.synfs": [str(SYNFS.parent / "mount.fuse.synfs")]}


@pytest.mark.parametrize("flag", ["--version", "-V"])
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_version_flag_prints_the_package_version(entry, flag):
    from synfs import __version__

    res = run(ENTRY_POINTS[entry] + [flag])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"synfs {__version__}"


def test_the_installed_metadata_has_the_package_version():
    """setup.cfg reads the version from synfs.__version__, so ``pip show synfs`` and
    ``synfs --version`` cannot disagree."""
    from importlib.metadata import version

    from synfs import __version__

    assert version("synfs") == __version__
    cfg = (SYNFS_ROOT / "setup.cfg").read_text()
    assert "version = attr: synfs.__version__" in cfg
