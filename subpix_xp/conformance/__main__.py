"""``python -m subpix_xp.conformance``: the conformance table; ``--help`` for the options."""

import sys

from .runner import main

sys.exit(main())
