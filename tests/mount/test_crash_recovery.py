"""Crashes lose nothing: real mounts, real ``kill -9`` of the daemon, then a new mount of the
same user and cache directory (or ``synfs recover`` without a mount) finishes the job.

The crash matrix: before close, during the upload (S3 latency widens the window), between the
S3 upload and the entity update (the entity POST fails until the crash), and after a rename of
an unsaved file over an existing one. Content is checked by hash in Synapse afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.mount.conftest import run_synfs
from tests.mount.test_writes import synapse_bytes, versions

MiB = 1024 * 1024


def extra(cache: Path) -> list[str]:
    return ["--cache-dir", str(cache), "--xattrs", "--retry-budget", "3", "--metadata-ttl", "1"]


def daemon_pid(mnt: Path) -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"synfs" in argv and b"mount" in argv and str(mnt).encode() in argv:
            return int(entry)
    raise AssertionError(f"no daemon for {mnt}")


def crash(m) -> None:
    """SIGKILL the mount's daemon, then detach the dead mount."""
    pid = daemon_pid(m.path)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or
             b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower(), "daemon death")
    subprocess.run(["fusermount3", "-u", "-z", str(m.path)], check=False, capture_output=True)


def wait_for(cond, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = cond()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def records(cache: Path) -> dict[str, dict]:
    out = {}
    folder = cache / "staging.journal"
    for p in folder.glob("*.json") if folder.is_dir() else []:
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        out[rec["name"]] = rec
    return out


def uploads(m) -> dict:
    res = run_synfs(["-m", "synfs", "status", "--json", str(m.path)], raw=True)
    report = json.loads(res.stdout)[0] if res.stdout.strip() else {}
    return report.get("uploads") or {}


def close_in_thread(fd: int) -> threading.Thread:
    def close() -> None:
        try:
            os.close(fd)
        except OSError:
            pass                        # the daemon died under it
    t = threading.Thread(target=close, daemon=True)
    t.start()
    return t


def children(owner, folder: str) -> dict[str, str]:
    page = owner.api.ok(owner.api.post("/entity/children", {
        "parentId": folder, "includeTypes": ["file"]}))["page"]
    return {c["name"]: c["id"] for c in page}


@pytest.fixture
def world(emulator, seeded, mounts, tmp_path, request):
    """A folder of its own inside the external STS folder (trashed afterwards, so the sample
    project's file list stays what other tests expect), and a cache directory."""
    owner, layout = seeded
    label = re.sub(r"[^\w.+-]", "-", request.node.name)[:40]
    folder = owner.api.folder(layout["externalStsFolder"], f"crash-{label}")
    yield owner, folder["id"], tmp_path / "cache"
    emulator.reset_faults()
    owner.api.ok(owner.api.delete(f"/entity/{folder['id']}"), (200, 204))   # leave no trace


def test_kill_before_close_keeps_the_file_and_recover_saves_it(seeded, mounts, world):
    owner, folder, cache = world
    m = mounts(owner.token, folder, "crash-open", extra(cache))
    data = os.urandom(3 * MiB)
    fd = os.open(m.path / "half.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data)
    crash(m)
    close_in_thread(fd).join(10)
    m2 = mounts(owner.token, folder, "crash-open-2", extra(cache))
    up = wait_for(lambda: uploads(m2).get("kept") and uploads(m2), "kept file in status")
    assert up["kept_count"] == 1 and up["kept"][0]["name"] == "half.bin"
    assert up["kept"][0]["state"] == "open" and up["kept"][0]["size"] == len(data)
    assert up["kept_bytes"] == len(data)              # counted in --cache-size
    assert "half.bin" not in children(owner, folder)  # never closed: never saved on its own
    assert "never closed" in m2.log_text() and "half.bin" in m2.log_text()
    text = run_synfs(["-m", "synfs", "status", str(m2.path)], raw=True).stdout
    assert "left by earlier mounts: kept 1 (3.0 MiB)" in text, text     # counted, readable
    assert re.search(rf"^ +half.bin in {folder} \(new file\): 3.0 MiB, open; never closed by "
                     r"its writer", text, re.M), text
    m2.stop()
    listed = run_synfs(["-m", "synfs", "recover", "list", "--cache-dir", str(cache)], raw=True)
    assert listed.returncode == 0 and "half.bin" in listed.stdout and " open " in listed.stdout
    info = m.emulator.info
    saved = run_synfs(["-m", "synfs", "recover", "save", "--all", "--cache-dir", str(cache),
                       "--token-file", str(m.token_file),
                       "--repo-endpoint", info["repoEndpoint"],
                       "--file-endpoint", info["fileHandleEndpoint"],
                       "--auth-endpoint", info["authEndpoint"],
                       "--s3-endpoint", info["s3Endpoint"]], raw=True)
    assert saved.returncode == 0, saved.stderr
    assert "as a new file" in saved.stdout
    syn_id = children(owner, folder)["half.bin"]
    got = synapse_bytes(seeded, syn_id)[0]
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert records(cache) == {} and list((cache / "staging").iterdir()) == []
    empty = run_synfs(["-m", "synfs", "recover", "list", "--cache-dir", str(cache)], raw=True)
    assert "no kept files" in empty.stdout


def test_kill_during_upload_and_after_rename_recovers_both(emulator, seeded, mounts, world):
    owner, folder, cache = world
    m = mounts(owner.token, folder, "crash-upload", extra(cache))
    (m.path / "doc.txt").write_bytes(b"version one")
    doc_id = os.getxattr(m.path / "doc.txt", "user.synapse.id").decode()
    new_file = os.urandom(2 * MiB)
    new_doc = os.urandom(MiB + 17)
    fd1 = os.open(m.path / "fresh.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd1, new_file)
    fd2 = os.open(m.path / ".doc.txt.swp", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd2, new_doc)
    os.rename(m.path / ".doc.txt.swp", m.path / "doc.txt")      # an editor's save
    emulator.set_faults(s3_latency_ms=20_000)                    # uploads hang: the window
    close_in_thread(fd1)
    close_in_thread(fd2)
    wait_for(lambda: [r["state"] for r in records(cache).values()] == ["closing"] * 2,
             "both saves to start")
    assert records(cache)["doc.txt"]["entity_id"] == int(doc_id.removeprefix("syn"))
    crash(m)
    emulator.reset_faults()
    m2 = mounts(owner.token, folder, "crash-upload-2", extra(cache))
    up = wait_for(lambda: len(uploads(m2).get("recovered") or []) == 2 and uploads(m2),
                  "both files recovered")
    assert up["kept_count"] == 0 and up["conflicts_count"] == 0
    names = children(owner, folder)
    assert set(names) == {"doc.txt", "fresh.bin"}                # no swap file, no duplicate
    assert synapse_bytes(seeded, names["fresh.bin"])[0] == new_file
    assert synapse_bytes(seeded, doc_id)[0] == new_doc
    assert len(versions(seeded, doc_id)) == 2 and len(versions(seeded, names["fresh.bin"])) == 1
    assert (m2.path / "doc.txt").read_bytes() == new_doc
    assert records(cache) == {} and list((cache / "staging").iterdir()) == []


def test_kill_between_upload_and_entity_update_does_not_upload_again(emulator, seeded, mounts,
                                                                    world):
    owner, folder, cache = world
    m = mounts(owner.token, folder, "crash-entity", extra(cache))
    (m.path / "changed.txt").write_bytes(b"base")
    changed_id = os.getxattr(m.path / "changed.txt", "user.synapse.id").decode()
    data = os.urandom(MiB)
    emulator.set_faults(errors=[{"path": "/repo/v1/entity$", "method": "POST", "status": 503},
                                {"path": r"/repo/v1/entity/syn\d+$", "method": "PUT",
                                 "status": 503}])
    fd = os.open(m.path / "late.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data)
    fd2 = os.open(m.path / "changed.txt", os.O_WRONLY | os.O_TRUNC)
    os.write(fd2, b"mine")
    close_in_thread(fd)
    close_in_thread(fd2)
    wait_for(lambda: [r["state"] for r in records(cache).values()] == ["uploaded"] * 2,
             "the uploads to finish while the entity updates fail")
    handle = records(cache)["late.bin"]["file_handle_id"]
    crash(m)
    emulator.reset_faults()
    # meanwhile another client changes one target: that one must become a conflict
    from synfs.cli.demo_seed import Seeder

    seeded_owner, layout = seeded
    seeder = Seeder(owner.api.info, owner.token)
    other = seeder.sts_put(folder, layout["externalStsLocation"], "changed.txt", b"theirs")
    raw = owner.api.ok(owner.api.get(f"/entity/{changed_id}"))
    raw["dataFileHandleId"] = str(other)
    owner.api.ok(owner.api.put(f"/entity/{changed_id}?newVersion=true", raw))
    m2 = mounts(owner.token, folder, "crash-entity-2", extra(cache))
    up = wait_for(lambda: uploads(m2).get("recovered") and uploads(m2).get("conflicts")
                  and uploads(m2), "recovery to finish")
    assert [r["name"] for r in up["recovered"]] == ["late.bin"]
    assert [c["name"] for c in up["conflicts"]] == ["changed.txt"]
    late_id = children(owner, folder)["late.bin"]
    got, fh = synapse_bytes(seeded, late_id)
    assert got == data and int(fh["id"]) == handle       # the upload was not made again
    assert synapse_bytes(seeded, changed_id)[0] == b"theirs"   # not overwritten
    kept = [p for p in (cache / "staging").iterdir()]
    assert [p.read_bytes() for p in kept] == [b"mine"]         # and not lost
    assert "changed since it was opened" in m2.log_text()


def recover_save_all(m, cache: Path) -> subprocess.CompletedProcess:
    info = m.emulator.info
    return run_synfs(["-m", "synfs", "recover", "save", "--all", "--cache-dir", str(cache),
                      "--token-file", str(m.token_file),
                      "--repo-endpoint", info["repoEndpoint"],
                      "--file-endpoint", info["fileHandleEndpoint"],
                      "--auth-endpoint", info["authEndpoint"],
                      "--s3-endpoint", info["s3Endpoint"]], raw=True)


def fault_count(emulator) -> int:
    faults = emulator.admin.ok(emulator.admin.get("/faults", prefix="admin"))
    return faults["errors"][0]["count"]


@pytest.mark.parametrize("stuck", ["version of the target", "trash of the source"])
def test_kill_during_a_rename_loses_nothing(emulator, seeded, mounts, world, stuck):
    """An editor's save (rename over the original) is two Synapse calls; the daemon is killed
    while one of them is being retried, with the renamed file open for writing and holding
    bytes Synapse does not have yet. Afterwards every byte is in Synapse or kept."""
    owner, folder, cache = world
    m = mounts(owner.token, folder, f"crash-rename-{stuck[:5]}",
               ["--cache-dir", str(cache), "--xattrs", "--metadata-ttl", "1",
                "--retry-budget", "60"])
    (m.path / "doc.txt").write_bytes(b"version one")
    doc_id = os.getxattr(m.path / "doc.txt", "user.synapse.id").decode()
    saved = os.urandom(MiB + 5)
    (m.path / "swap.txt").write_bytes(saved)
    swap_id = os.getxattr(m.path / "swap.txt", "user.synapse.id").decode()
    more = os.urandom(300_000)
    fd = os.open(m.path / "swap.txt", os.O_WRONLY | os.O_APPEND)
    os.write(fd, more)                              # not closed: Synapse does not have these
    rule = ({"path": rf"/repo/v1/entity/{doc_id}$", "method": "PUT", "status": 503}
            if stuck == "version of the target" else
            {"path": rf"/repo/v1/entity/{swap_id}$", "method": "DELETE", "status": 503})
    emulator.set_faults(errors=[{**rule, "count": 10_000}])
    failed = []

    def rename() -> None:
        try:
            os.rename(m.path / "swap.txt", m.path / "doc.txt")
        except OSError as exc:
            failed.append(exc)                      # the daemon died under it
    t = threading.Thread(target=rename, daemon=True)
    t.start()
    wait_for(lambda: fault_count(emulator) < 10_000, "the rename to reach Synapse")
    assert t.is_alive()                             # still in the rename: now the crash
    crash(m)
    t.join(10)
    close_in_thread(fd).join(10)
    emulator.reset_faults()
    assert failed and not t.is_alive()
    assert records(cache)["swap.txt"]["state"] == "open"
    # Synapse still has both entities: the original's history and the source's bytes
    assert synapse_bytes(seeded, doc_id, 1)[0] == b"version one"
    assert synapse_bytes(seeded, swap_id)[0] == saved
    assert len(versions(seeded, doc_id)) == (1 if stuck == "version of the target" else 2)
    m2 = mounts(owner.token, folder, f"crash-rename-{stuck[:5]}-2", extra(cache))
    up = wait_for(lambda: uploads(m2).get("kept") and uploads(m2), "kept file in status")
    assert [(k["name"], k["state"], k["size"]) for k in up["kept"]] == [
        ("swap.txt", "open", len(saved) + len(more))]
    m2.stop()
    res = recover_save_all(m, cache)
    assert res.returncode == 0, res.stderr
    assert f"as a new version of {swap_id}" in res.stdout
    assert synapse_bytes(seeded, swap_id)[0] == saved + more     # every byte, by hash
    assert records(cache) == {} and list((cache / "staging").iterdir()) == []


def test_a_crashed_dd_leaves_no_empty_entity(seeded, mounts, world):
    """`dd of=` never makes a 0-byte file first: dd killed mid-copy saves what it wrote, as
    one version; the daemon killed mid-copy leaves nothing in Synapse and the bytes kept."""
    owner, folder, cache = world
    m = mounts(owner.token, folder, "crash-dd", extra(cache))
    block = 64 * 1024

    def dd_from_pipe(name: str) -> tuple[subprocess.Popen, int]:
        r, w = os.pipe()
        proc = subprocess.Popen(["dd", f"of={m.path / name}", f"bs={block}", "iflag=fullblock",
                                 "status=none"], stdin=r)
        os.close(r)
        return proc, w

    data = os.urandom(3 * block)
    dd, w = dd_from_pipe("killed-dd.bin")
    os.write(w, data)
    wait_for(lambda: os.stat(m.path / "killed-dd.bin").st_size == len(data), "dd to write")
    dd.kill()                                       # dd dies; the kernel closes its file
    dd.wait()
    os.close(w)
    syn_id = wait_for(lambda: os.getxattr(m.path / "killed-dd.bin", "user.synapse.id"),
                      "dd's file to be saved").decode()
    assert [v["versionNumber"] for v in versions(seeded, syn_id)] == [1]
    assert synapse_bytes(seeded, syn_id)[0] == data
    dd, w = dd_from_pipe("dd.bin")
    os.write(w, data)
    wait_for(lambda: os.stat(m.path / "dd.bin").st_size == len(data), "dd to write")
    crash(m)                                        # the daemon dies while dd writes
    os.close(w)
    dd.wait(10)
    assert "dd.bin" not in children(owner, folder)  # no 0-byte (or any) file in Synapse
    kept = records(cache)["dd.bin"]
    assert kept["state"] == "open"
    assert (cache / "staging" / kept["stem"]).read_bytes() == data
