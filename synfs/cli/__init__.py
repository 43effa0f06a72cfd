"""The command line: argument parsing (``parser``), dispatch (``main``) and one module per
command (``mount``, ``status``, ``ststoken``, ``install``, ``demo``, ``recover``, the fstab ``mounthelper``).

Owns what users see: options, one-line errors and exit codes. May import ``service`` and
everything below it; nothing imports ``cli``.
"""
