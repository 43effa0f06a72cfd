"""Writes that fail part-way through real mounts: a failed upload or entity update keeps the
data (locally, and Synapse consistent), and credentials expiring during an upload are renewed.
Split from ``test_writes.py``, whose helpers these tests share."""

from __future__ import annotations

import errno
import os
import time

import pytest

from tests.mount.test_writes import synapse_bytes, versions


def test_failed_upload_keeps_data_and_synapse_consistent(emulator, seeded, mounts, tmp_path):
    owner, layout = seeded
    cache = tmp_path / "cache"
    m = mounts(owner.token, layout["externalStsFolder"], "failing",
               ["--retry-budget", "2", "--cache-dir", str(cache), "--xattrs"])
    (m.path / "keep.txt").write_bytes(b"v1")
    syn_id = os.getxattr(m.path / "keep.txt", "user.synapse.id").decode()
    emulator.set_faults(s3_error_rate=1.0, s3_error_status=503)
    fh = open(m.path / "keep.txt", "wb")
    fh.write(b"precious v2")
    with pytest.raises(OSError) as exc:
        fh.close()
    assert exc.value.errno == errno.EIO
    emulator.reset_faults()
    assert synapse_bytes(seeded, syn_id)[0] == b"v1"
    assert len(versions(seeded, syn_id)) == 1
    staged = [p for p in (cache / "staging").iterdir()]
    assert [p.read_bytes() for p in staged] == [b"precious v2"]
    assert str(staged[0]) in m.log_text()
    # `synfs status` reports the failed save and where its data is
    import json

    from tests.mount.conftest import run_synfs

    deadline = time.monotonic() + 10
    while True:
        res = run_synfs(["-m", "synfs", "status", "--json", str(m.path)], raw=True)
        report = json.loads(res.stdout)[0] if res.stdout.strip() else {}
        failed = report.get("uploads", {}).get("failed", [])
        if failed or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert failed and failed[-1]["name"] == "keep.txt", res.stdout
    assert failed[-1]["staged"] == str(staged[0])


def test_failed_entity_creation_keeps_data(emulator, seeded, mounts, tmp_path):
    owner, layout = seeded
    cache = tmp_path / "cache2"
    m = mounts(owner.token, layout["externalStsFolder"], "failing2",
               ["--retry-budget", "2", "--cache-dir", str(cache), "--xattrs"])
    emulator.set_faults(errors=[{"path": "/repo/v1/entity$", "method": "POST", "status": 500}])
    fh = open(m.path / "never.txt", "wb")
    fh.write(b"not lost")
    with pytest.raises(OSError) as exc:
        fh.close()
    assert exc.value.errno == errno.EIO
    emulator.reset_faults()
    children = owner.api.ok(owner.api.post("/entity/children", {
        "parentId": layout["externalStsFolder"], "includeTypes": ["file"]}))
    assert "never.txt" not in [c["name"] for c in children["page"]]
    assert [p.read_bytes() for p in (cache / "staging").iterdir()] == [b"not lost"]
    # the file stays on the mount with its content after the failed close ...
    assert "never.txt" in os.listdir(m.path)
    assert (m.path / "never.txt").read_bytes() == b"not lost"
    # ... and a later fsync saves it (then its staged copy goes)
    fd = os.open(m.path / "never.txt", os.O_RDWR)
    os.fsync(fd)
    os.close(fd)
    syn_id = os.getxattr(m.path / "never.txt", "user.synapse.id").decode()
    assert synapse_bytes(seeded, syn_id)[0] == b"not lost"
    deadline = time.monotonic() + 10
    while list((cache / "staging").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((cache / "staging").iterdir()) == []


def test_credentials_expiring_during_upload(emulator, seeded, mounts):
    """The save outlasts its STS credentials: they live 2 s and every S3 request takes 0.8 s,
    so a 40 MiB multipart upload (create, 5 parts 4 at a time, complete, head) takes at least
    4 s; requests after the first 2 s succeed only with credentials fetched again."""
    owner, layout = seeded
    m = mounts(owner.token, layout["externalStsFolder"], "expiring-up", ["--xattrs"])
    lifetime = 2
    data = os.urandom(40 * 1024 * 1024)
    emulator.set_faults(sts_expiration_s=lifetime, s3_latency_ms=800)
    try:
        fh = open(m.path / "slow.bin", "wb")
        fh.write(data)
        start = time.monotonic()
        fh.close()                                   # the upload
        took = time.monotonic() - start
    finally:
        emulator.reset_faults()
    assert took > lifetime + 1, f"the upload took {took:.1f}s, not longer than the credentials"
    syn_id = os.getxattr(m.path / "slow.bin", "user.synapse.id").decode()
    got, handle = synapse_bytes(seeded, syn_id)
    assert got == data and handle["contentSize"] == len(data)
