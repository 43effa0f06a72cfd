"""The names Synapse can store: the one check every create, mkdir and rename goes through."""

from __future__ import annotations

from synfs import errors
from synfs.synapse.names import MAX_NAME, NAME_RE  # noqa: F401 - the one rule, shared


def check_name(name: str) -> None:
    if len(name.encode()) > MAX_NAME:
        raise errors.NameTooLong(f"{name[:40]}...: Synapse names are at most {MAX_NAME} characters")
    if not NAME_RE.match(name) or name != name.strip():
        raise errors.InvalidName(
            f"{name!r}: Synapse names may only contain letters, numbers, spaces, underscores, "
            "hyphens, periods, plus signs, apostrophes, commas and parentheses, and may not "
            "start or end with a space")
