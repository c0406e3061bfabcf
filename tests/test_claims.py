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
    assert isinstance(c, tk.claims.Claim) and c.statement == "transfer beats scratch"
    assert dict(c.evidence) == {"transfer": 0.8125, "scratch": 0.6, "shots": 5}
    assert str(c) == c.line.rstrip()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.statement = "something else"


def test_a_claim_that_fails_raises_an_assertion_error_naming_the_numbers(capsys):
    with pytest.raises(tk.claims.ClaimError) as info:
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
    with pytest.raises(tk.claims.ClaimError, match=r"^claim fails: weights unchanged$"):
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


# --------------------------------------------------------------------------- the notebooks' claims
# Each claim of notebooks 01-09 and 11 is re-run here on the numbers its committed output printed (it
# must hold), then on changed numbers (it must fail): no training, only the claim's own
# expression.  Convention that makes this possible: a claim's evidence are plain variables
# passed by name (name=name), and its condition uses only them.
import ast
import re
from pathlib import Path

import nbformat

# every notebook but the index (00) and the optional online one (10), whose outputs depend on
# the network
NOTEBOOKS = [p for p in sorted((Path(__file__).resolve().parents[1] / "notebooks")
                               .glob("[0-9][0-9]_*.ipynb")) if p.name[:2] not in ("00", "10")]

# (notebook number, start of the statement) -> changed inputs, each of which must break it
BREAKS = {
    ("01", "training lowered the validation loss"): [{"last_val_loss": 3.2}],
    ("01", "the source model reads test letters"): [{"test_accuracy": 0.3}],
    ("02", "the six backbone layers loaded"): [{"identical": False}, {"loaded": 5},
                                                {"skipped": "block3_conv, head"}],
    ("02", "matching by order loaded"): [{"extra_got": "random start"},
                                         {"block3_by_order": "block3_conv"}],
    ("02", "matching by name loaded"): [{"block3_by_name": "random start"},
                                        {"extra_reported": False}],
    ("03", "compiled again, fit leaves"): [{"backbone_change": 0.01}, {"head_change": 0.0}],
    ("03", "a frozen BatchNorm layer"): [{"frozen_moved": 0.001}, {"trainable_moved": 0.0}],
    ("03", "feature extraction on 100 images"): [{"fe_accuracy": 0.45}],
    ("04", "on these 100 images"): [{"transfer_accuracy": 0.55}, {"scratch_accuracy": 0.7}],
    ("04", "the two BatchNorm modes differ"): [{"mean_gain": 8.0}, {"frozen_spread": 1.0}],
    ("04", "in Keras 3, fit's training=True"): [{"idiom_moved": 0.0}, {"kit_moved": 0.001}],
    ("05", "feature extraction beats scratch at every"): [{"smallest_gap": -0.01}],
    ("06", "on this draw, both uses"): [{"tuned_accuracy": 0.5}, {"probe_accuracy": 0.5}],
    ("06", "the source network's features"): [{"random_knn": 0.6},
                                              {"random_probe_accuracy": 0.9}],
    ("06", "yet in 2-D"): [{"source_silhouette": 0.4}],
    ("06", "fine-tuning moved every"): [{"backbone_max": 0.3}, {"head_change": 0.1}],
    ("07", "on this draw, the distilled student"): [{"distilled_accuracy": 0.35},
                                                    {"distilled_accuracy": 0.8}],
    ("07", "the L2-SP anchor held"): [{"l2sp_change": 0.03}],
    ("07", "the distilled student has more than 3 times"): [{"student_parameters": 9000},
                                                            {"student_bytes": 40000},
                                                            {"distilled_accuracy": 0.3}],
    ("08", "every shift costs"): [{"smallest_drop": -1.0}],
    ("08", "restyled is the mildest"): [{"mildest_transfer": "noisy"}],
    ("08", "for the transferred model"): [{"worst_transfer": "rotated"}],
    ("08", "on this draw, both mismatched"): [{"noise_accuracy": 0.56}],
    ("08", "feature extraction forgets nothing"): [{"frozen_drop": 0.5}, {"tuned_drop": 0.0}],
    ("08", "AdaBN lifts feature extraction"): [{"adabn_noisy": 0.0}],
    ("08", "under every shift the best remedy beats"): [{"smallest_gain": 0.04}],
    ("08", "under every shift the best remedy is not"): [{"lowest_over_scratch": -0.01}],
    ("09", "on the balanced test set"): [{"balanced_gap": 0.02}],
    ("09", "on the skewed set"): [{"trivial_accuracy": 0.4}, {"trivial_f1": 0.3}],
    ("09", "LogME orders"): [{"rho": 0.5}, {"best_by_logme": "letters-brief"}],
    ("09", "with 5 or fewer labels"): [{"feature_best_at": [1]}],
    ("09", "at 50 per class"): [{"gain_50": 0.001}],
    ("09", "from 100 per class on"): [{"scratch_best_at": [200]}],
    ("09", "from letters-rich, the best"): [{"rich_lowest": -0.5}],
    ("09", "from the kit's letters, it falls"): [{"letters_lowest": 0.5}],
    ("11", "the augmentation layers change images only"): [{"inference_change": 0.2},
                                                           {"training_change": 0.0},
                                                           {"prediction_change": 0.001}],
    ("11", "early stopping ended the run"): [{"stopped_after": 20}, {"kept_val_loss": 0.9},
                                             {"last_val_loss": 0.5}],
    ("11", "the reloaded model predicts exactly"): [{"largest_difference": 1e-7}],
    ("11", "the images with the highest loss"): [{"wrong": 11}, {"highest_true_probability": 0.3}],
}


def _parse(text):
    if text in ("True", "False"):
        return text == "True"
    if text in ("nan", "inf", "-inf"):
        return float(text)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _notebook_claims():
    """(notebook, statement, call node, committed evidence) of every claim in 01-09."""
    found = []
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or "claim(" not in cell.source:
                continue
            printed = "".join(o.get("text", "") for o in cell.outputs)
            for node in ast.walk(ast.parse(cell.source)):
                if not (isinstance(node, ast.Call)
                        and getattr(node.func, "attr", getattr(node.func, "id", "")) == "claim"):
                    continue
                statement = ast.literal_eval(node.args[0])
                names = [k.arg for k in node.keywords]
                if not all(isinstance(k.value, ast.Name) and k.value.id == k.arg
                           for k in node.keywords):
                    found.append((path.name, statement, node,
                                  "pass the evidence as name=name, plain variables"))
                    continue
                pattern = re.escape(f"claim holds: {statement}") + (
                    r" \(" + ", ".join(re.escape(n) + " (.*?)" for n in names) + r"\)"
                    if names else "") + "$"
                m = re.search(pattern, printed, re.M)
                found.append((path.name, statement, node,
                              {n: _parse(v) for n, v in zip(names, m.groups())} if m else
                              "no committed 'claim holds:' line with these numbers: execute it"))
    return found


CLAIMS = _notebook_claims()


def _run(node, values):
    namespace = {"tk": tk, "np": np, "claim": tk.claim, **values}
    return eval(compile(ast.Expression(node), "<claim>", "eval"), namespace)


def _breaks(notebook, statement):
    keys = [k for k in BREAKS if notebook.startswith(k[0]) and statement.startswith(k[1])]
    assert len(keys) == 1, f"{notebook}: give the claim {statement!r} one entry in BREAKS"
    return BREAKS[keys[0]]


@pytest.mark.parametrize("notebook, statement, node, values", CLAIMS,
                         ids=[f"{c[0][:2]}: {c[1][:40]}" for c in CLAIMS])
def test_a_notebook_claim_holds_on_its_numbers_and_fails_when_they_change(
        notebook, statement, node, values, capsys):
    assert isinstance(values, dict), f"{notebook}, {statement!r}: {values}"
    assert isinstance(_run(node, values), tk.claims.Claim), "the committed numbers must satisfy it"
    for change in _breaks(notebook, statement):
        assert set(change) <= set(values), f"{notebook}: {set(change) - set(values)} not evidence"
        with pytest.raises(tk.claims.ClaimError, match=r"^claim fails: "):
            _run(node, {**values, **change})


def test_every_notebook_from_01_to_09_and_11_has_claims_and_every_break_is_used():
    assert {c[0][:2] for c in CLAIMS} >= {f"{i:02d}" for i in (*range(1, 10), 11)}
    used = {k for n, s, _, _ in CLAIMS for k in BREAKS if n.startswith(k[0]) and s.startswith(k[1])}
    assert used == set(BREAKS), f"entries in BREAKS for no claim: {set(BREAKS) - used}"


def test_a_claim_shows_only_its_printed_line_in_a_notebook():
    """A cell ending in tk.claim(...) must show the same under nbclient and nbval: the line,
    no repr (IPython's display hook publishes nothing for an object that displays itself
    as nothing)."""
    from IPython.core.formatters import DisplayFormatter

    held = tk.claim("one is less than two", 1 < 2, one=1, two=2)
    assert DisplayFormatter().format(held) == ({}, {})
