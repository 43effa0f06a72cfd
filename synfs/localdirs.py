"""Private local directories: the one way synfs creates a directory that holds a user's data.

The data cache (``synfs.read.datacache``), the write staging area and its journal
(``synfs.write``) and the metadata store (``synfs.fs.metastore``) all live under the cache
directory; what they hold (file handles, MD5s, unsaved bytes, file names) is the user's alone.
``private_dir`` creates a directory and every missing parent with mode 0700 whatever the
umask (``Path.mkdir(parents=True)`` would leave the parents 0755). A directory that already
exists keeps its mode: it may be the user's own choice.
"""

from __future__ import annotations

from pathlib import Path


def private_dir(path: Path) -> Path:
    """``path`` as a directory, creating it and each missing parent with mode 0700."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass
    return path
