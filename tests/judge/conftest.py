"""Fixtures for running the official ``synapseclient`` (4.14, unmodified) against the emulator.

The client is configured only the way a user would: the four endpoints, ``skip_checks=True``
(no redirect probe, no PyPI version check), a cache directory and a token (login argument or a
``.synapseConfig``-style file). Its boto3 STS transfers call ``boto3.session.Session(...)
.resource("s3", endpoint_url=None)`` (``core/remote_file_storage_wrappers.py``), so boto3 picks
the S3 endpoint from its own configuration: the tests set ``AWS_ENDPOINT_URL_S3`` (honoured by
botocore >= 1.31) plus a private ``AWS_CONFIG_FILE`` (region, path-style addressing), all via
``monkeypatch`` so nothing leaks out of a test.

A socket guard makes any attempt to reach a non-loopback address fail the test: the judge must
never touch the internet (synapse.org, pypi.org, AWS).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import time
import uuid
import warnings
from pathlib import Path

import pytest

import synapseclient
from synapseclient.core.exceptions import SynapseHTTPError

from tests.harness import TestUser

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXTERNAL_S3_SL = "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting"
SYNAPSE_S3_SL = "org.sagebionetworks.repo.model.project.S3StorageLocationSetting"
UPLOAD_LIST_SETTING = "org.sagebionetworks.repo.model.project.UploadDestinationListSetting"

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_local(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host)
    if host in _LOCAL_NAMES or host == "":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def offline_network(monkeypatch):
    """Refuse (and record) any DNS lookup or connection to a non-loopback host."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            attempts.append(f"getaddrinfo {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"judge: network lookup of {host} blocked")
        return real_getaddrinfo(host, *args, **kwargs)

    def _check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            if not _is_local(address[0]):
                attempts.append(f"connect {address[0]}")
                raise PermissionError(f"judge: connection to {address[0]} blocked")

    def connect(self, address):
        _check(self, address)
        return real_connect(self, address)

    def connect_ex(self, address):
        _check(self, address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
    assert not attempts, f"the client tried to reach the network: {attempts}"


@pytest.fixture(autouse=True)
def client_env(monkeypatch, tmp_path, emulator):
    """Environment of a user whose only Synapse/AWS configuration points at the emulator."""
    for var in ("SYNAPSE_AUTH_TOKEN", "SYNAPSE_PROFILE", "SYNAPSE_TOKEN_AWS_SSM_PARAMETER_NAME",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL",
                "AWS_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "HTTP_PROXY", "HTTPS_PROXY",
                "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    aws = tmp_path / "aws"
    aws.mkdir()
    (aws / "config").write_text("[default]\nregion = us-east-1\n"
                                "s3 =\n    addressing_style = path\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws / "credentials-absent"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", emulator.info["s3Endpoint"] or "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.synapseConfig, no ~/.aws
    (tmp_path / "home").mkdir()
    yield


class ClientFactory:
    """Builds ``synapseclient.Synapse`` instances pointed at the emulator."""

    def __init__(self, emulator, tmp_path: Path):
        self.emulator = emulator
        self.tmp_path = tmp_path
        self.count = 0
        self.made: list[synapseclient.Synapse] = []

    def endpoints(self) -> dict:
        info = self.emulator.info
        return {"repoEndpoint": info["repoEndpoint"], "authEndpoint": info["authEndpoint"],
                "fileHandleEndpoint": info["fileHandleEndpoint"],
                "portalEndpoint": info["portalEndpoint"]}

    def new(self, token: str | None = None, *, login: bool = True,
            use_boto_sts: bool = False) -> synapseclient.Synapse:
        """A client configured by constructor arguments, logged in with ``authToken``."""
        self.count += 1
        base = self.tmp_path / f"client{self.count}"
        base.mkdir()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            syn = synapseclient.Synapse(**self.endpoints(), skip_checks=True,
                                        cache_root_dir=str(base / "cache"),
                                        configPath=str(base / "synapseConfig-absent"),
                                        silent=True, debug=False)
        syn.use_boto_sts_transfers = use_boto_sts
        self.made.append(syn)
        if login:
            syn.login(authToken=token, silent=True)
        return syn

    def from_config(self, token: str, extra: str = "") -> synapseclient.Synapse:
        """A client configured only through a ``.synapseConfig`` file (endpoints + token)."""
        self.count += 1
        base = self.tmp_path / f"client{self.count}"
        base.mkdir()
        ep = self.endpoints()
        cfg = base / ".synapseConfig"
        cfg.write_text(
            "[authentication]\n"
            f"authtoken = {token}\n\n"
            "[endpoints]\n" + "".join(f"{k} = {v}\n" for k, v in ep.items()) + "\n"
            f"[cache]\nlocation = {base / 'cache'}\n\n" + extra)
        os.chmod(cfg, 0o600)
        syn = synapseclient.Synapse(configPath=str(cfg), skip_checks=True, silent=True)
        self.made.append(syn)
        syn.login(silent=True)
        return syn


@pytest.fixture
def clients(emulator, tmp_path):
    factory = ClientFactory(emulator, tmp_path)
    yield factory
    for syn in factory.made:
        try:
            syn._requests_session.close()
            syn._requests_session_storage.close()
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass


class JudgeUser(TestUser):
    """A TestUser whose repr (shown by pytest on a failed assertion) hides the token."""

    __test__ = False

    def __repr__(self) -> str:
        return f"JudgeUser(id={self.id!r}, user_name={self.user_name!r}, token='***')"


def new_user(emulator) -> JudgeUser:
    u = emulator.new_user()
    return JudgeUser(u.id, u.user_name, u.token, u.api)


class Secret(dict):
    """STS credentials whose repr hides the secret parts (pytest prints reprs on failure)."""

    HIDDEN = {"secretAccessKey", "sessionToken", "aws_secret_access_key", "aws_session_token"}

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {'***' if k in self.HIDDEN else repr(v)}"
                               for k, v in self.items()) + "}"


def hidden(value):
    """Wrap a token dict (json/boto format) or an export script so failures don't show secrets."""
    if isinstance(value, dict):
        return Secret(value)
    return value


def assert_in_script(fragment: str, script: str) -> None:
    if fragment not in script:
        shown = "\n".join(line for line in script.splitlines()
                          if "SECRET" not in line and "SESSION_TOKEN" not in line)
        raise AssertionError(f"{fragment!r} not in export script (secret lines hidden):\n{shown}")


@pytest.fixture
def user(emulator):
    return new_user(emulator)


@pytest.fixture
def syn(clients, user):
    return clients.new(user.token)


# ---- helpers shared by the judge tests ------------------------------------------------------

def unique(prefix: str = "judge") -> str:
    return f"{prefix} {uuid.uuid4().hex[:10]}"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write_file(directory: Path, name: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


def assert_http_error(excinfo, status: int, reason: str) -> None:
    """synapseclient raised SynapseHTTPError with this status and the reference's message."""
    err = excinfo.value
    assert isinstance(err, SynapseHTTPError), repr(err)
    got = getattr(getattr(err, "response", None), "status_code", None)
    assert got == status, f"expected HTTP {status}, got {got}: {err}"
    assert reason in str(err), f"expected reason {reason!r} in: {err}"


def put_owner_txt(emulator, base_key: str | None, content: str) -> None:
    key = f"{base_key}/owner.txt" if base_key else "owner.txt"
    emulator.s3_admin_client().put_object(Bucket=emulator.info["externalBucket"], Key=key,
                                          Body=content.encode())


def create_project(syn, name: str | None = None):
    return syn.store(synapseclient.Project(name=name or unique("judge project")))


def create_folder(syn, parent, name: str | None = None):
    return syn.store(synapseclient.Folder(name=name or unique("folder"), parent=parent))


def set_upload_setting(syn, container_id: str, locations: list[int]) -> dict:
    return syn.restPOST("/projectSettings", json.dumps({
        "concreteType": UPLOAD_LIST_SETTING, "settingsType": "upload",
        "locations": locations, "projectId": container_id}))


def external_sts_location(syn, emulator, user, base_key: str | None = None) -> dict:
    """owner.txt (admin keys) + an STS-enabled ExternalS3StorageLocationSetting (as the user)."""
    base_key = base_key or f"judge-{uuid.uuid4().hex[:12]}/data"
    put_owner_txt(emulator, base_key, user.user_name)
    return syn.restPOST("/storageLocation", json.dumps({
        "concreteType": EXTERNAL_S3_SL, "uploadType": "S3",
        "bucket": emulator.info["externalBucket"], "baseKey": base_key, "stsEnabled": True}))


def synapse_sts_location(syn) -> dict:
    return syn.restPOST("/storageLocation", json.dumps({
        "concreteType": SYNAPSE_S3_SL, "uploadType": "S3", "stsEnabled": True}))


class StsFolder:
    def __init__(self, project, folder, location: dict, setting: dict):
        self.project = project
        self.folder = folder
        self.location = location
        self.setting = setting

    @property
    def id(self) -> str:
        return self.folder["id"]

    @property
    def location_id(self) -> int:
        return self.location["storageLocationId"]

    @property
    def base_key(self) -> str | None:
        return self.location.get("baseKey")

    @property
    def bucket(self) -> str | None:
        return self.location.get("bucket")


def make_external_sts_folder(syn, emulator, user, project=None) -> StsFolder:
    location = external_sts_location(syn, emulator, user)
    project = project or create_project(syn)
    folder = create_folder(syn, project, unique("sts external"))
    setting = set_upload_setting(syn, folder["id"], [location["storageLocationId"]])
    return StsFolder(project, folder, location, setting)


def make_synapse_sts_folder(syn, project=None) -> StsFolder:
    location = synapse_sts_location(syn)
    project = project or create_project(syn)
    folder = create_folder(syn, project, unique("sts synapse"))
    setting = set_upload_setting(syn, folder["id"], [location["storageLocationId"]])
    return StsFolder(project, folder, location, setting)


def boto_s3(emulator, creds: dict):
    """boto3 client built the way a user would from ``output_format='boto'`` credentials: the
    endpoint comes from AWS_ENDPOINT_URL_S3 / the AWS config file (set by ``client_env``)."""
    import boto3

    return boto3.session.Session(**creds).client("s3")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
