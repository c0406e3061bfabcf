"""The settings of a strategy run: one frozen object, checked once, built from data.

``RUN_OPTIONS`` declares the common settings (kind, range, default, help); every registered
strategy may add its own (``Strategy.options``).  ``Settings(**values)`` checks each value
with its option and is frozen afterwards; ``run_strategy`` and ``sweep`` take the options as
keywords (``takes_settings`` writes them into their signatures and docstrings), the command
line makes one ``--flag`` per option and the strategy lab one control, all from the same
entries -- an option added here (or by a strategy) appears in all four with one range and one
message.  ``tests/test_settings.py`` reads this table instead of restating it.

Keras-free: the command line checks its arguments with it before the backend loads.
"""
from __future__ import annotations

import inspect

from .checks import MAX_SEED, check_choice
from .options import Option
from .strategies import BN_MODE, COMMON_OPTION_NAMES, FINE_TUNE_SCALE, HEAD_LR, STRATEGIES

__all__ = ["MAX_RUN_EPOCHS", "MAX_SEED", "RUN_OPTIONS", "SHOTS", "Settings", "check_shots",
           "options", "takes_settings"]

MAX_RUN_EPOCHS = 1000   # a strategy run; a typo of 10,000 would train for hours

RUN_OPTIONS = (
    Option("learning_rate", "rate", HEAD_LR, 1e-6, 1.0, log=True, example=0.01,
           help="base (head) learning rate; fine-tuning phases scale it down"),
    Option("finetune_lr", "rate", None, 1e-6, 1.0, log=True, optional=True, example=0.001,
           help=f"rate of the fine-tuning phases (None: learning_rate x {FINE_TUNE_SCALE:g}; "
                "e.g. 1e-3 under a domain shift)"),
    Option("epochs", "int", 12, 1, MAX_RUN_EPOCHS, example=12,
           help="epochs per run, shared by the strategy's phases (at least one each)"),
    Option("seed", "int", 0, 0, MAX_SEED, example=0,
           help="seed for sampling and initialisation: the same seed repeats a run exactly"),
    BN_MODE,
)
assert tuple(o.name for o in RUN_OPTIONS) == COMMON_OPTION_NAMES  # strategies.register reads it

# Shots per class: its upper bound is the pool's smallest class, known only with the data.
SHOTS = Option("shots", "int", 5, 1, None, example=5,
               help="labelled images per class, from 1 to the pool's smallest class")


def options():
    """{name: Option}: the common settings, then every registered strategy's own."""
    table = {o.name: o for o in RUN_OPTIONS}
    for strategy in STRATEGIES.values():
        table.update({o.name: o for o in strategy.options})
    return table


class Settings:
    """Checked, frozen settings of a run: ``Settings(epochs=8, bn_mode="train")``.

    Every option not given takes its default; an unknown name or a bad value is refused in
    one line before anything runs.  ``replace(**changes)`` returns a new, checked object.
    """

    __slots__ = ("_values",)

    def __init__(self, **values):
        table = options()
        for name in values:
            check_choice(name, "setting", table, described=True)
        checked = {name: option.check(values[name]) if name in values else option.default
                   for name, option in table.items()}
        object.__setattr__(self, "_values", checked)

    def __getattr__(self, name):
        try:
            return object.__getattribute__(self, "_values")[name]
        except KeyError:
            raise AttributeError(f"Settings has no {name!r}; the settings are "
                                 f"{list(options())}") from None

    def __setattr__(self, name, value):
        raise AttributeError(f"Settings are frozen; use settings.replace({name}=...) for a "
                             "changed copy")

    def replace(self, **changes):
        return Settings(**{**self._values, **changes})

    def as_dict(self):
        return dict(self._values)

    def __eq__(self, other):
        return isinstance(other, Settings) and self._values == other._values

    def __hash__(self):
        return hash(tuple(sorted(self._values.items(), key=lambda kv: kv[0])))

    def __repr__(self):
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"

    @property
    def finetune_rate(self):
        """The fine-tuning phases' rate: ``finetune_lr``, else ``learning_rate`` x 3/100."""
        if self.finetune_lr is not None:
            return self.finetune_lr
        return self.learning_rate * FINE_TUNE_SCALE

    def for_strategy(self, strategy, blocks=None):
        """Refuse settings a strategy cannot run with (too few epochs for its phases)."""
        phases = strategy.phases() if blocks is None else strategy.phases(blocks)
        if self.epochs < len(phases):
            raise ValueError(f"epochs={self.epochs} is too few for strategy {strategy.key!r}: it "
                             f"trains in {len(phases)} phases ({', '.join(p.name for p in phases)}"
                             f") of at least one epoch each; use epochs >= {len(phases)}")
        return self


def resolve(settings=None, **values):
    """``settings`` (a ``Settings``, or None) with ``values`` applied, checked."""
    if settings is None:
        return Settings(**values)
    if not isinstance(settings, Settings):
        raise TypeError(f"settings={settings!r} is not a tk.settings.Settings; pass "
                        "tk.settings.Settings(epochs=..., ...) or the options as keywords")
    return settings.replace(**values) if values else settings


def check_shots(value, most, *, allow_all=False, shown=None):
    """Shots per class: an integer from 1 to ``most`` (the pool's smallest class), or with
    ``allow_all`` the word ``'all'`` (the whole pool); the message of ``SHOTS``."""
    if allow_all and value == "all":
        return most
    option = Option("shots", "int", 1, 1, most, example=min(5, most), help=SHOTS.help)
    found = option.diagnose(value)
    if found is None:
        return int(value)
    kind, problem = found
    also = " or 'all' (the whole pool)" if allow_all else ""
    raise kind(f"{shown or f'shots={value!r}'} {problem}{also}: the pool's smallest class holds "
               f"{most} images; use fewer shots or a larger pool, e.g. "
               "tk.target_task(train_per_class=200)")


def takes_settings(function):
    """Give ``function(..., **options)`` the options as keyword parameters in its signature
    and an "Options" section in its docstring (the table's help), so ``help()``, tab
    completion and the tests see them; the function itself checks them with ``resolve``."""
    signature = inspect.signature(function)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in params}
    params += [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default)
               for o in options().values() if o.name not in names]
    function.__signature__ = signature.replace(parameters=params)
    lines = [f"    ``{o.name}`` ({o.rule()}, default {o.default!r}): {o.help}"
             for o in options().values()]
    function.__doc__ = (function.__doc__ or "").rstrip() + "\n\n    Options (tk.settings):\n" + \
        "\n".join(lines) + "\n"
    return function

