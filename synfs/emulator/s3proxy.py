"""A streaming, fault-injecting HTTP proxy in front of SeaweedFS's S3 port.

Owns the S3 endpoint that clients see (``S3World.endpoint_url``). Design: a threaded
``http.server`` parses the client's request line and headers (stdlib parser, keep-alive), then
the request is re-sent byte-for-byte to weed over a per-connection persistent
``http.client.HTTPConnection``:

  * the Host header and every end-to-end header are forwarded unchanged, so SigV4 signatures
    computed for the proxy's host:port verify at weed (weed checks against the Host it gets);
  * request bodies are piped in 1 MiB slices: ``Content-Length`` bodies and
    ``Transfer-Encoding: chunked`` bodies (chunk framing copied verbatim, so aws-chunked
    payload signatures stay intact); nothing is buffered whole;
  * responses are streamed back (``Content-Length`` as-is, otherwise re-chunked); bodies of
    4 MiB or more move with ``os.splice`` (socket -> pipe -> socket in the kernel), which
    keeps a 256 MiB GET through the proxy close to direct speed.

Before forwarding, requests signed with a registered access key whose reported expiration has
passed get 403 ``ExpiredToken``; requests for a bucket the ``faults`` object places in a
region (``s3_bucket_regions``) but signed for another get AWS's region answer, 400
``AuthorizationHeaderMalformed`` with the bucket's region in ``<Region>`` and in the
``x-amz-bucket-region`` header (what S3 answers a client signing for the wrong region); requests carrying an STS session token (user traffic) get the
``faults`` object's latency and error rate. Proxy-made errors are S3 XML bodies. Nothing here
logs query strings or headers (they hold signatures and session tokens).
"""

from __future__ import annotations

import fcntl
import http.client
import logging
import os
import random
import re
import select
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

BUF = 1 << 20
SPLICE_MIN = 4 << 20  # bodies this large are relayed with os.splice
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "upgrade", "te", "trailer"}
STATUS_CODES = {500: ("InternalError", "We encountered an internal error. Please try again."),
                503: ("SlowDown", "Please reduce your request rate."),
                429: ("SlowDown", "Please reduce your request rate."),
                403: ("AccessDenied", "Access Denied")}
_CRED_RE = re.compile(r"Credential=([^/,\s]+)/")
_SCOPE_RE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/s3/")


def s3_error_body(code: str, message: str, resource: str, request_id: str,
                  region: str | None = None) -> bytes:
    where = f"<Region>{escape(region)}</Region>" if region else ""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<Resource>%s</Resource>%s<RequestId>%s</RequestId></Error>'
            % (escape(code), escape(message), escape(resource), where, request_id)).encode()


def _faults_value(faults, name: str, default, kind):
    """Read one attribute of the (foreign) faults object defensively."""
    try:
        return kind(getattr(faults, name, default) or default)
    except (TypeError, ValueError):
        return default


class _BackendGone(Exception):
    """weed stopped reading the request body (it may have answered early)."""


def _send(dst: socket.socket | None, data) -> None:
    if dst is not None:
        try:
            dst.sendall(data)
        except OSError as exc:
            raise _BackendGone() from exc


def _pipe_exact(src, dst: socket.socket | None, n: int, buf: memoryview) -> None:
    """Copy exactly ``n`` bytes from the buffered reader ``src`` to socket ``dst`` (None: drop)."""
    while n > 0:
        got = src.readinto(buf[:min(n, len(buf))])
        if not got:
            raise ConnectionError("client closed the connection mid-body")
        _send(dst, buf[:got])
        n -= got


def _pipe_chunked(src, dst: socket.socket | None, buf: memoryview) -> None:
    """Copy one Transfer-Encoding: chunked body verbatim (framing included)."""
    while True:
        line = src.readline(65537)
        if not line.endswith(b"\n"):
            raise ConnectionError("bad chunk header")
        _send(dst, line)
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = src.readline(65537)
                _send(dst, trailer)
                if trailer in (b"\r\n", b"\n", b""):
                    return
        _pipe_exact(src, dst, size + 2, buf)


_F_SETPIPE_SZ = 1031
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_MORE", 4)


def _ready(fd: int, for_write: bool, timeout: float) -> bool:
    """poll(2), not select(2): fds above 1024 are normal with many connections."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if for_write else select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _wait(fd: int, for_write: bool, timeout: float) -> None:
    if not _ready(fd, for_write, timeout):
        raise TimeoutError("socket timed out")


def _splice_exact(src: socket.socket, dst: socket.socket, n: int, timeout: float) -> None:
    """Move n bytes socket->pipe->socket in the kernel (no copies through Python).

    Both sockets have timeouts, i.e. are non-blocking at the OS level: EAGAIN means poll."""
    r, w = os.pipe()
    try:
        try:
            fcntl.fcntl(w, _F_SETPIPE_SZ, BUF)
        except OSError:
            pass
        sfd, dfd = src.fileno(), dst.fileno()
        while n > 0:
            try:
                got = os.splice(sfd, w, min(n, BUF), flags=_SPLICE_FLAGS)
            except BlockingIOError:
                _wait(sfd, False, timeout)
                continue
            if got == 0:
                raise ConnectionError("backend closed mid-body")
            n -= got
            while got > 0:
                try:
                    got -= os.splice(r, dfd, got, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    _wait(dfd, True, timeout)
    finally:
        os.close(r)
        os.close(w)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, proxy: "S3Proxy"):
        self.proxy = proxy
        self.open_sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request, client_address):
        # socketserver's default prints a traceback to stderr; client disconnects are normal.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            log.warning("s3proxy: request handler failed: %s", type(exc).__name__)

    def process_request(self, request, client_address):
        with self.lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "synfs-s3proxy"
    rbufsize = 1 << 16
    timeout = 300
    server: _ProxyServer

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, Nagle plus the
        # client's delayed ACK adds ~40 ms to every small response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._backend: http.client.HTTPConnection | None = None
        self._buf = memoryview(bytearray(BUF))

    def finish(self):
        try:
            super().finish()
        finally:
            if self._backend is not None:
                self._backend.close()

    def log_message(self, format, *args):  # never log request lines: they carry signatures
        pass

    # -- request gate: expiry and faults ------------------------------------------------
    def parse_request(self):
        self._gated = False
        self._body_pending = True
        return super().parse_request()

    def handle_expect_100(self):
        # Decide before inviting the body: a rejected client never sends it.
        if self._gate(body_sent=False):
            self.close_connection = True
            return False
        return super().handle_expect_100()

    def _target(self) -> str:
        parts = self.requestline.split(" ")
        return parts[1] if len(parts) >= 2 else self.path

    def _gate(self, body_sent: bool = True) -> bool:
        """Apply expiry and faults; True when an error response was already sent."""
        self._gated = True
        proxy = self.server.proxy
        query = None
        m = _CRED_RE.search(self.headers.get("Authorization", ""))
        if m:
            access_key = m.group(1)
        else:
            query = parse_qs(urlsplit(self._target()).query)
            access_key = query.get("X-Amz-Credential", [""])[0].split("/", 1)[0] or None
        if access_key is not None:
            expires = proxy.expiry_of(access_key)
            if expires is not None and datetime.now(timezone.utc) >= expires:
                self._send_s3_error(403, "ExpiredToken", "The provided token has expired.",
                                    body_sent)
                return True
        has_token = "X-Amz-Security-Token" in self.headers
        if not has_token:
            query = parse_qs(urlsplit(self._target()).query) if query is None else query
            has_token = "X-Amz-Security-Token" in query
        faults = proxy.faults
        if faults is not None and self._wrong_region(faults, query, body_sent):
            return True
        if has_token and faults is not None:
            latency = _faults_value(faults, "s3_latency_ms", 0, int)
            if latency > 0:
                time.sleep(latency / 1000.0)
            rate = _faults_value(faults, "s3_error_rate", 0.0, float)
            if rate > 0 and random.random() < rate:
                status = _faults_value(faults, "s3_error_status", 503, int)
                code, message = STATUS_CODES.get(status, ("InternalError", "Injected fault."))
                self._send_s3_error(status, code, message, body_sent)
                return True
        return False

    def _wrong_region(self, faults, query, body_sent: bool) -> bool:
        """Answer like S3 when the request is signed for a region its bucket is not in."""
        regions = getattr(faults, "s3_bucket_regions", None)
        if not regions or not isinstance(regions, dict):
            return False
        bucket = urlsplit(self._target()).path.lstrip("/").split("/", 1)[0]
        region = regions.get(bucket)
        if not region:
            return False
        m = _SCOPE_RE.search(self.headers.get("Authorization", ""))
        if m:
            signed = m.group(1)
        else:
            query = parse_qs(urlsplit(self._target()).query) if query is None else query
            scope = query.get("X-Amz-Credential", [""])[0].split("/")
            signed = scope[2] if len(scope) > 2 else None
        if signed is None or signed == region:
            return False
        self._send_s3_error(400, "AuthorizationHeaderMalformed",
                            f"The authorization header is malformed; the region '{signed}' "
                            f"is wrong; expecting '{region}'", body_sent, region=region)
        return True

    def _drain_body(self) -> None:
        if not self._body_pending:
            return
        self._body_pending = False
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            _pipe_chunked(self.rfile, None, self._buf)
        else:
            n = int(self.headers.get("Content-Length", "0") or 0)
            _pipe_exact(self.rfile, None, n, self._buf)

    def _send_s3_error(self, status: int, code: str, message: str, body_sent: bool = True,
                       region: str | None = None) -> None:
        if body_sent:
            try:
                self._drain_body()
            except (ConnectionError, ValueError, OSError):
                self.close_connection = True
        else:
            self.close_connection = True
        request_id = uuid.uuid4().hex[:16].upper()
        body = b"" if self.command == "HEAD" else s3_error_body(
            code, message, urlsplit(self._target()).path, request_id, region)
        reason = http.client.responses.get(status, "Error")
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/xml",
                f"Content-Length: {len(body)}", f"x-amz-request-id: {request_id}",
                "Server: " + self.server_version]
        if region:
            head.append(f"x-amz-bucket-region: {region}")
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    # -- forwarding -------------------------------------------------------------------------
    def _backend_conn(self) -> http.client.HTTPConnection:
        conn = self._backend
        # An idle keep-alive socket that is readable was closed by weed (or spoke out of turn).
        if conn is not None and (conn.sock is None or _ready(conn.sock.fileno(), False, 0)):
            conn.close()
            conn = None
        if conn is None:
            host, port = self.server.proxy.backend
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._backend = conn
        return conn

    def _forward(self) -> None:
        if not self._gated and self._gate():
            return
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = int(self.headers.get("Content-Length", "0") or 0) if not chunked else 0
        # Bodiless idempotent requests may be replayed once on a fresh backend connection.
        replayable = not (chunked or length) and self.command in ("GET", "HEAD", "DELETE")
        attempts = 2 if replayable else 1
        for attempt in range(attempts):
            try:
                conn = self._backend_conn()
            except OSError:
                self._send_s3_error(503, "ServiceUnavailable", "S3 backend is not reachable.")
                return
            try:
                resp = self._send_to_backend(conn, chunked, length)
                break
            except (OSError, http.client.HTTPException, ValueError, _BackendGone) as exc:
                conn.close()
                self._backend = None
                if attempt + 1 < attempts:
                    continue
                log.warning("s3proxy: backend request failed: %s %s", self.command,
                            type(exc).__name__)
                self._send_s3_error(502, "BadGateway", "S3 backend request failed.",
                                    body_sent=False)
                return
        self._relay(resp)
        resp.close()  # marks a bodiless (HEAD/204/304) response done so the conn can be reused
        if resp.will_close and self._backend is not None:
            self._backend.close()
            self._backend = None

    def _send_to_backend(self, conn, chunked: bool, length: int) -> http.client.HTTPResponse:
        conn.putrequest(self.command, self._target(), skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in HOP_BY_HOP:
                conn.putheader(name, value)
        conn.endheaders()
        self._body_pending = False
        try:
            if chunked:
                _pipe_chunked(self.rfile, conn.sock, self._buf)
            elif length:
                _pipe_exact(self.rfile, conn.sock, length, self._buf)
        except _BackendGone:
            # weed may answer early (e.g. 403) and stop reading: relay its answer if it came.
            self.close_connection = True
        return conn.getresponse()

    def _relay(self, resp: http.client.HTTPResponse) -> None:
        no_body = (self.command == "HEAD" or resp.status in (204, 304)
                   or 100 <= resp.status < 200)
        content_length = resp.getheader("Content-Length")
        rechunk = not no_body and content_length is None
        head = [f"HTTP/1.1 {resp.status} {resp.reason}"]
        for name, value in resp.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "transfer-encoding":
                head.append(f"{name}: {value}")
        if rechunk:
            head.append("Transfer-Encoding: chunked")
        if self.close_connection:
            head.append("Connection: close")
        try:
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            if no_body:
                return
            buf = self._buf
            if not rechunk:
                remaining = int(content_length)
                if remaining >= SPLICE_MIN and self.server.proxy.use_splice:
                    # Bytes already buffered by http.client first, then the rest in-kernel.
                    buffered = resp.fp.peek(0)[:remaining] if remaining else b""
                    if buffered:
                        self.wfile.write(resp.fp.read(len(buffered)))
                        remaining -= len(buffered)
                    _splice_exact(self._backend.sock, self.connection, remaining, self.timeout)
                    resp.length = 0
                    remaining = 0
                while remaining > 0:
                    got = resp.readinto(buf[:min(remaining, len(buf))])
                    if not got:
                        raise ConnectionError("backend closed mid-body")
                    self.wfile.write(buf[:got])
                    remaining -= got
            else:
                while True:
                    data = resp.read1(len(buf))
                    if not data:
                        break
                    self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException, ValueError):
            # Mid-stream failure: the only honest signal left is closing both sides.
            self.close_connection = True
            resp.close()
            if self._backend is not None:
                self._backend.close()
                self._backend = None

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _forward


class S3Proxy:
    """Owns the proxy server thread; ``faults`` is read live on every request."""

    def __init__(self, backend_host: str, backend_port: int, faults=None):
        self.backend = (backend_host, backend_port)
        self.faults = faults
        self.use_splice = hasattr(os, "splice")
        self._expiry: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return self._server.server_address[1]

    def register_expiration(self, access_key_id: str, when: datetime) -> None:
        with self._lock:
            self._expiry[access_key_id] = when

    def set_expirations(self, expirations: dict[str, datetime]) -> None:
        with self._lock:
            self._expiry = dict(expirations)

    def expiry_of(self, access_key_id: str) -> datetime | None:
        with self._lock:
            return self._expiry.get(access_key_id)

    def start(self) -> None:
        self._server = _ProxyServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="s3proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with server.lock:
            sockets = list(server.open_sockets)
        for sock in sockets:  # wake handler threads parked on idle keep-alive connections
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
