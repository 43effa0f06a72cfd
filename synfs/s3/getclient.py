"""A lean S3 ranged-GET client: SigV4-signed ``GET`` requests over ``http.client``, the bytes
received straight into the caller's buffer. The read path's hot loop (``synfs.s3.reader``).

Owns, for the reader: one persistent connection per worker thread and host (keep-alive;
a connection that failed or was left half-read is closed, never reused), SigV4
signing of a ``GET`` with an empty payload (signing keys cached per secret, day and region),
the region of each bucket (learnt from S3's redirect answers: ``301 PermanentRedirect`` or
``400 AuthorizationHeaderMalformed`` / ``IllegalLocationConstraintException`` carrying the
bucket's region in ``x-amz-bucket-region`` or ``<Region>``; the request is then signed again
for that region, sent to ``s3.<region>.amazonaws.com`` when no endpoint was configured, and
later requests for that bucket go there at once), and reading S3's error answers into
``S3Error`` (code, status). Connect and read timeouts apply to every socket operation.

It does not retry, refresh credentials or map errors to errno: ``synfs.s3.reader`` does that
with ``synfs.s3.policy``. Per request it costs a few dozen microseconds of Python instead of
botocore's milliseconds (its endpoint resolution, event hooks and response parsing), and
one copy of the body (socket to buffer, two ``recv(MSG_WAITALL)`` per part on plain sockets,
waking once per MiB received).

Blocking and thread-safe; credentials and signatures never appear in messages or logs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import re
import socket
import struct
import threading
import weakref
from urllib.parse import quote, urlsplit

from synfs.synapse.models import StsCredentials

DEFAULT_REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_ERROR_BODY = 1 << 20      # larger error answers are not read: the connection closes
MAX_REDIRECTS = 2               # region answers followed per request
LOWAT = 1 << 20                 # body bytes per wake-up of the receiving thread (SO_RCVLOWAT)
_CODE_RE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_REGION_RE = re.compile(rb"<Region>([a-z0-9-]{1,64})</Region>")
REDIRECT_CODES = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed",
                            "IllegalLocationConstraintException", "TemporaryRedirect"})


class ShortBody(ConnectionError):
    """The connection ended before the body promised by Content-Length (retried)."""


class TransportError(ConnectionError):
    """The request or its answer failed on the way (reset, timeout, malformed answer)."""


class S3Error(Exception):
    """S3 answered with an error: ``code`` (``NoSuchKey``, ``SlowDown`` ...) and ``status``."""

    def __init__(self, status: int, code: str, region: str | None = None):
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.region = region


def _signing_key(secret: str, day: str, region: str) -> bytes:
    k = hmac.new(("AWS4" + secret).encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def sign_get(creds: StsCredentials, region: str, host: str, path: str, headers: dict,
             now: dt.datetime, keys: dict | None = None) -> dict:
    """SigV4 headers for ``GET path`` (no query, empty payload) with ``headers`` signed too;
    returns every header to send (lower-case names). ``keys`` caches signing keys."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    out = {k.lower(): v for k, v in headers.items()}
    out.update({"host": host, "x-amz-date": stamp, "x-amz-content-sha256": EMPTY_SHA256})
    if creds.session_token:
        out["x-amz-security-token"] = creds.session_token
    names = sorted(out)
    canonical = "\n".join(["GET", path, "", *(f"{k}:{str(out[k]).strip()}" for k in names), "",
                           ";".join(names), EMPTY_SHA256])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    cache_key = (creds.secret_access_key, day, region)
    key = keys.get(cache_key) if keys is not None else None
    if key is None:
        key = _signing_key(creds.secret_access_key, day, region)
        if keys is not None:
            if len(keys) > 64:
                keys.clear()
            keys[cache_key] = key
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/{scope}, "
                            f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return out


def object_path(bucket: str, key: str) -> str:
    """The path-style URI of an object, encoded once as SigV4 wants for S3."""
    return "/" + quote(bucket, safe="") + "/" + quote(key, safe="/~")


def recv_body(resp: http.client.HTTPResponse, out: memoryview, timeout: float) -> int:
    """Receive a whole body of ``len(out)`` bytes into ``out``: what http.client already
    buffered, then blocking ``recv(MSG_WAITALL)`` calls on the socket bounded by a kernel
    receive timeout (one GIL hand-off per part instead of one per socket read), with a receive
    low-water mark of ``LOWAT`` for all but the last ``LOWAT`` bytes so that the thread wakes
    once per MiB instead of once per TCP segment. TLS sockets refuse recv flags: they are
    read the ordinary way."""
    buffered = resp.fp
    sock = getattr(getattr(buffered, "raw", None), "_sock", None)
    want = len(out)
    if type(sock) is not socket.socket or not hasattr(buffered, "peek"):
        got = 0
        while got < want:
            n = resp.readinto(out[got:])
            if not n:
                break
            got += n
        if got < want:
            raise ShortBody(f"body ended after {got} of {want} bytes")
        return got
    got = buffered.readinto(out[:min(len(buffered.peek(1)), want)]) if want else 0
    # wake per LOWAT bytes received, not per segment, then the last LOWAT bytes with the
    # default mark: bytes that can never reach the mark would never wake the thread
    stages = [(want - LOWAT, LOWAT)] if want - LOWAT - got >= LOWAT else []
    stages.append((want, 1))
    old, current = sock.gettimeout(), 1     # a connection's mark is 1 between bodies
    try:
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        struct.pack("ll", int(timeout), int(timeout % 1 * 1e6)))
        for end, mark in stages:
            if mark != current:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
                current = mark
            while got < end:
                n = sock.recv_into(out[got:end], end - got, socket.MSG_WAITALL)
                if not n:
                    break
                got += n
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))
        sock.settimeout(old)
    except OSError as exc:          # the receive timeout (EAGAIN), a reset, or the options
        raise ShortBody(f"body read failed after {got} of {want} bytes: "
                        f"{type(exc).__name__}") from None     # the connection is discarded
    if got < want:
        raise ShortBody(f"body ended after {got} of {want} bytes")
    resp.length -= got
    if resp.length == 0:
        resp.close()                # the body is consumed: the connection can be reused
    return got


class GetClient:
    """Signed ranged GETs against one S3 endpoint (``None``: AWS, per-region hosts)."""

    def __init__(self, endpoint_url: str | None, *, connect_timeout: float = 5.0,
                 read_timeout: float = 30.0, region: str = DEFAULT_REGION):
        self.endpoint = urlsplit(endpoint_url) if endpoint_url else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.region = region
        self.regions: dict[str, str] = {}          # bucket -> region S3 told us
        self._keys: dict = {}
        self._local = threading.local()
        self._all: weakref.WeakSet[http.client.HTTPConnection] = weakref.WeakSet()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = self.endpoint.netloc if self.endpoint else "AWS"
        return f"GetClient({where}, regions={self.regions!r})"

    # ---- connections ---------------------------------------------------------------------
    def _where(self, bucket: str) -> tuple[str, str, int, str]:
        """(scheme, host, port, region) for a request on ``bucket``."""
        region = self.regions.get(bucket, self.region)
        if self.endpoint is not None:
            scheme = self.endpoint.scheme or "http"
            port = self.endpoint.port or (443 if scheme == "https" else 80)
            return scheme, self.endpoint.hostname or "127.0.0.1", port, region
        host = "s3.amazonaws.com" if region == DEFAULT_REGION else f"s3.{region}.amazonaws.com"
        return "https", host, 443, region

    def _conn(self, scheme: str, host: str, port: int) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to ``host``; True when it was used before."""
        holder = getattr(self._local, "pool", None)
        if holder is None:
            # closed when the worker thread ends (its thread-local holder is collected)
            holder = self._local.pool = _Pool()
            weakref.finalize(holder, _close_all, holder.conns)
        pool = holder.conns
        conn = pool.get((scheme, host, port))
        if conn is not None:
            return conn, True
        cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = cls(host, port, timeout=self.connect_timeout)
        pool[(scheme, host, port)] = conn
        with self._lock:
            self._all.add(conn)
        return conn, False

    def _discard(self, scheme: str, host: str, port: int) -> None:
        holder = getattr(self._local, "pool", None)
        conn = holder.conns.pop((scheme, host, port), None) if holder is not None else None
        if conn is not None:
            conn.close()
            with self._lock:
                self._all.discard(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._all = list(self._all), weakref.WeakSet()
        for conn in conns:
            conn.close()

    # ---- requests ------------------------------------------------------------------------
    def get_into(self, creds: StsCredentials, bucket: str, key: str, start: int,
                 out: memoryview) -> int:
        """``len(out)`` bytes of ``bucket/key`` at ``start`` into ``out``; returns how many
        arrived (fewer at the end of the object, 0 at or past it). Raises ``S3Error`` for S3's
        error answers, ``TransportError``/``ShortBody`` when the exchange failed."""
        path = object_path(bucket, key)
        headers = {"range": f"bytes={start}-{start + len(out) - 1}"}
        for _ in range(MAX_REDIRECTS + 1):
            scheme, host, port, region = self._where(bucket)
            try:
                return self._exchange(creds, scheme, host, port, region, path, headers, start,
                                      out)
            except S3Error as exc:
                if exc.status == 416 or exc.code == "InvalidRange":
                    return 0
                if (exc.code in REDIRECT_CODES or exc.status in (301, 307)) and exc.region \
                        and exc.region != region:
                    self.regions[bucket] = exc.region       # sign for the bucket's region
                    continue
                raise
        raise S3Error(301, "PermanentRedirect")

    def _exchange(self, creds, scheme, host, port, region, path, headers, start, out) -> int:
        netloc = host if port == (443 if scheme == "https" else 80) else f"{host}:{port}"
        signed = sign_get(creds, region, netloc, path, headers,
                          dt.datetime.now(dt.timezone.utc), self._keys)
        for attempt in (0, 1):
            conn, reused = self._conn(scheme, host, port)
            try:
                conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
                for k, v in signed.items():
                    conn.putheader(_title(k), v)
                conn.endheaders()
                if conn.sock is not None:
                    conn.sock.settimeout(self.read_timeout)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self._discard(scheme, host, port)
                stale = reused and attempt == 0 and not isinstance(exc, TimeoutError)
                if stale:       # the server closed an idle keep-alive connection: once more
                    continue
                raise TransportError(type(exc).__name__) from None
            try:
                return self._body(resp, start, out)
            except S3Error:
                raise                   # its body was read whole: the connection is fine
            except BaseException:
                self._discard(scheme, host, port)    # never reuse a half-read connection
                raise
        raise TransportError("connection closed")   # not reached

    def _body(self, resp: http.client.HTTPResponse, start: int, out: memoryview) -> int:
        status = resp.status
        if status in (200, 206):
            length = resp.length
            if status == 200:                # the server ignored the range: skip to start
                data = resp.read()
                piece = data[start:start + len(out)]
                out[:len(piece)] = piece
                return len(piece)
            if length is None or resp.chunked:
                got = 0
                while got < len(out):
                    n = resp.readinto(out[got:])
                    if not n:
                        break
                    got += n
                resp.read()
                return got
            if length > len(out):
                raise TransportError(f"answer of {length} bytes for a range of {len(out)}")
            try:
                return recv_body(resp, out[:length], self.read_timeout)
            except http.client.HTTPException as exc:
                raise ShortBody(type(exc).__name__) from None
        if resp.length is not None and resp.length > MAX_ERROR_BODY:
            raise TransportError(f"error answer {status} of {resp.length} bytes")
        try:
            body = resp.read()          # read whole: the connection stays usable
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(type(exc).__name__) from None
        raise S3Error(status, _code(status, body), _region(resp, body))


class _Pool:
    """One worker thread's connections, keyed by (scheme, host, port)."""

    __slots__ = ("conns", "__weakref__")

    def __init__(self):
        self.conns: dict[tuple[str, str, int], http.client.HTTPConnection] = {}


def _close_all(conns: dict) -> None:
    for conn in list(conns.values()):
        conn.close()
    conns.clear()


def _title(name: str) -> str:
    """``x-amz-date`` -> ``X-Amz-Date``: names as other S3 clients send them."""
    return "-".join(w.capitalize() for w in name.split("-"))


def _code(status: int, body: bytes) -> str:
    m = _CODE_RE.search(body)
    if m:
        return m.group(1).decode(errors="replace")
    return {301: "PermanentRedirect", 307: "TemporaryRedirect", 403: "AccessDenied",
            404: "NoSuchKey", 416: "InvalidRange", 503: "SlowDown"}.get(status, str(status))


def _region(resp: http.client.HTTPResponse, body: bytes) -> str | None:
    region = resp.getheader("x-amz-bucket-region")
    if region:
        return region.strip()
    m = _REGION_RE.search(body)
    return m.group(1).decode() if m else None
