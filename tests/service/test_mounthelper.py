"""Translation of fstab options into `synfs mount` arguments (no mount involved)."""

from __future__ import annotations

import pytest

from synfs.cli import mounthelper
from synfs.cli.main import helper_main
from synfs.cli.mounthelper import HelperError, translate


def test_the_issue_line():
    argv = translate("syn123", "/mnt/data",
                     ["rw", "_netdev", "allow_other", "ro", "token_file=/etc/synfs/token"])
    assert argv[:3] == ["mount", "syn123", "/mnt/data"]
    rest = argv[3:]
    assert "--allow-other" in rest and "--read-only" in rest
    assert rest[rest.index("--token-file") + 1] == "/etc/synfs/token"
    assert "_netdev" not in " ".join(rest) and "-o" not in rest


def test_values_dashes_and_fuse_flags():
    argv = translate("syn1", "/m", ["metadata-ttl=300", "cache_dir=/var/cache/synfs", "uid=1000",
                                    "nosuid", "nodev", "max_read=131072", "relatime",
                                    "x-systemd.automount", "nofail", "comment=x", "rw"])
    rest = argv[3:]
    assert rest[rest.index("--metadata-ttl") + 1] == "300"
    assert rest[rest.index("--cache-dir") + 1] == "/var/cache/synfs"
    assert rest[rest.index("--uid") + 1] == "1000"
    assert rest[rest.index("-o") + 1] == "nosuid,nodev,max_read=131072"
    assert "--read-only" not in rest                     # rw: synfs's default


def test_nonempty_reaches_synfs_mount():
    rest = translate("syn1", "/m", ["nonempty", "nosuid"])[3:]
    assert rest[rest.index("-o") + 1] == "nonempty,nosuid"


@pytest.mark.parametrize("opt, message", [
    ("bogus=1", "unknown mount option 'bogus=1'"),
    ("token_file", "needs a value"),
    ("allow_other=yes", "takes no value"),
    ("foreground", "unknown mount option"),
    ("ready_fd=3", "unknown mount option"),
])
def test_bad_options(opt, message):
    with pytest.raises(HelperError, match=message):
        translate("syn1", "/m", [opt])


def test_sloppy_ignores_unknown_options():
    assert translate("syn1", "/m", ["bogus=1", "allow_other"], sloppy=True)[3:] == ["--allow-other"]


def test_helper_command_line_forms(capsys):
    assert helper_main(["syn5", "/mnt/x", "-f", "-v", "-o", "ro,allow_other"]) == 0
    assert "synfs mount syn5 /mnt/x --allow-other --read-only" in capsys.readouterr().err
    assert helper_main(["syn5", "/mnt/x", "-o", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("synfs: unknown mount option 'nope'") and "\n" not in err


def test_recognises_mount_fuse_calls():
    assert mounthelper.looks_like_helper_call(["syn123", "/mnt", "-o", "ro"])
    assert mounthelper.looks_like_helper_call(["synfs#syn123", "/mnt"])
    assert not mounthelper.looks_like_helper_call(["mount", "syn123", "/mnt"])
    assert not mounthelper.looks_like_helper_call(["syn123"])
    assert not mounthelper.looks_like_helper_call(["status", "/mnt"])
