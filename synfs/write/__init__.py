"""The write path: local ``staging`` of written bytes, saving them to Synapse on close/fsync
(``path``), namespace changes (``namespace``: mkdir, unlink, rmdir, rename) and name rules
(``names``). It reaches the tree only through the small interface in ``ports``. May import
``remote``, the seams' models and the foundation modules; never ``fs``, ``read``, ``service``.
"""
