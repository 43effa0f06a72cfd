"""`synfs status`: a live mount's root, credential expiry, error counts (also after an injected
failure), the status file's privacy, a dead mount, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import signal
import stat

import pytest

from synfs.service import runtime
from tests.service.conftest import force_unmount, one_line, run, synfs_cmd, wait_for


def status(*args: str):
    return run(synfs_cmd("status", *args))


def status_json(path) -> dict:
    res = status(str(path), "--json")
    assert res.returncode == 0, res.stderr
    [item] = json.loads(res.stdout)
    return item


def test_status_of_a_live_mount(world, service_mounts):
    m = service_mounts(world.owner.token, world.sts, "live")
    assert (m.path / "data.txt").read_bytes() == world.data        # fetches STS credentials
    item = wait_for(lambda: (lambda i: i if i.get("credentials", {}).get("locations") else None)(
        status_json(m.path)))
    assert item["state"] == "answering"
    assert item["source"] == world.sts                  # fsname: the Synapse id
    assert item["root"] == {"id": world.sts, "name": "synapse-sts", "kind": "folder"}
    [loc] = item["credentials"]["locations"]
    assert loc["storage_location_id"] == world.sts_loc and loc["permission"] == "read_only"
    assert 0 < loc["remaining_s"] <= 12 * 3600
    assert item["errors"]["failures"] == 0
    assert item["requests"]["synapse"] > 0
    assert item["auth"] == {"state": "accepted"} and item["mine"] is True
    assert item["rate_limit"]["limit"] == "600 per 60s" and item["rate_limit"]["waiting"] == 0
    # the read path's counters: memory budget and the part downloads that served the read
    mem = item["memory"]
    assert mem["limit_bytes"] == 512 << 20 and 0 <= mem["used_bytes"] <= mem["peak_bytes"]
    assert mem["peak_bytes"] >= len(world.data)          # the part that held the file
    assert item["downloads"]["received_bytes"] >= len(world.data)
    assert item["downloads"]["gets"] >= 1
    text = json.dumps(item)
    assert world.owner.token not in text
    assert "secretAccessKey" not in text and "sessionToken" not in text

    res = status(str(m.path))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith(f"{m.path}: {world.sts} \"synapse-sts\" - answering")
    assert f"storage location {world.sts_loc} (read_only, s3://" in out
    assert re.search(r"^  errors +0 failures$", out, re.M), out
    assert re.search(r"^  memory +used [\d.]+ [KMG]?i?B, limit 512\.0 MiB, peak ", out, re.M), out
    assert re.search(r"^  downloads +.*gets \d+.*received [\d.]+ [KMG]?i?B", out, re.M), out

    listing = status()        # every mount on the machine (others' may be unhealthy)
    assert str(m.path) in listing.stdout


def test_status_counts_an_injected_error(world, emulator, service_mounts):
    m = service_mounts(world.owner.token, world.sts, "faulty", ["--retry-budget", "2"])
    emulator.set_faults(s3_error_rate=1.0, s3_error_status=503)
    try:
        try:
            (m.path / "data.txt").read_bytes()
            raise AssertionError("read should have failed")
        except OSError as exc:
            assert exc.errno == 5
    finally:
        emulator.reset_faults()
    item = wait_for(lambda: (lambda i: i if i["errors"]["failures"] else None)(status_json(m.path)))
    assert item["errors"]["by_errno"].get("EIO", 0) >= 1
    assert sum(item["errors"]["failures_by_errno"].values()) == item["errors"]["failures"]
    assert item["errors"]["last_failure"]["errno"] == "EIO"
    out = status(str(m.path)).stdout
    assert "EIO" in out and "last: Unavailable" in out
    assert (m.path / "data.txt").read_bytes() == world.data        # recovered


def test_status_file_is_private_and_removed_on_unmount(world, service_mounts):
    m = service_mounts(world.owner.token, world.sts, "private")
    path = wait_for(lambda: runtime.find_status_file(m.path)[0])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["pid"] > 0
    m.stop()
    wait_for(lambda: not path.exists())


def test_dead_mount_is_reported_and_cleaned_up(world, service_mounts):
    m = service_mounts(world.owner.token, world.sts, "dead")
    pid = wait_for(lambda: status_json(m.path).get("pid"))
    os.kill(pid, signal.SIGKILL)
    try:
        def dead():
            res = status(str(m.path), "--json")
            return res if json.loads(res.stdout)[0]["state"] == "dead" else None
        res = wait_for(dead)
        assert res.returncode == 1
        assert "dead" in status(str(m.path)).stdout
        res = run(synfs_cmd("unmount", "--if-dead", str(m.path)))
        assert res.returncode == 0, res.stderr
        assert not os.path.ismount(m.path)
        assert run(synfs_cmd("unmount", "--if-dead", str(m.path))).returncode == 0
    finally:
        force_unmount(m.path)


def test_not_a_synfs_mount(tmp_path):
    res = status(str(tmp_path))
    assert res.returncode == 6
    assert "is not a synfs mount" in one_line(res)


def test_mountinfo_parsing_unescapes_paths():
    from synfs.cli.status import parse_mountinfo

    text = ("36 35 0:52 / /mnt/with\\040space rw,nosuid,nodev,relatime shared:1 - fuse.synfs "
            "syn123 ro,user_id=1000,group_id=1000,default_permissions,allow_other\n"
            "37 35 0:53 / /home rw - ext4 /dev/sda1 rw\n")
    [entry] = parse_mountinfo(text)
    assert entry.mountpoint == "/mnt/with space" and entry.source == "syn123"
    assert entry.user_id == 1000


class _Cfg:
    mountpoint = "/mnt/x"
    repo_endpoint = "http://repo"
    read_only = True
    allow_other = False
    uid = gid = 1000
    metadata_ttl = 60.0
    max_memory = 1 << 29
    cache_dir = None
    cache_size = 1 << 30


class _Root:
    id = 123
    name = "Project"

    class kind:
        value = "project"


def _publisher(fs, parts=None):
    return runtime.StatusPublisher(_Cfg(), _Root(), parts or object(), fs)


def test_snapshot_takes_what_components_report_and_skips_what_they_lack():
    class Fs:
        def status(self):
            return {"cache": {"used_bytes": 3 << 30, "size_bytes": 10 << 30, "dir": "/c"},
                    "uploads": {"pending": 2, "failed": ["a.txt"]}, "pid": "not mine"}

    snap = _publisher(Fs()).snapshot()
    assert snap["cache"]["used_bytes"] == 3 << 30 and snap["uploads"]["pending"] == 2
    assert snap["pid"] == os.getpid() and snap["fs"]["pid"] == "not mine"
    bare = _publisher(object()).snapshot()
    assert "cache" not in bare and "uploads" not in bare and "credentials" not in bare
    assert bare["root"] == {"id": "syn123", "name": "Project", "kind": "project"}


def test_a_failing_component_is_reported_not_raised():
    class Broken:
        def status(self):
            raise RuntimeError("boom")

    snap = _publisher(Broken(), parts=type("P", (), {"creds": Broken()})()).snapshot()
    assert snap["credentials"] == {"unavailable": "RuntimeError"}


def test_render_shows_reported_parts_and_omits_absent_ones():
    from synfs.cli.status import render_one

    now = __import__("time").time()
    base = {"mountpoint": "/mnt/x", "source": "syn123", "state": "answering",
            "root": {"id": "syn123", "name": "P"}, "pid": 7, "started": now - 3700,
            "updated": now, "age_s": 0.5, "options": {"read_only": True, "uid": 1, "gid": 2},
            "errors": {"failures": 0, "by_errno": {"ENOENT": 4}}}
    text = "\n".join(render_one(dict(base, cache={"used_bytes": 3 << 30, "size_bytes": 10 << 30},
                                     uploads={"pending": 2, "failed": ["a.txt"]})))
    assert re.search(r"^  cache +used 3.0 GiB, size 10.0 GiB$", text, re.M), text
    assert re.search(r"^  uploads +pending 2, failed 1$", text, re.M), text
    assert re.search(r"^ +a.txt$", text, re.M), text
    assert "up 1h 01m" in text and "normal answers (not failures): ENOENT 4" in text
    assert re.search(r"^  report +0.5s old$", text, re.M), text
    plain = "\n".join(render_one(base))
    assert "cache" not in plain and "uploads" not in plain and "credentials" not in plain


def test_report_is_aligned_adds_up_and_renders_records_readably():
    """Labels never run into values, failures add up to their breakdown, failed (and any other
    listed) uploads are lines of text, not Python dicts."""
    from synfs.cli.status import render_one

    now = __import__("time").time()
    m = {"mountpoint": "/mnt/x", "source": "syn1", "state": "answering", "pid": 7,
         "started": now, "age_s": 0.1, "options": {"read_only": False, "uid": 0, "gid": 0},
         "kernel_inodes": 21, "open_files": 3,
         "uploads": {"pending": 0, "failed": [{"name": "a.txt", "folder": "syn5",
                                               "error": "Unavailable", "at": now,
                                               "staged": "/c/staging/u-a.txt"}],
                     "kept": [{"id": "0a1b-b.bin", "name": "b.bin", "folder": "syn6",
                               "entity": None, "size": 2048, "state": "open",
                               "staged": "/c/staging/0a1b-b.bin", "in_use": False,
                               "why": "never closed by its writer: kept, not saved on its own"}],
                     "recovered": [], "conflicts": [], "kept_bytes": 2048,
                     "staging_bytes": 2048},
         "errors": {"failures": 6, "failures_by_errno": {"EIO": 4, "EACCES": 2},
                    "by_errno": {"EIO": 4, "EACCES": 2, "ENOENT": 30, "EEXIST": 3},
                    "last_failure": {"error": "Unavailable", "entity": "syn5", "at": now}}}
    lines = render_one(m)
    text = "\n".join(lines)
    assert "{" not in text and "'" not in text, text
    labelled = [ln for ln in lines[1:] if ln[2:3].strip()]
    columns = {len(ln) - len(ln[2:].split("  ", 1)[1].lstrip()) for ln in labelled}
    assert len(columns) == 1, text                  # every value starts in the same column
    assert re.search(r"^  kernel inodes +21$", text, re.M), text
    failures = re.search(r"(\d+) failures \(([^)]*)\)", text)
    assert sum(int(p.split()[1]) for p in failures.group(2).split(", ")) == int(failures.group(1))
    assert "normal answers (not failures): EEXIST 3, ENOENT 30" in text
    assert re.search(r"^ +a.txt: folder syn5, error Unavailable, at 20\d\d-.* UTC, "
                     r"staged /c/staging/u-a.txt$", text, re.M), text
    assert re.search(r"^ +b.bin in syn6 \(new file\): 2.0 KiB, open; never closed by its writer: "
                     r"kept, not saved on its own; staged /c/staging/0a1b-b.bin$", text, re.M), text
    assert "staging 2.0 KiB; left by earlier mounts: kept 1 (2.0 KiB), recovered 0" in text
    assert "`synfs recover list` shows them" in text


def test_runtime_dir_choice(monkeypatch, tmp_path):
    monkeypatch.delenv("SYNFS_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert str(runtime.default_runtime_dir()) == "/run/synfs"
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert runtime.default_runtime_dir() == tmp_path / "synfs"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert runtime.default_runtime_dir().name == "synfs-4242"
    monkeypatch.setenv("SYNFS_RUNTIME_DIR", str(tmp_path / "explicit"))
    assert runtime.default_runtime_dir() == tmp_path / "explicit"
    assert runtime.candidate_dirs()[0] == tmp_path / "explicit"


def test_private_dir_is_checked(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    runtime.ensure_private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(loose)
    with pytest.raises(runtime.RuntimeDirError, match="not a directory"):
        runtime.ensure_private_dir(link)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, 4242, 4242)
    with pytest.raises(runtime.RuntimeDirError, match="belongs to uid 4242"):
        runtime.ensure_private_dir(foreign)
