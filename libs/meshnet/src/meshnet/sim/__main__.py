"""Entry point of ``python -m meshnet.sim`` (see :mod:`meshnet.sim._replay`)."""

from meshnet.sim._replay import main

raise SystemExit(main())
