"""Finding the user's Synapse token and endpoints the way synapseclient does (no I/O to Synapse).

Precedence, highest first: ``--token-file``; the config file (``~/.synapseConfig`` or
``--config``): profile ``SYNAPSE_PROFILE`` or ``default`` from ``[default]`` /
``[profile NAME]``, falling back to the legacy ``[authentication]`` section only when no
``[default]`` section exists; then the ``SYNAPSE_AUTH_TOKEN`` environment variable.
Endpoints may come from the config file's ``[endpoints]`` section.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import stat
from pathlib import Path

from synfs.config import PRODUCTION


class TokenError(Exception):
    """No usable token: the message says where synfs looked."""


@dataclasses.dataclass(frozen=True)
class FoundToken:
    token: str = dataclasses.field(repr=False)
    source: str            # where it came from, for messages (never the token itself)


DEFAULT_CONFIG = Path("~/.synapseConfig")


def read_token_file(path: Path) -> str:
    try:
        st = path.stat()
        token = path.read_text().strip()
    except OSError as exc:
        raise TokenError(f"cannot read token file {path}: {exc.strerror}") from None
    if not token:
        raise TokenError(f"token file {path} is empty")
    if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        # Like ssh with private keys: warn loudly, the token is as good as a password.
        import logging

        logging.getLogger(__name__).warning(
            "token file %s is readable by other users; chmod 600 it", path)
    return token.splitlines()[0].strip()


def _load_config(path: Path) -> configparser.RawConfigParser | None:
    parser = configparser.RawConfigParser()
    try:
        if not parser.read(path):
            return None
    except configparser.Error as exc:
        raise TokenError(f"cannot parse {path}: {exc}") from None
    return parser


def token_from_config(path: Path, profile: str | None) -> FoundToken | None:
    parser = _load_config(path)
    if parser is None:
        return None
    profile = profile or os.environ.get("SYNAPSE_PROFILE") or "default"
    section = "default" if profile == "default" else f"profile {profile}"
    if parser.has_section(section):
        token = parser.get(section, "authtoken", fallback=None)
        return FoundToken(token.strip(), f"{path} [{section}]") if token else None
    if profile != "default":
        raise TokenError(f"profile {profile!r} not found in {path}")
    if parser.has_section("authentication"):
        token = parser.get("authentication", "authtoken", fallback=None)
        return FoundToken(token.strip(), f"{path} [authentication]") if token else None
    return None


def find_token(token_file: Path | None = None, config: Path | None = None,
               profile: str | None = None) -> FoundToken:
    if token_file is not None:
        return FoundToken(read_token_file(token_file), str(token_file))
    cfg = (config or DEFAULT_CONFIG).expanduser()
    found = token_from_config(cfg, profile)
    if found is not None:
        return found
    env = os.environ.get("SYNAPSE_AUTH_TOKEN", "").strip()
    if env:
        return FoundToken(env, "SYNAPSE_AUTH_TOKEN")
    raise TokenError(
        f"no Synapse token: use --token-file, set SYNAPSE_AUTH_TOKEN, or put authtoken in "
        f"the [default] section of {cfg}")


def endpoints_from_config(config: Path | None = None) -> dict[str, str]:
    """``repoEndpoint`` / ``fileHandleEndpoint`` / ``authEndpoint`` from ``[endpoints]``."""
    parser = _load_config((config or DEFAULT_CONFIG).expanduser())
    if parser is None or not parser.has_section("endpoints"):
        return {}
    return {k: parser.get("endpoints", k) for k in
            ("repoEndpoint", "fileHandleEndpoint", "authEndpoint")
            if parser.has_option("endpoints", k)}


_OPTIONS = {"repoEndpoint": "repo", "fileHandleEndpoint": "file", "authEndpoint": "auth"}


def endpoints(args) -> dict[str, str]:
    """Each Synapse endpoint (``repoEndpoint``, ``fileHandleEndpoint``, ``authEndpoint``): its
    ``--*-endpoint`` option, else the config file's ``[endpoints]``, else production's."""
    from_cfg = endpoints_from_config(args.config)
    return {key: getattr(args, f"{opt}_endpoint", None) or from_cfg.get(key, PRODUCTION[key])
            for key, opt in _OPTIONS.items()}


def add_options(p, *, endpoints: tuple[str, ...] = ("repo", "file", "auth", "s3")) -> None:
    """The options a command that talks to Synapse takes to find the token and endpoints
    (``--token-file``, ``--config``, ``--profile``) and the endpoints it uses."""
    p.add_argument("--token-file", type=Path, help="file holding the Synapse access token "
                   "(default: ~/.synapseConfig, then SYNAPSE_AUTH_TOKEN)")
    p.add_argument("--config", type=Path, help="synapseclient config file (~/.synapseConfig)")
    p.add_argument("--profile", help="profile in the config file (default: SYNAPSE_PROFILE or "
                   "default)")
    for name in endpoints:
        if name == "s3":
            p.add_argument("--s3-endpoint", help="S3 endpoint URL (default: AWS)")
        else:
            key = next(k for k, opt in _OPTIONS.items() if opt == name)
            p.add_argument(f"--{name}-endpoint", help=f"default {PRODUCTION[key]}")
