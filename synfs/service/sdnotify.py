"""A tiny ``sd_notify``: readiness and status messages to systemd over ``$NOTIFY_SOCKET``.

Owns the notify protocol only (no dependency on libsystemd or python-systemd): one datagram of
newline-separated ``KEY=VALUE`` assignments to the AF_UNIX socket named by ``$NOTIFY_SOCKET``
(a path, or an abstract name written with a leading ``@``). Without ``$NOTIFY_SOCKET`` (not
started by systemd with ``Type=notify``) every call is a no-op that returns False. Errors are
logged, never raised: a notification must not take the mount down.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*assignments: str, unset_environment: bool = False) -> bool:
    """Send ``assignments`` (e.g. ``"READY=1"``, ``"STATUS=mounted"``); True if sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if unset_environment:
        os.environ.pop("NOTIFY_SOCKET", None)
    if not address or not assignments:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET %r is not a unix socket path; not notifying", address)
        return False
    message = "\n".join(a.replace("\n", " ") for a in assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        log.warning("could not notify systemd (%s): %s", address.lstrip("\0"), exc.strerror)
        return False
    log.debug("notified systemd: %s", ", ".join(a.split("=", 1)[0] for a in assignments))
    return True


def ready(status: str = "") -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def stopping(status: str = "") -> bool:
    return notify("STOPPING=1", *([f"STATUS={status}"] if status else []))
