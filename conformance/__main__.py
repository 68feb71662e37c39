"""``python -m conformance``: the same as ``python -m subpix_xp.conformance`` (from a checkout)."""

import sys

from subpix_xp.conformance import main

sys.exit(main(prog="python -m conformance"))
