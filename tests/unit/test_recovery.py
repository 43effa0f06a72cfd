"""Unit tests of the crash-recovery rules (synfs.write.recovery) and `synfs recover` on a
staging area made by hand: no mount, no HTTP."""

from __future__ import annotations

import os

import trio

from synfs.cli.main import main
from synfs.write import journal, recovery
from synfs.write.staging import StagingArea


class Lists:
    def __init__(self):
        self.recovery = {"kept": [], "recovered": [], "conflicts": []}


def make(tmp_path):
    area = StagingArea(tmp_path / "c" / "staging", 10_000, owner="7")
    never = area.new("draft.txt", parent_id=5, name="draft.txt", storage_location_id=1,
                     bucket="b")
    never.write(0, b"half")
    done = area.new("final.txt", parent_id=5, name="final.txt", storage_location_id=1,
                    bucket="b")
    done.write(0, b"complete")
    done.note(state=journal.CLOSING)
    old = area.root / "0123-legacy.bin"         # an older synfs left it without a record
    old.write_bytes(b"legacy!")
    for f in (never, done):                     # the process "dies": fds go, files stay
        f.closed = True
        os.close(f.fd)
    return area


def test_startup_counts_everything_and_saves_only_complete_files(tmp_path):
    area = make(tmp_path)
    fresh = StagingArea(area.root, 10_000, owner="7")
    writes = Lists()
    saved = []

    class FakeSaver:
        def save(self, root, kept, force=False):
            saved.append(kept.record.name)
            recovery.discard(root, kept)
            return "saved"

    rec = recovery.StartupRecovery(fresh, writes, FakeSaver(), "7")
    rec.scan()
    assert fresh.used == len(b"half") + len(b"complete") + len(b"legacy!") == fresh.kept_bytes
    kept = {k["id"].split("-", 1)[1]: k for k in writes.recovery["kept"]}
    assert set(kept) == {"draft.txt", "legacy.bin"}
    assert "never closed" in kept["draft.txt"]["why"] and "no record" in kept["legacy.bin"]["why"]
    trio.run(rec.run)
    assert saved == ["final.txt"]
    assert [r["name"] for r in writes.recovery["recovered"]] == ["final.txt"]
    assert fresh.used == len(b"half") + len(b"legacy!")
    assert sorted(p.name.split("-", 1)[1] for p in area.root.iterdir()) == ["draft.txt",
                                                                             "legacy.bin"]


def test_another_users_files_are_left_alone(tmp_path):
    area = make(tmp_path)
    fresh = StagingArea(area.root, 10_000, owner="8")
    writes = Lists()
    rec = recovery.StartupRecovery(fresh, writes, None, "8")
    rec.scan()
    assert [k["id"] for k in writes.recovery["kept"]] == ["0123-legacy.bin"] and not rec.todo


def test_recover_list_and_discard_without_a_mount(tmp_path, capsys):
    area = make(tmp_path)
    cache = str(tmp_path / "c")
    assert main(["recover", "list", "--cache-dir", cache]) == 0
    out = capsys.readouterr().out
    assert "3 kept file(s)" in out and "draft.txt in syn5 (new file)" in out
    assert f"save to Synapse: synfs recover save ID|--all --cache-dir {cache}" in out
    assert f"drop: synfs recover discard ID|--all --cache-dir {cache}" in out
    assert main(["recover", "discard", "nope", "--cache-dir", cache]) == 2
    assert "no kept file with that id" in capsys.readouterr().err
    assert main(["recover", "discard", "--all", "--cache-dir", cache]) == 0
    assert list(area.root.iterdir()) == [] and journal.scan(area.root) == ([], [])


def test_staged_files_and_their_records_are_private(tmp_path):
    """Staged bytes are the user's unsaved data and records name its files (issue 11 G): the
    staging and journal directories are 0700 and every file in them 0600, whatever the umask;
    a missing cache directory above them is created 0700 too."""
    mode = lambda p: os.stat(p).st_mode & 0o777      # noqa: E731
    old = os.umask(0o022)
    try:
        area = make(tmp_path)
    finally:
        os.umask(old)
    folder = journal.journal_dir(area.root)
    assert mode(tmp_path / "c") == 0o700
    assert mode(area.root) == 0o700 and mode(folder) == 0o700
    staged = [p for p in area.root.iterdir() if p.name != "0123-legacy.bin"]
    records = list(folder.iterdir())
    assert len(staged) == 2 and len(records) == 2
    assert {mode(p) for p in staged + records} == {0o600}
