"""The write path: local ``staging`` of written bytes, saving them to Synapse on close/fsync
(``path``), namespace changes (``namespace``: mkdir, unlink, rmdir, rename), name rules
(``names``), the durable record of each staged file (``journal``) and what happens to staged
files a crash kept (``recovery``). It reaches the tree only through the small interface in
``ports``.

May import ``remote.writer``, ``synapse.models``, ``synapse.names`` and the foundation; never
``fs``, ``read`` or ``service``.
Imported by ``fs``, ``service`` and ``cli``.
"""
