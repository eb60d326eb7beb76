"""``python -m pydbal``: the command-line interface (see :mod:`pydbal.cli`)."""

from pydbal.cli import main

raise SystemExit(main())
