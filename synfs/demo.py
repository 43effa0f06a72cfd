"""``synfs demo``: the embedded default world in one command.

Starts the Synapse emulator and its S3 server in a data directory, seeds a sample project
once (a Synapse-storage STS folder with nested folders and files from empty to ~100 MB, an
external-bucket STS folder, a plain non-STS folder), writes ``DIR/demo.json`` (endpoints, the
demo user's token, seeded ids; mode 0600) and keeps everything running until Ctrl-C.
Seeding goes through the public REST API and S3 only, exactly as a user's client would.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from pathlib import Path

from synfs.demo_seed import Seeder

DEMO_USER = "demo-user"


def start_world(data_dir: Path):
    """Start emulator + S3 in-process; return the running ``EmulatorServer``."""
    from synfs.emulator.server import EmulatorServer

    server = EmulatorServer(data_dir)
    server.start()
    server.serve_in_thread()
    return server


def demo_token(server, demo_json: Path) -> str:
    """The demo user's token: kept in demo.json so a restart on the same dir reuses it."""
    if demo_json.exists():
        token = json.loads(demo_json.read_text()).get("token")
        if token and server.store.user_for_token(token):
            return token
    if server.store.user_by_name(DEMO_USER) is None:
        server.store.create_user(DEMO_USER, email="demo@example.org")
    uid = server.store.user_by_name(DEMO_USER)["id"]
    return server.store.issue_token(uid, name="demo")


def run_demo(data_dir: Path | None, mountpoint: Path | None, mount: bool = True) -> int:
    data_dir = Path(data_dir or tempfile.mkdtemp(prefix="synfs-demo-")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    demo_json = data_dir / "demo.json"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"synfs demo: starting the Synapse emulator and S3 in {data_dir}", flush=True)
    server = start_world(data_dir)
    try:
        token = demo_token(server, demo_json)
        previous = json.loads(demo_json.read_text()).get("seeded") if demo_json.exists() else None
        seeder = Seeder(server.info, token, owner_s3=server.s3.admin_client())
        seeded = seeder.seed(previous, progress=lambda msg: print(f"  {msg}", flush=True))
        info = {k: v for k, v in server.info.items() if k != "pid"}
        doc = {**info, "user": DEMO_USER, "token": token, "seeded": seeded}
        from synfs.emulator.server import write_json_atomic

        write_json_atomic(demo_json, doc, mode=0o600)
        os.chmod(demo_json, 0o600)
        print(f"synfs demo: sample project {seeded['project']} ready", flush=True)
        print(f"  endpoints, token and ids: {demo_json}", flush=True)
        print(f"  repo endpoint: {info['repoEndpoint']}", flush=True)
        print(f"  S3 endpoint:   {info['s3Endpoint']}", flush=True)
        if mount:
            print("  (mounting arrives with `synfs mount`; running without a mount)", flush=True)
        print("synfs demo: running; press Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
        print("synfs demo: stopping", flush=True)
        return 0
    finally:
        server.stop()
