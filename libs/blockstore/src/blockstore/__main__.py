"""Entry point for ``python -m blockstore``."""

import sys

from ._cli import main

sys.exit(main())
