"""How many query pages the file-view sources cost. Synapse sizes a page by the selected
columns' maximum sizes (2 MiB a page): selecting the ``dataFile*`` strings (key 700, name 256,
...) leaves about 400 rows a page, one asynchronous job each. ``synfs snapshot --view`` and
``synfs mount --view`` select only narrow columns, so a 450-file tree is one page (and
scenario 5's 5,000 files too), and the snapshot's sizes and MD5s still come out exact (from
``POST /fileHandle/batch``)."""

from __future__ import annotations

import hashlib

import pytest

from synfs.snapshot.views import view_entities
from synfs.synapse.tables import Tables
from tests.emulator.test_entities import file_entity, upload
from tests.emulator.test_views import make_view
from tests.seams.test_snapshot_build import build, client_for

N = 450                     # more rows than one page holds with the dataFile* strings selected
CONTENT = b"one handle shared by every file"
NEXT_PAGE = "POST /entity/{id}/table/query/nextPage/async/start"


@pytest.fixture(scope="module")
def many(emulator):
    owner = emulator.new_user("view-pages")
    api = owner.api
    proj = api.project()
    folder = api.folder(proj["id"], "many")
    handle = upload(api, CONTENT, "shared.txt")
    for i in range(N):
        file_entity(api, folder["id"], f"f{i:03d}.txt", handle)
    view = make_view(api, proj["id"], [proj["id"]])
    return owner, proj, view


def test_a_snapshot_of_450_files_reads_the_view_in_one_page(emulator, many, tmp_path):
    owner, proj, view = many
    calls, snap = build(emulator, owner.token, tmp_path / "many.synfs", proj["id"], view["id"])
    files = list(snap.files())
    assert len(files) == N
    assert {(n.size, n.md5) for n in files} == {(len(CONTENT), hashlib.md5(CONTENT).hexdigest())}
    assert all(n.bucket and n.key and n.storage_location_id is not None for n in files)
    assert calls["POST /entity/{id}/table/query/async/start"] == 1
    assert calls.get(NEXT_PAGE, 0) == 0
    assert calls["POST /fileHandle/batch"] == 5                 # 100 files a call
    assert calls["POST /entity/{id}/bundle2"] == 1              # the root only


def test_a_view_mount_reads_450_rows_in_one_page(emulator, many):
    owner, proj, view = many
    client = client_for(emulator, owner.token)
    ents = view_entities(Tables(client), int(view["id"][3:]), int(proj["id"][3:]))
    assert len(ents) == N
    assert {e.file_handle.size for e in ents} == {len(CONTENT)}
    assert all(e.version == 1 and e.modified_on > 0 and e.from_store for e in ents)
    calls = client.stats.snapshot()
    assert calls["POST /entity/{id}/table/query/async/start"] == 1
    assert calls.get(NEXT_PAGE, 0) == 0
