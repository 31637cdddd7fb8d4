"""``python -m fastmarl.cli ...``: the same as the ``fastmarl`` command."""

from fastmarl.cli import main

raise SystemExit(main())
