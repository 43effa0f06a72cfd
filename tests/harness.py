"""Test harness: run the emulator as a real subprocess and talk to it over HTTP.

``EmulatorProcess`` starts ``python -m synfs emulator serve`` on 127.0.0.1 in a data
directory, waits for ``emulator.json``, and stops it (SIGTERM, then SIGKILL) at the end.
``Api`` is a thin requests wrapper that returns raw responses so tests can assert on status
codes and bodies exactly as a client sees them.

The secrets registry (``SECRETS``, ``register_secret``, ``capture_secrets``, ``find_leaks``) records
every token and key the tests use so that the run can prove none of them reached a log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import botocore.config
import requests

ROOT = Path(__file__).resolve().parent.parent
_names = itertools.count(1)


# ---- secrets the tests used: no log file of the run may contain any of them ---------------
# (tests/conftest.py checks every log under the run's temporary directories at the end.)
SECRETS: set[str] = set()
LOG_PATHS: list[Path] = []          # logs written outside pytest's temporary directories
SECRET_KEYS = frozenset({"accessToken", "secretAccessKey", "sessionToken", "authtoken",
                         "aws_secret_access_key", "aws_session_token", "SecretAccessKey",
                         "SessionToken", "admin_secret_key", "aws_access_token"})
# Whatever the registry missed (e.g. STS credentials minted inside a daemon subprocess): no
# emulator access token and no STS session token (a JWT) may appear in a log either.
LEAK_PATTERNS = (re.compile(r"synemu[A-Za-z0-9]{30,}"),
                 re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{16,}"))


def register_secret(*values) -> None:
    for value in values:
        if isinstance(value, str) and len(value) >= 8:
            SECRETS.add(value)


def register_secrets_in(data) -> None:
    """Register the values of secret-bearing keys anywhere in a decoded JSON document."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in SECRET_KEYS:
                register_secret(value)
            elif isinstance(value, (dict, list)):
                register_secrets_in(value)
    elif isinstance(data, list):
        for item in data:
            register_secrets_in(item)


def register_secrets_from_response(resp) -> None:
    body = resp.content or b""
    if len(body) > 1_000_000 or not any(k.encode() in body for k in
                                        ("Token", "secretAccessKey", "SecretAccessKey")):
        return
    try:
        register_secrets_in(json.loads(body))
    except ValueError:
        pass


@contextlib.contextmanager
def capture_secrets():
    """Register secrets in every JSON answer a ``requests`` session of this process receives
    (seeders, synapseclient, the harness): STS credentials and access tokens."""
    original = requests.Session.send

    def send(self, request, **kw):
        resp = original(self, request, **kw)
        if not kw.get("stream"):
            try:
                register_secrets_from_response(resp)
            except Exception:  # noqa: BLE001 - bookkeeping must not break a test
                pass
        return resp

    requests.Session.send = send
    try:
        yield
    finally:
        requests.Session.send = original


def log_files(roots) -> list[Path]:
    """Text log files under ``roots`` (binary ``*.log`` files, e.g. LevelDB journals, skipped)."""
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        candidates = [root] if root.is_file() else []
        for top, dirs, files in os.walk(root):   # errors (e.g. a dead mount) are skipped
            dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(top, d))]
            candidates += [Path(top, f) for f in sorted(files) if f.endswith(".log")]
        for path in candidates:
            try:
                with path.open("rb") as f:
                    if b"\0" in f.read(4096):
                        continue
            except OSError:
                continue
            found.append(path)
    return found


def find_leaks(roots, secrets=None) -> list[str]:
    """``path: what`` for every registered secret or secret-looking value found in a log."""
    secrets = sorted(SECRETS if secrets is None else secrets)
    leaks = []
    for path in log_files(list(roots) + LOG_PATHS):
        text = path.read_text(errors="replace")
        for secret in secrets:
            if secret in text:
                leaks.append(f"{path}: a registered secret ({secret[:4]}...)")
        for pattern in LEAK_PATTERNS:
            match = pattern.search(text)
            if match:
                leaks.append(f"{path}: {pattern.pattern[:12]}... ({match.group(0)[:10]}...)")
    return leaks


class Api:
    """REST calls against the emulator's three prefixes, as one user (or anonymous)."""

    def __init__(self, info: dict, token: str | None):
        self.info = info
        self.token = token
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _url(self, prefix: str, path: str) -> str:
        base = {"repo": self.info["repoEndpoint"], "file": self.info["fileHandleEndpoint"],
                "auth": self.info["authEndpoint"], "admin": self.info["adminEndpoint"]}[prefix]
        return base + path

    def call(self, method: str, path: str, prefix: str = "repo", json_body=None, **kw):
        resp = self.session.request(method, self._url(prefix, path), json=json_body,
                                    timeout=60, **kw)
        if not kw.get("stream"):
            register_secrets_from_response(resp)
        return resp

    def get(self, path, prefix="repo", **kw):
        return self.call("GET", path, prefix, **kw)

    def post(self, path, body=None, prefix="repo", **kw):
        return self.call("POST", path, prefix, json_body=body, **kw)

    def put(self, path, body=None, prefix="repo", **kw):
        return self.call("PUT", path, prefix, json_body=body, **kw)

    def delete(self, path, prefix="repo", **kw):
        return self.call("DELETE", path, prefix, **kw)

    # conveniences used by many tests ------------------------------------------------------
    def ok(self, resp, status: int | tuple = (200, 201)):
        statuses = status if isinstance(status, tuple) else (status,)
        assert resp.status_code in statuses, (resp.status_code, resp.text)
        return resp.json() if resp.content else None

    def create(self, concrete: str, name: str, parent: str | None = None, **extra) -> dict:
        body = {"name": name, "concreteType": f"org.sagebionetworks.repo.model.{concrete}", **extra}
        if parent:
            body["parentId"] = parent
        return self.ok(self.post("/entity", body), 201)

    def project(self, name: str | None = None) -> dict:
        return self.create("Project", name or f"project {next(_names)} {time.time_ns()}")

    def folder(self, parent: str, name: str) -> dict:
        return self.create("Folder", name, parent)


@dataclasses.dataclass
class TestUser:
    id: str
    user_name: str
    token: str
    api: Api


class EmulatorProcess:
    def __init__(self, data_dir: Path, throttling: bool = False):
        self.data_dir = Path(data_dir)
        self.throttling = throttling
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self.admin: Api | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "emulator.log"

    def start(self, timeout: float = 90.0) -> "EmulatorProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "synfs", "--log-level", "INFO", "emulator", "serve",
               "--data-dir", str(self.data_dir)]
        if self.throttling:
            cmd.append("--throttling")
        log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=str(ROOT), start_new_session=True)
        log.close()
        info_path = self.data_dir / "emulator.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"emulator exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text(errors="replace")[-4000:])
            if info_path.exists():
                try:
                    info = json.loads(info_path.read_text())
                except ValueError:
                    info = {}
                if info.get("pid") == self.proc.pid:
                    self.info = info
                    break
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("emulator did not become ready in time")
        self.admin_token = (self.data_dir / "admin.token").read_text().strip()
        register_secret(self.admin_token)
        self.admin = Api(self.info, self.admin_token)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ---- users and faults ----------------------------------------------------------------
    def api(self, token: str | None = None) -> Api:
        return Api(self.info, token)

    def new_user(self, name: str | None = None, certified: bool = True,
                 scopes: list[str] | None = None) -> TestUser:
        name = name or f"user{next(_names)}x{time.time_ns() % 10**9}"
        body = {"userName": name, "certified": certified}
        if scopes is not None:
            body["scopes"] = scopes
        data = self.admin.ok(self.admin.post("/users", body, prefix="admin"), 201)
        register_secret(data["accessToken"])
        return TestUser(data["id"], name, data["accessToken"], Api(self.info, data["accessToken"]))

    def set_faults(self, **faults) -> dict:
        return self.admin.ok(self.admin.put("/faults", faults, prefix="admin"), 200)

    def reset_faults(self) -> None:
        self.admin.ok(self.admin.delete("/faults", prefix="admin"), 204)

    def s3_admin_credentials(self) -> dict:
        """The S3 world's static admin keys (boto3 kwargs); never print the result.

        Taken from ``emulator.json`` if the emulator publishes them there, else from the
        secrets file the S3 world keeps in the data dir (``s3config.Secrets``, a JSON object
        with ``admin_access_key``/``admin_secret_key``)."""
        info = self.info
        for ak, sk in (("s3AdminAccessKeyId", "s3AdminSecretAccessKey"),
                       ("s3AdminAccessKey", "s3AdminSecretKey")):
            if info.get(ak) and info.get(sk):
                register_secret(info[sk])
                return {"aws_access_key_id": info[ak], "aws_secret_access_key": info[sk]}
        candidates = []
        for pattern in ("s3/*secret*.json", "*secret*.json", "s3/*.json", "s3/*/*secret*.json"):
            candidates += [p for p in sorted(self.data_dir.glob(pattern)) if p not in candidates]
        for path in candidates:
            try:
                if path.stat().st_size > 1_000_000:
                    continue
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("admin_access_key") and data.get("admin_secret_key"):
                register_secret(data["admin_secret_key"])
                return {"aws_access_key_id": data["admin_access_key"],
                        "aws_secret_access_key": data["admin_secret_key"]}
        raise RuntimeError(f"no S3 admin credentials found in emulator.json or under {self.data_dir}")

    def s3_admin_client(self):
        """boto3 S3 client at the emulator's S3 endpoint with the S3 world's admin identity
        (for test setup such as placing ``owner.txt`` in the external bucket)."""
        return boto3.client("s3", endpoint_url=self.info["s3Endpoint"], region_name="us-east-1",
                            config=botocore.config.Config(s3={"addressing_style": "path"},
                                                          retries={"max_attempts": 2}),
                            **self.s3_admin_credentials())

    def s3_client(self, creds: dict | None = None):
        """boto3 S3 client at the emulator's S3 endpoint, with Synapse STS credentials."""
        kw = {}
        if creds:
            register_secrets_in(creds)
            kw = dict(aws_access_key_id=creds["accessKeyId"],
                      aws_secret_access_key=creds["secretAccessKey"],
                      aws_session_token=creds["sessionToken"])
        return boto3.client("s3", endpoint_url=self.info["s3Endpoint"], region_name="us-east-1",
                            config=botocore.config.Config(s3={"addressing_style": "path"},
                                                          retries={"max_attempts": 1}), **kw)


# ---- the daemon's status file, read only once it was rewritten after an action ----------------
def mount_status(mountpoint, after: float | None = None, timeout: float = 20.0) -> dict:
    """The status JSON of the mount at ``mountpoint``, as written after wall time ``after``
    (default: now). Waits (polling, up to ``timeout`` s) until the daemon has rewritten the
    file, so a stale file can never stand for the state after an action: request counts read
    this way include every request the action made."""
    from synfs.service.runtime import find_status_file

    after = time.time() if after is None else after
    deadline = time.monotonic() + timeout
    why = ""
    while True:
        path, why = find_status_file(mountpoint)
        if path is not None:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            if float(data.get("updated", 0)) > after:
                return data
        if time.monotonic() > deadline:
            raise AssertionError(f"status file of {mountpoint} not rewritten within {timeout}s "
                                 f"after the action ({why or 'still stale'})")
        time.sleep(0.05)


def wait_for(condition, timeout: float = 20.0, interval: float = 0.02, what: str = ""):
    """Poll ``condition()`` until it returns something truthy (returned) or ``timeout`` s
    pass (AssertionError naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)
