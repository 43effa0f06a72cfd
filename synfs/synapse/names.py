"""The Synapse entity-name rule (characters and length), as plain data and one pure check.

Shared by the write path (create, mkdir, rename) and by ``synfs register`` (object keys that
would become entity names), so both refuse exactly the names Synapse refuses.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[a-zA-Z0-9,_. \-+()']+$")
MAX_NAME = 256
RULE = ("Synapse names may only contain letters, numbers, spaces, underscores, hyphens, "
        "periods, plus signs, apostrophes, commas and parentheses, and may not start or end "
        "with a space")


def name_problem(name: str) -> str | None:
    """Why Synapse would refuse ``name`` as an entity name (None when it is acceptable)."""
    if len(name.encode()) > MAX_NAME:
        return f"longer than Synapse's {MAX_NAME}-character limit"
    if not NAME_RE.match(name) or name != name.strip():
        return RULE
    return None
