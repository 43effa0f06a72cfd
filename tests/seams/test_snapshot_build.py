"""Building snapshots against the emulator: the listings + bundles source, the file-view
source (rows cross-checked against listings, stale rows fetched by bundle, ``--where``),
resuming an interrupted build, and the exact REST calls each source makes."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
import pytest

from synfs.config import EXIT_BAD_WHERE, EXIT_VIEW_SCOPE
from synfs.snapshot.build import Builder, build_from_listings
from synfs.snapshot.store import Snapshot, SnapshotError, SnapshotWriter, partial_path
from synfs.snapshot.views import build_from_view
from synfs.synapse.client import Endpoints, SynapseClient
from synfs.synapse.tables import Tables
from tests.emulator.test_entities import file_entity, upload
from tests.emulator.test_views import annotate, make_view
from tests.harness import ROOT

CONTENTS = {"a/one.txt": b"one", "a/two.txt": b"second file", "a/deep/three.txt": b"3" * 300,
            "b/four.txt": b"four!", "top.txt": b"at the top"}
ASSAY = {"a/one.txt": "rna", "a/two.txt": "dna", "a/deep/three.txt": "rna", "b/four.txt": "wgs",
         "top.txt": "dna"}


@pytest.fixture(scope="module")
def world(emulator):
    owner = emulator.new_user()
    api = owner.api
    proj = api.project()
    folders = {"": proj["id"]}
    for path in ("a", "a/deep", "b"):
        parent, _, name = path.rpartition("/")
        folders[path] = api.folder(folders[parent], name)["id"]
    ids = {}
    for path, data in CONTENTS.items():
        parent, _, name = path.rpartition("/")
        ent = file_entity(api, folders[parent], name, upload(api, data, name))
        annotate(api, ent["id"], {"assay": ASSAY[path]})
        ids[path] = ent["id"]
    view = make_view(api, proj["id"], [proj["id"]], extra_columns=[
        {"name": "assay", "columnType": "STRING", "maximumSize": 20}])
    return owner, proj, folders, ids, view


def client_for(emulator, token) -> SynapseClient:
    info = emulator.info
    return SynapseClient(Endpoints(repo=info["repoEndpoint"], file=info["fileHandleEndpoint"]),
                         token, retry_budget_s=10)


def build(emulator, token, out, root, view=None, where=None, on_progress=lambda p: None):
    client = client_for(emulator, token)
    meta = {"source": "view" if view else "listings", "where": where or "",
            "view": view or ""}
    writer = SnapshotWriter(out, int(root[3:]), meta)
    builder = Builder(client, writer, on_progress=on_progress)
    try:
        if view:
            build_from_view(builder, Tables(client), int(root[3:]), int(view[3:]), where)
        else:
            build_from_listings(builder, int(root[3:]))
    except BaseException:
        writer.close()
        raise
    finally:
        builder.close()
    writer.finish({})
    return client.stats.snapshot(), Snapshot(out)


def check_exact(snap: Snapshot, ids: dict, only=None) -> None:
    paths = snap.paths()
    files = {paths[n.id]: n for n in snap.files()}
    want = {p for p in CONTENTS if only is None or p in only}
    assert set(files) == want
    for path in want:
        node = files[path]
        assert f"syn{node.id}" == ids[path]
        assert node.size == len(CONTENTS[path])
        assert node.md5 == hashlib.md5(CONTENTS[path]).hexdigest()
        assert node.bucket and node.key and node.storage_location_id is not None


def test_listings_source_is_exact_with_one_bundle_per_file(emulator, world, tmp_path):
    owner, proj, folders, ids, _ = world
    calls, snap = build(emulator, owner.token, tmp_path / "t.synfs", proj["id"])
    check_exact(snap, ids)
    assert snap.info()["folders"] == 3 and snap.info()["files"] == 5
    assert calls == {"POST /entity/{id}/bundle2": 1 + 5, "POST /entity/children": 4,
                     "GET /entity/{id}/uploadDestination/{id}": 1}
    assert not partial_path(tmp_path / "t.synfs").exists()


def test_view_source_needs_no_call_per_file(emulator, world, tmp_path):
    owner, proj, folders, ids, view = world
    calls, snap = build(emulator, owner.token, tmp_path / "v.synfs", proj["id"], view["id"])
    check_exact(snap, ids)
    assert calls["POST /entity/{id}/bundle2"] == 1          # the root only
    assert calls["POST /fileHandle/batch"] == 1            # 5 files: one batch
    assert calls["POST /entity/children"] == 4


def test_where_keeps_matching_files_and_their_folders(emulator, world, tmp_path):
    owner, proj, folders, ids, view = world
    _, snap = build(emulator, owner.token, tmp_path / "w.synfs", proj["id"], view["id"],
                    where="assay = 'rna'")
    check_exact(snap, ids, only={"a/one.txt", "a/deep/three.txt"})
    assert sorted(p for p in snap.paths().values() if p) == \
        ["a", "a/deep", "a/deep/three.txt", "a/one.txt"]


def test_bad_where_and_uncovered_root_are_distinct_errors(emulator, world, tmp_path):
    owner, proj, folders, ids, view = world
    with pytest.raises(SnapshotError) as bad:
        build(emulator, owner.token, tmp_path / "x.synfs", proj["id"], view["id"],
              where="assay = = 'rna' AND (")
    assert bad.value.exit_code == EXIT_BAD_WHERE
    other = owner.api.project()
    with pytest.raises(SnapshotError) as scope:
        build(emulator, owner.token, tmp_path / "y.synfs", other["id"], view["id"])
    assert scope.value.exit_code == EXIT_VIEW_SCOPE and view["id"] in str(scope.value)


def test_stale_view_rows_fall_back_to_bundles(emulator, world, tmp_path):
    owner = world[0]
    api = owner.api
    sub = api.project()["id"]
    f = file_entity(api, sub, "s.txt", upload(api, b"old bytes", "s.txt"))
    view = make_view(api, sub, [sub])
    build(emulator, owner.token, tmp_path / "s1.synfs", sub, view["id"])   # indexes the row
    emulator.set_faults(view_lag_s=60)
    f["dataFileHandleId"] = upload(api, b"new bytes!!", "s.txt")
    assert api.ok(api.put(f"/entity/{f['id']}", f), 200)["versionNumber"] == 2
    calls, snap = build(emulator, owner.token, tmp_path / "s2.synfs", sub, view["id"])
    (node,) = list(snap.files())
    assert (node.version, node.size) == (2, len(b"new bytes!!"))
    assert node.md5 == hashlib.md5(b"new bytes!!").hexdigest()
    assert calls["POST /entity/{id}/bundle2"] == 2          # the root and the stale file


def test_an_interrupted_build_resumes_where_it_stopped(emulator, world, tmp_path, monkeypatch):
    owner, proj, folders, ids, _ = world
    monkeypatch.setattr("synfs.snapshot.build.BUNDLE_CHUNK", 2)
    out = tmp_path / "r.synfs"

    def stop(progress):
        if progress.phase == "files" and progress.files_done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(emulator, owner.token, out, proj["id"], on_progress=stop)
    assert partial_path(out).exists() and not out.exists()
    with pytest.raises(SnapshotError):
        Snapshot(partial_path(out))                       # unfinished: not mountable
    calls, snap = build(emulator, owner.token, out, proj["id"])
    check_exact(snap, ids)
    assert calls.get("POST /entity/children", 0) == 0         # the walk was complete
    assert calls["POST /entity/{id}/bundle2"] == 1 + 5 - 2    # root + the files not done


def test_view_paging_and_slow_jobs_still_give_an_exact_snapshot(emulator, world, tmp_path):
    owner, proj, folders, ids, view = world
    emulator.set_faults(table_page_rows=2, table_job_s=0.3)
    calls, snap = build(emulator, owner.token, tmp_path / "p.synfs", proj["id"], view["id"])
    check_exact(snap, ids)
    assert calls["POST /entity/{id}/table/query/nextPage/async/start"] >= 2   # 5 rows, 2 a page
    assert calls["POST /entity/{id}/bundle2"] == 1


def test_kill_9_during_a_build_leaves_a_partial_file_that_the_next_run_completes(
        emulator, world, tmp_path):
    owner, proj, folders, ids, _ = world
    token = tmp_path / "token"
    token.write_text(owner.token + "\n")
    token.chmod(0o600)
    out = tmp_path / "k.synfs"
    info = emulator.info
    argv = [sys.executable, "-m", "synfs", "snapshot", proj["id"], "-o", str(out),
            "--token-file", str(token), "--repo-endpoint", info["repoEndpoint"],
            "--file-endpoint", info["fileHandleEndpoint"], "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    emulator.set_faults(latency_ms=300)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    done = 0
    while done < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            db = sqlite3.connect(f"file:{partial_path(out)}?mode=ro", uri=True)
            done = db.execute("SELECT COUNT(*) FROM nodes WHERE kind = 'file' AND done = 1"
                              ).fetchone()[0]
            db.close()
        except sqlite3.Error:
            pass
    proc.kill()
    proc.communicate()
    assert done >= 1 and partial_path(out).exists() and not out.exists()
    emulator.reset_faults()
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    check_exact(Snapshot(out), ids)
