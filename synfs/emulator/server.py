"""Process lifecycle of the emulator: start S3 (SeaweedFS with STS), open the SQLite store,
serve the REST app with waitress on 127.0.0.1, publish endpoints, stop cleanly on a signal.

Files in the data directory: ``synapse.sqlite`` (all Synapse state), ``s3/`` (SeaweedFS data
and config), ``admin.token`` (0600, the emulator admin's token) and ``emulator.json``
(endpoints, written once the server answers, removed on a clean stop).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path

import waitress

from .app import ADMIN, AUTH, FILE, REPO, EmulatorState, create_app
from .db import Store
from .faults import Faults

log = logging.getLogger(__name__)

ADMIN_USER = "emulator-admin"


def ensure_admin_token(store: Store, data_dir: Path) -> str:
    """Create the admin user on first start; return its token (kept in ``admin.token``)."""
    path = data_dir / "admin.token"
    if path.exists():
        return path.read_text().strip()
    uid = store.create_user(ADMIN_USER, certified=True, is_admin=True)
    token = store.issue_token(uid, name="admin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def write_json_atomic(path: Path, data: dict, mode: int = 0o644) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def endpoints(base: str, s3) -> dict:
    return {
        "repoEndpoint": base + REPO,
        "fileHandleEndpoint": base + FILE,
        "authEndpoint": base + AUTH,
        "portalEndpoint": base + "/",
        "adminEndpoint": base + ADMIN,
        "s3Endpoint": s3.endpoint_url if s3 else None,
        "synapseBucket": s3.SYNAPSE_BUCKET if s3 else None,
        "externalBucket": s3.EXTERNAL_BUCKET if s3 else None,
    }


class EmulatorServer:
    """Emulator + S3 in this process; ``start()`` returns once both answer."""

    def __init__(self, data_dir: Path, port: int = 0, throttling: bool = False,
                 with_s3: bool = True):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.faults = Faults(throttling=throttling)
        self.with_s3 = with_s3
        self.s3 = None
        self.store = None
        self.server = None
        self.info: dict = {}

    def start(self) -> dict:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.with_s3:
            from .s3world import S3World

            self.s3 = S3World(self.data_dir / "s3", faults=self.faults)
            self.s3.start()
        self.store = Store(self.data_dir / "synapse.sqlite")
        ensure_admin_token(self.store, self.data_dir)
        app = create_app(EmulatorState(store=self.store, s3=self.s3, faults=self.faults))
        self.server = waitress.create_server(app, host="127.0.0.1", port=self.port, threads=24,
                                             channel_timeout=600, connection_limit=1000,
                                             ident="synfs-emulator")
        base = f"http://127.0.0.1:{self.server.effective_port}"
        self.info = {"pid": os.getpid(), "dataDir": str(self.data_dir), **endpoints(base, self.s3)}
        return self.info

    def serve_forever(self) -> None:
        write_json_atomic(self.data_dir / "emulator.json", self.info)
        try:
            self.server.run()
        finally:
            self.stop()

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.server.run, name="emulator-http", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        try:
            (self.data_dir / "emulator.json").unlink(missing_ok=True)
        except OSError:
            pass
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.s3 is not None:
            self.s3.stop()
            self.s3 = None
        if self.store is not None:
            self.store.close()
            self.store = None


def run_foreground(data_dir: Path, port: int = 0, throttling: bool = False) -> int:
    """``synfs emulator serve``: run until SIGTERM/SIGINT."""
    srv = EmulatorServer(data_dir, port=port, throttling=throttling)

    def _stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        info = srv.start()
    except BaseException:
        srv.stop()
        raise
    print(f"synfs emulator ready: repo {info['repoEndpoint']}  s3 {info['s3Endpoint']}  "
          f"(endpoints in {srv.data_dir / 'emulator.json'})", flush=True)
    srv.serve_forever()
    return 0
