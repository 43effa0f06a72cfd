"""Configuration of the local S3 world: the STS session policy and SeaweedFS's config files.

Owns (pure, no processes):
  * ``session_policy`` -- the inline STS session policy, built exactly like Synapse's
    ``sts-policy-template.json.vtp`` (synapse-api.md section 6.2);
  * ``Secrets`` -- the emulator's static identities and the STS signing key, generated once
    and persisted (mode 0600) in the data dir so tokens minted before a restart stay valid;
  * ``write_weed_configs`` -- SeaweedFS's ``s3.json`` (static identities) and ``iam.json``
    (STS settings, the role assumed by ``mint``, named policies);
  * ``weed_mini_args`` -- the ``weed mini`` command line with every port explicit.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

READ_ONLY = "read_only"
READ_WRITE = "read_write"

READ_ONLY_ACTIONS = ["s3:GetObject", "s3:ListBucket"]
READ_WRITE_ACTIONS = [
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:GetObject",
    "s3:ListBucket",
    "s3:ListMultipartUploadParts",
    "s3:PutObject",
    "s3:ListBucketMultipartUploads",
    "s3:PutObjectAcl",
]

ROLE_NAME = "SynapseStsRole"
ROLE_ARN = f"arn:aws:iam::role/{ROLE_NAME}"
MINTER_POLICY = "SynapseServicePolicy"
NS_PER_S = 1_000_000_000


def normalize_base_key(base_key: str | None) -> str | None:
    """Synapse base keys have no leading/trailing slash; '' and '/' mean "no baseKey"."""
    if base_key is None:
        return None
    base_key = base_key.strip("/")
    return base_key or None


def session_policy(bucket: str, base_key: str | None, permission: str) -> dict:
    """The session policy Synapse attaches to AssumeRole (synapse-api.md 6.2), as a dict."""
    if permission == READ_ONLY:
        actions = list(READ_ONLY_ACTIONS)
    elif permission == READ_WRITE:
        actions = list(READ_WRITE_ACTIONS)
    else:
        raise ValueError(f"permission must be read_only or read_write, not {permission!r}")
    base_key = normalize_base_key(base_key)
    folder = base_key or ""
    folder_with_trailing_slash = f"{base_key}/" if base_key else ""
    bucket_with_folder = f"{bucket}/{base_key}" if base_key else bucket
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListParentBuckets", "Action": ["s3:ListBucket"], "Effect": "Allow",
             "Resource": [f"arn:aws:s3:::{bucket}"],
             "Condition": {"StringEquals": {"s3:prefix": [folder]}}},
            {"Sid": "ListBucketAccess", "Action": ["s3:ListBucket"], "Effect": "Allow",
             "Resource": [f"arn:aws:s3:::{bucket}"],
             "Condition": {"StringLike": {"s3:prefix": [f"{folder_with_trailing_slash}*"]}}},
            {"Sid": "FolderAccess", "Effect": "Allow", "Action": actions,
             "Resource": [f"arn:aws:s3:::{bucket_with_folder}",
                          f"arn:aws:s3:::{bucket_with_folder}/*"]},
            {"Sid": "DenyOwnerTxt", "Effect": "Deny", "Action": ["*"],
             "Resource": [f"arn:aws:s3:::{bucket_with_folder}/owner.txt"]},
        ],
    }


def role_session_name(name: str) -> str:
    """AWS/SeaweedFS accept 2..64 characters of ``[\\w+=,.@-]``."""
    cleaned = re.sub(r"[^\w+=,.@-]", "-", name or "")[:64]
    return cleaned if len(cleaned) >= 2 else (cleaned + "--")[:2]


@dataclass
class Secrets:
    """Static identities of the emulator and the STS signing key (never logged)."""

    admin_access_key: str
    admin_secret_key: str
    minter_access_key: str
    minter_secret_key: str
    signing_key_b64: str

    @classmethod
    def generate(cls) -> "Secrets":
        def akid(prefix: str) -> str:
            return prefix + secrets.token_hex(8).upper()

        return cls(
            admin_access_key=akid("SYNADMIN"),
            admin_secret_key=secrets.token_urlsafe(30),
            minter_access_key=akid("SYNSTS00"),
            minter_secret_key=secrets.token_urlsafe(30),
            signing_key_b64=base64.b64encode(secrets.token_bytes(32)).decode(),
        )

    @classmethod
    def load_or_create(cls, path: Path) -> "Secrets":
        if path.exists():
            return cls(**json.loads(path.read_text()))
        value = cls.generate()
        _write_private(path, json.dumps(asdict(value), indent=1))
        return value

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"Secrets(admin={self.admin_access_key}, minter={self.minter_access_key}, ...)"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _service_policy_document() -> dict:
    """What the "Synapse service" identity (and so the assumed role) may do: all of S3, mint."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:*"],
             "Resource": ["arn:aws:s3:::*", "arn:aws:s3:::*/*"]},
            {"Effect": "Allow",
             "Action": ["sts:AssumeRole", "sts:GetFederationToken", "sts:ValidateSession"],
             "Resource": ["*"]},
        ],
    }


def write_weed_configs(config_dir: Path, sec: Secrets, max_session_s: int = 43200) -> tuple[Path, Path]:
    """Write ``s3.json`` and ``iam.json`` (both 0600: they hold secrets); return their paths."""
    policy_doc = _service_policy_document()
    s3_cfg = {
        "identities": [
            {"name": "synapse-admin",
             "credentials": [{"accessKey": sec.admin_access_key,
                              "secretKey": sec.admin_secret_key}],
             "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
            {"name": "synapse-sts",
             "credentials": [{"accessKey": sec.minter_access_key,
                              "secretKey": sec.minter_secret_key}],
             "policyNames": [MINTER_POLICY]},
        ],
        "policies": [{"name": MINTER_POLICY, "content": json.dumps(policy_doc)}],
    }
    iam_cfg = {
        "sts": {
            "tokenDuration": 3600 * NS_PER_S,
            "maxSessionLength": max_session_s * NS_PER_S,
            "issuer": "synfs-s3world",
            "signingKey": sec.signing_key_b64,
        },
        "policy": {"defaultEffect": "Deny"},
        "policies": [{"name": MINTER_POLICY, "document": policy_doc}],
        "roles": [{
            "roleName": ROLE_NAME,
            "roleArn": ROLE_ARN,
            "trustPolicy": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["sts:AssumeRole"]}]},
            "attachedPolicies": [MINTER_POLICY],
            "description": "Role Synapse assumes to vend scoped STS credentials",
        }],
    }
    s3_path, iam_path = config_dir / "s3.json", config_dir / "iam.json"
    _write_private(s3_path, json.dumps(s3_cfg, indent=1))
    _write_private(iam_path, json.dumps(iam_cfg, indent=1))
    return s3_path, iam_path


# Every listening port of `weed mini` (checked with `ss -ltnp` on 4.48): 10 of them.
PORT_FLAGS = (
    "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port",
    "volume.port.grpc", "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
)


def weed_mini_args(weed: str, data_dir: Path, s3_json: Path, iam_json: Path,
                   ports: dict[str, int]) -> list[str]:
    args = [
        weed, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.config={s3_json}", f"-s3.iam.config={iam_json}",
        "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.preStopSeconds=0",
    ]
    args += [f"-{flag}={ports[flag]}" for flag in PORT_FLAGS]
    return args
