"""``python -m transferkit``: the kit's command line (see ``transferkit.cli``)."""
from .cli import main

raise SystemExit(main())
