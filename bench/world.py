"""The benchmark's world: one emulator + SeaweedFS, users, and the seeded project.

Layout of the project (all content in one external, STS-enabled storage location whose S3
keys mirror the folder tree, so ``rclone mount bucket/baseKey`` shows the same files):

    synfs bench/data/
      seq/one-GiB.bin              scenario 1 and 3
      four/part-{0..3}.bin         scenario 2 (FOUR_SIZE each)
      rss/f{00..31}.bin            scenario 6 (RSS_SIZE each)
      small/d{0..9}/f{000..099}    scenario 4: 1,000 files of 64 KiB
      meta/dir{00..49}/f{000..099} scenario 5: 5,000 small files in 50 folders
      (scenario 5 adds a file view over meta/ in the project: ``create_file_view``)

Content is generated from 1 MiB random blocks with the block's offset stamped in, so a read
at a wrong offset can never look right; uploads go straight to S3 with the folder's
read-write STS credentials and are registered with ``POST /externalFileHandle/s3``.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import json
import random
import struct
import sys
import time
from pathlib import Path

import boto3
import botocore.config
import requests
from boto3.s3.transfer import TransferConfig

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from synfs.cli.demo_seed import CT  # noqa: E402
from tests.harness import EmulatorProcess  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
BIG_SIZE = GiB
FOUR_SIZE = 256 * MiB
RSS_FILES, RSS_SIZE = 32, 32 * MiB
SMALL_DIRS, SMALL_PER_DIR, SMALL_SIZE = 10, 100, 64 * 1024
META_DIRS, META_PER_DIR, META_HANDLES = 50, 100, 200
AUTHENTICATED_USERS = 273949
_POOL = [random.Random(i).randbytes(MiB) for i in range(7)]


def content(seed: int, size: int) -> bytes:
    """Deterministic bytes: 1 MiB random blocks, each stamped with (seed, offset)."""
    out = bytearray()
    for off in range(0, size, MiB):
        block = bytearray(_POOL[(seed * 31 + off // MiB) % len(_POOL)][:min(MiB, size - off)])
        stamp = struct.pack("<QQ", seed, off)[:len(block)]
        block[:len(stamp)] = stamp
        out += block
    return bytes(out)


def small_content(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


class World:
    def __init__(self, data_dir: Path, log=print):
        self.data_dir = Path(data_dir)
        self.log = log
        self.emulator = EmulatorProcess(self.data_dir / "emulator")
        self.info: dict = {}
        self.layout: dict = {}

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> "World":
        self.emulator.start()
        self.info = self.emulator.info
        return self

    def stop(self) -> None:
        self.emulator.stop()

    def new_user(self, name: str):
        return self.emulator.new_user(f"{name}{time.time_ns() % 10**9}")

    # ---- REST helpers -------------------------------------------------------------------
    def _session(self, token: str) -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=16)
        s.mount("http://", adapter)
        return s

    def call(self, s: requests.Session, method: str, path: str, body=None, prefix="repo",
             ok=(200, 201, 204)):
        base = self.info["repoEndpoint" if prefix == "repo" else "fileHandleEndpoint"]
        for attempt in range(5):
            resp = s.request(method, base + path, json=body, timeout=120)
            if resp.status_code in ok:
                return resp.json() if resp.content else None
            if resp.status_code not in (429, 500, 503) or attempt == 4:
                raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
            time.sleep(0.5 * (attempt + 1))

    def sts(self, token: str, entity: str, permission: str = "read_only") -> dict:
        return self.call(self._session(token), "GET", f"/entity/{entity}/sts?permission={permission}")

    def s3_client(self, creds: dict, pool: int = 32):
        return boto3.client(
            "s3", endpoint_url=self.info["s3Endpoint"], region_name="us-east-1",
            aws_access_key_id=creds["accessKeyId"], aws_secret_access_key=creds["secretAccessKey"],
            aws_session_token=creds["sessionToken"],
            config=botocore.config.Config(s3={"addressing_style": "path"},
                                          max_pool_connections=pool,
                                          response_checksum_validation="when_required",
                                          request_checksum_calculation="when_required"))

    # ---- seeding -------------------------------------------------------------------------
    def setup(self) -> None:
        """The owner, the project (readable by every signed-in user), the STS folder."""
        owner = self.new_user("benchowner")
        s = self._session(owner.token)
        project = self.call(s, "POST", "/entity", {"name": "synfs bench",
                                                  "concreteType": CT + "Project"})["id"]
        acl = self.call(s, "GET", f"/entity/{project}/acl")
        acl["resourceAccess"].append({"principalId": AUTHENTICATED_USERS,
                                      "accessType": ["READ", "DOWNLOAD"]})
        self.call(s, "PUT", f"/entity/{project}/acl", acl)
        bucket, base_key = self.info["externalBucket"], f"bench-{project}"
        profile = self.call(s, "GET", "/userProfile")
        self.emulator.s3_admin_client().put_object(Bucket=bucket, Key=f"{base_key}/owner.txt",
                                                   Body=profile["userName"].encode())
        data = self.call(s, "POST", "/entity", {"name": "data", "parentId": project,
                                               "concreteType": CT + "Folder"})["id"]
        loc = self.call(s, "POST", "/storageLocation", {
            "concreteType": CT + "project.ExternalS3StorageLocationSetting", "uploadType": "S3",
            "bucket": bucket, "baseKey": base_key, "stsEnabled": True})["storageLocationId"]
        self.call(s, "POST", "/projectSettings", {
            "concreteType": CT + "project.UploadDestinationListSetting", "settingsType": "upload",
            "projectId": data, "locations": [loc]})
        self._ctx = dict(s=s, s3=self.s3_client(self.sts(owner.token, data, "read_write")),
                         bucket=bucket, base=base_key, loc=loc)
        self.layout = {"owner": {"id": owner.id, "token": owner.token}, "project": project,
                       "data": data, "folders": {"": data}, "bucket": bucket,
                       "baseKey": base_key, "location": loc, "files": {}}

    def _folder(self, path: str) -> str:
        folders = self.layout["folders"]
        if path not in folders:
            parent, _, name = path.rpartition("/")
            folders[path] = self.call(self._ctx["s"], "POST", "/entity", {
                "name": name, "parentId": self._folder(parent), "concreteType": CT + "Folder"})["id"]
        return folders[path]

    def seed_copy_tree(self) -> int:
        """Scenario 4's (and 7's) 1,000 files of 64 KiB in ``small/``."""
        small = [(f"small/d{d}/f{i:03d}", 1000 + d * 1000 + i, SMALL_SIZE, True)
                 for d in range(SMALL_DIRS) for i in range(SMALL_PER_DIR)]
        self._seed(small, threads=8)
        return len(small)

    def seed_small(self) -> None:
        """Scenario 4's 1,000 files of 64 KiB and scenario 5's 5,000 small files."""
        started = time.monotonic()
        small = self.seed_copy_tree()
        # scenario 5 is about metadata: its 5,000 entities share META_HANDLES file handles
        # (Synapse allows that), which keeps seeding short
        handles = [self._put(f"meta/shared/h{i:03d}.txt", 500_000 + i,
                             random.Random(i).randint(1, 8192), True, entity=False)
                   for i in range(META_HANDLES)]
        meta = [(f"meta/dir{d:02d}/f{i:03d}.txt", handles[(d * META_PER_DIR + i) % META_HANDLES])
                for d in range(META_DIRS) for i in range(META_PER_DIR)]
        for path, _ in meta:
            self._folder(path.rpartition("/")[0])
        with cf.ThreadPoolExecutor(8) as ex:
            for (path, handle), info in zip(meta, ex.map(lambda m: self._entity(*m), meta)):
                self.layout["files"][path] = info
        (self.data_dir / "layout.json").write_text(json.dumps(self.layout))
        self.log(f"seeded {small} + {len(meta)} small files in "
                 f"{time.monotonic() - started:.0f}s")

    def create_file_view(self, folder: str, name: str) -> str:
        """A file view (the default columns) whose scope is the seeded ``folder``, in the
        project, so every signed-in user can query it (scenario 5's ``--view`` runs)."""
        s = self._ctx["s"]
        cols = self.call(s, "GET", "/column/tableview/defaults?viewTypeMask=1")["list"]
        return self.call(s, "POST", "/entity", {
            "concreteType": "org.sagebionetworks.repo.model.table.EntityView", "name": name,
            "parentId": self.layout["project"], "scopeIds": [self.layout["folders"][folder]],
            "viewTypeMask": 1, "columnIds": [str(c["id"]) for c in cols]})["id"]

    def seed_large(self) -> None:
        """Scenarios 1-3 and 6: 1 GiB, 4 x FOUR_SIZE, 32 x RSS_SIZE."""
        started = time.monotonic()
        big = [("seq/one-GiB.bin", 1, BIG_SIZE, False)]
        big += [(f"four/part-{i}.bin", 10 + i, FOUR_SIZE, False) for i in range(4)]
        big += [(f"rss/f{i:02d}.bin", 100 + i, RSS_SIZE, False) for i in range(RSS_FILES)]
        self._seed(big, threads=4)
        self.log(f"seeded {len(big)} large files ({sum(b[2] for b in big) // MiB} MiB) in "
                 f"{time.monotonic() - started:.0f}s")

    def _seed(self, items, threads: int) -> None:
        for path, *_ in items:
            self._folder(path.rpartition("/")[0])
        with cf.ThreadPoolExecutor(threads) as ex:
            for item, info in zip(items, ex.map(lambda it: self._put(*it), items)):
                self.layout["files"][item[0]] = info
        (self.data_dir / "layout.json").write_text(json.dumps(self.layout))

    def seed(self) -> dict:
        self.setup()
        self.seed_small()
        self.seed_large()
        return self.layout

    def _entity(self, path: str, handle: dict) -> dict:
        name = path.rpartition("/")[2]
        entity = self.call(self._ctx["s"], "POST", "/entity", {
            "name": name, "parentId": self.layout["folders"][path.rpartition("/")[0]],
            "concreteType": CT + "FileEntity", "dataFileHandleId": handle["handle"]})["id"]
        return dict(handle, id=entity)

    def _put(self, path: str, seed: int, size: int, small: bool, entity: bool = True) -> dict:
        ctx = self._ctx
        body = small_content(seed, size) if small else content(seed, size)
        md5 = hashlib.md5(body).hexdigest()
        key = f"{ctx['base']}/{path}"
        if size >= 64 * MiB:
            ctx["s3"].upload_fileobj(io.BytesIO(body), ctx["bucket"], key, Config=TransferConfig(
                multipart_chunksize=64 * MiB, max_concurrency=4))
        else:
            ctx["s3"].put_object(Bucket=ctx["bucket"], Key=key, Body=body)
        name = path.rpartition("/")[2]
        s = ctx["s"]
        handle = self.call(s, "POST", "/externalFileHandle/s3", {
            "concreteType": CT + "file.S3FileHandle", "key": key, "bucketName": ctx["bucket"],
            "fileName": name, "contentMd5": md5, "contentSize": size,
            "storageLocationId": ctx["loc"], "contentType": "application/octet-stream"},
            prefix="file")
        info = {"handle": handle["id"], "size": size, "md5": md5, "seed": seed, "key": key,
                "small": small}
        return self._entity(path, info) if entity else info

    def expected(self, path: str) -> bytes:
        f = self.layout["files"][path]
        return small_content(f["seed"], f["size"]) if f["small"] else content(f["seed"], f["size"])


def main(argv=None) -> int:
    """``python -m bench.world DIR``: start and seed a world, print where it is, wait."""
    import argparse
    import signal

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("data_dir", type=Path)
    args = p.parse_args(argv)
    world = World(args.data_dir).start()
    try:
        world.seed()
        print(json.dumps({"info": str(args.data_dir / "emulator" / "emulator.json"),
                          "layout": str(args.data_dir / "layout.json")}), flush=True)
        stop = {signal.SIGINT, signal.SIGTERM}
        # sigwait only sees blocked signals; blocked only now, as children inherit the mask
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)
    finally:
        world.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
