"""Every command's --help shows examples and its exit codes."""

from __future__ import annotations

import pytest

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


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flag_prints_the_package_version(flag):
    from synfs import __version__

    res = run(synfs_cmd(flag))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"synfs {__version__}"
