"""Uploads and downloads through every synapseclient 4.14 transfer path (synapse-api.md 4, 6.3).

* boto3 put with read_write STS credentials + ``create_external_s3_file_handle`` + store;
* ``syn.store`` with ``use_boto_sts_transfers=True`` on an external STS folder
  (``upload_synapse_sts_boto_s3``: uploadDestination, sts read_write, boto upload_file,
  POST /externalFileHandle/s3);
* ``syn.store`` with it False: multipart upload (``upload_synapse_s3``) to Synapse storage
  and to the external STS location;
* ``syn.get`` with ``use_boto_sts_transfers=True`` (S3ClientWrapper.download_file with a
  read_only token on the file id) and False (POST /fileHandle/batch pre-signed URL).

Every download uses a fresh client (own cache), so bytes really come from the server, and is
compared byte for byte and by MD5.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest

import synapseclient
from synapseclient.core.remote_file_storage_wrappers import S3ClientWrapper

from .conftest import (boto_s3, create_folder, create_project, hidden, make_external_sts_folder,
                       make_synapse_sts_folder, md5_hex, write_file)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture
def boto_spy(monkeypatch):
    """Observe (not alter) the client's boto3 transfer calls."""
    calls = {"upload": [], "download": []}
    real_up, real_down = S3ClientWrapper.upload_file, S3ClientWrapper.download_file

    def upload_file(*args, **kwargs):
        calls["upload"].append(kwargs.get("remote_file_key"))
        return real_up(*args, **kwargs)

    def download_file(*args, **kwargs):
        calls["download"].append(kwargs.get("remote_file_key"))
        return real_down(*args, **kwargs)

    monkeypatch.setattr(S3ClientWrapper, "upload_file", staticmethod(upload_file))
    monkeypatch.setattr(S3ClientWrapper, "download_file", staticmethod(download_file))
    return calls


def _payload(size: int = 200_000) -> bytes:
    return os.urandom(size)


def _rewrite(path, data: bytes) -> None:
    """Change a file the way a user does later on: new bytes and a later mtime (the client's
    cache compares mtimes at one-second resolution)."""
    path.write_bytes(data)
    later = os.path.getmtime(path) + 5
    os.utime(path, (later, later))


def _download(clients, token, entity_id, dest, *, use_boto_sts, version=None):
    reader = clients.new(token, use_boto_sts=use_boto_sts)
    kwargs = {"downloadLocation": str(dest)}
    if version is not None:
        kwargs["version"] = version
    entity = reader.get(entity_id, **kwargs)
    assert entity.path and os.path.isfile(entity.path), entity
    with open(entity.path, "rb") as fh:
        return entity, fh.read()


def test_boto_put_then_external_file_handle_then_get(syn, user, emulator, clients, tmp_path,
                                                     boto_spy):
    sts = make_external_sts_folder(syn, emulator, user)
    data = _payload()
    path = write_file(tmp_path / "up", "manual.bin", data)

    creds = hidden(syn.get_sts_storage_token(sts.id, "read_write", output_format="boto"))
    key = f"{sts.base_key}/{uuid.uuid4()}/manual.bin"
    boto_s3(emulator, creds).upload_file(str(path), sts.bucket, key)

    fh = syn.create_external_s3_file_handle(sts.bucket, key, str(path), parent=sts.folder)
    assert fh["concreteType"] == "org.sagebionetworks.repo.model.file.S3FileHandle"
    assert fh["bucketName"] == sts.bucket and fh["key"] == key
    assert fh["contentMd5"] == md5_hex(data)
    assert int(fh["contentSize"]) == len(data)
    assert fh["storageLocationId"] == sts.location_id
    assert fh["fileName"] == "manual.bin"
    assert str(fh["createdBy"]) == str(user.id)

    entity = syn.store(synapseclient.File(parentId=sts.id, dataFileHandleId=fh["id"],
                                          name="manual.bin"))
    assert entity["dataFileHandleId"] == fh["id"]
    assert entity["versionNumber"] == 1

    # pre-signed URL path
    got, body = _download(clients, user.token, entity["id"], tmp_path / "d1", use_boto_sts=False)
    assert body == data and md5_hex(body) == got["_file_handle"]["contentMd5"]
    assert boto_spy["download"] == []

    # boto STS path (read_only token on the file id)
    got, body = _download(clients, user.token, entity["id"], tmp_path / "d2", use_boto_sts=True)
    assert body == data
    assert boto_spy["download"] == [key]


def test_store_with_boto_sts_upload_on_external_folder(syn, user, emulator, clients, tmp_path,
                                                       boto_spy):
    sts = make_external_sts_folder(syn, emulator, user)
    data = _payload(300_001)
    path = write_file(tmp_path / "up", "boto upload.bin", data)

    syn.use_boto_sts_transfers = True
    entity = syn.store(synapseclient.File(str(path), parent=sts.id))
    assert len(boto_spy["upload"]) == 1, "the client did not take the boto STS upload path"
    fh = entity["_file_handle"]
    # synapseclient's key layout: "<baseKey>/<uuid4>/<basename>"
    assert re.fullmatch(rf"{re.escape(sts.base_key)}/{UUID}/boto upload\.bin", fh["key"]), fh["key"]
    assert fh["bucketName"] == sts.bucket
    assert fh["storageLocationId"] == sts.location_id
    assert fh["contentMd5"] == md5_hex(data)

    admin = emulator.s3_admin_client()
    assert admin.get_object(Bucket=sts.bucket, Key=fh["key"])["Body"].read() == data

    got, body = _download(clients, user.token, entity["id"], tmp_path / "d1", use_boto_sts=True)
    assert body == data
    assert boto_spy["download"] == [fh["key"]]
    got, body = _download(clients, user.token, entity["id"], tmp_path / "d2", use_boto_sts=False)
    assert body == data
    assert md5_hex(body) == md5_hex(data)


def test_store_multipart_on_external_sts_folder_without_boto(syn, user, emulator, clients,
                                                             tmp_path, boto_spy):
    """use_boto_sts off: the client uploads through POST /file/multipart to the external
    location; the backend picks the key "<baseKey>/<userId>/<uuid>/<fileName>"."""
    sts = make_external_sts_folder(syn, emulator, user)
    data = _payload(150_000)
    path = write_file(tmp_path / "up", "multipart-ext.bin", data)
    entity = syn.store(synapseclient.File(str(path), parent=sts.id))
    assert boto_spy["upload"] == []
    fh = entity["_file_handle"]
    assert fh["storageLocationId"] == sts.location_id
    assert fh["bucketName"] == sts.bucket
    assert fh["key"].startswith(f"{sts.base_key}/"), fh["key"]
    assert fh["contentMd5"] == md5_hex(data)
    got, body = _download(clients, user.token, entity["id"], tmp_path / "d1", use_boto_sts=True)
    assert body == data
    assert boto_spy["download"] == [fh["key"]]


def test_store_multipart_to_synapse_storage_and_presigned_download(syn, user, emulator, clients,
                                                                  tmp_path, boto_spy):
    project = create_project(syn)
    folder = create_folder(syn, project)
    data = _payload(1_234_567)
    path = write_file(tmp_path / "up", "plain.bin", data)

    syn.use_boto_sts_transfers = False
    entity = syn.store(synapseclient.File(str(path), parent=folder))
    assert boto_spy["upload"] == []
    fh = entity["_file_handle"]
    assert fh["concreteType"] == "org.sagebionetworks.repo.model.file.S3FileHandle"
    assert fh["storageLocationId"] == 1
    assert fh["bucketName"] == emulator.info["synapseBucket"]
    assert fh["contentMd5"] == md5_hex(data)
    assert int(fh["contentSize"]) == len(data)
    assert entity["versionNumber"] == 1

    got, body = _download(clients, user.token, entity["id"], tmp_path / "d1", use_boto_sts=False)
    assert body == data
    # a non-STS location: even with boto on, the client uses the pre-signed URL
    got, body = _download(clients, user.token, entity["id"], tmp_path / "d2", use_boto_sts=True)
    assert body == data
    assert boto_spy["download"] == []


def test_multipart_multi_part_upload(syn, user, clients, tmp_path):
    """> 5 MiB parts: the client splits into several parts (presigned batch, add, complete)."""
    project = create_project(syn)
    data = _payload(11 * 1024 * 1024 + 17)
    path = write_file(tmp_path / "up", "big.bin", data)
    entity = syn.store(synapseclient.File(str(path), parent=project))
    assert entity["_file_handle"]["contentMd5"] == md5_hex(data)
    got, body = _download(clients, user.token, entity["id"], tmp_path / "d1", use_boto_sts=False)
    assert body == data


def test_boto_sts_download_from_synapse_sts_storage(syn, user, emulator, clients, tmp_path,
                                                    boto_spy):
    """STS on Synapse storage is read-only: upload goes through multipart under the
    location's baseKey; the boto download path uses the read_only token."""
    sts = make_synapse_sts_folder(syn)
    data = _payload(100_003)
    path = write_file(tmp_path / "up", "syn-sts.bin", data)
    syn.use_boto_sts_transfers = True
    entity = syn.store(synapseclient.File(str(path), parent=sts.id))
    assert boto_spy["upload"] == []  # S3UploadDestination: never boto
    fh = entity["_file_handle"]
    assert fh["storageLocationId"] == sts.location_id
    assert fh["bucketName"] == emulator.info["synapseBucket"]
    assert fh["key"].startswith(f"{sts.base_key}/"), (fh["key"], sts.base_key)

    got, body = _download(clients, user.token, entity["id"], tmp_path / "d1", use_boto_sts=True)
    assert body == data
    assert boto_spy["download"] == [fh["key"]]

    ro = hidden(syn.get_sts_storage_token(entity["id"], "read_only", output_format="boto"))
    s3 = boto_s3(emulator, ro)
    assert s3.get_object(Bucket=fh["bucketName"], Key=fh["key"])["Body"].read() == data


def test_new_version_and_get_old_version(syn, user, clients, tmp_path):
    project = create_project(syn)
    folder = create_folder(syn, project)
    v1 = b"version one\n" * 1000
    v2 = b"version two!\n" * 1000
    path = write_file(tmp_path / "up", "versioned.txt", v1)
    first = syn.store(synapseclient.File(str(path), parent=folder))
    assert first["versionNumber"] == 1

    _rewrite(path, v2)
    # a new File object with the same name/parent: POST /entity conflicts (409), the client
    # looks the entity up by name and updates it; the changed MD5 gives version 2
    second = syn.store(synapseclient.File(str(path), parent=folder))
    assert second["id"] == first["id"]
    assert second["versionNumber"] == 2
    assert second["dataFileHandleId"] != first["dataFileHandleId"]

    _, body = _download(clients, user.token, first["id"], tmp_path / "latest", use_boto_sts=False)
    assert body == v2
    old, body = _download(clients, user.token, first["id"], tmp_path / "v1", use_boto_sts=False,
                          version=1)
    assert body == v1
    assert old["versionNumber"] == 1

    # identical content with forceVersion=False: no new version (the MD5 did not change)
    third = syn.store(synapseclient.File(str(path), parent=folder), forceVersion=False)
    assert third["versionNumber"] == 2
    assert third["dataFileHandleId"] == second["dataFileHandleId"]


def test_new_version_through_boto_sts(syn, user, emulator, clients, tmp_path, boto_spy):
    sts = make_external_sts_folder(syn, emulator, user)
    syn.use_boto_sts_transfers = True
    path = write_file(tmp_path / "up", "sts-versioned.txt", b"one" * 5000)
    first = syn.store(synapseclient.File(str(path), parent=sts.id))
    _rewrite(path, b"two" * 5000)
    entity = syn.get(first["id"], downloadFile=False)
    entity.path = str(path)
    second = syn.store(entity)
    assert second["versionNumber"] == 2
    assert len(boto_spy["upload"]) == 2
    _, body = _download(clients, user.token, first["id"], tmp_path / "v1", use_boto_sts=True,
                        version=1)
    assert body == b"one" * 5000
    _, body = _download(clients, user.token, first["id"], tmp_path / "v2", use_boto_sts=True)
    assert body == b"two" * 5000


def test_large_file_boto_sts_multipart_upload_and_ranged_download(syn, user, emulator, clients,
                                                                  tmp_path, boto_spy):
    """> 8 MiB: boto3's managed transfer switches to S3 multipart upload (with
    ACL=bucket-owner-full-control) and to parallel ranged GETs, all under the STS policy."""
    sts = make_external_sts_folder(syn, emulator, user)
    data = _payload(9 * 1024 * 1024 + 123)
    path = write_file(tmp_path / "up", "large.bin", data)
    syn.use_boto_sts_transfers = True
    entity = syn.store(synapseclient.File(str(path), parent=sts.id))
    assert len(boto_spy["upload"]) == 1
    fh = entity["_file_handle"]
    assert fh["contentMd5"] == md5_hex(data) and int(fh["contentSize"]) == len(data)
    got, body = _download(clients, user.token, entity["id"], tmp_path / "d1", use_boto_sts=True)
    assert len(body) == len(data) and body == data
    assert boto_spy["download"] == [fh["key"]]
    # and the pre-signed URL path (multi-threaded downloader for > 8 MiB)
    got, body = _download(clients, user.token, entity["id"], tmp_path / "d2", use_boto_sts=False)
    assert body == data
