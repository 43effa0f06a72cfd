"""The official synapseclient doing scenario 5's enumeration: ``synapseutils.walk`` over a
folder plus each file's size (``syn.get(id, downloadFile=False)``), as a user would write it.

Run as ``python -m bench.sc_walk EMULATOR_JSON SYN_ID`` with the token on stdin; prints one
JSON line: seconds, files, total bytes and the REST requests sent (every HTTP request,
retries and 429s included, counted at the transport).
"""

from __future__ import annotations

import collections
import json
import sys
import tempfile
import time

import requests


def main() -> int:
    info = json.load(open(sys.argv[1]))
    syn_id = sys.argv[2]
    token = sys.stdin.readline().strip()
    calls: collections.Counter[int] = collections.Counter()
    send = requests.adapters.HTTPAdapter.send

    def counting_send(self, request, **kw):
        resp = send(self, request, **kw)
        calls[resp.status_code] += 1
        return resp

    requests.adapters.HTTPAdapter.send = counting_send
    import synapseclient
    import synapseutils

    syn = synapseclient.Synapse(
        repoEndpoint=info["repoEndpoint"], fileHandleEndpoint=info["fileHandleEndpoint"],
        authEndpoint=info["authEndpoint"], portalEndpoint=info["portalEndpoint"],
        skip_checks=True, silent=True, cache_root_dir=tempfile.mkdtemp(prefix="sc-bench-"))
    syn.login(authToken=token, silent=True)
    calls.clear()
    started = time.monotonic()
    files = total = 0
    for _dirpath, _dirs, filenames in synapseutils.walk(syn, syn_id):
        for _name, file_id in filenames:
            entity = syn.get(file_id, downloadFile=False)
            total += int(entity._file_handle["contentSize"])
            files += 1
    print(json.dumps({"seconds": time.monotonic() - started, "files": files, "bytes": total,
                      "requests": sum(calls.values()), "throttled": calls.get(429, 0)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
