"""Snapshots: a whole Synapse tree's metadata in one self-contained SQLite file.

Owns the snapshot file format and store (``store``), the builders that fill it from folder
listings + entity bundles or from a file view (``build``, ``views``), the comparison of two
snapshots (``diff``) and the summary ``synfs snapshot info`` prints (``store.info``).
A snapshot holds no secret (no token, no credentials, no pre-signed URL).

Sits beside ``read`` and ``write``.
May import ``remote``, ``synapse``, ``s3`` and the foundation; never ``fs``, ``service`` or
``cli``.
Imported by ``fs`` (the snapshot tree reads the store), ``service`` and ``cli``.
"""
