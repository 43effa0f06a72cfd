"""The official synapseclient reads back what the mount wrote: same bytes, MD5 and versions."""

from __future__ import annotations

import hashlib
import os

from tests.judge.conftest import ClientFactory


def test_synapseclient_reads_what_the_mount_wrote(emulator, seeded, mounts, tmp_path, monkeypatch):
    owner, layout = seeded
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SYNAPSE_AUTH_TOKEN", raising=False)
    m = mounts(owner.token, layout["externalStsFolder"], "judged", ["--xattrs"])
    v1, v2 = os.urandom(123_457), os.urandom(9 * 1024 * 1024 + 1)
    (m.path / "judged.bin").write_bytes(v1)
    (m.path / "judged.bin").write_bytes(v2)
    syn_id = os.getxattr(m.path / "judged.bin", "user.synapse.id").decode()

    syn = ClientFactory(emulator, tmp_path).new(owner.token)
    latest = syn.get(syn_id, downloadLocation=str(tmp_path / "latest"))
    assert latest.versionNumber == 2 and latest.name == "judged.bin"
    with open(latest.path, "rb") as fh:
        assert fh.read() == v2
    assert latest._file_handle["contentMd5"] == hashlib.md5(v2).hexdigest()
    first = syn.get(syn_id, version=1, downloadLocation=str(tmp_path / "first"))
    with open(first.path, "rb") as fh:
        assert fh.read() == v1
    children = {c["name"]: c["id"] for c in syn.getChildren(layout["externalStsFolder"])}
    assert children["judged.bin"] == syn_id
