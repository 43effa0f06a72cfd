"""The Synapse options every command shares (``synfs.cli.auth.add_options``) and their
precedence (``synfs.cli.auth.endpoints``): the command line, then the config file's
``[endpoints]``, then production."""

from __future__ import annotations

import pytest

from synfs.cli import auth
from synfs.cli.parser import build_parser
from synfs.config import PRODUCTION

COMMANDS = {"mount": ["syn1", "/mnt"], "recover": ["list"], "register": ["syn1"],
            "snapshot": ["syn1"]}


def parse(command: str, *more: str):
    return build_parser().parse_args([command, *COMMANDS[command], *more])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_command_line_wins_then_the_config_file_then_production(command, tmp_path):
    config = tmp_path / "synapseConfig"
    config.write_text("[endpoints]\nrepoEndpoint = http://from-config/repo/v1\n"
                      "fileHandleEndpoint = http://from-config/file/v1\n")
    given = parse(command, "--config", str(config), "--file-endpoint", "http://given/file/v1",
                  "--token-file", str(tmp_path / "t"), "--profile", "p")
    assert given.token_file == tmp_path / "t" and given.profile == "p"
    assert auth.endpoints(given) == {"repoEndpoint": "http://from-config/repo/v1",
                                     "fileHandleEndpoint": "http://given/file/v1",
                                     "authEndpoint": PRODUCTION["authEndpoint"]}
    bare = parse(command, "--config", str(tmp_path / "missing"))
    assert auth.endpoints(bare) == {k: PRODUCTION[k] for k in
                                    ("repoEndpoint", "fileHandleEndpoint", "authEndpoint")}
