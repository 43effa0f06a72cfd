"""The names synfs can store: the one check every create, mkdir and rename goes through.

``MAX_NAME`` is the one name-length limit (bytes of UTF-8): ``statfs``' ``f_namemax``,
``pathconf(_PC_NAME_MAX)`` and ``check_name`` all use it. Synapse stores names of up to 256
characters, but the S3 server refuses a key component (``<baseKey>/<uuid>/<name>``) longer than
255 bytes, so a longer name could never be saved: it is refused at create/mkdir/rename with
ENAMETOOLONG. ``check_key`` also refuses a name whose whole S3 key would exceed S3's 1024 bytes.
"""

from __future__ import annotations

from synfs import errors
from synfs.synapse.names import NAME_RE, RULE

MAX_NAME = 255            # bytes; Synapse allows 256 characters, S3 key components 255 bytes
MAX_KEY = 1024            # bytes of an S3 object key
UUID_LEN = 36             # the <uuid> component synfs puts between the base key and the name


def check_name(name: str) -> None:
    if len(name.encode()) > MAX_NAME:
        raise errors.NameTooLong(f"{name[:40]}...: names are at most {MAX_NAME} bytes here "
                                 f"(this one has {len(name.encode())})")
    if not NAME_RE.match(name) or name != name.strip():
        raise errors.InvalidName(f"{name!r}: {RULE}")


def key_length(base_key: str | None, name: str) -> int:
    """Bytes of the S3 key ``<baseKey>/<uuid>/<name>`` a save of ``name`` uses."""
    prefix = len(base_key.encode()) + 1 if base_key else 0
    return prefix + UUID_LEN + 1 + len(name.encode())


def check_key(base_key: str | None, name: str) -> None:
    if key_length(base_key, name) > MAX_KEY:
        raise errors.NameTooLong(
            f"{name[:40]}...: with this folder's base key the S3 key would be "
            f"{key_length(base_key, name)} bytes; S3 keys are at most {MAX_KEY}")
