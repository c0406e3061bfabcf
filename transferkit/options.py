"""Options as data: each setting's kind, range or choices, default and help, declared once.

An ``Option`` is a constraint that every entry point applies the same way: the functions
(``run_strategy``, ``sweep``), the command line's options (``--epochs``) and the strategy
lab's controls are generated from the same entries (``settings.RUN_OPTIONS`` and the
strategies' own), and a value is checked by ``Option.check`` wherever it comes from, so it
gets one rule and one message: ``epochs=0 is out of range; use an integer from 1 to 1000,
e.g. epochs=12`` (the command line says ``--epochs 0 ...``).  Keras-free: the command line
checks its arguments with these before the backend loads.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

__all__ = ["KINDS", "Option", "is_integer"]

KINDS = ("int", "number", "rate", "choice", "flag")


def is_integer(value):
    """An int or a NumPy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Option:
    """One setting: ``kind`` (``KINDS``), ``default``, an inclusive range ``low``..``high``
    (numbers) or ``choices``, ``help`` (one sentence, for ``--help`` and the lab), an
    ``example`` of a good value for messages, ``optional`` (None allowed: "not set, derived",
    as the help says), ``log`` (a control on a log scale: learning rates) and ``strategy``
    (the key of the strategy that declared it, None for the common ones)."""

    name: str
    kind: str
    default: object
    low: float = None
    high: float = None
    choices: tuple = ()
    help: str = ""
    example: object = None
    optional: bool = False
    log: bool = False
    strategy: str = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name!r}: kind={self.kind!r}; use one of {list(KINDS)}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"option {self.name!r}: a choice needs choices=(...)")
        if self.default is not None or not self.optional:
            self.check(self.default)  # a default that breaks its own rule is a bug

    # -- names --------------------------------------------------------------------------
    @property
    def flag(self):
        """The command line's name: ``--learning-rate``."""
        return "--" + self.name.replace("_", "-")

    def good(self):
        """A value that passes, for messages: the example, else the default."""
        value = self.example if self.example is not None else self.default
        return value if value is not None else self.low

    # -- the rule -----------------------------------------------------------------------
    def rule(self):
        """The rule in words: ``an integer from 1 to 1000``."""
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        if self.kind == "flag":
            return "True or False"
        noun = "an integer" if self.kind == "int" else "a number"
        if self.low is not None and self.high is not None:
            span = f" from {_number(self.low)} to {_number(self.high)}"
        elif self.low is not None:
            span = f" >= {_number(self.low)}"
        else:
            span = ""
        return noun + span + (" (or None)" if self.optional else "")

    def problem(self, value):
        """What is wrong with ``value`` (the words that follow it in a message), or None."""
        found = self.diagnose(value)
        return None if found is None else found[1]

    def diagnose(self, value):
        """(the exception type, the words after the value) for a bad ``value``; None if good."""
        # a whole number of the wrong type is a TypeError (as int() would say); a rate or
        # number of the wrong type a ValueError, as the kit's learning-rate checks always were
        wrong_type = TypeError if self.kind in ("int", "flag") else ValueError
        if value is None:
            return None if self.optional else (ValueError, f"is not set; use {self.rule()}")
        if self.kind == "flag":
            return None if isinstance(value, bool) else (wrong_type, "is not True or False")
        if self.kind == "choice":
            try:
                known = value in self.choices
            except TypeError:  # unhashable
                known = False
            return None if known else (ValueError, f"is unknown; choose {self.rule()}")
        if isinstance(value, (str, bytes)):
            return wrong_type, f"is a string, not a number; use {self.rule()}, without quotes"
        if isinstance(value, bool):
            return wrong_type, f"is a bool, not a number; use {self.rule()}"
        if self.kind == "int":
            if not is_integer(value):
                return wrong_type, f"is not a whole number; use {self.rule()}"
        else:
            try:
                value = float(value)
            except (TypeError, ValueError):
                return wrong_type, f"is not a number; use {self.rule()}"
            if not math.isfinite(value):
                return ValueError, f"is not a finite number; use {self.rule()}"
        if (self.low is not None and value < self.low) or (
                self.high is not None and value > self.high):
            return ValueError, f"is out of range; use {self.rule()}"
        return None

    def check(self, value, shown=None):
        """``value`` normalised (an int, a float, the choice), or a one-line error naming it,
        the rule and a good value: ValueError, TypeError for a value of the wrong type.

        ``shown``: how the message names the value (default ``name=value``).
        """
        found = self.diagnose(value)
        if found is None:
            if value is None or self.kind in ("choice", "flag"):
                return value
            return int(value) if self.kind == "int" else float(value)
        kind, problem = found
        named = shown or f"{self.name}={value!r}"
        raise kind(f"{named} {problem}, e.g. {self.name}={self.good()!r}")

    def parse(self, text):
        """A command-line string as a value of this option, checked; ValueError with the
        message the command line prints after ``argument --flag:``."""
        value = text
        if self.kind == "int":
            try:
                value = int(text)
            except ValueError:
                value = text
        elif self.kind in ("number", "rate"):
            try:
                value = float(text)
            except ValueError:
                value = text
        problem = self.problem(value)
        if problem is None:
            return self.check(value)
        if isinstance(value, str) and self.kind != "choice":
            problem = f"is not {self.rule()}"
        raise ValueError(f"{text!r} {problem}, e.g. {self.flag} {self.good()}")

    def widget_range(self):
        """(low, high) for a control; a log control's bounds as powers of ten."""
        if not self.log:
            return self.low, self.high
        return math.log10(self.low), math.log10(self.high)
