"""Running a mount as a service: the composition root and lifecycle (``daemon``), the runtime
status file ``synfs status`` reads (``runtime``), systemd notification (``sdnotify``) and
logging with redaction (``logs``). May import ``fs``, ``read``, ``write``, ``remote`` and the
seams; only ``cli`` imports it.
"""
