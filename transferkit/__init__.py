"""transferkit: a small kit for teaching transfer learning with Keras 3.

Layers, imported one way: a module imports only from modules in lower tiers
(tests/test_layers.py parses the imports and checks this table).

Tiers:
    0: _numerics, files, checks, claims, figures, options
    1: arraychecks, environment, shared_cache, strategies
    2: data, onlinefiles, settings
    3: models, weightfiles
    4: datachecks, online
    5: history, transfer
    6: training
    7: evaluation, reproducibility
    8: experiments, features, knowledge, source
    9: cachecheck, choosing, curves, exercises, failures
    10: plots
    11: lab_controls, lab_runner, lab_table
    12: lab_panel
    13: lab
    14: cli_args
    15: cli_output
    16: cli, _api
    17: __main__

``files``, ``checks``, ``options``, ``strategies``, ``settings``, ``claims`` and ``figures`` need
no Keras (the command line parses and checks with them before the backend loads; every plot
is measured by ``figures.check_figure``).  A subpackage (``strategies/``: one file per
strategy) has its package's tier; its modules import each other freely.  The public names, what the notebooks call as ``tk.X``,
are listed in ``_api.py`` by notebook; every other name is reached through its module
(``tk.choosing.logme``).
"""
import importlib as _importlib
import sys as _sys

__version__ = "0.1.0"


def __getattr__(name):
    """The public names, imported on first use when the package was loaded lazily."""
    if name.startswith("__") or name == "_api":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _api = _importlib.import_module(f"{__name__}._api")  # not `from . import`: it asks here first
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
    from ._api import __all__  # noqa: E402,F401  (``from transferkit import *``: the public names)
    from . import cli  # noqa: E402,F401  (tk.cli, like every other module)
