"""transferkit: a small kit for teaching transfer learning with Keras 3.

Layers, imported one way: checks -> environment -> data -> models -> online -> transfer ->
strategies -> training -> {evaluation, features, knowledge, reproducibility, source} ->
{failures, choosing} -> plots -> lab -> cli.  ``checks`` and ``strategies`` need no Keras
(the command line parses and checks with them before the backend loads); the public names
are imported in ``_api.py``.
"""
import sys as _sys

__version__ = "0.1.0"


def __getattr__(name):
    """The public names, imported on first use when the package was loaded lazily."""
    if name.startswith("__") or name == "_api":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    _api = importlib.import_module(f"{__name__}._api")  # not `from . import`: it asks here first
    try:
        return getattr(_api, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


# ``python -m transferkit`` imports this package before its __main__ runs, with sys.argv[0]
# set to "-m" while it does (documented in the Python docs for -m): the command line then
# loads Keras only once its arguments, folders and environment are checked, so --help and
# argument errors answer at once.  Everywhere else (notebooks, scripts, tests) the whole kit,
# Keras included, is imported here, so ``import transferkit`` sets the backend up first.
if getattr(_sys, "argv", [])[:1] != ["-m"]:
    from ._api import *  # noqa: E402,F401,F403
