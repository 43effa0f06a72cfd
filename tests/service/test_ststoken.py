"""`synfs sts-token`: every output format is fed to the tool that consumes it (a shell, boto3,
the AWS credential_process contract through boto3 and the AWS CLI); errors are one line."""

from __future__ import annotations

import ast
import hashlib
import json
import shlex
import shutil
import sys

import boto3
import botocore.config

from tests.harness import register_secrets_in
from tests.service.conftest import endpoint_args, one_line, run, synfs_cmd

S3_CONFIG = botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})


def sts_token(world, syn_id, permission, fmt, *extra, token_file=None):
    cmd = synfs_cmd("sts-token", syn_id, permission, "-o", fmt,
                    "--token-file", str(token_file or world.token_file),
                    *endpoint_args(world.info), *extra)
    res = run(cmd)
    if res.returncode == 0:
        for line in res.stdout.splitlines():
            if "=" in line and not line.lstrip().startswith("{"):
                register_secrets_in({"sessionToken": line.split("=", 1)[1].strip('"')})
        try:
            register_secrets_in(json.loads(res.stdout))
        except ValueError:
            pass
    return res


def test_json_is_the_server_body(world):
    res = sts_token(world, world.sts_file, "read_only", "json")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    body = json.loads(res.stdout)
    assert set(body) == {"bucket", "baseKey", "accessKeyId", "secretAccessKey", "sessionToken",
                         "expiration"}
    assert body["bucket"] == world.bucket and world.key.startswith(body["baseKey"] + "/")
    assert body["expiration"].endswith("Z")
    s3 = boto3.client("s3", endpoint_url=world.info["s3Endpoint"], region_name="us-east-1",
                      config=S3_CONFIG, aws_access_key_id=body["accessKeyId"],
                      aws_secret_access_key=body["secretAccessKey"],
                      aws_session_token=body["sessionToken"])
    assert s3.get_object(Bucket=world.bucket, Key=world.key)["Body"].read() == world.data


def test_shell_exports_feed_a_shell_and_boto3(world):
    res = sts_token(world, world.sts_file, "read_only", "shell")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [ln.split("=", 1)[0] for ln in lines] == [
        "export SYNAPSE_STS_S3_LOCATION", "export AWS_ACCESS_KEY_ID",
        "export AWS_SECRET_ACCESS_KEY", "export AWS_SESSION_TOKEN"]
    script = (
        "import boto3, botocore.config, hashlib, os\n"
        "loc = os.environ['SYNAPSE_STS_S3_LOCATION']\n"
        "bucket, _, base = loc[len('s3://'):].partition('/')\n"
        f"s3 = boto3.client('s3', endpoint_url={world.info['s3Endpoint']!r}, region_name='us-east-1',"
        " config=botocore.config.Config(s3={'addressing_style': 'path'}))\n"
        f"key = {world.key!r}\n"
        "assert key.startswith(base + '/'), (key, base)\n"
        "print(hashlib.md5(s3.get_object(Bucket=bucket, Key=key)['Body'].read()).hexdigest())\n")
    cmd = " ".join(shlex.quote(a) for a in synfs_cmd(
        "sts-token", world.sts_file, "read_only", "--token-file", str(world.token_file),
        *endpoint_args(world.info)))
    shell = run(["bash", "-c", f'set -e; eval "$({cmd})"; exec {shlex.quote(sys.executable)} -c '
                 f'{shlex.quote(script)}'], env={"AWS_CONFIG_FILE": "/dev/null",
                                                 "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip() == world.md5


def test_shell_location_matches_synapseclient_format(world):
    res = sts_token(world, world.ext, "read_write", "bash")
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first == f'export SYNAPSE_STS_S3_LOCATION="s3://{world.ext_bucket}/{world.ext_base_key}"'
    for fmt, prefix in (("cmd", "set "), ("powershell", "$Env:")):
        out = sts_token(world, world.ext, "read_write", fmt)
        assert out.returncode == 0
        assert all(line.startswith(prefix) for line in out.stdout.splitlines())


def test_boto_dict_feeds_boto3_client(world):
    res = sts_token(world, world.ext, "read_write", "boto")
    assert res.returncode == 0, res.stderr
    creds = json.loads(res.stdout)
    assert creds == ast.literal_eval(res.stdout)      # also what synapse prints (a dict)
    assert set(creds) == {"aws_access_key_id", "aws_secret_access_key", "aws_session_token"}
    s3 = boto3.client("s3", endpoint_url=world.info["s3Endpoint"], region_name="us-east-1",
                      config=S3_CONFIG, **creds)
    key = f"{world.ext_base_key}/sts-token-test/hello.txt"
    s3.put_object(Bucket=world.ext_bucket, Key=key, Body=b"written with boto creds")
    assert s3.get_object(Bucket=world.ext_bucket, Key=key)["Body"].read() == b"written with boto creds"


def _aws_profile(world, tmp_path):
    command = " ".join(shlex.quote(a) for a in synfs_cmd(
        "sts-token", world.sts_file, "read_only", "-o", "credential-process",
        "--token-file", str(world.token_file), *endpoint_args(world.info)))
    config = tmp_path / "aws-config"
    config.write_text(f"[profile synapse]\ncredential_process = {command}\nregion = us-east-1\n"
                      "s3 =\n    addressing_style = path\n")
    return config


def test_credential_process_contract(world):
    res = sts_token(world, world.sts_file, "read_only", "credential-process")
    assert res.returncode == 0, res.stderr
    obj = json.loads(res.stdout)
    assert obj["Version"] == 1
    assert set(obj) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert obj["Expiration"].endswith("Z") and "T" in obj["Expiration"]


def test_credential_process_profile_in_boto3(world, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(_aws_profile(world, tmp_path)))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    session = boto3.Session(profile_name="synapse")
    creds = session.get_credentials().get_frozen_credentials()
    register_secrets_in({"secretAccessKey": creds.secret_key, "sessionToken": creds.token})
    assert session.get_credentials().method == "custom-process"
    s3 = session.client("s3", endpoint_url=world.info["s3Endpoint"], config=S3_CONFIG)
    body = s3.get_object(Bucket=world.bucket, Key=world.key)["Body"].read()
    assert hashlib.md5(body).hexdigest() == world.md5


def test_credential_process_profile_in_the_aws_cli(world, tmp_path):
    aws = shutil.which("aws") or str(__import__("pathlib").Path(sys.executable).parent / "aws")
    res = run([aws, "--profile", "synapse", "--endpoint-url", world.info["s3Endpoint"],
               "s3", "cp", f"s3://{world.bucket}/{world.key}", "-"],
              env={"AWS_CONFIG_FILE": str(_aws_profile(world, tmp_path)),
                   "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
    assert res.returncode == 0, res.stderr
    assert hashlib.md5(res.stdout.encode()).hexdigest() == world.md5


def test_errors_are_one_line_with_exit_codes(world, tmp_path):
    bad = tmp_path / "bad.token"
    bad.write_text("not-a-valid-token\n")
    bad.chmod(0o600)
    res = sts_token(world, world.sts_file, "read_only", "json", token_file=bad)
    assert res.returncode == 3 and "rejected the token" in one_line(res)
    assert res.stdout == ""

    res = sts_token(world, world.plain, "read_only", "json")
    assert res.returncode == 1 and "STS-enabled storage location" in one_line(res)

    res = sts_token(world, world.sts, "read_write", "json")
    assert res.returncode == 1 and "STS write access is not allowed" in one_line(res)

    res = sts_token(world, "hello", "read_only", "json")
    assert res.returncode == 2 and "not a Synapse id" in one_line(res)

    res = run(synfs_cmd("sts-token", world.sts_file, "read_only", "--config",
                        str(tmp_path / "none"), *endpoint_args(world.info)),
              env={"HOME": str(tmp_path)})
    assert res.returncode == 3 and "no Synapse token" in one_line(res)


def test_no_permission_is_exit_4(world, emulator, tmp_path):
    stranger = emulator.new_user()
    token = tmp_path / "stranger.token"
    token.write_text(stranger.token)
    token.chmod(0o600)
    res = sts_token(world, world.sts_file, "read_only", "json", token_file=token)
    assert res.returncode == 4, res.stderr
    assert "lack" in one_line(res) or "access" in one_line(res)
