"""``python -m subpix_xp``: the ``subpix-xp`` command line (see :mod:`subpix_xp.cli`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
