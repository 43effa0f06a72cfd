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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from synfs.cli.demo_seed import Seeder
from synfs.service import mounts

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


def mount_project(info: dict, token: str, project: str, mnt: Path,
                  data_dir: Path) -> subprocess.Popen:
    """Run ``synfs mount -f`` for the sample project; return once the mount answers."""
    mnt.mkdir(parents=True, exist_ok=True)
    token_file = data_dir / "demo.token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    argv = [sys.executable, "-m", "synfs", "--log-level", "INFO", "mount", project, str(mnt),
            "-f", "--token-file", str(token_file), "--repo-endpoint", info["repoEndpoint"],
            "--file-endpoint", info["fileHandleEndpoint"], "--auth-endpoint",
            info["authEndpoint"], "--s3-endpoint", info["s3Endpoint"],
            "--log-file", str(data_dir / "mount.log")]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not mounts.is_mounted(mnt):
        if proc.poll() is not None:
            raise DemoError(f"mounting failed: {proc.stderr.read().strip()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise DemoError(f"the mount on {mnt} did not come up within 60 s")
        time.sleep(0.1)
    return proc


def unmount_project(proc: subprocess.Popen, mnt: Path) -> None:
    """Stop the mount daemon (it unmounts cleanly on SIGTERM, even after the terminal's SIGINT
    reached it too), then detach whatever mountinfo still lists there: a stat cannot tell a
    dead mount from no mount."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    entry = mounts.mounted_at(mnt)
    if entry is not None and entry.is_synfs:
        subprocess.run(["fusermount3", "-u", "-z", "--", entry.mountpoint], check=False,
                       capture_output=True)


class DemoError(RuntimeError):
    pass


def run_demo(data_dir: Path | None, mountpoint: Path | None, mount: bool = True) -> int:
    data_dir = Path(data_dir or tempfile.mkdtemp(prefix="synfs-demo-")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    demo_json = data_dir / "demo.json"
    stop = threading.Event()
    # Ctrl-C, kill and a closed terminal all stop the demo the same way: through the cleanup
    # below (the mount daemon, then the emulator and its S3 server), however many arrive.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    print(f"synfs demo: starting the Synapse emulator and S3 in {data_dir}", flush=True)
    server = start_world(data_dir)
    mounted = mnt = None
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
            mnt = Path(mountpoint or data_dir / "mnt").absolute()
            mounted = mount_project(info, token, seeded["project"], mnt, data_dir)
            print(f"synfs demo: mounted the sample project on {mnt}", flush=True)
            print(f"  try: ls -l '{mnt}'/*  or  md5sum '{mnt}'/plain/hello.txt", flush=True)
        print("synfs demo: running; press Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            if mounted is not None and mounted.poll() is not None:
                print("synfs demo: the mount daemon exited; stopping", flush=True)
                break
        print("synfs demo: stopping", flush=True)
        return 0
    finally:
        if mounted is not None:
            unmount_project(mounted, mnt)
        server.stop()
