"""Seeds the demo's sample project through Synapse's public REST API and S3, as a client would.

Layout (names exercise spaces, parentheses, apostrophes and plus signs)::

    synfs demo/                      Project
      synapse-sts/                   Folder, Synapse storage with STS (read-only via STS)
        README.txt  reads/run 1 (lane+A)/...  big/random-100MiB.bin
      external-sts/                  Folder, external bucket with STS (read-write via STS)
        notes/patient's notes.txt  matrix.csv  empty.txt
      plain/                         Folder, default Synapse storage, no STS
        hello.txt  data/blob-1MiB.bin

File bytes are deterministic (seeded PRNG), so tests can recompute them.
"""

from __future__ import annotations

import hashlib
import random
import uuid

import boto3
import botocore.config
import requests

CT = "org.sagebionetworks.repo.model."
PART_SIZE = 8 * 1024 * 1024
BIG_SIZE = 100 * 1024 * 1024


def content(name: str, size: int) -> bytes:
    """Deterministic bytes for a seeded file."""
    if size == 0:
        return b""
    if name.endswith((".txt", ".csv")):
        line = f"synfs demo file {name}\n".encode()
        return (line * (size // len(line) + 1))[:size]
    return random.Random(name).randbytes(size)


# (folder path relative to its STS/plain root, file name, size)
SYNAPSE_STS_FILES = [
    ("", "README.txt", 600),
    ("reads/run 1 (lane+A)", "sample_1.fastq", 200_000),
    ("reads/run 1 (lane+A)", "sample_2.fastq", 300_000),
    ("reads/run 2", "sample_3.fastq", 5 * 1024 * 1024 + 17),
    ("reads/run 2/qc/deep/deeper", "report.txt", 4096),
    ("big", "random-100MiB.bin", BIG_SIZE),
]
EXTERNAL_FILES = [
    ("notes", "patient's notes.txt", 1234),
    ("", "matrix.csv", 64 * 1024),
    ("", "empty.txt", 0),   # Synapse's multipart upload rejects empty files; S3 does not
]
PLAIN_FILES = [
    ("", "hello.txt", 13),
    ("data", "blob-1MiB.bin", 1024 * 1024),
]


class SeedError(RuntimeError):
    pass


class Seeder:
    def __init__(self, info: dict, token: str, owner_s3=None):
        self.info = info
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.owner_s3 = owner_s3

    # ---- REST ------------------------------------------------------------------------
    def call(self, method: str, path: str, body=None, prefix: str = "repo", ok=(200, 201, 204)):
        base = self.info["repoEndpoint" if prefix == "repo" else "fileHandleEndpoint"]
        resp = self.http.request(method, base + path, json=body, timeout=120)
        if resp.status_code not in ok:
            raise SeedError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content else None

    def entity(self, concrete: str, name: str, parent: str | None, **extra) -> str:
        body = {"name": name, "concreteType": CT + concrete, **extra}
        if parent:
            body["parentId"] = parent
        return self.call("POST", "/entity", body)["id"]

    def folder_path(self, root: str, path: str, cache: dict) -> str:
        parent = root
        parts = [p for p in path.split("/") if p]
        for i in range(len(parts)):
            key = (root, "/".join(parts[: i + 1]))
            if key not in cache:
                cache[key] = self.entity("Folder", parts[i], parent)
            parent = cache[key]
        return parent

    def sts_folder(self, parent: str, name: str, location: dict) -> tuple[str, int]:
        folder = self.entity("Folder", name, parent)
        loc = self.call("POST", "/storageLocation", location)
        self.call("POST", "/projectSettings", {
            "concreteType": CT + "project.UploadDestinationListSetting",
            "settingsType": "upload", "projectId": folder,
            "locations": [loc["storageLocationId"]]})
        return folder, loc["storageLocationId"]

    # ---- uploads ---------------------------------------------------------------------
    def multipart(self, name: str, data: bytes, storage_location_id: int) -> str:
        """Synapse's multipart upload; returns the new file handle id."""
        md5 = hashlib.md5(data).hexdigest()
        part_size = max(PART_SIZE, -(-len(data) // 10000))
        status = self.call("POST", "/file/multipart", {
            "concreteType": CT + "file.MultipartUploadRequest", "contentMD5Hex": md5,
            "fileName": name, "generatePreview": False, "storageLocationId": storage_location_id,
            "fileSizeBytes": len(data), "partSizeBytes": part_size,
            "contentType": "application/octet-stream"}, prefix="file")
        upload_id = status["uploadId"]
        n_parts = max(1, -(-len(data) // part_size))
        urls = self.call("POST", f"/file/multipart/{upload_id}/presigned/url/batch",
                         {"uploadId": upload_id, "partNumbers": list(range(1, n_parts + 1))},
                         prefix="file")["partPresignedUrls"]
        for item in urls:
            n = item["partNumber"]
            chunk = data[(n - 1) * part_size: n * part_size]
            put = requests.put(item["uploadPresignedUrl"], data=chunk,
                               headers=item.get("signedHeaders") or {}, timeout=300)
            if put.status_code != 200:
                raise SeedError(f"part {n} of {name}: S3 answered {put.status_code}")
            added = self.call("PUT", f"/file/multipart/{upload_id}/add/{n}"
                              f"?partMD5Hex={hashlib.md5(chunk).hexdigest()}", prefix="file")
            if added.get("addPartState") != "ADD_SUCCESS":
                raise SeedError(f"part {n} of {name}: {added.get('errorMessage')}")
        done = self.call("PUT", f"/file/multipart/{upload_id}/complete", prefix="file")
        return done["resultFileHandleId"]

    def sts_put(self, folder: str, location_id: int, name: str, data: bytes) -> str:
        """Upload with read_write STS credentials, then register an external S3 handle."""
        creds = self.call("GET", f"/entity/{folder}/sts?permission=read_write")
        s3 = boto3.client(
            "s3", endpoint_url=self.info["s3Endpoint"], region_name="us-east-1",
            aws_access_key_id=creds["accessKeyId"], aws_secret_access_key=creds["secretAccessKey"],
            aws_session_token=creds["sessionToken"],
            config=botocore.config.Config(s3={"addressing_style": "path"}))
        key = f"{creds['baseKey']}/{uuid.uuid4()}/{name}"
        s3.put_object(Bucket=creds["bucket"], Key=key, Body=data)
        handle = self.call("POST", "/externalFileHandle/s3", {
            "concreteType": CT + "file.S3FileHandle", "key": key, "bucketName": creds["bucket"],
            "fileName": name, "contentMd5": hashlib.md5(data).hexdigest(),
            "contentSize": len(data), "storageLocationId": location_id,
            "contentType": "text/plain"}, prefix="file")
        return handle["id"]

    # ---- the whole project -----------------------------------------------------------
    def seed(self, previous: dict | None = None, progress=print,
             project_name: str = "synfs demo", *, sts_files=SYNAPSE_STS_FILES,
             external_files=EXTERNAL_FILES, plain_files=PLAIN_FILES) -> dict:
        """The sample project (every storage kind); tests may pass smaller file lists."""
        if previous:
            resp = self.http.get(self.info["repoEndpoint"] + f"/entity/{previous['project']}",
                                 timeout=60)
            if resp.status_code == 200:
                progress("sample project already seeded")
                return previous
        progress(f"creating project {project_name!r}")
        project = self.entity("Project", project_name, None)
        files: dict[str, str] = {}
        cache: dict = {}

        sts, sts_loc = self.sts_folder(project, "synapse-sts", {
            "concreteType": CT + "project.S3StorageLocationSetting", "uploadType": "S3",
            "stsEnabled": True})
        for path, name, size in sts_files:
            progress(f"uploading synapse-sts/{path + '/' if path else ''}{name} ({size} bytes)")
            handle = self.multipart(name, content(name, size), sts_loc)
            parent = self.folder_path(sts, path, cache)
            files[f"synapse-sts/{path + '/' if path else ''}{name}"] = self.entity(
                "FileEntity", name, parent, dataFileHandleId=handle)

        bucket, base_key = self.info["externalBucket"], f"synfs-demo-{project}"
        self._owner_txt(bucket, base_key)
        ext, ext_loc = self.sts_folder(project, "external-sts", {
            "concreteType": CT + "project.ExternalS3StorageLocationSetting", "uploadType": "S3",
            "bucket": bucket, "baseKey": base_key, "stsEnabled": True})
        for path, name, size in external_files:
            progress(f"uploading external-sts/{path + '/' if path else ''}{name}")
            handle = self.sts_put(ext, ext_loc, name, content(name, size))
            parent = self.folder_path(ext, path, cache)
            files[f"external-sts/{path + '/' if path else ''}{name}"] = self.entity(
                "FileEntity", name, parent, dataFileHandleId=handle)

        plain = self.entity("Folder", "plain", project)
        for path, name, size in plain_files:
            progress(f"uploading plain/{path + '/' if path else ''}{name}")
            handle = self.multipart(name, content(name, size), 1)
            parent = self.folder_path(plain, path, cache)
            files[f"plain/{path + '/' if path else ''}{name}"] = self.entity(
                "FileEntity", name, parent, dataFileHandleId=handle)
        return {"project": project, "synapseStsFolder": sts, "synapseStsLocation": sts_loc,
                "externalStsFolder": ext, "externalStsLocation": ext_loc,
                "externalBaseKey": base_key, "plainFolder": plain, "files": files}

    def _owner_txt(self, bucket: str, base_key: str) -> None:
        """The bucket owner proves ownership to Synapse with ``<baseKey>/owner.txt``."""
        profile = self.call("GET", "/userProfile")
        if self.owner_s3 is None:
            raise SeedError("no bucket-owner S3 client to write owner.txt")
        self.owner_s3.put_object(Bucket=bucket, Key=f"{base_key}/owner.txt",
                                 Body=profile["userName"].encode())
