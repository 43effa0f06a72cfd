"""``synfs sts-token SYN_ID read_only|read_write -o FORMAT``: Synapse STS credentials for other tools.

Owns the output formats. ``shell`` (``bash``), ``cmd`` and ``powershell`` print what
``synapse get-sts-token`` prints: ``SYNAPSE_STS_S3_LOCATION`` plus the three ``AWS_*``
variables (synapse-api.md §6.3); ``json`` prints the server's ``StsCredentials`` body;
``boto`` prints the keyword arguments of ``boto3.client("s3", **creds)`` (as JSON, which is
also a Python dict literal); ``credential-process`` prints the JSON object of the AWS
``credential_process`` contract (``Version`` 1, ``AccessKeyId``, ``SecretAccessKey``,
``SessionToken``, ``Expiration``), so the AWS CLI, boto3, rclone and other S3 tools can fetch
fresh Synapse credentials by themselves.

When the server's answer has no ``baseKey`` the location comes from the entity's upload
destination (as synapseclient does); a location without any base key prints ``s3://bucket``.
The token is found like ``synfs mount`` finds it. Credentials go to stdout only; errors are
one line on stderr with the exit codes below.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from synfs import errors
from synfs.cli import auth
from synfs.service import logs
from synfs.config import (EXIT_AUTH, EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNAVAILABLE,
                          EXIT_USAGE, PRODUCTION)
from synfs.synapse.models import StsCredentials, parse_id

FORMATS = ("shell", "bash", "cmd", "powershell", "json", "boto", "credential-process")

STS_EPILOG = """examples:
  synfs sts-token syn12345 read_only                 # shell exports, like synapse get-sts-token
  eval "$(synfs sts-token syn12345 read_only)" && aws s3 ls "$SYNAPSE_STS_S3_LOCATION/"
  synfs sts-token syn12345 read_write -o json        # the StsCredentials body from Synapse
  synfs sts-token syn12345 read_only -o boto         # boto3.client("s3", **json.loads(out))

  # ~/.aws/config: the AWS CLI, boto3, rclone... fetch fresh credentials themselves
  [profile synapse]
  credential_process = /usr/local/bin/synfs sts-token syn12345 read_only -o credential-process

exit codes: 0 printed, 1 failed (e.g. the entity has no STS-enabled storage location),
  2 usage, 3 token missing or rejected, 4 id not found or no permission, 8 Synapse unreachable
"""

_TEMPLATES = {
    "bash": 'export {name}="{value}"',
    "cmd": 'set {name}="{value}"',
    "powershell": '$Env:{name}="{value}"',
}


def add_sts_parser(sub) -> None:
    p = sub.add_parser("sts-token", help="print temporary S3 credentials for an STS-enabled folder",
                       description="Print Synapse STS credentials for the storage location of an "
                                   "entity, in a format another tool consumes.",
                       epilog=STS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("syn_id", help="an entity in an STS-enabled storage location, e.g. syn12345")
    p.add_argument("permission", choices=["read_only", "read_write"])
    p.add_argument("-o", "--output", choices=FORMATS, default="shell",
                   help="output format (default shell)")
    p.add_argument("--token-file", help="file holding the Synapse access token (default: "
                   "~/.synapseConfig, then SYNAPSE_AUTH_TOKEN)")
    p.add_argument("--config", help="synapseclient config file (default ~/.synapseConfig)")
    p.add_argument("--profile", help="profile in the config file (default: SYNAPSE_PROFILE or default)")
    p.add_argument("--repo-endpoint", help=f"default {PRODUCTION['repoEndpoint']}")
    p.add_argument("--file-endpoint", help=f"default {PRODUCTION['fileHandleEndpoint']}")
    p.add_argument("--retry-budget", type=float, default=30.0,
                   help="seconds to keep retrying Synapse (default 30)")


def synapse_date(value: dt.datetime) -> str:
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def body_of(creds: StsCredentials) -> dict:
    """The ``StsCredentials`` JSON as Synapse sends it (synapse-api.md §6.1)."""
    body: dict = {"bucket": creds.bucket}
    if creds.base_key is not None:
        body["baseKey"] = creds.base_key
    body.update(accessKeyId=creds.access_key_id, secretAccessKey=creds.secret_access_key,
                sessionToken=creds.session_token, expiration=synapse_date(creds.expiration))
    return body


def _shell_quote(value: str) -> str:
    """Make ``value`` safe inside double quotes (a no-op for AWS-style keys)."""
    for ch in ("\\", '"', "$", "`"):
        value = value.replace(ch, "\\" + ch)
    return value


def render(body: dict, fmt: str, location: str | None) -> str:
    if fmt == "json":
        return json.dumps(body)
    if fmt == "boto":
        return json.dumps({"aws_access_key_id": body["accessKeyId"],
                           "aws_secret_access_key": body["secretAccessKey"],
                           "aws_session_token": body["sessionToken"]})
    if fmt == "credential-process":
        expiration = body.get("expiration")
        out = {"Version": 1, "AccessKeyId": body["accessKeyId"],
               "SecretAccessKey": body["secretAccessKey"], "SessionToken": body["sessionToken"]}
        if expiration:
            parsed = dt.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
            out["Expiration"] = parsed.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return json.dumps(out)
    template = _TEMPLATES["bash" if fmt == "shell" else fmt]
    quote = _shell_quote if template is _TEMPLATES["bash"] else (lambda v: v)
    pairs = []
    if location:
        pairs.append(("SYNAPSE_STS_S3_LOCATION", location))
    pairs += [("AWS_ACCESS_KEY_ID", body["accessKeyId"]),
              ("AWS_SECRET_ACCESS_KEY", body["secretAccessKey"]),
              ("AWS_SESSION_TOKEN", body["sessionToken"])]
    return "\n".join(template.format(name=n, value=quote(v)) for n, v in pairs)


def location_of(client, entity_id: int, creds: StsCredentials) -> str:
    base_key = creds.base_key
    if base_key is None:
        try:
            base_key = client.upload_destination(entity_id).base_key
        except errors.SynfsError:
            base_key = None
    return f"s3://{creds.bucket}" + (f"/{base_key}" if base_key else "")


class StsTokenError(Exception):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def fetch(args) -> tuple[StsCredentials, str | None]:
    from pathlib import Path

    from synfs.synapse.client import Endpoints, SynapseClient

    try:
        entity_id = parse_id(args.syn_id)
    except ValueError:
        raise StsTokenError(f"{args.syn_id!r} is not a Synapse id (expected e.g. syn12345)",
                            EXIT_USAGE) from None
    config = Path(args.config) if args.config else None
    try:
        token = auth.find_token(Path(args.token_file) if args.token_file else None, config,
                                args.profile)
    except auth.TokenError as exc:
        raise StsTokenError(str(exc), EXIT_AUTH) from None
    logs.register_secret(token.token)
    from_cfg = auth.endpoints_from_config(config)
    endpoints = Endpoints(
        repo=(args.repo_endpoint or from_cfg.get("repoEndpoint", PRODUCTION["repoEndpoint"])).rstrip("/"),
        file=(args.file_endpoint or from_cfg.get("fileHandleEndpoint",
                                                 PRODUCTION["fileHandleEndpoint"])).rstrip("/"))
    client = SynapseClient(endpoints, token.token, retry_budget_s=args.retry_budget)
    what = f"{args.permission} STS credentials for syn{entity_id}"
    try:
        creds = client.sts_credentials(entity_id, args.permission)
        logs.register_secret(creds.secret_access_key)
        logs.register_secret(creds.session_token)
        shell = args.output in ("shell", "bash", "cmd", "powershell")
        return creds, (location_of(client, entity_id, creds) if shell else None)
    except errors.AuthenticationFailed:
        raise StsTokenError(f"Synapse rejected the token from {token.source} "
                            "(invalid or expired)", EXIT_AUTH) from None
    except errors.NotFound as exc:
        raise StsTokenError(f"cannot get {what}: not found ({_reason(exc)})",
                            EXIT_NOT_FOUND) from None
    except errors.PermissionDenied as exc:
        raise StsTokenError(f"cannot get {what}: {_reason(exc)}", EXIT_NOT_FOUND) from None
    except errors.Unavailable as exc:
        raise StsTokenError(f"cannot reach Synapse at {endpoints.repo}: {_reason(exc)}",
                            EXIT_UNAVAILABLE) from None
    except errors.SynfsError as exc:
        reason = _reason(exc)
        if "project setting" in reason:
            reason += " (it is not in an STS-enabled storage location)"
        raise StsTokenError(f"cannot get {what}: {reason}", EXIT_FAILED) from None
    finally:
        client.close()


def _reason(exc: errors.SynfsError) -> str:
    """The server's reason without our request key (``GET /entity/{id}/sts (syn1): 400 ...``)."""
    text = exc.message or type(exc).__name__
    head, sep, tail = text.partition("): ")
    return tail if sep else text


def run_sts_token(args) -> int:
    try:
        creds, location = fetch(args)
    except StsTokenError as exc:
        print(f"synfs: {exc}", file=sys.stderr)
        return exc.exit_code
    print(render(body_of(creds), args.output, location))
    return EXIT_OK
