"""``synfs snapshot``: build a snapshot file of a tree, compare two, or describe one.

``synfs snapshot SYN_ID -o FILE`` builds (from ``--view``, a temporary ``--create-view``,
or the listings and one bundle per file), with a progress bar on a terminal, resumes an
interrupted build from ``FILE.partial``, and ends with one summary line on stdout.
``synfs snapshot diff A B`` and ``synfs snapshot info FILE`` read snapshots without Synapse.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from synfs import errors
from synfs.cli import auth
from synfs.config import EXIT_AUTH, EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from synfs.progress import StatusLine, human

EPILOG = """examples:
  synfs snapshot syn12345 -o /shared/tree.synfs               # listings + one call per file
  synfs snapshot syn12345 -o tree.synfs --view syn777         # from an existing file view
  synfs snapshot syn12345 -o tree.synfs --create-view syn12345 --where "assay = 'RNA-seq'"
  synfs snapshot info tree.synfs
  synfs snapshot diff old.synfs new.synfs                     # exit 0 same, 1 differences
  synfs mount --snapshot tree.synfs /mnt/synapse              # zero metadata calls

exit codes: 0 ok, 1 failed (or diff found differences), 2 usage, 3 token missing or
  rejected, 4 id (or view) not found / not readable, 5 id is not a Project or Folder,
  8 Synapse unreachable, 9 not a synfs snapshot / damaged / unfinished, 10 the view does not
  cover the root, 11 --where is not a valid condition
"""


def add_snapshot_parser(sub) -> None:
    p = sub.add_parser("snapshot", help="save a tree's metadata to a file (for --snapshot mounts)",
                       description="Build, compare (diff A B) or describe (info FILE) snapshots.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="+", metavar="SYN_ID | diff A B | info FILE")
    p.add_argument("-o", "--output", type=Path, help="snapshot file to write")
    p.add_argument("--view", help="an existing file view whose scope covers the tree")
    p.add_argument("--create-view", metavar="PARENT",
                   help="create a temporary file view in PARENT (needs CREATE), removed after")
    p.add_argument("--where", help="SQL condition over the view's columns (annotations "
                   "included): keep only matching files and their folders")
    p.add_argument("--restart", action="store_true",
                   help="discard an unfinished FILE.partial instead of resuming it")
    p.add_argument("--json", action="store_true", help="info: print JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    auth.add_options(p, endpoints=("repo", "file"))
    p.add_argument("--retry-budget", type=float, default=30.0,
                   help="seconds to keep retrying Synapse (default 30)")


def fail(message: str, code: int) -> int:
    print(f"synfs: {message}", file=sys.stderr)
    return code


def run_snapshot(args) -> int:
    from synfs.snapshot.store import SnapshotError

    try:
        head = args.target[0]
        if head == "info":
            return _info(args)
        if head == "diff":
            return _diff(args)
        return _build(args)
    except SnapshotError as exc:
        return fail(str(exc), exc.exit_code)


def _info(args) -> int:
    from synfs.snapshot.store import Snapshot

    if len(args.target) != 2:
        return fail("usage: synfs snapshot info FILE", EXIT_USAGE)
    snap = Snapshot(Path(args.target[1]))
    info = snap.info()
    snap.close()
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(f"snapshot  {info['path']}")
    print(f"root      {info['root']} ({info['root_name']})")
    print(f"taken     {info['created']} by user {info['user_id'] or '?'} from "
          f"{info['source']}" + (f" {info['view']}" if info['view'] else "") +
          (f" where {info['where']}" if info['where'] else ""))
    print(f"contents  {info['folders']} folders, {info['files']} files, "
          f"{human(info['bytes'])} ({info['files_without_access']} files without download "
          f"access), storage locations {info['storage_locations']}")
    return EXIT_OK


def _diff(args) -> int:
    from synfs.snapshot.diff import diff
    from synfs.snapshot.store import Snapshot

    if len(args.target) != 3:
        return fail("usage: synfs snapshot diff A B", EXIT_USAGE)
    a, b = Snapshot(Path(args.target[1])), Snapshot(Path(args.target[2]))
    result = diff(a, b)
    for line in result.lines():
        print(line)
    print(f"{len(result.added)} added, {len(result.removed)} removed, "
          f"{len(result.changed)} changed", file=sys.stderr)
    return EXIT_OK if result.empty else EXIT_FAILED


class Bar(StatusLine):
    """The build's progress: a bar on a terminal, a plain line every 10 s otherwise."""

    def __init__(self, stream, enabled: bool):
        super().__init__(stream, enabled=enabled, interval=0.1, plain_every=10.0, width=20,
                         fill="-")

    def __call__(self, p) -> None:
        rate = p.files_done / p.elapsed() if p.elapsed() > 0 else 0
        eta = f"{(p.files_total - p.files_done) / rate:.0f}s" if rate > 0 and p.files_total else "?"
        self.show(f"{p.phase}: {p.folders} folders, files {p.files_done}/{p.files_total}, "
                  f"{p.calls} calls, ETA {eta}", p.files_done / max(p.files_total, 1),
                  force=p.phase == "done")


def _build(args) -> int:
    from synfs.snapshot.build import Builder, build_from_listings
    from synfs.snapshot.store import SnapshotWriter, partial_path
    from synfs.snapshot.views import build_from_view, create_temporary_view
    from synfs.synapse.client import Endpoints, SynapseClient
    from synfs.synapse.models import parse_id
    from synfs.synapse.tables import Tables

    if len(args.target) != 1 or args.output is None:
        return fail("usage: synfs snapshot SYN_ID -o FILE (or: diff A B, info FILE)", EXIT_USAGE)
    try:
        root_id = parse_id(args.target[0])
        view_id = parse_id(args.view) if args.view else None
        view_parent = parse_id(args.create_view) if args.create_view else None
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    if view_id and view_parent:
        return fail("--view and --create-view exclude each other", EXIT_USAGE)
    if args.where and not (view_id or view_parent):
        return fail("--where needs --view or --create-view", EXIT_USAGE)
    out = args.output.expanduser().absolute()
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        return fail(f"cannot write {out}: {out.parent} is not a writable directory", EXIT_USAGE)
    if out.is_dir():
        return fail(f"{out} is a directory; name the snapshot file", EXIT_USAGE)
    try:
        token = auth.find_token(args.token_file, args.config, args.profile)
    except auth.TokenError as exc:
        return fail(str(exc), EXIT_AUTH)
    from synfs.service import logs

    logs.register_secret(token.token)
    ends = auth.endpoints(args)
    repo = ends["repoEndpoint"]
    client = SynapseClient(Endpoints(repo=repo, file=ends["fileHandleEndpoint"]),
                           token.token, retry_budget_s=args.retry_budget)
    started = time.monotonic()
    bar = Bar(sys.stderr, not args.no_progress)
    temp_view = None
    try:
        try:
            client.user_profile()
        except errors.AuthenticationFailed:
            return fail(f"Synapse rejected the token from {token.source}", EXIT_AUTH)
        source = "view" if view_id else "temporary view" if view_parent else "listings"
        meta = {"source": source, "where": args.where or "", "user_id": client.user_id or "",
                "endpoint": repo, "view": f"syn{view_id}" if view_id else ""}
        if partial_path(out).exists() and not args.restart:
            print(f"synfs: resuming the unfinished {partial_path(out)}", file=sys.stderr)
        writer = SnapshotWriter(out, root_id, meta, restart=args.restart)
        builder = Builder(client, writer, on_progress=bar)
        try:
            if view_id or view_parent:
                tables = Tables(client)
                if view_parent:
                    temp_view = create_temporary_view(tables, view_parent, root_id, args.where)
                build_from_view(builder, tables, root_id, view_id or temp_view, args.where)
            else:
                build_from_listings(builder, root_id)
        finally:
            builder.close()
            if temp_view is not None:
                try:
                    Tables(client).delete_entity(temp_view)
                except errors.SynfsError as exc:
                    print(f"synfs: could not remove the temporary view syn{temp_view}: {exc}",
                          file=sys.stderr)
        files, size = writer.count("file"), writer.db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM nodes WHERE kind = 'file'").fetchone()[0]
        seconds = time.monotonic() - started
        calls = sum(client.stats.snapshot().values())
        writer.finish({"calls": str(calls), "seconds": f"{seconds:.1f}"})
        bar.end()
        print(f"snapshot of syn{root_id} in {out}: {files} files, {human(size)}, "
              f"{calls} calls, {seconds:.1f} s (from {source})")
        return EXIT_OK
    except errors.AuthenticationFailed as exc:
        bar.end()
        return fail(f"Synapse rejected the token: {exc}", EXIT_AUTH)
    except errors.Unavailable as exc:
        bar.end()
        return fail(f"Synapse unavailable ({exc}); run again to resume", EXIT_UNAVAILABLE)
    except errors.SynfsError as exc:
        bar.end()
        return fail(f"{exc}; run again to resume", EXIT_FAILED)
    except KeyboardInterrupt:
        bar.end()
        return fail(f"interrupted; run the same command again to resume from "
                    f"{partial_path(out)}", EXIT_FAILED)
    finally:
        client.close()
