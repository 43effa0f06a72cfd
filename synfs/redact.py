"""Secrets kept out of every log line: a registry of values never to print (the Synapse token,
STS secret keys and session tokens, via ``register_secret``) and ``redact``, which also
replaces values that look like secrets by their context (``Bearer ...``,
``X-Amz-Security-Token=...``, ``"sessionToken": "..."``). Foundation module: imports nothing
from synfs, so the seams can register the secrets they receive.
"""

from __future__ import annotations

import re
import threading

REDACTED = "<redacted>"
_MAX_SECRETS = 1024
_MIN_SECRET_LEN = 8

_KEYS = (r"x-amz-security-token|x-amz-signature|signature|aws_secret_access_key|aws_session_token"
         r"|secretaccesskey|secret_access_key|sessiontoken|session_token|authtoken|auth_token"
         r"|accesstoken|access_token|password")
_PATTERNS = [
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    # query strings: X-Amz-Security-Token=...&
    (re.compile(rf"(?i)((?:{_KEYS})=)[^&\s'\",;]+"), r"\1" + REDACTED),
    # dict/JSON/header forms: 'x-amz-security-token': b'...' / "sessionToken": "..."
    (re.compile(rf"(?i)(['\"]?(?:{_KEYS}|authorization)['\"]?\s*:\s*b?['\"])[^'\"]+"),
     r"\1" + REDACTED),
]

_lock = threading.Lock()
_secrets: dict[str, None] = {}   # insertion-ordered set, oldest dropped past _MAX_SECRETS


def register_secret(value: str | None) -> None:
    """Never let ``value`` appear in a log line (tokens, secret keys, session tokens)."""
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        _secrets.pop(value, None)
        _secrets[value] = None
        while len(_secrets) > _MAX_SECRETS:
            del _secrets[next(iter(_secrets))]


def redact(text: str) -> str:
    with _lock:
        secrets = list(_secrets)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
