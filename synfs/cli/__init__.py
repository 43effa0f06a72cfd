"""The command line: argument parsing (``parser``), dispatch and ``--version`` (``main``),
token discovery (``auth``) and one module per command: ``mount`` (and ``unmount``), ``status``
(with ``status_render``), ``ststoken``, ``install``, ``demo`` (with ``demo_seed``), ``recover``,
``register``, ``snapshot`` and the fstab helper ``mounthelper`` (``mount.fuse.synfs``).

Owns what users see: options, one-line errors and exit codes.
May import ``service``, ``fs``, ``read``, ``write``, ``register``, ``snapshot``, ``remote``,
``synapse``, ``s3``, ``emulator`` and the foundation.
Imported by no room; only the entry points (``python -m synfs``, the console scripts) call it.
"""
