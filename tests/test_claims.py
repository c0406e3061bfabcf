"""tk.claim: a lesson's conclusion printed when it holds, a ClaimError naming the numbers when not."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import transferkit as tk
from transferkit.claims import format_value


def test_a_claim_that_holds_prints_one_line_with_its_numbers(capsys):
    c = tk.claim("transfer beats scratch", 0.8125 > 0.6, transfer=0.8125, scratch=0.6, shots=5)
    assert capsys.readouterr().out == (
        "claim holds: transfer beats scratch (transfer 0.8125, scratch 0.6, shots 5)\n")
    assert isinstance(c, tk.Claim) and c.statement == "transfer beats scratch"
    assert dict(c.evidence) == {"transfer": 0.8125, "scratch": 0.6, "shots": 5}
    assert str(c) == c.line.rstrip()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.statement = "something else"


def test_a_claim_that_fails_raises_an_assertion_error_naming_the_numbers(capsys):
    with pytest.raises(tk.ClaimError) as info:
        tk.claim("transfer beats scratch", np.float32(0.5) > 0.6, transfer=np.float32(0.5),
                 scratch=0.6)
    assert isinstance(info.value, AssertionError)
    assert str(info.value) == "claim fails: transfer beats scratch (transfer 0.5, scratch 0.6)"
    assert "\n" not in str(info.value)
    assert info.value.statement == "transfer beats scratch"
    assert capsys.readouterr().out == "", "nothing is printed for a claim that fails"


def test_numpy_bools_and_no_evidence(capsys):
    tk.claim("weights unchanged", np.bool_(True))
    assert capsys.readouterr().out == "claim holds: weights unchanged\n"
    with pytest.raises(tk.ClaimError, match=r"^claim fails: weights unchanged$"):
        tk.claim("weights unchanged", np.array(False))


@pytest.mark.parametrize("holds", [1, 0.0, None, "yes", np.array([True, False])])
def test_holds_must_be_a_bool(holds):
    with pytest.raises(TypeError, match="give a bool"):
        tk.claim("something", holds)


def test_a_statement_is_required():
    with pytest.raises(TypeError, match="statement"):
        tk.claim("", True)


@pytest.mark.parametrize("value, text", [
    (0.8123456, "0.8123"), (12.3456, "12.35"), (100.0, "100"), (12345.6, "1.235e+04"),
    (-0.0, "0"), (0.0, "0"), (float("nan"), "nan"), (float("-inf"), "-inf"),
    (np.float32(0.1), "0.1"), (np.float64(1 / 3), "0.3333"), (7, "7"), (np.int64(19210), "19210"),
    (True, "True"), (np.bool_(False), "False"), (np.array(0.25), "0.25"),
    ([0.5, 0.25], "[0.5, 0.25]"), (np.array([1, 2]), "[1, 2]"), ("lr=1e-3", "lr=1e-3"),
])
def test_values_are_formatted_compactly_and_stably(value, text):
    assert format_value(value) == text
