"""Claims as checks: a lesson's conclusion, computed from the run and asserted where it is drawn.

    tk.claim("transfer beats scratch at 5 shots", transfer > scratch,
             transfer=transfer, scratch=scratch)

prints ``claim holds: transfer beats scratch at 5 shots (transfer 0.8125, scratch 0.6)``
and returns a ``Claim``; when the condition is false it raises ``ClaimError`` (an
``AssertionError``) whose one-line message names the same numbers, so a notebook that stops
teaching something true fails on any machine, backend or seed.

Numbers are formatted deterministically: integers as they are, floats with 4 significant
digits (``0.8125``, ``12.35``, ``1.235e+04``), sequences element by element.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Claim", "ClaimError", "claim", "format_value"]


def format_value(value) -> str:
    """A short, stable text for one piece of evidence (floats: 4 significant digits)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return "0" if value == 0 else f"{value:.4g}"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def _line(verdict, statement, evidence):
    numbers = ", ".join(f"{name} {format_value(value)}" for name, value in evidence)
    return f"claim {verdict}: {statement}" + (f" ({numbers})" if numbers else "")


@dataclass(frozen=True)
class Claim:
    """A claim that held: its statement and the evidence (name, value) pairs behind it."""

    statement: str
    evidence: tuple = ()

    @property
    def line(self) -> str:
        """The line printed when the claim was checked."""
        return _line("holds", self.statement, self.evidence)

    def __str__(self):
        return self.line

    def _ipython_display_(self):
        """Nothing: ``claim()`` printed the line already.  Without this a cell ending in a
        claim also shows its repr -- or not, depending on who runs it: a trailing ';' hides
        it under nbclient but not under nbval, whose strict comparison then fails."""


class ClaimError(AssertionError):
    """A claim that does not hold; the message names the statement and its numbers."""

    def __init__(self, statement, evidence=()):
        self.statement = statement
        self.evidence = tuple(evidence)
        super().__init__(_line("fails", statement, self.evidence))


def claim(statement, holds, **evidence) -> Claim:
    """Check one conclusion of a lesson: print ``claim holds: ...`` or raise ``ClaimError``.

    ``statement`` says the conclusion in words; ``holds`` is the computed truth of it (a bool
    or numpy bool, not an array); ``evidence`` are the numbers behind it, shown in the line
    in the order given.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise TypeError(f"statement={statement!r}: say the claim in words (a non-empty str)")
    if isinstance(holds, np.ndarray) and holds.ndim == 0:
        holds = holds.item()
    if not isinstance(holds, (bool, np.bool_)):
        raise TypeError(f"holds={holds!r} ({type(holds).__name__}): give a bool, e.g. a > b; "
                        "for arrays say which: (a > b).all() or (a > b).mean() > 0.5")
    pairs = tuple(evidence.items())
    if not bool(holds):
        raise ClaimError(statement, pairs)
    result = Claim(statement, pairs)
    print(result.line, flush=True)
    return result
