"""The ``synapse`` command line (synapseclient 4.14) configured only by a ``.synapseConfig``
file: ``[endpoints]``, ``[authentication]`` and ``[transfer] use_boto_sts``. Runs as a
subprocess with the test's environment (AWS_ENDPOINT_URL_S3 etc. from ``client_env``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import make_external_sts_folder, md5_hex, write_file

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SYNAPSE_CLI = Path(sys.executable).with_name("synapse")


def _config(clients, token: str, tmp_path: Path, use_boto_sts: bool) -> Path:
    ep = clients.endpoints()
    cfg = tmp_path / "cli.synapseConfig"
    cfg.write_text(
        "[authentication]\n" f"authtoken = {token}\n\n"
        "[endpoints]\n" + "".join(f"{k} = {v}\n" for k, v in ep.items()) + "\n"
        f"[cache]\nlocation = {tmp_path / 'cli-cache'}\n\n"
        f"[transfer]\nuse_boto_sts = {'true' if use_boto_sts else 'false'}\n")
    os.chmod(cfg, 0o600)
    return cfg


def _run(cfg: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(SYNAPSE_CLI), "-c", str(cfg), "-s", *args], cwd=str(cwd),
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    return proc


def _redacted(text: str) -> str:
    """CLI output may hold STS secrets: keep only lines without credentials."""
    return "\n".join(line for line in text.splitlines()
                     if not any(k in line for k in ("AWS_", "secretAccessKey", "sessionToken",
                                                    "aws_secret", "aws_session")))


@pytest.mark.skipif(not SYNAPSE_CLI.exists(), reason="synapse CLI not installed")
def test_cli_get_sts_token_and_store_get_with_boto(clients, user, syn, emulator, tmp_path):
    sts = make_external_sts_folder(syn, emulator, user)
    cfg = _config(clients, user.token, tmp_path, use_boto_sts=True)

    proc = _run(cfg, "get-sts-token", sts.id, "read_only", "-o", "json", cwd=tmp_path)
    assert proc.returncode == 0, _redacted(proc.stdout + proc.stderr)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("{")]
    assert lines, "no JSON token printed"
    token = json.loads(lines[-1])
    assert token["bucket"] == sts.bucket and token["baseKey"] == sts.base_key
    assert token["accessKeyId"] and token["sessionToken"]

    data = os.urandom(70_000)
    path = write_file(tmp_path / "cli-up", "cli.bin", data)
    proc = _run(cfg, "store", "--parentid", sts.id, str(path), cwd=tmp_path)
    assert proc.returncode == 0, _redacted(proc.stdout + proc.stderr)
    file_id = syn.findEntityId("cli.bin", sts.id)
    assert file_id, _redacted(proc.stdout + proc.stderr)
    fh = syn.get(file_id, downloadFile=False)["_file_handle"]
    # [transfer] use_boto_sts = true: the boto STS upload key "<baseKey>/<uuid4>/<basename>"
    assert re.fullmatch(rf"{re.escape(sts.base_key)}/[0-9a-f-]{{36}}/cli\.bin", fh["key"]), fh["key"]
    assert fh["contentMd5"] == md5_hex(data)

    out = tmp_path / "cli-down"
    out.mkdir()
    proc = _run(cfg, "get", file_id, "--downloadLocation", str(out), cwd=tmp_path)
    assert proc.returncode == 0, _redacted(proc.stdout + proc.stderr)
    assert (out / "cli.bin").read_bytes() == data
