"""Allows ``python -m synfs``; the command line lives in :mod:`synfs.cli`."""

import sys

from synfs.cli import main

sys.exit(main())
