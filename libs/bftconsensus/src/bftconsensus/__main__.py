"""Entry point of ``python -m bftconsensus``."""

from bftconsensus._serve import main

raise SystemExit(main())
