"""synfs.service.kernel: best effort, never an exception, whatever the machine refuses."""

from __future__ import annotations

import subprocess

from synfs.service import kernel, mounts


def _entry(device: str) -> mounts.MountEntry:
    return mounts.MountEntry(mountpoint="/mnt/x", source="synfs", fstype=mounts.FSTYPE,
                             options="rw", super_options={}, device=device)


def test_a_path_not_in_mountinfo_is_left_alone(monkeypatch):
    monkeypatch.setattr(mounts, "mounted_at", lambda path: None)
    assert kernel.tune("/nowhere") == {}


def test_refused_writes_and_a_missing_mount_command_only_log(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(mounts, "mounted_at", lambda path: _entry("0:4242"))
    monkeypatch.setattr(mounts, "is_mounted", lambda path: False)
    monkeypatch.setattr(kernel, "FUSECTL", tmp_path / "connections")
    (tmp_path / "connections").mkdir()
    monkeypatch.setattr(kernel.os, "geteuid", lambda: 0)

    def no_mount(*a, **kw):
        raise FileNotFoundError("mount")

    monkeypatch.setattr(subprocess, "run", no_mount)
    caplog.set_level("DEBUG", logger="synfs.service.kernel")
    assert kernel.tune("/mnt/x") == {}          # /sys/class/bdi/0:4242 does not exist either
    assert "could not mount fusectl" in caplog.text


def test_the_queue_is_raised_with_the_threshold_below_it(monkeypatch, tmp_path):
    """The queue is raised first, then the threshold set to 3/4 of it, so a refusal half-way
    never leaves a threshold that stops readahead early."""
    conn = tmp_path / "connections" / "4242"
    conn.mkdir(parents=True)
    writes = []
    real_write = kernel._write

    def record(path, value):
        writes.append((path.name, value))
        return real_write(path, value)

    monkeypatch.setattr(mounts, "mounted_at", lambda path: _entry("0:4242"))
    monkeypatch.setattr(mounts, "is_mounted", lambda path: True)
    monkeypatch.setattr(kernel, "FUSECTL", tmp_path / "connections")
    monkeypatch.setattr(kernel, "_write", record)
    done = kernel.tune("/mnt/x")
    assert done == {"max_background": 64, "congestion_threshold": 48}
    assert [w for w in writes if w[0] != "read_ahead_kb"] == [
        ("max_background", 64), ("congestion_threshold", 48)]
    assert (conn / "max_background").read_text() == "64"


def test_a_refused_queue_leaves_the_threshold_alone(monkeypatch, tmp_path):
    conn = tmp_path / "connections" / "4242"
    conn.mkdir(parents=True)
    (conn / "congestion_threshold").write_text("9")
    writes = []

    def refuse_queue(path, value):
        writes.append(path.name)
        return path.name not in ("max_background", "read_ahead_kb")

    monkeypatch.setattr(mounts, "mounted_at", lambda path: _entry("0:4242"))
    monkeypatch.setattr(mounts, "is_mounted", lambda path: True)
    monkeypatch.setattr(kernel, "FUSECTL", tmp_path / "connections")
    monkeypatch.setattr(kernel, "_write", refuse_queue)
    assert kernel.tune("/mnt/x") == {}
    assert "congestion_threshold" not in writes
    assert (conn / "congestion_threshold").read_text() == "9"
