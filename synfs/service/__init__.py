"""Running a mount as a service: the composition root (``daemon``), signals over the daemon's
life (``lifecycle``), "is it mounted" from /proc/self/mountinfo (``mounts``), the bulk metadata
sources of ``--snapshot`` and ``--view`` (``sources``), the runtime status file ``synfs status``
reads (``runtime``), systemd notification (``sdnotify``), logging with redaction (``logs``) and the kernel's
readahead and FUSE queue for the mount (``kernel``).

May import ``fs``, ``read``, ``write``, ``snapshot``, ``remote``, ``synapse``, ``s3`` and the
foundation.
Imported by ``cli``.
"""
