"""Allows ``python -m synfs``; the command line lives in :mod:`synfs.cli.main`."""

import sys

from synfs.cli.main import main

sys.exit(main())
