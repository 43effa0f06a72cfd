"""synfs: mount Synapse folder trees as a POSIX filesystem, bytes straight from S3 via STS.

Rooms (imports point one way, top to bottom; each room's ``__init__`` states what it may import
and who imports it, and tests hold the code to it; a test fails on any import cycle):

- ``cli/``      the command line: parsing, one module per command, exit codes, messages
- ``service/``  the daemon's composition root and lifecycle, status file, sd_notify, logging
- ``fs/``       the filesystem core (tree, inode identity, attributes) and the pyfuse3 adapter
- ``read/``     open files for reading: prefetcher, part downloads, memory budget, data cache
- ``write/``    the write path: staging, saving on close, namespace changes (mkdir, rename...)
- ``snapshot/`` a whole tree's metadata in one SQLite file (``synfs snapshot``, ``--snapshot``)
- ``register/`` ``synfs register``: objects already in an STS bucket become File entities
- ``remote/``   the async facade that runs the seams' blocking calls in worker threads
- ``synapse/``, ``s3/``  the seams: Synapse REST client and S3 object access
- ``emulator/`` the local Synapse emulator (a separate world: it imports nothing else of synfs,
  and only the ``emulator``/``demo`` commands import it, at call time)

Foundation modules every room may import: ``errors`` (domain errors, errno, the one mapping),
``cache`` (bounded TTL caches and single-flight),
``config`` (mount configuration, exit codes), ``diskbudget`` (the ``--cache-size`` budget
shared by staged writes and cached data), ``redact`` (secrets kept out of every log),
``localdirs`` (private directories for local state) and ``progress`` (the terminal progress
line of long commands).
"""

__version__ = "0.1.0"
