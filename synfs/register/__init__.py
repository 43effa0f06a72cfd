"""``synfs register``: bring objects already in an external STS bucket into Synapse.

Owns the walk of a folder's storage location (``plan``: which object becomes which File, and
why one is skipped or fails), the MD5 of objects whose ETag is not one (``hashing``: parallel
ranged reads within a memory budget), the crash-safe journal that makes runs resumable
(``journal``), the progress bar and summary (``progress``) and the run itself (``runner``).

Blocking, like the other CLI commands: every REST call goes through ``SynapseClient`` (its
request scheduler: 3 concurrent, 600/min) with per-call timeouts and retry budgets.

Sits beside ``read``/``write``.
May import ``remote``, ``synapse``, ``s3`` and the foundation; never ``fs``, ``service`` or
``cli``.
Imported by ``cli``.
"""
