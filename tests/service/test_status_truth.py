"""`synfs status` tells the truth: a fresh report on demand (not one that lags behind what the
daemon just did), "unauthorized" once Synapse rejects the mount's token (and `synfs unmount`
still works then), other users' mounts reported as "not yours / not readable", an ordinary
(non-root) user mounting, reading, writing, asking for status and unmounting, and the request
rate limiter's waits made visible."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import sys

import pytest

from synfs.cli.status import NOT_YOURS
from synfs.service import mounts
from tests.service.conftest import USER, as_user, force_unmount, run, synfs_cmd, wait_for

def status_json(*args: str, runner=run) -> tuple[int, list]:
    res = runner(synfs_cmd("status", "--json", *args))
    return res.returncode, json.loads(res.stdout or "[]")


def test_status_refreshes_on_demand(world, service_mounts):
    m = service_mounts(world.owner.token, world.sts, "fresh")
    wait_for(lambda: status_json(str(m.path))[1][0].get("pid"))       # the daemon reports
    assert (m.path / "data.txt").read_bytes() == world.data           # fetches STS credentials
    rc, [item] = status_json(str(m.path))                             # at once: no waiting
    assert rc == 0
    assert item.get("refreshed") is True and item["age_s"] < 1.5, item
    [loc] = item["credentials"]["locations"]
    assert loc["storage_location_id"] == world.sts_loc
    out = run(synfs_cmd("status", str(m.path))).stdout
    assert "(fresh, asked for now)" in out and "none fetched yet" not in out
    stale = run(synfs_cmd("status", "--no-refresh", str(m.path))).stdout
    assert "report" in stale and " old" in stale


def _revoke(emulator, token: str) -> None:
    """Delete the token as Synapse does when its owner revokes it."""
    from synfs.emulator.db import hash_token

    db = sqlite3.connect(emulator.data_dir / "synapse.sqlite", timeout=30)
    try:
        with db:
            assert db.execute("DELETE FROM tokens WHERE token_hash = ?",
                              (hash_token(token),)).rowcount == 1
    finally:
        db.close()


def test_revoked_token_is_unauthorized_and_the_mount_still_unmounts(emulator, world,
                                                                    service_mounts):
    api = emulator.admin
    token = api.ok(api.post(f"/users/{world.owner.id}/tokens", {}, prefix="admin"), 201)[
        "accessToken"]
    from tests.harness import register_secret

    register_secret(token)
    m = service_mounts(token, world.sts, "revoked", ["--metadata-ttl", "0"])
    assert (m.path / "data.txt").read_bytes() == world.data
    rc, [item] = status_json(str(m.path))
    assert rc == 0 and item["state"] == "answering" and item["auth"]["state"] == "accepted"
    _revoke(emulator, token)
    with pytest.raises(OSError):
        os.listdir(m.path)                          # metadata ttl 0: asks Synapse, gets 401
    rc, [item] = status_json(str(m.path))
    assert rc == 1 and item["state"] == "unauthorized", item
    assert item["auth"]["state"] == "unauthorized"
    out = run(synfs_cmd("status", str(m.path))).stdout
    assert f"{m.path}: {world.sts} \"synapse-sts\" - unauthorized" in out
    assert "token" in out and "get a new token" in out
    res = run(synfs_cmd("unmount", str(m.path)))
    assert res.returncode == 0, res.stderr
    assert not mounts.is_mounted(m.path)


# ---- an ordinary user ---------------------------------------------------------------------
def test_an_ordinary_user_mounts_reads_writes_and_unmounts(world, emulator, service_mounts,
                                                          user_home):
    token_file = user_home / "token"
    token_file.write_text(world.owner.token + "\n")
    os.chown(token_file, USER, USER)
    token_file.chmod(0o600)
    mnt = user_home / "mnt"
    mnt.mkdir()
    os.chown(mnt, USER, USER)
    info = emulator.info
    log = user_home / "synfs.log"
    mount = as_user([sys.executable, "-m", "synfs", "mount", world.ext, str(mnt),
                     "--token-file", str(token_file), "--repo-endpoint", info["repoEndpoint"],
                     "--file-endpoint", info["fileHandleEndpoint"], "--auth-endpoint",
                     info["authEndpoint"], "--s3-endpoint", info["s3Endpoint"],
                     "--log-file", str(log), "--log-level", "INFO"], user_home)
    try:
        assert mount.returncode == 0, mount.stderr
        [entry] = [e for e in mounts.synfs_mounts() if e.mountpoint == str(mnt)]
        assert entry.user_id == USER
        read = as_user(["cat", str(mnt / "notes.txt")], user_home)
        assert read.returncode == 0 and read.stdout == world.notes.decode()
        write = as_user(["sh", "-c", f"printf 'from uid {USER}\\n' > '{mnt}/by-user.txt'"],
                        user_home)
        assert write.returncode == 0, write.stderr
        back = as_user(["cat", str(mnt / "by-user.txt")], user_home)
        assert back.stdout == f"from uid {USER}\n"

        mine = as_user([sys.executable, "-m", "synfs", "status", "--json", str(mnt)], user_home)
        assert mine.returncode == 0, mine.stderr
        [item] = json.loads(mine.stdout)
        assert item["state"] == "answering" and item["uid"] == USER and item["mine"]

        # root, without allow_other, cannot look into it: not "answering", not "dead"
        rc, [theirs] = status_json(str(mnt))
        assert theirs["state"] == NOT_YOURS and rc == 0, theirs
        assert f"uid {USER}" in theirs["detail"]

        # and the ordinary user sees root's mounts the same way
        root_mount = service_mounts(world.owner.token, world.sts, "roots")
        other = as_user([sys.executable, "-m", "synfs", "status", str(root_mount.path)],
                        user_home)
        assert other.returncode == 0, other.stdout + other.stderr
        header = other.stdout.splitlines()[0]     # (the capability lets it read root's report)
        assert header.startswith(f"{root_mount.path}: {world.sts} ") and header.endswith(
            f" - {NOT_YOURS} (mounted by uid 0 without allow_other)"), header

        # its daemon killed outright: root still sees "not yours" (FUSE refuses root's stat
        # before it looks at the connection), never "answering"; its owner sees "dead" and
        # can clean it up as an ordinary user
        os.kill(item["pid"], signal.SIGKILL)
        wait_for(lambda: as_user([sys.executable, "-m", "synfs", "status", str(mnt)],
                                 user_home).returncode == 1)
        rc, [theirs] = status_json(str(mnt))
        assert theirs["state"] == NOT_YOURS, theirs
        dead = as_user([sys.executable, "-m", "synfs", "status", "--json", str(mnt)], user_home)
        assert json.loads(dead.stdout)[0]["state"] == "dead"
        down = as_user([sys.executable, "-m", "synfs", "unmount", str(mnt)], user_home)
        assert down.returncode == 0, down.stderr
        assert not mounts.is_mounted(mnt)
        assert "Traceback" not in log.read_text()
    finally:
        force_unmount(mnt)


# ---- the request rate limiter ---------------------------------------------------------------
def test_rate_limiter_waits_are_visible(caplog):
    from synfs.synapse.throttle import RateLimiter

    now = [1000.0]
    seen = []

    def sleep(seconds):
        seen.append((seconds, lim.status()["waiting"]))
        now[0] += seconds

    lim = RateLimiter(3, 2, 10.0, margin=0.5, clock=lambda: now[0], sleep=sleep)
    assert lim.status()["waits"] == 0
    with caplog.at_level(logging.DEBUG, logger="synfs.synapse.throttle"):
        for _ in range(3):
            with lim.slot():
                pass
    [(delay, waiting)] = seen
    assert delay == pytest.approx(10.5) and waiting == 1
    st = lim.status()
    assert st["waits"] == 1 and st["waiting"] == 0 and st["limit"] == "2 per 10s"
    assert st["longest_wait_s"] == pytest.approx(10.5) and st["last_wait_at"] is not None
    assert any("waiting 10.50s, 1 request(s) queued" in r.getMessage() for r in caplog.records)

    from synfs.cli.status_render import render_one

    text = "\n".join(render_one({"mountpoint": "/m", "source": "syn1", "state": "answering",
                                 "age_s": 0, "rate_limit": st}))
    assert "rate limit" in text and "2 per 10s; 1 wait, 10s in all, longest 10s" in text
