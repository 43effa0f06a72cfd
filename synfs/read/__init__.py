"""The read path: the open-file table (``openfiles``), each open file pinned to one file
handle and read through a sequential ``prefetch``er over shared part ``downloads``, one
``membudget`` for all buffers and an optional on-disk ``datacache``.

May import ``synapse.models`` and the foundation; never ``fs``, ``write``, ``service`` or ``cli``.
Imported by ``fs`` and ``service``.
"""
