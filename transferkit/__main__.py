"""``python -m transferkit``: the kit's command line (see ``transferkit.cli``)."""
from .cli import main

__all__ = []  # a script: it runs the command line and exports nothing

raise SystemExit(main())
