"""The runner against the real emulator when Synapse itself refuses a non-owner's handle
(``POST /externalFileHandle/s3`` -> 403, synapse-api.md §4.2 step 8): the run stops with the
owner rule named, and nothing is created, even when the ownership pre-check is bypassed."""

from __future__ import annotations

import io

import pytest

from synfs.register.journal import Journal
from synfs.register.progress import Progress
from synfs.register.runner import OWNER_RULE, Options, Registrar, RegisterError
from synfs.s3.listing import S3Lister
from synfs.s3.reader import S3Reader
from synfs.synapse.credentials import CredentialStore
from synfs.synapse.writer import SynapseWriter
from tests.seams import client_for
from tests.seams.test_writer import external_world


class TrustingWriter(SynapseWriter):
    """Skips the GET /storageLocation pre-check, so the handle POST meets Synapse's rule."""

    def owns_storage_location(self, storage_location_id: int) -> bool:
        return True


def test_synapse_refusing_a_non_owner_handle_stops_the_run(emulator, tmp_path):
    world = external_world(emulator, "register-refusal",
                           ["READ", "DOWNLOAD", "CREATE", "UPDATE"])
    owner = world.owner
    creds = owner.api.ok(owner.api.get(f"/entity/syn{world.folder}/sts?permission=read_write"))
    emulator.s3_client(creds).put_object(Bucket=world.bucket, Key=f"{world.base_key}/a/x.txt",
                                         Body=b"x")
    client = client_for(emulator, world.other.token, retry_budget_s=10)
    store = CredentialStore(client)
    lister = S3Lister(emulator.info["s3Endpoint"], store)
    reader = S3Reader(emulator.info["s3Endpoint"], store)
    progress = Progress(out=io.StringIO(), err=io.StringIO(), bar=False)
    registrar = Registrar(client, TrustingWriter(client), lister, reader,
                          Journal(tmp_path / "j"), progress, Options(folder_id=world.folder))
    try:
        with pytest.raises(RegisterError) as exc:
            registrar.run()
        text = str(exc.value)
        assert OWNER_RULE in text and f"{world.base_key}/a/x.txt" in text
        assert "Only the creator of ExternalS3StorageLocationSetting" in text
        children = client.list_children(world.folder)
        assert [c.name for c in children] == []              # no folder, no file
        assert "created folder" not in progress.out.getvalue()
    finally:
        lister.close()
        reader.close()
        client.close()
