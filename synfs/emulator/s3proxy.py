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
  * responses are streamed back (``Content-Length`` as-is, otherwise re-chunked).

Before forwarding, requests signed with a registered access key whose reported expiration has
passed get 403 ``ExpiredToken``; requests carrying an STS session token (user traffic) get the
``faults`` object's latency and error rate. Proxy-made errors are S3 XML bodies. Nothing here
logs query strings or headers (they hold signatures and session tokens).
"""

from __future__ import annotations

import http.client
import logging
import random
import re
import select
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

BUF = 1 << 20
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "upgrade", "te", "trailer"}
STATUS_CODES = {500: ("InternalError", "We encountered an internal error. Please try again."),
                502: ("BadGateway", "Bad gateway."),
                503: ("SlowDown", "Please reduce your request rate."),
                504: ("GatewayTimeout", "Gateway timeout."),
                429: ("SlowDown", "Please reduce your request rate."),
                403: ("AccessDenied", "Access Denied"),
                400: ("BadRequest", "Bad request.")}
_CRED_RE = re.compile(r"Credential=([^/,\s]+)/")


def s3_error_body(code: str, message: str, resource: str, request_id: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<Resource>%s</Resource><RequestId>%s</RequestId></Error>'
            % (escape(code), escape(message), escape(resource), request_id)).encode()


def _faults_value(faults, name: str, default, kind):
    """Read one attribute of the (foreign) faults object defensively."""
    try:
        value = kind(getattr(faults, name, default) or default)
    except (TypeError, ValueError):
        return default
    return value


def _pipe_exact(src, dst: socket.socket, n: int, buf: memoryview) -> None:
    """Copy exactly ``n`` bytes from the buffered reader ``src`` to socket ``dst`` (None: drop)."""
    while n > 0:
        got = src.readinto(buf[:min(n, len(buf))])
        if not got:
            raise ConnectionError("client closed the connection mid-body")
        if dst is not None:
            dst.sendall(buf[:got])
        n -= got


def _pipe_chunked(src, dst: socket.socket | None, buf: memoryview) -> None:
    """Copy one Transfer-Encoding: chunked body verbatim (framing included)."""
    while True:
        line = src.readline(65537)
        if not line.endswith(b"\n"):
            raise ConnectionError("bad chunk header")
        if dst is not None:
            dst.sendall(line)
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = src.readline(65537)
                if dst is not None:
                    dst.sendall(trailer)
                if trailer in (b"\r\n", b"\n", b""):
                    return
        _pipe_exact(src, dst, size + 2, buf)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, proxy: "S3Proxy"):
        self.proxy = proxy
        self.open_sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

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

    def _query(self) -> dict:
        return parse_qs(urlsplit(self._target()).query)

    def _target(self) -> str:
        parts = self.requestline.split(" ")
        return parts[1] if len(parts) >= 2 else self.path

    def _gate(self, body_sent: bool = True) -> bool:
        """Apply expiry and faults; True when an error response was already sent."""
        self._gated = True
        proxy = self.server.proxy
        query = None
        access_key = None
        auth = self.headers.get("Authorization", "")
        m = _CRED_RE.search(auth)
        if m:
            access_key = m.group(1)
        else:
            query = self._query()
            cred = query.get("X-Amz-Credential", [""])[0]
            access_key = cred.split("/", 1)[0] or None
        if access_key is not None:
            expires = proxy.expiry_of(access_key)
            if expires is not None and datetime.now(timezone.utc) >= expires:
                self._send_s3_error(403, "ExpiredToken", "The provided token has expired.",
                                    body_sent)
                return True
        has_token = "X-Amz-Security-Token" in self.headers
        if not has_token:
            query = self._query() if query is None else query
            has_token = "X-Amz-Security-Token" in query
        faults = proxy.faults
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

    def _drain_body(self) -> None:
        if not self._body_pending:
            return
        self._body_pending = False
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            _pipe_chunked(self.rfile, None, self._buf)
        else:
            n = int(self.headers.get("Content-Length", "0") or 0)
            _pipe_exact(self.rfile, None, n, self._buf)

    def _send_s3_error(self, status: int, code: str, message: str, body_sent: bool = True) -> None:
        if body_sent:
            try:
                self._drain_body()
            except (ConnectionError, ValueError, OSError):
                self.close_connection = True
        else:
            self.close_connection = True
        request_id = uuid.uuid4().hex[:16].upper()
        body = b"" if self.command == "HEAD" else s3_error_body(
            code, message, urlsplit(self._target()).path, request_id)
        reason = http.client.responses.get(status, "Error")
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/xml",
                f"Content-Length: {len(body)}", f"x-amz-request-id: {request_id}",
                "Server: " + self.server_version]
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    # -- forwarding -------------------------------------------------------------------------
    def _backend_conn(self) -> http.client.HTTPConnection:
        conn = self._backend
        if conn is not None and conn.sock is not None:
            # An idle keep-alive socket that is readable was closed (or spoke out of turn).
            if select.select([conn.sock], [], [], 0)[0]:
                conn.close()
                conn = None
        elif conn is not None:
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
        attempts = 1 if (chunked or length) else 2  # bodiless requests can be replayed
        for attempt in range(attempts):
            try:
                conn = self._backend_conn()
            except OSError:
                self._send_s3_error(503, "ServiceUnavailable", "S3 backend is not reachable.")
                return
            try:
                resp = self._send_to_backend(conn, chunked, length)
                break
            except (OSError, http.client.HTTPException, ValueError) as exc:
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
        if chunked:
            _pipe_chunked(self.rfile, conn.sock, self._buf)
        elif length:
            _pipe_exact(self.rfile, conn.sock, length, self._buf)
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
                while remaining > 0:
                    got = resp.readinto(buf[:min(remaining, len(buf))])
                    if not got:
                        raise ConnectionError("backend closed mid-body")
                    self.wfile.write(buf[:got])
                    remaining -= got
            else:
                while True:
                    data = resp.read1(len(buf)) if hasattr(resp, "read1") else resp.read(BUF)
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
