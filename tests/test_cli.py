"""The command line, run in-process (``cli.main([...])``) with tiny settings."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import transferkit as tk
from transferkit import cli, online, source
from transferkit.source import source_paths

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_outputs(out, stem):
    with open(out / f"{stem}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    data = json.loads((out / f"{stem}.json").read_text())
    assert (out / f"{stem}.png").read_bytes().startswith(PNG_SIGNATURE)
    assert not [p for p in out.iterdir() if ".tmp" in p.name]  # atomic: no temporary left
    return rows, data


def test_run_prints_a_table_and_writes_csv_json_png(tmp_path, capsys):
    out = tmp_path / "results"
    code = cli.main(["run", "--strategy", "scratch", "--shots", "1", "--epochs", "1",
                     "--test-per-class", "2", "--seed", "3", "--out", str(out)])
    assert code == 0
    stdout, stderr = capsys.readouterr()
    assert "from scratch epoch 1: loss" in stderr  # the progress line
    assert stdout.splitlines()[0].split() == ["strategy", "shots", "accuracy", "macro_f1",
                                              "seconds"]
    rows, data = read_outputs(out, "run")
    assert [(r["strategy"], r["shots"], r["epochs"]) for r in rows] == [("scratch", "1", "1")]
    assert rows[0]["transfer"] == "nothing transferred (from scratch)"
    assert 0 <= float(rows[0]["accuracy"]) <= 1
    assert data["settings"]["seed"] == 3 and data["settings"]["source_weights"] is None
    assert data["results"][0]["accuracy"] == pytest.approx(float(rows[0]["accuracy"]))
    assert f"{float(rows[0]['accuracy']):.1%}" in stdout


def test_sweep_with_given_source_weights(tmp_path, capsys):
    tk.set_seed(5)
    weights = tk.save_weights(tk.build_model(26, name="source"), tmp_path / "src.weights.h5")
    out = tmp_path / "sweep"
    code = cli.main(["sweep", "--strategies", "feature_extraction", "--shots", "2", "1",
                     "--epochs", "1", "--test-per-class", "2", "--source-weights", str(weights),
                     "--out", str(out), "--quiet"])
    assert code == 0
    assert capsys.readouterr().err == ""  # --quiet: no progress lines
    rows, data = read_outputs(out, "sweep")
    # the same spelling as run and compare (and --strategies): the strategy's key
    assert [(r["strategy"], r["shots"]) for r in rows] == [("feature_extraction", "1"),
                                                           ("feature_extraction", "2")]
    assert all(r["transfer"].startswith("loaded 6 of 6 backbone layers from src.weights.h5")
               for r in rows)
    assert data["settings"]["source_weights"] == str(weights)
    assert not source_paths()[0].exists()  # the given file was used, nothing trained


def test_bn_mode_reaches_the_runs_and_the_files(tmp_path):
    tk.set_seed(5)
    weights = tk.save_weights(tk.build_model(26, name="source"), tmp_path / "src.weights.h5")
    out = tmp_path / "compare"
    code = cli.main(["compare", "--strategies", "feature_extraction", "--shots", "1",
                     "--epochs", "1", "--test-per-class", "2", "--source-weights", str(weights),
                     "--bn-mode", "adapt", "--out", str(out), "--quiet"])
    assert code == 0
    rows, data = read_outputs(out, "compare")
    assert rows[0]["bn_mode"] == "adapt" and data["settings"]["bn_mode"] == "adapt"


def test_unknown_bn_mode_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--strategy", "scratch", "--bn-mode", "adabn"])
    assert exit_.value.code == 2
    assert "argument --bn-mode: 'adabn' is unknown; choose one of ['frozen', 'adapt', " \
        "'train']" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["run", "--strategy", "fine_tune"], "'fine_tune_top', 'fine_tune_all'"),
    (["compare", "--strategies", "scratch", "nope"], "invalid choice: 'nope'"),
    (["run", "--shots", "41"], "'41' is out of range; use an integer from 1 to 40"),
    (["run", "--learning-rate", "-1"], tk.settings.options()["learning_rate"].rule()),
    (["sweep", "--epochs", "0"], "'0' is out of range"),
    (["run", "--source-weights", "missing.h5"], "is not a .weights.h5 file"),
    (["prepare", "--online", "imagenet"], "choose from 'mnist', 'fashion_mnist'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_arguments_exit_2_naming_the_allowed_values(argv, expected, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    assert expected in capsys.readouterr().err


def test_help_teaches_strategies_and_examples(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    assert all(key in text for key in tk.STRATEGIES)
    assert "python -m transferkit run --strategy" in text and "examples:" in text
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    assert "--shots" in capsys.readouterr().out


def test_info_reports_backend_and_cache(capsys):
    assert cli.main(["info"]) == 0
    text = capsys.readouterr().out
    assert "backend" in text and str(tk.cache_dir()) in text
    assert "source model       not cached yet" in text and "mnist" in text


def test_info_reports_a_damaged_source_model_as_damaged(capsys):
    """info verifies what it lists: a cached weights file cut short reads "damaged"."""
    tk.set_seed(0)
    model = tk.build_model(26, widths=tuple(tk.SOURCE_RECIPE["widths"]), name="source")
    scores = tk.Scores(0.5, 0.5, 0.5, 0.5, np.zeros((26, 26)), tuple(tk.data.UPPERCASE))
    tk.publish_source(model, scores)
    assert cli.main(["info"]) == 0
    assert "source model       cached, verified" in capsys.readouterr().out
    weights, _ = tk.source.source_paths()
    weights.write_bytes(weights.read_bytes()[:100])
    assert cli.main(["info"]) == 0
    line = [t for t in capsys.readouterr().out.splitlines() if t.startswith("source model")][0]
    assert "damaged" in line, line


def test_prepare_uses_the_cached_source_and_reports_offline_downloads(monkeypatch, capsys):
    # publish a (tiny-budget, untrained) source model so prepare only loads it
    tk.set_seed(0)
    model = tk.build_model(26, widths=tuple(tk.SOURCE_RECIPE["widths"]), name="source")
    scores = tk.Scores(0.5, 0.5, 0.5, 0.5, np.zeros((26, 26)), tuple(tk.data.UPPERCASE))
    tk.publish_source(model, scores)
    monkeypatch.setenv(online.ENV_OFFLINE, "1")
    assert cli.main(["prepare", "--online", "mnist"]) == 1
    stdout, stderr = capsys.readouterr()
    assert "test accuracy 50.0%" in stdout
    assert stderr.startswith("mnist: cannot download MNIST") and "tk.target_task()" in stderr


def test_prepare_all_sources_trains_each_alternative_recipe_once(monkeypatch, capsys):
    tiny = dict(tk.SOURCE_RECIPE, train_per_class=2, epochs=1, widths=[4, 8])
    recipes = {"letters": tk.SOURCE_RECIPE, "noise": dict(tiny, task="noise"),
               "untrained": dict(tiny, epochs=0)}
    monkeypatch.setattr(source, "SOURCE_RECIPES", recipes)
    tk.set_seed(0)  # a published (untrained) letters model, so only the others train
    model = tk.build_model(26, widths=tuple(tk.SOURCE_RECIPE["widths"]), name="source")
    tk.publish_source(model, tk.Scores(0.5, 0.5, 0.5, 0.5, np.zeros((26, 26)),
                                       tuple(tk.data.UPPERCASE)))
    assert cli.main(["prepare", "--all-sources"]) == 0
    out = capsys.readouterr().out
    assert "source noise: test accuracy" in out and "source untrained: test accuracy" in out
    for recipe in recipes.values():
        weights, meta = source_paths(recipe)
        assert weights.is_file() and meta.is_file()
    assert cli.main(["prepare", "--all-sources"]) == 0  # a second time: everything loads
    assert "training it now" not in capsys.readouterr().out


def test_names_the_parser_knows_without_keras_match_the_kit():
    """The parser (and its checks) run before Keras is imported, so they hold copies of a
    few names; they must stay in step with the kit's own."""
    from transferkit import checks, models, strategies

    assert cli.ONLINE_NAMES == tuple(online.ONLINE_DATASETS) + tuple(online.BACKBONE_FILES)
    assert cli.DEFAULT_TIMEOUT == online.DEFAULT_TIMEOUT
    assert checks.PRESET_NAMES == tuple(sorted(tk.environment.PRESETS))
    assert strategies.HEAD == models.HEAD
    presets = tk.environment.PRESETS.values()
    assert all(len(p.widths) == len(strategies.DEFAULT_BLOCKS) for p in presets)
    assert tk.models.block_names(tk.build_model(10)) == list(strategies.DEFAULT_BLOCKS)
    for s in tk.STRATEGIES.values():
        assert s.min_epochs() == len(s.phases(tk.models.block_names(tk.build_model(10))))


def test_compare_reports_what_each_strategy_transferred(tmp_path, capsys):
    tk.set_seed(5)
    weights = tk.save_weights(tk.build_model(26, name="source"), tmp_path / "src.weights.h5")
    out = tmp_path / "cmp"
    assert cli.main(["compare", "--strategies", "scratch", "feature_extraction", "--shots", "1",
                     "--epochs", "1", "--test-per-class", "2", "--source-weights", str(weights),
                     "--out", str(out)]) == 0
    stderr = capsys.readouterr().err
    assert "scratch: test accuracy" in stderr and "nothing transferred (from scratch)" in stderr
    assert ("feature_extraction: test accuracy" in stderr and
            "loaded 6 of 6 backbone layers from src.weights.h5; new: head" in stderr)
    rows, data = read_outputs(out, "compare")
    assert [r["transfer"] for r in rows] == ["nothing transferred (from scratch)",
                                             "loaded 6 of 6 backbone layers from src.weights.h5; "
                                             "new: head"]


def test_an_unexpected_error_is_one_line_naming_its_type(monkeypatch, tmp_path, capsys):
    def broken(args):
        raise KeyError("deep inside")
    monkeypatch.setitem(cli.COMMANDS, "info", broken)
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["transferkit: error: KeyError: 'deep inside' (unexpected; run again with "
                   "--debug for the traceback)"]
    with pytest.raises(KeyError):
        cli.main(["--debug", "info"])


def test_the_lazy_package_hands_out_the_public_names(monkeypatch):
    """Under ``python -m transferkit`` the package loads lazily: its module __getattr__
    gives the public names on first use (it once recursed while importing them)."""
    import transferkit

    monkeypatch.delattr(transferkit, "_api")  # as before the first use, in a lazy package
    assert transferkit.__getattr__("few_shot") is tk.few_shot
    assert transferkit.__getattr__("StrategyLab") is tk.StrategyLab
    for missing in ("nope", "_api", "__wrapped__", "logme"):  # logme: tk.choosing.logme
        with pytest.raises(AttributeError):
            transferkit.__getattr__(missing)


@pytest.mark.parametrize("argv, shots", [
    (["sweep", "--shots", "1", "all", "--pool", "60"], [1, 60]),
    (["run", "--shots", "all"], 40),
    (["compare", "--shots", "55", "--pool", "200"], 55),
])
def test_shots_all_and_a_larger_pool_resolve_before_training(tmp_path, argv, shots):
    parser = cli.build_parser()
    args = parser.parse_args(argv + ["--out", str(tmp_path / "out")])
    cli.preflight(parser, args)
    assert args.shots == shots


@pytest.mark.parametrize("argv, expected", [
    (["run", "--shots", "61", "--pool", "60"], "'61' is out of range; use an integer from 1 to 60"),
    (["sweep", "--shots", "1", "many"], "'many' is not a number of shots"),
    (["run", "--pool", "0"], "'0' is out of range; use an integer from 1 to 1000"),
])
def test_shots_beyond_the_pool_are_refused_naming_it(argv, expected, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    assert expected in capsys.readouterr().err


def test_finetune_lr_reaches_the_arguments_and_a_bad_one_is_refused(tmp_path, capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["run", "--strategy", "fine_tune_all", "--bn-mode", "train",
                              "--finetune-lr", "1e-3", "--out", str(tmp_path)])
    assert args.finetune_lr == 1e-3
    assert parser.parse_args(["sweep"]).finetune_lr is None
    with pytest.raises(SystemExit) as caught:
        cli.main(["sweep", "--finetune-lr", "0"])
    assert caught.value.code == 2 and "'0' is out of range" in capsys.readouterr().err


# ------------------------------------------------------------------ nothing half-written (issue 23)
def _interrupting_epoch_line(label):
    import keras

    class Interrupting(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt  # Ctrl-C while Keras trains

    return Interrupting()


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_ctrl_c_during_training_exits_130_and_writes_nothing(command, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setattr(cli, "epoch_line", _interrupting_epoch_line)
    out = tmp_path / "results"
    argv = [command, "--strategy" if command == "run" else "--strategies", "scratch",
            "--shots", "1", "--epochs", "2", "--test-per-class", "2", "--out", str(out)]
    if command == "sweep":  # sweep reports progress per run, not per epoch: interrupt its fit
        import transferkit.training as training
        real = training.HistoryRecorder

        class Interrupting(real):
            def on_epoch_end(self, epoch, logs=None):
                super().on_epoch_end(epoch, logs)
                raise KeyboardInterrupt
        monkeypatch.setattr(training, "HistoryRecorder", Interrupting)
    assert cli.main(argv) == 130
    assert "transferkit: interrupted; no result was written" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_a_full_disk_leaves_no_result_file(tmp_path, capsys, monkeypatch):
    import errno
    import matplotlib.figure

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    out = tmp_path / "results"
    code = cli.main(["run", "--strategy", "scratch", "--shots", "1", "--epochs", "1",
                     "--test-per-class", "2", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and "nothing was saved" in err
    assert sorted(p.name for p in out.iterdir()) == []  # not run.csv, not run.json


@pytest.mark.parametrize("out", ["", "   "])
def test_an_empty_out_is_refused(out, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--out", out])
    assert exit_.value.code == 2 and "names no folder" in capsys.readouterr().err


def test_out_through_a_broken_link_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for out in (tmp_path / "dangling", tmp_path / "dangling" / "sub", tmp_path / "a"):
        assert cli.main(["run", "--strategy", "scratch", "--out", str(out)]) == 2
        assert "symbolic link that points nowhere" in capsys.readouterr().err


def test_bn_mode_for_scratch_alone_is_refused_and_recorded_as_run_elsewhere(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--strategy", "scratch", "--bn-mode", "adapt"])
    assert exit_.value.code == 2 and "--bn-mode adapt does not apply to strategy 'scratch'" in \
        capsys.readouterr().err
    tk.set_seed(5)
    weights = tk.save_weights(tk.build_model(26, name="source"), tmp_path / "src.weights.h5")
    out = tmp_path / "compare"
    assert cli.main(["compare", "--strategies", "scratch", "feature_extraction", "--shots", "1",
                     "--epochs", "1", "--test-per-class", "2", "--bn-mode", "adapt",
                     "--source-weights", str(weights), "--out", str(out), "--quiet"]) == 0
    rows, _ = read_outputs(out, "compare")
    assert [(r["strategy"], r["bn_mode"]) for r in rows] == [("scratch", "train"),
                                                             ("feature_extraction", "adapt")]
