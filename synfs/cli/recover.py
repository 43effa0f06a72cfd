"""``synfs recover list|save|discard``: finish or drop the files a crash kept, without a mount.

Owns the command's output. ``list`` reads the staging area of a cache directory (no token
needed) and prints one line per kept file: its id, state, size and where it belongs. ``save``
uploads and saves the named files (``--all``: every one not in use) with the user's token, even
files their writer never closed and conflicts (a conflict becomes a new version of the changed
target, whose version history keeps the other content); ``discard`` deletes them. Files a
running mount is writing are never touched. The rules themselves live in
``synfs.write.recovery``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synfs import errors
from synfs.cli import auth
from synfs.config import EXIT_AUTH, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from synfs.write import journal, recovery

EPILOG = """examples:
  synfs recover list                          # what crashed mounts kept (default cache dir)
  synfs recover list --cache-dir /scratch/c --json
  synfs recover save 3fa2c1d0e9b4-results.csv # save one (a new file or a new version)
  synfs recover save --all --s3-endpoint URL  # save every kept file
  synfs recover discard 3fa2c1d0e9b4-results.csv

exit codes: 0 done (list: printed), 1 some file could not be saved/discarded (each one says
  why on stderr; nothing is deleted unless Synapse holds it), 2 usage (e.g. unknown id),
  3 token missing or rejected
"""


def add_recover_parser(sub) -> None:
    p = sub.add_parser("recover", help="list, save or discard files kept after a crash",
                       description="Files a crashed mount left in the staging area of a cache "
                                   "directory: list them, save them to Synapse, or drop them.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["list", "save", "discard"])
    p.add_argument("ids", nargs="*", help="kept files (ids from `synfs recover list`)")
    p.add_argument("--all", action="store_true", help="every kept file not in use")
    p.add_argument("--cache-dir", type=Path, help="the mount's --cache-dir (default "
                   "~/.cache/synfs)")
    p.add_argument("--json", action="store_true", help="list: print JSON")
    auth.add_options(p)
    p.add_argument("--retry-budget", type=float, default=30.0,
                   help="seconds to keep retrying Synapse (default 30)")


def _line(k: recovery.Kept) -> str:
    d = k.describe()
    where = (f"{d.get('name')} in {d.get('folder')}" + (
        f" (new version of {d['entity']})" if d.get("entity") else " (new file)")
        if k.record else "unknown target (no record)")
    extra = " [in use by a running mount]" if k.in_use else ""
    extra += " [removed before the crash]" if d.get("unlinked") else ""
    extra += f" [{d['note']}]" if d.get("note") else ""
    return f"{k.id}  {k.state:<9} {k.size:>12} B  {where}{extra}"


def _select(found: list[recovery.Kept], args) -> list[recovery.Kept]:
    if args.all:
        return [k for k in found if not k.in_use]
    if not args.ids:
        raise _Usage(f"name the kept files to {args.action} (or --all); "
                     "`synfs recover list` shows them")
    by_id = {k.id: k for k in found}
    out = []
    for ident in args.ids:
        matches = [k for i, k in by_id.items() if i == ident or i.startswith(ident)]
        if len(matches) != 1:
            raise _Usage(f"{ident}: {'no' if not matches else 'more than one'} kept file "
                         "with that id (see `synfs recover list`)")
        if matches[0].in_use:
            raise _Usage(f"{ident}: a running mount is writing it")
        out.append(matches[0])
    return out


class _Usage(Exception):
    pass


def _saver(args) -> recovery.Saver:
    from synfs.s3.uploader import S3Uploader
    from synfs.synapse.client import Endpoints, SynapseClient
    from synfs.synapse.credentials import CredentialStore
    from synfs.synapse.writer import SynapseWriter

    token = auth.find_token(args.token_file, args.config, args.profile)
    ends = auth.endpoints(args)
    client = SynapseClient(Endpoints(
        repo=ends["repoEndpoint"], file=ends["fileHandleEndpoint"], auth=ends["authEndpoint"]),
        token.token, retry_budget_s=args.retry_budget)
    client.user_profile()
    uploader = S3Uploader(args.s3_endpoint, CredentialStore(client),
                          retry_budget_s=args.retry_budget)
    return recovery.Saver(client, SynapseWriter(client), uploader)


def run_recover(args) -> int:
    root = recovery.default_staging_dir(args.cache_dir)
    found, problems = recovery.scan(root)
    for line in problems:
        print(f"synfs: {line}", file=sys.stderr)
    if args.action == "list":
        if args.json:
            print(json.dumps([k.describe() for k in found], indent=2))
        elif not found:
            print(f"no kept files in {root}")
        else:
            print(f"{len(found)} kept file(s) in {root} ({sum(k.size for k in found)} bytes):")
            for k in found:
                print("  " + _line(k))
            where = f" --cache-dir {args.cache_dir}" if args.cache_dir else ""
            print(f"save to Synapse: synfs recover save ID|--all{where}; drop: "
                  f"synfs recover discard ID|--all{where} (an ID prefix is enough)")
        return EXIT_OK
    try:
        chosen = _select(found, args)
    except _Usage as exc:
        print(f"synfs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not chosen:
        print(f"nothing to {args.action} in {root}")
        return EXIT_OK
    if args.action == "discard":
        for k in chosen:
            recovery.discard(root, k)
            print(f"discarded {k.id} ({k.size} bytes)")
        return EXIT_OK
    try:
        saver = _saver(args)
    except auth.TokenError as exc:
        print(f"synfs: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except errors.AuthenticationFailed:
        print("synfs: Synapse rejected the token (invalid or expired)", file=sys.stderr)
        return EXIT_AUTH
    except errors.SynfsError as exc:
        print(f"synfs: cannot reach Synapse: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    user = saver.client.user_id
    code = EXIT_OK
    for k in chosen:
        if k.record is not None and k.record.user_id not in (None, user):
            print(f"synfs: {k.id}: kept for another Synapse user ({k.record.user_id})",
                  file=sys.stderr)
            code = EXIT_FAILED
            continue
        with journal.locked(root, k.id) as got:
            if not got:
                print(f"synfs: {k.id}: a mount is saving it right now", file=sys.stderr)
                code = EXIT_FAILED
                continue
            try:
                print(f"{k.id}: {saver.save(root, k, force=True)}")
            except errors.SynfsError as exc:
                print(f"synfs: {k.id}: not saved, still kept: {exc.message}", file=sys.stderr)
                code = EXIT_FAILED
    return code
