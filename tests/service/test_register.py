"""`synfs register` end to end: objects put in an external STS bucket with boto3 and with the
AWS CLI (``synfs sts-token`` credentials), single-part and multipart, are registered by the real
CLI against the emulator + SeaweedFS, then read back through a real mount and through the
official synapseclient with matching MD5s; re-runs, changed objects, a non-owner, bad names,
a dry run and a folder that is not on an external STS bucket."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import sys
import types
import uuid

import boto3
import boto3.s3.transfer
import botocore.config
import pytest

from synfs.cli.demo_seed import CT, Seeder
from tests.harness import ROOT, register_secrets_in
from tests.service.conftest import endpoint_args, run, synfs_cmd

MiB = 1024 * 1024
S3_CONFIG = botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
SUMMARY = re.compile(r"^(\d+) (?:would be )?registered, (\d+) new versions?, (\d+) skipped, "
                     r"(\d+) failed", re.M)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def counts(res) -> tuple[int, int, int, int]:
    found = SUMMARY.findall(res.stdout)
    assert len(found) == 1, res.stdout + res.stderr
    return tuple(int(x) for x in found[0])


@pytest.fixture(scope="module")
def reg(emulator, tmp_path_factory):
    """An external STS folder whose bucket holds objects put there by boto3 and the AWS CLI."""
    tmp = tmp_path_factory.mktemp("register")
    owner = emulator.new_user("register-owner")
    seeder = Seeder(emulator.info, owner.token, owner_s3=emulator.s3_admin_client())
    project = seeder.entity("Project", f"synfs register tests {uuid.uuid4().hex[:8]}", None)
    bucket, base_key = emulator.info["externalBucket"], f"synfs-register-{project}"
    seeder._owner_txt(bucket, base_key)
    folder, loc = seeder.sts_folder(project, "bucket-data", {
        "concreteType": CT + "project.ExternalS3StorageLocationSetting", "uploadType": "S3",
        "bucket": bucket, "baseKey": base_key, "stsEnabled": True})
    # a file synfs/synapseclient-style uploaded earlier: <baseKey>/<uuid>/<name>, registered
    notes = b"already in Synapse\n"
    notes_id = seeder.entity("FileEntity", "notes.txt", folder,
                             dataFileHandleId=seeder.sts_put(folder, loc, "notes.txt", notes))
    token_file = tmp / "owner.token"
    token_file.write_text(owner.token + "\n")
    os.chmod(token_file, 0o600)

    creds = owner.api.ok(owner.api.get(f"/entity/{folder}/sts?permission=read_write"))
    register_secrets_in(creds)
    s3 = boto3.client("s3", endpoint_url=emulator.info["s3Endpoint"], region_name="us-east-1",
                      config=S3_CONFIG, aws_access_key_id=creds["accessKeyId"],
                      aws_secret_access_key=creds["secretAccessKey"],
                      aws_session_token=creds["sessionToken"])
    objects = {
        "raw/a.txt": os.urandom(1000),
        "raw/sub/big.bin": os.urandom(11 * MiB + 7),         # boto3 multipart (5 MiB parts)
        "raw/bad:name.txt": b"colon",                          # Synapse refuses ':'
        "raw/sub/": b"",                                       # a folder marker
        f"{uuid.uuid4()}/old.txt": b"an older version",        # synfs layout, no current file
    }
    multipart = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB,
                                                 multipart_chunksize=5 * MiB)
    for rel, data in objects.items():
        key = f"{base_key}/{rel}"
        if len(data) > 5 * MiB:
            (tmp / "big.bin").write_bytes(data)
            s3.upload_file(str(tmp / "big.bin"), bucket, key, Config=multipart)
        else:
            s3.put_object(Bucket=bucket, Key=key, Body=data)
    big_etag = s3.head_object(Bucket=bucket, Key=f"{base_key}/raw/sub/big.bin")["ETag"]
    assert "-" in big_etag, big_etag                          # really multipart

    # the AWS CLI, with `synfs sts-token` shell exports, single-part and multipart
    cli = {"cli/one.csv": b"a,b\n1,2\n" * 100, "cli/multi.bin": os.urandom(6 * MiB + 3)}
    aws_config = tmp / "aws-config"
    aws_config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n"
                          "    multipart_threshold = 5MB\n    multipart_chunksize = 5MB\n")
    sts = " ".join(shlex.quote(a) for a in synfs_cmd(
        "sts-token", folder, "read_write", "--token-file", str(token_file),
        *endpoint_args(emulator.info)))
    aws = str(__import__("pathlib").Path(sys.executable).parent / "aws")
    for rel, data in cli.items():
        src = tmp / rel.replace("/", "_")
        src.write_bytes(data)
        res = run(["bash", "-c", f'set -e; eval "$({sts})"; exec {shlex.quote(aws)} '
                   f'--endpoint-url {emulator.info["s3Endpoint"]} s3 cp --only-show-errors '
                   f'{shlex.quote(str(src))} "$SYNAPSE_STS_S3_LOCATION/{rel}"'],
                  env={"AWS_CONFIG_FILE": str(aws_config),
                       "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
        assert res.returncode == 0, res.stderr
    etag = s3.head_object(Bucket=bucket, Key=f"{base_key}/cli/multi.bin")["ETag"]
    assert "-" in etag, etag
    objects.update(cli)
    return types.SimpleNamespace(admin_creds=emulator.s3_admin_credentials(),
                                 owner=owner, project=project, folder=folder, loc=loc,
                                 bucket=bucket, base_key=base_key, s3=s3, objects=objects,
                                 notes_id=notes_id, token_file=token_file, tmp=tmp,
                                 state=tmp / "state", info=emulator.info)


def register(reg, *extra, token_file=None, syn_id=None):
    return run(synfs_cmd("register", syn_id or reg.folder, *extra,
                         "--token-file", str(token_file or reg.token_file),
                         "--state-dir", str(reg.state), "--s3-endpoint", reg.info["s3Endpoint"],
                         *endpoint_args(reg.info)), timeout=300)


def tree(reg) -> dict[str, dict]:
    """Every File under the folder: relative path -> its entity and file handle."""
    api = reg.owner.api
    out, queue = {}, [("", reg.folder)]
    while queue:
        path, parent = queue.pop()
        page = api.ok(api.post("/entity/children", {"parentId": parent,
                                                    "includeTypes": ["folder", "file"]}))
        for child in page["page"]:
            rel = f"{path}{child['name']}"
            if child["type"].endswith("Folder"):
                queue.append((rel + "/", child["id"]))
            else:
                entity = api.ok(api.get(f"/entity/{child['id']}"))
                handle = api.ok(api.get(f"/entity/{child['id']}/filehandles"))["list"][0]
                out[rel] = {"entity": entity, "handle": handle}
    return out


GOOD = ("raw/a.txt", "raw/sub/big.bin", "cli/one.csv", "cli/multi.bin")


@pytest.fixture(scope="module")
def first_run(reg):
    dry = register(reg, "--dry-run")
    before = tree(reg)
    journaled = sorted(p.read_text() for p in reg.state.glob("*")) if reg.state.exists() else []
    real = register(reg, "--verbose")
    return types.SimpleNamespace(dry=dry, before=before, journaled=journaled, real=real,
                                 after=tree(reg))


def test_dry_run_prints_the_plan_and_creates_nothing(reg, first_run):
    dry = first_run.dry
    assert dry.returncode == 1, dry.stderr                 # the bad name fails, even dry
    assert set(first_run.before) == {"notes.txt"}
    for rel in GOOD:
        assert f"would register {rel} " in dry.stdout, dry.stdout
    assert "would create folder raw/sub/" in dry.stdout
    assert counts(dry) == (4, 0, 4, 1)
    assert not any(first_run.journaled)                    # nothing recorded either


def test_registers_every_object_with_its_md5_in_the_bucket_layout(reg, first_run):
    res = first_run.real
    assert res.returncode == 1, res.stderr                 # one object failed: exit non-zero
    assert counts(res) == (4, 0, 4, 1), res.stdout
    assert "bad name: 1" in res.stdout
    after = first_run.after
    assert set(after) == {"notes.txt", *GOOD}
    for rel in GOOD:
        handle = after[rel]["handle"]
        assert handle["contentMd5"] == md5(reg.objects[rel]), rel
        assert handle["contentSize"] == len(reg.objects[rel])
        assert handle["key"] == f"{reg.base_key}/{rel}" and handle["bucketName"] == reg.bucket
        assert handle["storageLocationId"] == reg.loc
    assert after["cli/one.csv"]["handle"]["contentType"] == "text/csv"
    assert after["notes.txt"]["entity"]["id"] == reg.notes_id       # not registered twice


def test_bad_names_and_skips_are_reported_never_renamed(reg, first_run):
    res = first_run.real
    failures = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert failures == [ln for ln in failures if ln.startswith("synfs: failed: ")]
    assert len(failures) == 1 and "raw/bad:name.txt" in failures[0]
    assert "Synapse names may only contain" in failures[0]
    assert "rename the object in the bucket" in failures[0]
    assert not any("bad" in rel for rel in first_run.after)
    assert re.search(r"skipped [0-9a-f-]{36}/old.txt: an upload by synfs or synapseclient",
                     res.stdout)
    assert re.search(rf"skipped [0-9a-f-]{{36}}/notes.txt: already registered as "
                     rf"{reg.notes_id}", res.stdout)
    assert "skipped raw/sub/: folder marker" in res.stdout
    assert "owner.txt" in res.stdout
    assert "Traceback" not in res.stderr


def test_registered_files_read_back_through_a_mount_and_synapseclient(
        emulator, reg, first_run, service_mounts, tmp_path, monkeypatch):
    m = service_mounts(reg.owner.token, reg.folder, "registered", ["--read-only"])
    for rel in GOOD:
        assert md5((m.path / rel).read_bytes()) == md5(reg.objects[rel]), rel
    from tests.judge.conftest import ClientFactory

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    syn = ClientFactory(emulator, tmp_path).new(reg.owner.token)
    for rel in ("raw/sub/big.bin", "cli/multi.bin", "cli/one.csv"):
        entity = syn.get(first_run.after[rel]["entity"]["id"],
                         downloadLocation=str(tmp_path / rel.replace("/", "_")))
        with open(entity.path, "rb") as f:
            assert md5(f.read()) == md5(reg.objects[rel]) == entity._file_handle["contentMd5"]


def test_rerun_registers_nothing_new_and_changed_objects_become_versions(reg, first_run):
    again = register(reg)
    assert counts(again) == (0, 0, 8, 1), again.stdout
    assert tree(reg).keys() == first_run.after.keys()

    changed = {"raw/a.txt": os.urandom(2000),                  # new size
               "cli/multi.bin": os.urandom(len(reg.objects["cli/multi.bin"]))}   # same size
    multipart = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB,
                                                 multipart_chunksize=5 * MiB)
    for rel, data in changed.items():
        src = reg.tmp / "changed.bin"
        src.write_bytes(data)
        reg.s3.upload_file(str(src), reg.bucket, f"{reg.base_key}/{rel}", Config=multipart)
    res = register(reg)
    assert counts(res) == (0, 2, 6, 1), res.stdout + res.stderr
    after = tree(reg)
    for rel, data in changed.items():
        assert after[rel]["entity"]["id"] == first_run.after[rel]["entity"]["id"]
        assert after[rel]["entity"]["versionNumber"] == 2
        assert after[rel]["handle"]["contentMd5"] == md5(data)
    assert after["raw/sub/big.bin"]["entity"]["versionNumber"] == 1
    reg.objects.update(changed)


def test_a_new_object_under_a_prefix_only(reg, first_run):
    reg.s3.put_object(Bucket=reg.bucket, Key=f"{reg.base_key}/raw/sub/new.txt", Body=b"new")
    reg.s3.put_object(Bucket=reg.bucket, Key=f"{reg.base_key}/other/skip-me.txt", Body=b"x")
    res = register(reg, "raw/sub")
    assert res.returncode == 0, res.stdout + res.stderr
    assert counts(res) == (1, 0, 2, 0)
    after = tree(reg)
    assert after["new.txt"]["handle"]["key"] == f"{reg.base_key}/raw/sub/new.txt"
    assert not any(k.startswith("other/") for k in after)
    outside = register(reg, f"s3://{reg.bucket}/elsewhere/")
    assert outside.returncode == 2
    assert "outside the base key" in outside.stderr and "Traceback" not in outside.stderr


def test_non_owner_is_told_about_the_owner_requirement(emulator, reg, first_run):
    other = emulator.new_user("register-collaborator")
    acl_path = f"/entity/{reg.project}/acl"
    acl = reg.owner.api.ok(reg.owner.api.get(acl_path))
    acl["resourceAccess"].append({"principalId": int(other.id), "accessType": [
        "READ", "DOWNLOAD", "UPDATE", "CREATE"]})
    reg.owner.api.ok(reg.owner.api.put(acl_path, acl))
    token = reg.tmp / "other.token"
    token.write_text(other.token + "\n")
    os.chmod(token, 0o600)
    before = tree(reg)
    res = register(reg, token_file=token)
    assert res.returncode == 1
    line = res.stderr.strip()
    assert line.startswith("synfs: ") and "\n" not in line, res.stderr
    assert "only the creator" in line and "/externalFileHandle/s3" in line
    assert tree(reg).keys() == before.keys()


def test_folder_not_on_an_external_sts_bucket(reg, first_run):
    plain = reg.owner.api.ok(reg.owner.api.post("/entity", {
        "name": "plain", "parentId": reg.project, "concreteType": CT + "Folder"}))["id"]
    res = register(reg, syn_id=plain)
    assert res.returncode == 1
    assert "is not on an external STS bucket" in res.stderr and res.stderr.count("\n") == 1
    bad = register(reg, syn_id="nonsense")
    assert bad.returncode == 2 and "is not a Synapse id" in bad.stderr


def test_interrupted_and_killed_runs_resume_without_duplicates_or_leaked_handles(reg):
    """Ctrl-C ends with the summary and exit 130; kill -9 anywhere leaves nothing half-done:
    the next run registers the rest, each object once, reusing every handle it journaled."""
    import json
    import signal
    import subprocess

    seeder = Seeder(reg.info, reg.owner.token, owner_s3=None)
    base_key = f"{reg.base_key}-resume"
    admin = boto3.client("s3", endpoint_url=reg.info["s3Endpoint"], region_name="us-east-1",
                         config=S3_CONFIG, **reg.admin_creds)
    admin.put_object(Bucket=reg.bucket, Key=f"{base_key}/owner.txt",
                     Body=reg.owner.user_name.encode())
    folder, _ = seeder.sts_folder(reg.project, "resume", {
        "concreteType": CT + "project.ExternalS3StorageLocationSetting", "uploadType": "S3",
        "bucket": reg.bucket, "baseKey": base_key, "stsEnabled": True})
    data = {f"part{i // 10}/f{i:03d}.txt": os.urandom(100 + i) for i in range(60)}
    for rel, body in data.items():
        admin.put_object(Bucket=reg.bucket, Key=f"{base_key}/{rel}", Body=body)

    def start():
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("SYNAPSE_AUTH_TOKEN", None)
        return subprocess.Popen(
            synfs_cmd("register", folder, "--token-file", str(reg.token_file), "--state-dir",
                      str(reg.state), "--s3-endpoint", reg.info["s3Endpoint"],
                      *endpoint_args(reg.info)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))

    done = 0
    for sig in (signal.SIGINT, signal.SIGKILL):
        proc = start()
        lines = []
        for line in proc.stdout:                       # wait for progress, then interrupt
            lines.append(line)
            if line.startswith("registered "):
                proc.send_signal(sig)
                break
        out, err = proc.communicate(timeout=60)
        lines += out.splitlines(keepends=True)
        if sig == signal.SIGINT:
            assert proc.returncode == 130, err
            assert "interrupted after" in "".join(lines) and "to resume" in "".join(lines)
        else:
            assert proc.returncode == -signal.SIGKILL
        done += sum(1 for ln in lines if ln.startswith("registered "))
    assert 2 <= done < len(data)

    final = start()
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    registered = sum(1 for ln in out.splitlines() if ln.startswith("registered "))
    assert registered + done >= len(data)              # a killed File may be printed by neither

    api = reg.owner.api
    files = {}
    for part in range(6):
        sub = api.ok(api.post("/entity/child", {"parentId": folder, "entityName": f"part{part}"}))
        page = api.ok(api.post("/entity/children", {"parentId": sub["id"],
                                                    "includeTypes": ["file", "folder"]}))
        for child in page["page"]:
            handle = api.ok(api.get(f"/entity/{child['id']}/filehandles"))["list"][0]
            files[f"part{part}/{child['name']}"] = handle
    assert set(files) == set(data)                     # each object exactly once, no extras
    for rel, handle in files.items():
        assert handle["contentMd5"] == md5(data[rel])
    journaled: dict[str, set] = {}
    for path in reg.state.iterdir():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec["t"] == "handle" and rec["key"].startswith(base_key + "/"):
                journaled.setdefault(rec["key"][len(base_key) + 1:], set()).add(str(rec["id"]))
    assert set(journaled) == set(data)
    for rel, ids in journaled.items():
        assert ids == {str(files[rel]["id"])}, rel     # no handle created twice or leaked


def test_bad_options_are_one_line_usage_errors(reg):
    for extra, words in ((["--max-memory", "lots"], "--max-memory must be a size"),
                         (["--hash-threads", "0"], "--hash-threads must be at least 1"),
                         (["../up"], "PREFIX must be a path below the base key")):
        res = register(reg, *extra)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("synfs: ") and words in lines[0]
