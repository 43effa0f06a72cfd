"""``synfs register SYN_FOLDER [PREFIX]``: add objects already in a folder's external STS
bucket to Synapse (an external S3 file handle and a File entity per object, folders for the
key's directories).

Owns the command line of the command: its options, building the seams (``SynapseClient`` with
its request scheduler, ``SynapseWriter``, the folder's ``read_only`` STS credentials for
``S3Lister``/``S3Reader``), the journal location, and the exit codes. The work itself is
``synfs.register``. Errors are one line on stderr; the run ends with a one-line summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from synfs import errors
from synfs.cli import auth
from synfs.config import (EXIT_AUTH, EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE,
                          ConfigError, parse_size)
from synfs.synapse.models import parse_id

EXIT_INTERRUPTED = 130

REGISTER_EPILOG = """examples:
  synfs register syn12345                      # every object under the folder's base key
  synfs register syn12345 raw/2024 --dry-run   # only <baseKey>/raw/2024/..., print the plan
  aws s3 sync ./data s3://bucket/base/data && synfs register syn12345   # upload, then register

Objects go where their key puts them below PREFIX: <baseKey>/PREFIX/a/b.txt becomes the File
b.txt in the folder a/ of SYN_FOLDER (folders are created once and reused). Re-running
registers only what is new or changed; an interrupted run resumes. Only the creator of the
folder's storage location may register (Synapse's rule for POST /externalFileHandle/s3).

exit codes: 0 done, nothing failed; 1 some objects failed (see the summary) or the folder is
  not on an external STS bucket or you do not own its storage location; 2 usage; 3 token
  missing or rejected; 4 id not found or not readable; 5 id is not a Folder or Project;
  8 Synapse or S3 unreachable; 130 interrupted (run again to resume)
"""


def add_register_parser(sub) -> None:
    p = sub.add_parser("register", help="add objects already in an external STS bucket to Synapse",
                       description="Create an external S3 file handle and a File entity for each "
                                   "object under an STS folder's bucket location.",
                       epilog=REGISTER_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("syn_id", help="the Folder (or Project) whose storage location holds the objects")
    p.add_argument("prefix", nargs="?", default="",
                   help="only keys under <baseKey>/PREFIX/ (a path below the base key, or "
                        "s3://bucket/baseKey/PREFIX)")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="print what would be created; create nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="also list skipped objects")
    p.add_argument("--hash-all", action="store_true",
                   help="compute every MD5 by reading the object, even when the ETag is an MD5 "
                        "(e.g. SSE-KMS buckets, where it is not)")
    p.add_argument("--max-memory", default="128M",
                   help="memory for parallel ranged reads while hashing (default 128M)")
    p.add_argument("--hash-threads", type=int, default=4,
                   help="parallel ranged reads per object while hashing (default 4)")
    p.add_argument("--state-dir", type=Path,
                   help="where the resume journal lives (default ~/.cache/synfs/register)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")
    auth.add_options(p, endpoints=("repo", "file", "s3"))
    p.add_argument("--retry-budget", type=float, default=30.0,
                   help="seconds to keep retrying one Synapse or S3 call (default 30)")


def _fail(message: str, code: int) -> int:
    print(f"synfs: {message}", file=sys.stderr)
    return code


def run_register(args) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("synfs: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def _throttle_note(client) -> str:
    limiter = client.limiter
    if not limiter.waits:
        return ""
    return (f"waited {limiter.waited_s:.1f}s for Synapse's request limit "
            f"({limiter.max_requests} per {limiter.period:g}s)")


def _run(args) -> int:
    from synfs import redact
    from synfs.register import journal as journal_mod
    from synfs.register.plan import normalize_prefix
    from synfs.register.progress import Progress
    from synfs.register.runner import Options, Registrar, RegisterError
    from synfs.s3.listing import S3Lister
    from synfs.s3.reader import S3Reader
    from synfs.synapse.client import Endpoints, SynapseClient
    from synfs.synapse.credentials import CredentialStore
    from synfs.synapse.writer import SynapseWriter

    try:
        folder_id = parse_id(args.syn_id)
    except ValueError:
        return _fail(f"{args.syn_id!r} is not a Synapse id (expected e.g. syn12345)", EXIT_USAGE)
    try:
        memory = parse_size(args.max_memory, "--max-memory")
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.hash_threads < 1:
        return _fail("--hash-threads must be at least 1", EXIT_USAGE)
    try:
        token = auth.find_token(args.token_file, args.config, args.profile)
    except auth.TokenError as exc:
        return _fail(str(exc), EXIT_AUTH)
    redact.register_secret(token.token)
    ends = auth.endpoints(args)
    endpoints = Endpoints(repo=ends["repoEndpoint"].rstrip("/"),
                          file=ends["fileHandleEndpoint"].rstrip("/"))
    client = SynapseClient(endpoints, token.token, retry_budget_s=args.retry_budget)
    writer = SynapseWriter(client)
    creds = CredentialStore(client)
    lister = S3Lister(args.s3_endpoint, creds, retry_budget_s=args.retry_budget)
    reader = S3Reader(args.s3_endpoint, creds, retry_budget_s=args.retry_budget)
    journal = None

    def calls() -> int:
        return (sum(client.stats.snapshot().values()) + sum(lister.stats.snapshot().values())
                + sum(reader.stats.snapshot().values()))

    progress = Progress(bar=False if args.no_progress else None, calls=calls)
    try:
        registrar = Registrar(client, writer, lister, reader, None, progress,
                              Options(folder_id=folder_id, dry_run=args.dry_run,
                                      hash_all=args.hash_all, verbose=args.verbose,
                                      memory_budget=memory, workers=args.hash_threads))
        try:
            loc = registrar.locate()
            prefix = normalize_prefix(args.prefix, loc.bucket, loc.base_key)
        except ValueError as exc:
            return _fail(str(exc), EXIT_USAGE)
        registrar.opts = dataclasses.replace(registrar.opts, prefix=prefix)
        state_dir = args.state_dir or journal_mod.default_dir()
        journal = registrar.journal = journal_mod.Journal(
            journal_mod.journal_path(state_dir, endpoints.repo, loc.storage_location_id),
            read_only=args.dry_run)
        try:
            registrar.run()
        except KeyboardInterrupt:
            progress.finish()
            print(progress.summary(dry_run=args.dry_run, interrupted=True,
                                   note=_throttle_note(client)), flush=True)
            return EXIT_INTERRUPTED
        progress.finish()
        print(progress.summary(dry_run=args.dry_run, note=_throttle_note(client)))
        return EXIT_FAILED if progress.failed else EXIT_OK
    except RegisterError as exc:
        progress.finish()
        if progress.done:
            print(progress.summary(dry_run=args.dry_run))
        return _fail(str(exc), exc.exit_code)
    except errors.AuthenticationFailed:
        return _fail(f"Synapse rejected the token from {token.source} (invalid or expired)",
                     EXIT_AUTH)
    except errors.Unavailable as exc:
        return _fail(f"cannot reach Synapse or S3: {exc.message}", EXIT_UNAVAILABLE)
    except errors.SynfsError as exc:
        return _fail(f"register syn{folder_id}: {exc.message or type(exc).__name__}", EXIT_FAILED)
    except OSError as exc:
        return _fail(f"register syn{folder_id}: {exc.strerror or exc} "
                     f"({getattr(exc, 'filename', '') or ''})", EXIT_FAILED)
    finally:
        if journal is not None:
            journal.close()
        for closer in (reader, lister, writer, client):
            closer.close()
