"""The filesystem core, with no FUSE in it: ``core`` composes the ``tree`` (inode identity,
cached entities and listings), the read path's open-file table and the write path; ``attrs``
builds attributes; ``metastore`` keeps file records on disk; ``fuse_ops`` is the pyfuse3
adapter (translation only). May import ``read``, ``write``, ``remote`` and the seams' models
and the foundation modules; never ``service`` or ``cli``.
"""
