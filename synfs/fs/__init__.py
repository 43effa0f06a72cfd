"""The filesystem core, with no FUSE in it: ``core`` composes the ``tree`` (inode identity,
cached entities and listings, kernel ``lookups``), the read path's open-file table and the write
path; ``attrs`` builds attributes; ``metastore`` keeps file records on disk; ``snaptree`` answers
the tree's questions from a snapshot file; ``fuse_ops`` is the pyfuse3 adapter (translation
only). The core is handed its remote and never imports one, so tests drive it with fakes.

May import ``read``, ``write``, ``snapshot.store``, ``synapse.models`` and the foundation;
never ``remote``, ``service`` or ``cli``.
Imported by ``service``.
"""
