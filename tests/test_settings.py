"""The settings table is the one source of every strategy option: these tests read it.

For each option of ``tk.settings.options()`` (the common ones and every registered
strategy's own): ``run_strategy`` and ``sweep`` take it as a keyword, the command line has
its ``--flag`` (in ``--help``, with the same rule and message), the strategy lab has a
control for it with the same range, and a bad value gets the same message everywhere.
"""
from __future__ import annotations

import inspect
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

import transferkit as tk
from transferkit import cli
from transferkit.options import Option
from transferkit.settings import Settings, options

OPTIONS = list(options().values())


def _bad_values(option):
    """Values each option must refuse: outside its range, of the wrong type."""
    if option.kind == "choice":
        return ["no-such-choice"]
    if option.kind == "flag":
        return ["yes"]
    out = ["fast", float("nan")]
    if option.low is not None:
        out.append(option.low - (1 if option.kind == "int" else option.low / 2 or 1))
    if option.high is not None:
        out.append(option.high * 2 + 1)
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tk.set_seed(5)
    path = tmp_path_factory.mktemp("src") / "source.weights.h5"
    tk.save_weights(tk.build_model(26, name="source"), path)
    task = tk.target_task(train_per_class=4, val_per_class=2, test_per_class=3)
    return tk.StrategyLab(SimpleNamespace(weights_path=path), task, shots=2, epochs=2)


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_every_option_is_a_keyword_of_run_strategy_and_sweep(option):
    for function in (tk.run_strategy, tk.sweep):
        parameter = inspect.signature(function).parameters[option.name]
        assert parameter.kind is parameter.KEYWORD_ONLY and parameter.default == option.default
        assert f"``{option.name}``" in function.__doc__


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_every_option_is_a_flag_of_every_training_command(option, capsys):
    for command in cli.TRAINING:
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert option.flag in text and " ".join(option.rule().split()) in text, command


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_every_option_has_a_lab_control_with_its_range(option, lab):
    control = lab.controls[option.name]
    if option.kind == "choice":
        assert [value for _, value in control.options] == list(option.choices)
    elif option.log and not option.optional:
        assert (control.min, control.max) == pytest.approx(
            (math.log10(option.low), math.log10(option.high)))
    assert getattr(lab, option.name) is control
    assert lab.controls.values()[option.name] == option.default or option.name == "epochs"


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_a_bad_value_gets_the_options_message_everywhere(option, lab, capsys):
    for bad in _bad_values(option):
        with pytest.raises((TypeError, ValueError)) as api:
            Settings(**{option.name: bad})
        message = str(api.value)
        assert message.startswith(f"{option.name}={bad!r} ") and "\n" not in message
        # the same from run_strategy, before anything trains
        with pytest.raises(type(api.value), match="^" + re.escape(message) + "$"):
            tk.run_strategy("scratch", (np.zeros((2, 28, 28, 1)), np.array([0, 1])), None, 2,
                            **{option.name: bad})
        # the lab: the control refuses (from Python, as from the constructor), keeps its value
        before = lab.controls.values()[option.name]
        assert lab.run(**{option.name: bad}) is None and lab.message == message
        assert lab.controls.values()[option.name] == before and not lab.busy
        # the command line says the same rule about the same value
        if isinstance(bad, float) and math.isnan(bad):
            continue
        with pytest.raises(SystemExit) as exit_:
            cli.main(["run", option.flag, str(bad)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and f"argument {option.flag}: {str(bad)!r}" in err
        assert option.rule() in err or "is unknown" in err, err


def test_a_control_set_from_python_refuses_instead_of_clamping(lab):
    for control, bad in ((lab.shots, 1000), (lab.seed, -5), (lab.learning_rate, 5.0),
                         (lab.epochs, tk.settings.MAX_RUN_EPOCHS + 1)):
        before = control.value
        with pytest.raises(ValueError, match="out of range"):
            control.value = bad
        assert control.value == before and "out of range" in lab.message


def test_the_constructor_refuses_what_the_controls_would(tmp_path):
    task = tk.target_task(train_per_class=4, val_per_class=1, test_per_class=1)
    path = tk.save_weights(tk.build_model(26, name="source"), tmp_path / "s.weights.h5")
    for settings, needle in (({"shots": 1000}, "shots=1000 is out of range"),
                             ({"seed": -5}, "seed=-5 is out of range"),
                             ({"learning_rate": 5}, "learning_rate=5 is out of range"),
                             ({"learning_rate": float("nan")}, "not a finite number")):
        with pytest.raises(ValueError, match=needle):
            tk.StrategyLab(SimpleNamespace(weights_path=path), task, **settings)
    with pytest.raises(TypeError, match="source=7 is not a source model"):
        tk.StrategyLab(7, task)
    with pytest.raises(FileNotFoundError, match="no weights file"):
        tk.StrategyLab("nowhere.weights.h5", task)


def test_a_nan_rate_leaves_the_panel_usable(lab):
    assert lab.run(learning_rate=float("nan")) is None and "finite" in lab.message
    assert not lab.busy and not lab.run_button.disabled
    assert lab.run(strategy="scratch") is not None


def test_settings_are_frozen_and_checked_once():
    settings = Settings(epochs=3)
    with pytest.raises(AttributeError, match="frozen"):
        settings.epochs = 4
    assert settings.replace(epochs=4).epochs == 4 and settings.epochs == 3
    with pytest.raises(ValueError, match="unknown setting 'epoch'"):
        Settings(epoch=3)
    assert Settings().finetune_rate == pytest.approx(tk.strategies.HEAD_LR *
                                                     tk.strategies.FINE_TUNE_SCALE)


def test_a_seed_numpy_cannot_take_is_refused():
    with pytest.raises(ValueError, match=r"seed=4294967296 is out of range"):
        Settings(seed=2 ** 32)
    assert Settings(seed=2 ** 32 - 1).seed == 2 ** 32 - 1


def test_an_option_whose_default_breaks_its_rule_is_refused():
    with pytest.raises(ValueError, match="out of range"):
        Option("x", "int", 0, 1, 10)
    with pytest.raises(ValueError, match="kind="):
        Option("x", "integer", 1)


def test_the_command_line_reads_a_negative_rate_as_a_value(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--finetune-lr", "-1e-3"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --finetune-lr: '-1e-3' is out of range" in err


def test_one_default_for_epochs_everywhere(capsys):
    default = options()["epochs"].default
    assert inspect.signature(tk.sweep).parameters["epochs"].default == default
    for command in cli.TRAINING:
        assert cli.build_parser().parse_args([command]).epochs == default
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert f"(default {default})" in " ".join(capsys.readouterr().out.split())
