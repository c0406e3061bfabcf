"""Exercise checks by behaviour: what a learner's answer does, never what it looks like.

A check receives the learner's namespace (``globals()`` of the notebook) or objects, probes
what they do -- which layers are trainable, which weights move in one training step, the
output shape, the accuracy on held-out images -- and returns a ``Verdict``: passed or not,
which part is wrong, and a hint that is not the answer.  No check retrains a hidden
reference solution and compares numbers: any valid answer passes (``tests/`` feed each check
at least two valid answers and two typical wrong ones).  Nothing here prints or contains a
solution, so a self-check cell that calls a check gives nothing away.

The checks of notebook NN live in ``exercises/nNN.py``; a notebook's self-check cell calls
them and prints the verdict; graded versions (nbgrader test cells) call ``.require()``, which
raises an ``AssertionError`` carrying the same words.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Missing", "Verdict", "missing", "needs"]


@dataclass
class Verdict:
    """The answer's verdict: ``passed``; the ``part`` that is wrong (or all parts checked),
    ``message`` (what was found) and ``hint`` (where to look, not the answer); ``points``
    earned out of ``out_of`` when a check has several parts."""

    passed: bool
    message: str
    part: str = ""
    hint: str = ""
    points: float = 0.0
    out_of: float = 1.0
    details: list = field(default_factory=list)

    def __bool__(self):
        return self.passed

    def __str__(self):
        if isinstance(self, Missing):
            return self.message
        if self.passed:
            return f"Correct: {self.message}"
        where = f" ({self.part})" if self.part else ""
        hint = f" Hint: {self.hint}" if self.hint else ""
        return f"Not quite{where}: {self.message}.{hint}"

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))

    def require(self):
        """Raise ``AssertionError`` with the verdict's words unless it passed (graded cells)."""
        if not self.passed:
            raise AssertionError(str(self))
        return self


class Missing(Verdict):
    """Not answered yet, or a cell it needs has not run: says what to run first."""


def missing(what, run_first=None):
    """The verdict for an exercise whose answer (or what it needs) is not there yet."""
    first = f" Run {run_first} first." if run_first else ""
    return Missing(False, f"Not answered yet: {what}.{first}".rstrip("."), part="not answered")


def needs(namespace, *names, run_first="the cells above"):
    """A ``Missing`` verdict naming the first of ``names`` not defined in ``namespace`` (a
    self-check run before its exercise, or cells run out of order), else None."""
    for name in names:
        if name not in namespace:
            return Missing(False, f"`{name}` is not defined yet: run {run_first} first",
                           part="not run yet")
    return None
