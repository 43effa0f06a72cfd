"""Tests of the narrow seams: the Synapse REST client, the STS credential store and the S3 /
pre-signed URL readers. Unit tests use ``FakeHttp`` below (a real local HTTP server with
scripted answers, so timeouts and connection errors are genuine); integration tests use the
``emulator`` fixture (the real emulator process with SeaweedFS behind its fault proxy).
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    client_port: int = 0         # the client's port: tells connections apart

    def json(self):
        return json.loads(self.body) if self.body else None


@dataclasses.dataclass
class Reply:
    status: int = 200
    body: object = None          # dict/list -> JSON; str/bytes as is
    headers: dict = dataclasses.field(default_factory=dict)
    delay: float = 0.0           # seconds to wait before answering
    drop: bool = False           # close the connection without answering


class FakeHttp:
    """A local HTTP server; ``route(method, regex, *replies)`` scripts the answers (the last
    reply repeats; a reply may be a callable taking the ``Request``)."""

    def __init__(self):
        self.requests: list[Request] = []
        self._routes: list[tuple[str, re.Pattern, list]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                parts = urlsplit(self.path)
                req = Request(self.command, parts.path, parse_qs(parts.query),
                              dict(self.headers.items()), body)
                reply = fake._answer(req)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    return
                data = reply.body
                headers = dict(reply.headers)
                if isinstance(data, (dict, list)):
                    data = json.dumps(data).encode()
                    headers.setdefault("Content-Type", "application/json")
                elif isinstance(data, str):
                    data = data.encode()
                data = data or b""
                try:
                    self.send_response(reply.status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def route(self, method: str, pattern: str, *replies) -> "FakeHttp":
        with self._lock:
            self._routes.insert(0, (method, re.compile(pattern), list(replies)))
        return self

    def _answer(self, req: Request) -> Reply:
        with self._lock:
            self.requests.append(req)
            for method, pattern, replies in self._routes:
                if method in ("*", req.method) and pattern.search(req.path):
                    reply = replies.pop(0) if len(replies) > 1 else replies[0]
                    break
            else:
                return Reply(404, {"reason": f"no route for {req.method} {req.path}"})
        return reply(req) if callable(reply) else reply

    def calls(self, method: str | None = None, pattern: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and re.search(pattern, r.path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


Responder = Callable[[Request], Reply]


# ---- a small seeded world in the emulator, shared by the integration tests ---------------------

@dataclasses.dataclass
class World:
    user: object                  # tests.harness.TestUser (owner of everything below)
    stranger: object              # another user with no access
    project: int
    sts_folder: int               # Synapse storage, STS-enabled
    sts_location: int
    ext_folder: int               # external bucket with baseKey, STS-enabled
    ext_location: int
    plain_folder: int             # default storage, no STS
    many_folder: int              # MANY subfolders (paging)
    files: dict                   # name -> (entity id, bytes)


MANY = 120
_worlds: dict[int, World] = {}
_world_lock = threading.Lock()


def seed_world(emulator) -> World:
    """Seed (once per emulator process) a project with STS, external-STS and plain folders."""
    from synfs.cli.demo_seed import Seeder, content

    with _world_lock:
        if id(emulator) in _worlds:
            return _worlds[id(emulator)]
        user = emulator.new_user()
        seeder = Seeder(emulator.info, user.token, owner_s3=emulator.s3_admin_client())
        project = seeder.entity("Project", f"seams {time.time_ns()}", None)
        files = {}
        sts, sts_loc = seeder.sts_folder(project, "sts", {
            "concreteType": "org.sagebionetworks.repo.model.project.S3StorageLocationSetting",
            "uploadType": "S3", "stsEnabled": True})
        sub = seeder.entity("Folder", "sub dir", sts)
        for parent, name, size in ((sts, "small.bin", 100_000), (sub, "deep.txt", 4096)):
            data = content(name, size)
            handle = seeder.multipart(name, data, sts_loc)
            files[name] = (int(seeder.entity("FileEntity", name, parent,
                                             dataFileHandleId=handle)[3:]), data)
        bucket, base_key = emulator.info["externalBucket"], f"seams-{project}"
        seeder._owner_txt(bucket, base_key)
        ext, ext_loc = seeder.sts_folder(project, "external", {
            "concreteType": "org.sagebionetworks.repo.model.project."
                            "ExternalS3StorageLocationSetting",
            "uploadType": "S3", "bucket": bucket, "baseKey": base_key, "stsEnabled": True})
        for name, size in (("ext.csv", 5000), ("empty.txt", 0)):
            data = content(name, size)
            handle = seeder.sts_put(ext, ext_loc, name, data)
            files[name] = (int(seeder.entity("FileEntity", name, ext,
                                             dataFileHandleId=handle)[3:]), data)
        plain = seeder.entity("Folder", "plain", project)
        data = content("hello.bin", 300_000)
        handle = seeder.multipart("hello.bin", data, 1)
        files["hello.bin"] = (int(seeder.entity("FileEntity", "hello.bin", plain,
                                                dataFileHandleId=handle)[3:]), data)
        many = seeder.entity("Folder", "many", project)
        for i in range(MANY):
            seeder.entity("Folder", f"d{i:03d}", many)
        world = World(user=user, stranger=emulator.new_user(), project=int(project[3:]),
                      sts_folder=int(sts[3:]), sts_location=sts_loc, ext_folder=int(ext[3:]),
                      ext_location=ext_loc, plain_folder=int(plain[3:]),
                      many_folder=int(many[3:]), files=files)
        _worlds[id(emulator)] = world
        return world


def client_for(emulator, token: str, **kw):
    from synfs.synapse.client import Endpoints, SynapseClient

    return SynapseClient(Endpoints.from_info(emulator.info), token, **kw)
