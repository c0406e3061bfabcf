"""The strategy lab's controls, generated from the settings table: they refuse, never clamp.

One control per option of ``settings.options()`` (the common ones and every registered
strategy's own), plus the strategy buttons and the shots slider.  A control's range is its
option's range; a value outside it -- set from Python, from the constructor or from the
browser -- is refused with the option's own message (``ValueError``, a ``TraitError`` too),
the control keeps its value, and the panel is told (``on_refused``).  ipywidgets' own bounded
widgets would clamp instead (shots 1000 -> 40) without a word.
"""
from __future__ import annotations

import ipywidgets as w
from traitlets import TraitError, validate

from .settings import SHOTS, check_shots, options
from .strategies import BN_MODES, FINE_TUNE_SCALE, get_strategy

__all__ = ["Controls", "RefusedValue", "STYLE"]

STYLE = {"description_width": "110px"}
LABELS = {"epochs": "epochs", "learning_rate": "learning rate", "finetune_lr": "fine-tune rate",
          "bn_mode": "BatchNorm", "seed": "seed"}


class RefusedValue(TraitError, ValueError):
    """A control was given a value outside its option's rule (the message says which)."""


class _Refusing:
    """Mix-in: ``value`` is checked by ``self.check`` (a callable that raises the option's
    message); a refusal keeps the old value and calls ``self.on_refused(message)``."""

    check = staticmethod(lambda value: value)
    on_refused = staticmethod(lambda message: None)

    @validate("value")
    def _validate_value(self, proposal):
        try:
            return self.check(proposal["value"])
        except (TypeError, ValueError) as error:
            self.on_refused(str(error))
            raise RefusedValue(str(error)) from None


class IntSlider(_Refusing, w.IntSlider):
    pass


class IntText(_Refusing, w.IntText):
    pass


class FloatText(_Refusing, w.FloatText):
    pass


class FloatLogSlider(_Refusing, w.FloatLogSlider):
    pass


class Text(_Refusing, w.Text):
    pass


def _make(widget_class, check, on_refused, **kwargs):
    widget = widget_class.__new__(widget_class)
    widget.check, widget.on_refused = check, on_refused  # before the first value is checked
    widget.__init__(**kwargs)
    return widget


def _optional_rate(option):
    """A Text control for an optional rate: empty is None ("not set")."""
    def parse(text):
        text = (text or "").strip()
        if not text:
            return ""
        try:
            value = float(text)
        except ValueError:
            value = text
        option.check(value)
        return text
    return parse


class Controls:
    """The controls and the values they hold: ``values()`` (checked), ``set(**values)``
    (all checked first, then set: a refused value changes nothing).  ``on_refused(text,
    kind="error")`` tells the panel (``kind="info"``: a note, e.g. epochs raised)."""

    def __init__(self, strategies, shots_most, on_refused, **initial):
        self.strategies = list(strategies)
        self.shots_most = shots_most
        self.on_refused = on_refused
        self.options = options()
        self.strategy = w.ToggleButtons(options=[(s.title, s.key) for s in self.strategies],
                                        value=self.strategies[0].key, description="strategy",
                                        style={"button_width": "150px", **STYLE})
        self.shots = _make(IntSlider, lambda v: check_shots(v, shots_most), on_refused,
                           value=SHOTS.default if shots_most >= SHOTS.default else 1,
                           min=1, max=shots_most, description="shots / class", style=STYLE)
        self.by_name = {name: self._control(option) for name, option in self.options.items()}
        self.set(**initial)
        self.strategy.observe(self._epochs_floor, "value")
        self._epochs_floor()

    def _epochs_floor(self, _change=None):
        """Every phase of a strategy needs an epoch: choosing a strategy with more phases than
        the epochs set raises them to its fewest, and says so."""
        strategy = get_strategy(self.strategy.value)
        low = strategy.min_epochs()
        if self.by_name["epochs"].value < low:
            self.by_name["epochs"].value = low
            self.on_refused(f"epochs raised to {low}: {strategy.title} needs one per phase.",
                            "info")

    def _control(self, option):
        label = LABELS.get(option.name, option.name.replace("_", " "))
        common = dict(description=label, style=STYLE, description_allow_html=False)
        check = option.check
        if option.kind == "choice":
            words = BN_MODES if option.name == "bn_mode" else {}
            control = w.Dropdown(options=[(f"{c}: {words[c].split(' (')[0]}" if c in words
                                           else str(c), c) for c in option.choices],
                                 value=option.default, layout=w.Layout(width="560px"), **common)
        elif option.kind == "flag":
            control = w.Checkbox(value=option.default, **common)
        elif option.kind == "rate" and option.optional:
            placeholder = (f"default: {FINE_TUNE_SCALE:g} x learning rate"
                           if option.name == "finetune_lr" else "default")
            control = _make(Text, _optional_rate(option), self.on_refused, value="",
                            placeholder=placeholder, continuous_update=False,
                            layout=w.Layout(width="340px"), **common)
        elif option.log:
            low, high = option.widget_range()
            control = _make(FloatLogSlider, check, self.on_refused, value=option.default,
                            base=10, min=low, max=high, step=0.25, readout_format=".0e",
                            **common)
        elif option.kind == "int":
            control = _make(IntText, check, self.on_refused, value=option.default,
                            layout=w.Layout(width="200px"), **common)
        else:
            control = _make(FloatText, check, self.on_refused, value=option.default,
                            layout=w.Layout(width="200px"), **common)
        control.add_class(f"tk-lab-{option.name.replace('_', '-')}")
        return control

    def __getitem__(self, name):
        return self.by_name[name]

    def check(self, **values):
        """The values as the controls would hold them, each checked; the first refusal raises
        (ValueError / TypeError with its option's message)."""
        out = {}
        for name, value in values.items():
            if name == "strategy":
                out[name] = get_strategy(value).key
            elif name == "shots":
                out[name] = check_shots(value, self.shots_most)
            elif name in self.options:
                out[name] = self.options[name].check(value)
            else:
                known = ["strategy", "shots", *self.options]
                raise ValueError(f"unknown setting {name!r}; choose one of {known}")
        if "strategy" in out and out["strategy"] not in {s.key for s in self.strategies}:
            raise ValueError(f"strategy {out['strategy']!r} is not in this lab; it has "
                             f"{[s.key for s in self.strategies]}")
        return out

    def set(self, **values):
        """Check every value, then set them all (the strategy first)."""
        for name, value in self.check(**values).items():
            control = self.strategy if name == "strategy" else (
                self.shots if name == "shots" else self.by_name[name])
            option = self.options.get(name)
            if option is not None and option.kind == "rate" and option.optional:
                value = "" if value is None else f"{value:g}"
            control.value = value

    def values(self):
        """{name: value} of every control, checked: what a run would use."""
        out = {"strategy": self.strategy.value, "shots": int(self.shots.value)}
        for name, option in self.options.items():
            value = self.by_name[name].value
            if option.kind == "rate" and option.optional:
                value = float(value) if str(value).strip() else None
            out[name] = value
        return self.check(**out)

