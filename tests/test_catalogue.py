"""The catalogue of bad inputs and misuses (docs/troubleshooting.md), one test per entry.

Every entry checks what the learner sees first: the exception's type and ONE line that
names the bad value and the fix, raised by the kit itself (not deep inside Keras or
h5py) with no chained traceback shown; and, where files are involved, that no
half-written file is left.  The test names carry the entry numbers (C01, C02, ...).
Further down: interruption (KeyboardInterrupt mid-fit, mid-save, in the lab) and
damaged caches, which must never be read as if they were whole.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import keras
import numpy as np
import pytest

import transferkit as tk
from helpers import TINY_WIDTHS, all_equal, snapshot, tiny_model
from transferkit.source import source_paths
from transferkit.files import remove_stale_temporaries, save_atomically

KIT = Path(tk.__file__).resolve().parent
TINY_RECIPE = dict(tk.SOURCE_RECIPE, train_per_class=5, epochs=1, widths=list(TINY_WIDTHS))


def assert_clear(excinfo, *needles):
    """One line with every needle (the bad value, the fix), raised by the kit, no chain."""
    exc = excinfo.value
    msg = str(exc)
    assert "\n" not in msg, f"more than one line: {msg!r}"
    for needle in needles:
        assert needle in msg, f"{needle!r} missing from {msg!r}"
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__), (
        "a chained traceback (Keras / h5py) would be shown above the message")
    origin = Path(str(excinfo.traceback[-1].path)).resolve()
    assert KIT in origin.parents, f"raised in {origin}, not by the kit's own check"


@pytest.fixture(scope="module")
def compiled():
    """A compiled, never-trained model: every check here fails before training starts."""
    return tk.compile_model(tiny_model(3, name="checked"))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    tk.set_seed(3)
    path = tmp_path_factory.mktemp("weights") / "tiny.weights.h5"
    return tk.save_weights(tk.build_model(3, widths=TINY_WIDTHS, name="saved"), path)


# --------------------------------------------------------------------------- data
def test_c01_wrong_image_shape(compiled, letters):
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (letters.x[..., 0], letters.y), epochs=1)
    assert_clear(err, "(36, 28, 28)", "(batch, 28, 28, 1)", "reshape")


def test_c02_wrong_image_dtype(compiled, letters):
    with pytest.raises(TypeError) as err:
        tk.fit(compiled, (letters.x.astype(str), letters.y), epochs=1)
    assert_clear(err, "dtype <U", "x.astype('float32')")


def test_c03_images_without_labels(compiled, letters):
    with pytest.raises(TypeError) as err:
        tk.fit(compiled, letters.x, epochs=1)
    assert_clear(err, "got ndarray", "pass (x, y)")


def test_c04_a_task_where_a_dataset_is_expected(compiled, letters):
    task = tk.Task("abc", letters, letters, letters)
    with pytest.raises(TypeError) as err:
        tk.few_shot(task, 5)
    assert_clear(err, "Task('abc'", "pass task.train")
    with pytest.raises(TypeError) as err:
        tk.fit(compiled, task, epochs=1)
    assert_clear(err, "got Task", "pass task.train")


@pytest.mark.parametrize("bad", [7, -1])
def test_c05_labels_out_of_range(compiled, letters, bad):
    y = letters.y.copy()
    y[3] = bad
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (letters.x, y), epochs=1)
    assert_clear(err, f"label {bad}", "3 outputs", "num_classes")


@pytest.mark.parametrize("y", [np.zeros(36, np.float32),
                               np.eye(3, dtype=np.int64)[np.arange(36) % 3]],
                         ids=["float", "one-hot"])
def test_c06_labels_that_are_not_class_indices(compiled, letters, y):
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (letters.x, y), epochs=1)
    assert_clear(err, f"dtype {y.dtype} and shape {y.shape}", "integer class indices",
                 "y.astype('int64')" if y.ndim == 1 else "y.argmax(axis=1)")


def test_c07_image_and_label_counts_differ(compiled, letters):
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (letters.x, letters.y[:30]), epochs=1)
    assert_clear(err, "36 images but 30 labels", "pass one label per image")


def test_c08_empty_data(compiled, letters):
    empty = letters.subset([])
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, empty, epochs=1)
    assert_clear(err, "training data is empty", "check the split or the k-shot sampler")


def test_c09_more_shots_than_a_class_has(letters):
    with pytest.raises(ValueError) as err:
        tk.few_shot(letters, 13)
    assert_clear(err, "k=13", "class 'A' has (12)", "use k <= 12")


@pytest.mark.parametrize("raw", [np.uint8, np.float32], ids=["uint8", "float32"])
def test_c34_pixels_in_0_255_instead_of_0_1(compiled, letters, raw):
    x = np.round(letters.x * 255).astype(raw)
    before = [w.numpy().copy() for w in compiled.weights]
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (x, letters.y), epochs=1)
    assert_clear(err, "pixel values reach 255", "[0, 1]", "/ 255")
    with pytest.raises(ValueError) as err:
        tk.evaluate(compiled, (x, letters.y))
    assert_clear(err, "test data pixel values reach 255")
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, compiled.weights))
    tk.fit(compiled, (x / 255.0, letters.y), epochs=1)  # the fix the message names works


def test_c35_nan_or_infinite_pixels(compiled, letters):
    x = letters.x.copy()
    x[3, 0, 0, 0], x[7, 5, 5, 0] = np.nan, np.inf
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (x, letters.y), epochs=1)
    assert_clear(err, "2 image(s) with NaN or infinite pixels", "np.nan_to_num")


# --------------------------------------------------------------------------- names and numbers
def test_c10_unknown_strategy(letters):
    with pytest.raises(ValueError) as err:
        tk.run_strategy("fine_tune", letters, None, 3, epochs=1)
    assert_clear(err, "'fine_tune'", "choose one of", "'fine_tune_top'")


def test_c11_unknown_block_name():
    with pytest.raises(ValueError) as err:
        tk.freeze(tiny_model(3), ["block1", "block9"])
    assert_clear(err, "'block9'", "['block1', 'block2', 'head']")


def test_c12_unfreezing_more_blocks_than_exist():
    with pytest.raises(ValueError) as err:
        tk.unfreeze(tiny_model(3), top=5)
    assert_clear(err, "top=5", "2 blocks", "use an integer from 0 to 2")


@pytest.mark.parametrize("lr", [0, -1e-3, 5.0, float("nan"), "fast"])
def test_c13_learning_rate_out_of_range(compiled, lr):
    with pytest.raises(ValueError) as err:
        tk.compile_model(compiled, lr)
    assert_clear(err, f"learning_rate={lr!r}", "use a positive value such as 1e-3")


@pytest.mark.parametrize("epochs", [0, 10_001])
def test_c14_epoch_count_out_of_range(compiled, letters, epochs):
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, letters, epochs=epochs)
    assert_clear(err, f"epochs={epochs!r}", "use an integer from 1 to 10000")


def test_c14_a_fractional_epoch_count_is_not_a_whole_number(compiled, letters):
    with pytest.raises(TypeError) as err:
        tk.fit(compiled, letters, epochs=2.5)
    assert_clear(err, "epochs=2.5", "not a whole number", "pass an integer")


def test_c15_training_a_model_that_was_never_compiled(letters):
    with pytest.raises(RuntimeError) as err:
        tk.fit(tiny_model(3, name="raw"), letters, epochs=1)
    assert_clear(err, "'raw'", "not compiled", "call tk.compile_model(model")


def test_c16_changing_trainable_without_compiling_again(letters):
    model = tk.compile_model(tiny_model(3, name="forgot"), 1e-2)
    tk.fit(model, letters, epochs=1, batch_size=64)
    tk.freeze(model)
    with pytest.raises(tk.RecompileError) as err:
        tk.fit(model, letters, epochs=1)
    assert_clear(err, "'forgot'", "not compiled again", "call tk.compile_model(model")


# --------------------------------------------------------------------------- weight files
def test_c17_weights_file_missing(tmp_path):
    path = tmp_path / "nowhere" / "missing.weights.h5"
    with pytest.raises(FileNotFoundError) as err:
        tk.load_matching_weights(tiny_model(3), path)
    assert_clear(err, str(path), "tk.save_weights(model, path)")


def test_c18_weights_path_that_is_not_a_path():
    with pytest.raises(TypeError) as err:
        tk.load_matching_weights(tiny_model(3), None)
    assert_clear(err, "got None", "pass e.g.", ".weights_path")


def test_c19_weights_file_with_the_wrong_suffix(tmp_path, weights_file):
    with pytest.raises(ValueError) as err:
        tk.save_weights(tiny_model(3), tmp_path / "model.h5")
    assert_clear(err, "'.weights.h5'", "rename it, e.g. model.weights.h5")
    assert list(tmp_path.iterdir()) == []  # nothing written
    renamed = tmp_path / "model.h5"
    renamed.write_bytes(Path(weights_file).read_bytes())
    with pytest.raises(ValueError) as err:
        tk.load_matching_weights(tiny_model(3), renamed)
    assert_clear(err, str(renamed), "model.weights.h5")


def test_c20_a_whole_model_file_given_as_weights(tmp_path):
    path = tmp_path / "model.keras"
    with pytest.raises(ValueError) as err:
        tk.load_matching_weights(tiny_model(3), path)
    assert_clear(err, str(path), "keras.saving.load_model(path)", "model.weights.h5")
    with pytest.raises(ValueError) as err:
        tk.save_weights(tiny_model(3), path)
    assert_clear(err, "tk.save_model")
    assert list(tmp_path.iterdir()) == []


def test_c21_a_folder_given_as_weights_file(tmp_path):
    folder = tmp_path / "run.weights.h5"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as err:
        tk.load_matching_weights(tiny_model(3), folder)
    assert_clear(err, str(folder), "is a folder", "pass the path of a file inside it")


def test_c22_truncated_weights_file(tmp_path, weights_file):
    cut = tmp_path / "cut.weights.h5"
    data = Path(weights_file).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    model = tiny_model(3)
    before = snapshot(model)
    with pytest.raises(ValueError) as err:
        tk.load_matching_weights(model, cut)
    assert_clear(err, str(cut), "truncated", "delete it and save again")
    assert all_equal(snapshot(model), before)  # nothing half-loaded


def test_c23_weights_from_another_architecture(tmp_path):
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="alpha")], name="mlp")
    path = tmp_path / "mlp.weights.h5"
    other.save_weights(path)
    model = tiny_model(3)
    before = snapshot(model)
    with pytest.raises(ValueError) as err:
        tk.load_matching_weights(model, path)
    assert_clear(err, str(path), "another architecture", "alpha",
                 "build the model with tk.build_model")
    assert all_equal(snapshot(model), before)


def test_c24_head_of_another_size_with_strict_loading(weights_file):
    model = tiny_model(5)
    before = snapshot(model)
    with pytest.raises(ValueError) as err:
        tk.load_matching_weights(model, weights_file, strict=True)
    assert_clear(err, "layer 'head'", "8x3", "8x5", "strict=False")
    assert all_equal(snapshot(model), before)


def test_c25_transfer_strategy_without_source_weights(letters):
    with pytest.raises(ValueError) as err:
        tk.run_strategy("fine_tune_top", letters, None, 3, epochs=1)
    assert_clear(err, "'fine_tune_top'", "pass source_weights=", "or use 'scratch'")


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_c26_bad_seed(seed):
    with pytest.raises(ValueError) as err:
        tk.set_seed(seed)
    assert_clear(err, f"seed={seed!r}", "non-negative integer, e.g. seed=0")


def test_c27_lab_settings_out_of_range_are_a_message_not_a_traceback(tmp_path):
    task = tk.target_task(train_per_class=3, val_per_class=1, test_per_class=1)
    source = tk.save_weights(tk.build_model(26, name="source"), tmp_path / "s.weights.h5")
    lab = tk.StrategyLab(SimpleNamespace(weights_path=source), task, shots=2)
    for settings, needles in (({"shots": 0}, ("shots=0", "use an integer from 1 to 3")),
                              ({"learning_rate": 5.0}, ("learning_rate=5.0",
                                                tk.settings.options()["learning_rate"].rule())),
                              ({"strategy": "magic"}, ("'magic'", "choose one of"))):
        assert lab.run(**settings) is None
        assert "\n" not in lab.message and all(n in lab.message for n in needles), lab.message
        assert lab.results == [] and not lab.busy


def test_c28_unknown_source_recipe():
    with pytest.raises(ValueError) as err:
        tk.source_model("huge")
    assert_clear(err, "'huge'", "choose one of", "'letters'")


# --------------------------------------------------------------------------- offline
def test_c29_online_dataset_while_offline(monkeypatch):
    """TRANSFERKIT_OFFLINE=1: the real code path, no network touched, fails at once."""
    monkeypatch.setenv("TRANSFERKIT_OFFLINE", "1")
    with pytest.raises(tk.OfflineError) as err:
        tk.online_task("mnist", timeout=2)
    assert_clear(err, "mnist.npz", "TRANSFERKIT_OFFLINE is set", "tk.target_task()",
                 "copy mnist.npz into")
    assert not tk.online.is_cached("mnist")


def test_c29_online_dataset_without_a_network(monkeypatch):
    """The real network: where the dataset host cannot be reached (as in a classroom
    without Wi-Fi, or this test machine) the request fails within the timeout."""
    from transferkit.online import KERAS_DATASETS_URL, check_connection

    monkeypatch.delenv("TRANSFERKIT_OFFLINE", raising=False)
    if check_connection(KERAS_DATASETS_URL, timeout=2) is None:
        pytest.skip("this machine reaches the dataset host: the offline path cannot be shown")
    with pytest.raises(tk.OfflineError) as err:
        tk.online_task("mnist", timeout=2)
    assert_clear(err, "mnist.npz", "storage.googleapis.com", "tk.target_task()")
    assert not tk.online.is_cached("mnist")


# --------------------------------------------------------------------------- cache and disk
def test_c30_cache_folder_that_cannot_be_created(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(blocker / "cache"))
    with pytest.raises(OSError) as err:
        tk.source_model(TINY_RECIPE)
    assert_clear(err, str(blocker / "cache"), "set TRANSFERKIT_CACHE to a writable folder")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_c31_read_only_cache_folder(monkeypatch, capsys, tmp_path):
    """/proc: an existing folder where nobody, root included, may create files (chmod
    does not stop root, and tests may run as root)."""
    monkeypatch.setenv("TRANSFERKIT_CACHE", "/proc")
    with pytest.raises(OSError) as err:
        tk.source_model(TINY_RECIPE)
    assert_clear(err, "cannot write in the cache folder '/proc'",
                 "set TRANSFERKIT_CACHE to a writable folder")
    assert capsys.readouterr().out == ""  # refused before 20 s of training, not after
    with pytest.raises(OSError) as err:
        tk.save_weights(tiny_model(3), "/proc/model.weights.h5")
    assert_clear(err, "'/proc/model.weights.h5'", "nothing was saved", "choose a writable folder")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores permission bits; test_c31 covers root with /proc")
def test_c31_read_only_cache_folder_by_permissions(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(folder))
    try:
        with pytest.raises(OSError) as err:
            tk.source_model(TINY_RECIPE)
        assert_clear(err, str(folder), "Permission denied", "TRANSFERKIT_CACHE")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_c32_saving_onto_a_folder(tmp_path):
    folder = tmp_path / "model.weights.h5"
    folder.mkdir()
    with pytest.raises(OSError) as err:
        tk.save_weights(tiny_model(3), folder)
    assert_clear(err, str(folder), "Is a directory",
                 "choose a writable folder or another file name")
    assert [p.name for p in tmp_path.iterdir()] == ["model.weights.h5"] and folder.is_dir()


DISK_FULL_SCRIPT = textwrap.dedent(r"""
    import hashlib, os, resource, signal, sys
    from pathlib import Path
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail (EFBIG)
    import transferkit as tk

    folder = Path(sys.argv[1])
    earlier = tk.save_weights(tk.build_model(3, widths=(4, 8)), folder / "model.weights.h5")
    before = earlier.read_bytes()
    big = tk.build_model(3, widths=(16, 32, 64))   # ~100 KB of weights: cannot fit
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, resource.RLIM_INFINITY))
    for save, name in ((tk.save_model, "model.keras"), (tk.save_weights, "model.weights.h5")):
        try:
            save(big, folder / name)
            print("SAVED", name)
        except Exception as exc:
            print("ERROR", type(exc).__name__, exc.errno, ascii(str(exc)))
            print("CHAINED", exc.__cause__ is not None or not exc.__suppress_context__)
        print("FILES", sorted(os.listdir(folder)))
    print("BEFORE", hashlib.sha256(before).hexdigest())
    sys.stdout.flush()
    # h5py's leftovers of a failed HDF5 write can crash the process when freed, or when h5py
    # is used again (an h5py limitation, see docs/troubleshooting.md): leave at once, without
    # touching h5py; the test reads the earlier file in its own process
    os._exit(0)
""")


@pytest.fixture(scope="module", autouse=True)
def disk_full_run(tmp_path_factory):
    """Starts DISK_FULL_SCRIPT in a fresh process when this module starts (its TensorFlow
    import takes ~10 s, overlapping the other tests); test_c33 reads the result."""
    if sys.platform == "win32":
        yield None
        return
    folder = tmp_path_factory.mktemp("disk-full")
    env = dict(os.environ, TRANSFERKIT_CACHE=str(folder / "cache"))
    proc = subprocess.Popen([sys.executable, "-c", DISK_FULL_SCRIPT, str(folder)], cwd=folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield SimpleNamespace(proc=proc, folder=folder)
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.mark.skipif(sys.platform == "win32", reason="needs resource.RLIMIT_FSIZE")
def test_c33_full_disk_while_saving(disk_full_run):
    """A real failed write: a fresh process whose file-size limit (RLIMIT_FSIZE) makes the
    kernel refuse to grow any file past 16 KB, as a full disk refuses to grow it at all."""
    out, err = disk_full_run.proc.communicate(timeout=300)
    assert disk_full_run.proc.returncode == 0, err[-3000:]
    tmp_path = disk_full_run.folder
    lines = out.splitlines()
    errors = [l for l in lines if l.startswith("ERROR")]
    assert len(errors) == 2, out
    for error, name in zip(errors, ("model.keras", "model.weights.h5")):
        assert error.startswith("ERROR OSError 27 "), error  # EFBIG, kept as the errno
        assert "\\n" not in error, error  # one line, not h5py's multi-line report
        assert (f"could not write '{tmp_path / name}' (File too large); nothing was saved: "
                "free some disk space or choose another folder") in error
    assert lines.count("CHAINED False") == 2
    # neither the target nor a temporary file: only the earlier file, intact
    assert lines.count("FILES ['model.weights.h5']") == 2
    # byte-identical to what was saved before the failures, and still a readable weights file
    earlier = tmp_path / "model.weights.h5"
    assert f"BEFORE {hashlib.sha256(earlier.read_bytes()).hexdigest()}" in lines
    assert len(tk.read_weights_file(earlier)) == 5


# --------------------------------------------------------------------------- issue 16: silent
# wrong results, unclear messages and the command line (C36 ...)
CLI_TIMEOUT = 60  # the checks answer before Keras is imported: seconds, not the 10-15 s import


def run_cli(*argv, env=None, cwd=None):
    """``python -X importtime -m transferkit ...`` in a fresh process: (returncode, the
    program's stderr lines, stdout, the modules it imported)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "transferkit", *argv],
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})),
                          cwd=cwd, timeout=CLI_TIMEOUT)
    imported, lines = set(), []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:"):
            imported.add(line.rsplit("|", 1)[-1].strip())
        else:
            lines.append(line)
    return proc.returncode, lines, proc.stdout, imported


def assert_cli_error(code, lines, imported, status, *needles):
    """Exit status, one line ``transferkit: error: ...`` with every needle, no traceback, and
    answered before Keras (or TensorFlow) was imported."""
    assert code == status, (code, lines)
    assert len(lines) == 1 and lines[0].startswith("transferkit: error: "), lines
    for needle in needles:
        assert needle in lines[0], f"{needle!r} missing from {lines[0]!r}"
    assert not {"keras", "tensorflow", "numpy"} & imported, "checked only after heavy imports"


@pytest.fixture(scope="module")
def narrow_weights(tmp_path_factory):
    """Weights of another kit CNN: narrower (every shape differs) and shallower (2 blocks)."""
    folder = tmp_path_factory.mktemp("narrow")
    tk.set_seed(4)
    narrow = tk.save_weights(tk.build_model(26, widths=TINY_WIDTHS, name="source"),
                             folder / "narrow.weights.h5")
    shallow = tk.save_weights(tk.build_model(26, widths=(16, 32), name="source"),
                              folder / "shallow.weights.h5")
    return SimpleNamespace(narrow=narrow, shallow=shallow)


@pytest.mark.parametrize("which, needle", [("narrow", "0 of the 6 backbone layers"),
                                           ("shallow", "4 of the 6 backbone layers")])
def test_c36_transfer_that_transfers_nothing_or_part(letters, narrow_weights, capsys, which,
                                                     needle):
    path = getattr(narrow_weights, which)
    with pytest.raises(ValueError) as err:
        tk.run_strategy("feature_extraction", letters, None, 3, source_weights=path, epochs=1)
    assert_clear(err, str(path), needle, "random start", "tk.source_model().weights_path",
                 "allow_partial=True")
    assert capsys.readouterr().out == ""  # refused before training
    with pytest.raises(ValueError) as err:  # the same check, in the library's loader
        tk.load_matching_weights(tk.build_model(3), path, require_backbone=True)
    assert_clear(err, needle)


def test_c36_allow_partial_transfers_what_fits_and_says_so(letters, narrow_weights):
    run = tk.run_strategy("feature_extraction", letters, None, 3, source_weights=narrow_weights.shallow,
                          epochs=1, allow_partial=True)
    assert isinstance(run.transfer, tk.transfer.LoadReport) and not run.transfer.complete
    assert run.transfer.backbone_missing == ["block3_conv", "block3_bn"]
    assert run.describe_transfer().startswith(
        "loaded 4 of 6 backbone layers from shallow.weights.h5 (2 kept their random start")
    assert "\n" not in run.describe_transfer()


@pytest.mark.parametrize("low, high", [(-1.0, 1.0), (-0.2, 1.0)], ids=["[-1, 1]", "negative"])
def test_c37_pixels_in_minus_1_to_1(compiled, letters, low, high):
    x = (letters.x * (high - low) + low).astype(np.float32)
    before = snapshot(compiled)
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (x, letters.y), epochs=1)
    assert_clear(err, f"range from {low:g} to {high:g}", "[-1, 1] values", "[0, 1]",
                 "(x + 1) / 2")
    with pytest.raises(ValueError) as err:
        tk.evaluate(compiled, (x, letters.y))
    assert_clear(err, "test data pixel values range from")
    assert all_equal(snapshot(compiled), before)


def test_c38_standardised_pixels(compiled, letters):
    x = ((letters.x - letters.x.mean()) / letters.x.std()).astype(np.float32)
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (x, letters.y), epochs=1)
    assert_clear(err, "standardised values (mean 0, std 1)", "[0, 1]",
                 "x = (x - x.min()) / (x.max() - x.min())")
    assert "0-255" not in str(err.value)  # not misdiagnosed as raw 0-255 pixels


def test_c39_blank_images(compiled, letters):
    x = np.zeros_like(letters.x)  # e.g. a failed load, or a conversion that lost the pixels
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (x, letters.y), epochs=1)
    assert_clear(err, "every pixel of training data is 0", "check how they were loaded",
                 "not x // 255")


def test_c40_pixels_divided_by_255_twice(compiled, letters):
    x = np.round(letters.x * 255).astype(np.float32) / 255 / 255
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (x, letters.y), epochs=1)
    assert_clear(err, "reach only 0.00392", "divided by 255 twice", "divide 0-255 values once")


def test_c41_few_shot_without_a_seed(letters):
    with pytest.raises(ValueError) as err:
        tk.few_shot(letters, 2, seed=None)
    assert_clear(err, "seed=None would draw differently on every call", "e.g. seed=0")


@pytest.mark.parametrize("seed", ["abc", -1, 1.5])
def test_c42_few_shot_with_a_bad_seed(letters, seed):
    for sample in (lambda: tk.few_shot(letters, 2, seed=seed),
                   lambda: tk.data.split(letters, seed=seed)):
        with pytest.raises(ValueError) as err:
            sample()
        assert_clear(err, f"seed={seed!r} must be a non-negative integer", "e.g. seed=0")


@pytest.mark.parametrize("strategy, epochs, phases", [("fine_tune_top", 1, 2),
                                                      ("gradual_unfreezing", 3, 4)])
def test_c43_fewer_epochs_than_the_strategy_has_phases(letters, weights_file, capsys, strategy,
                                                       epochs, phases):
    with pytest.raises(ValueError) as err:
        tk.run_strategy(strategy, letters, None, 3, source_weights=weights_file, epochs=epochs)
    assert_clear(err, f"epochs={epochs} is too few for strategy {strategy!r}",
                 f"{phases} phases", f"use epochs >= {phases}")
    assert capsys.readouterr().out == ""
    assert tk.strategies.get_strategy(strategy).min_epochs() == phases


def test_c44_training_data_with_a_single_class(compiled, letters):
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (letters.x, np.full(36, 2)), epochs=1)
    assert_clear(err, "single class (label 2, all 36 examples)", "at least 2 classes")


@pytest.mark.parametrize("strategies", [[], "scratch", None], ids=["empty", "string", "None"])
def test_c45_sweep_without_a_list_of_strategies(letters, strategies):
    task = tk.Task("abc", letters, letters, letters)
    with pytest.raises(ValueError) as err:
        tk.sweep(strategies, task, shots=(1,), epochs=1)
    assert_clear(err, f"strategies={strategies!r}", "non-empty list",
                 "['scratch', 'fine_tune_top']")


@pytest.mark.parametrize("shots, needle", [([], "shots=[]"), ((1, 13), "holds 13"),
                                           ((2.0,), "holds 2.0")])
def test_c46_sweep_with_bad_shots(letters, shots, needle):
    task = tk.Task("abc", letters, letters, letters)
    with pytest.raises((TypeError, ValueError)) as err:  # 2.0: not a whole number
        tk.sweep(["scratch"], task, shots=shots, epochs=1)
    assert_clear(err, needle, "e.g. shots=(1, 5, 10)" if not shots else
                 "use an integer from 1 to 12 or 'all'")
    with pytest.raises(TypeError) as err:
        tk.sweep(["scratch"], letters, shots=(1,), epochs=1)
    assert_clear(err, "sweep needs a tk.Task", "got Dataset", "tk.target_task()")


def test_c47_evaluating_a_head_built_for_another_task(compiled, letters):
    digits = tk.Dataset(letters.x, letters.y, tuple(tk.data.DIGITS), "digits test")
    for score in (tk.evaluate, tk.class_report):
        with pytest.raises(ValueError) as err:
            score(compiled, digits)
        assert_clear(err, "model 'checked' has 3 outputs but 'digits test' has 10 classes",
                     "built for another task", "tk.build_model(10)")


def test_c48_learning_rate_as_a_string(compiled, letters, weights_file):
    with pytest.raises(ValueError) as err:
        tk.compile_model(compiled, "1e-3")
    assert_clear(err, "learning_rate='1e-3' is a string, not a number", "such as 1e-3",
                 "without quotes")
    with pytest.raises(ValueError) as err:
        tk.run_strategy("scratch", letters, None, 3, epochs=1, learning_rate="1e-3")
    assert_clear(err, "learning_rate='1e-3' is a string",
                 tk.settings.options()["learning_rate"].rule(), "without quotes")


def test_c49_over_seeds_with_a_number_of_seeds_or_no_function():
    with pytest.raises(ValueError) as err:
        tk.over_seeds(lambda seed: 0.5, seeds=3)
    assert_clear(err, "seeds=3 is not a sequence of seeds", "seeds=(0, 1, 2) or seeds=range(3)")
    with pytest.raises(TypeError) as err:
        tk.over_seeds(0.5)
    assert_clear(err, "fn=0.5 is not a function", "over_seeds(lambda seed:")
    assert tk.over_seeds(lambda seed: 0.5, seeds=range(2)).values == (0.5, 0.5)  # the fix works


def test_c50_over_seeds_with_a_nan_result():
    with pytest.raises(ValueError) as err:
        tk.over_seeds(lambda seed: float("nan") if seed == 1 else 0.5)
    assert_clear(err, "fn(seed=1) returned nan", "check that run")


@pytest.mark.parametrize("shape", [(28, 28), (1, 28, 28, 1), "28x28"])
def test_c51_build_model_with_an_input_shape_without_channels(shape):
    with pytest.raises(ValueError) as err:
        tk.build_model(3, input_shape=shape)
    assert_clear(err, f"input_shape={shape!r} must be (height, width, channels)",
                 "input_shape=(28, 28, 1)")


@pytest.mark.parametrize("kwargs, needles", [
    ({"num_classes": 1}, ("num_classes=1", "tk.build_model(task.num_classes)")),
    ({"num_classes": 3, "widths": "abc"}, ("widths='abc'", "widths=(16, 32, 64)")),
    ({"num_classes": 3, "widths": (16, 0)}, ("widths=(16, 0)", "one positive channel count")),
])
def test_c52_build_model_with_bad_class_count_or_widths(kwargs, needles):
    with pytest.raises(ValueError) as err:
        tk.build_model(**kwargs)
    assert_clear(err, *needles)


@pytest.mark.parametrize("y, needles", [
    (np.array(list("ABC") * 12), ("dtype <U1", "np.unique(y, return_inverse=True)")),
    (np.arange(36).reshape(36, 1) % 3, ("shape (36, 1)", "y = y.ravel()")),
    (np.linspace(0, 2, 36), ("dtype float64", "not whole numbers", "y.argmax(axis=1)")),
], ids=["strings", "column", "fractions"])
def test_c53_labels_as_strings_a_column_or_fractions(compiled, letters, y, needles):
    with pytest.raises(ValueError) as err:
        tk.fit(compiled, (letters.x, y), epochs=1)
    assert_clear(err, "labels must be a 1-D array of integer class indices", *needles)


def test_c54_shots_as_a_float(letters):
    with pytest.raises(TypeError) as err:
        tk.few_shot(letters, 5.0)
    assert_clear(err, "must be an integer, got 5.0", "pass a whole number, e.g. 5")


@pytest.mark.parametrize("backend", ["bogus", "numpy"])
def test_c55_keras_backend_that_is_not_one_the_kit_trains_with(backend):
    code = ("import sys\ntry:\n    import transferkit\nexcept ValueError as exc:\n"
            "    print(type(exc).__name__, exc, 'keras' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, KERAS_BACKEND=backend), timeout=CLI_TIMEOUT)
    assert proc.stdout.strip() == (
        f"ValueError KERAS_BACKEND={backend!r} is not a backend the kit can train with; set it "
        "to one of ['jax', 'tensorflow', 'torch'], or unset it to use TensorFlow False"), proc
    code_, lines, _, imported = run_cli("info", env={"KERAS_BACKEND": backend})
    assert_cli_error(code_, lines, imported, 2, f"KERAS_BACKEND={backend!r}", "unset it")


def test_c56_keras_backend_that_is_not_installed():
    code = textwrap.dedent("""
        import importlib.util, sys
        real = importlib.util.find_spec  # as if jax were not installed (CI installs it)
        importlib.util.find_spec = lambda name, *a: None if name == "jax" else real(name, *a)
        try:
            import transferkit
        except ImportError as exc:
            print(type(exc).__name__, exc, "keras" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, KERAS_BACKEND="jax"), timeout=CLI_TIMEOUT)
    assert proc.stdout.strip() == (
        "ImportError KERAS_BACKEND='jax' but jax is not installed; install it (python -m pip "
        "install -r requirements-backends.txt) or unset KERAS_BACKEND to use TensorFlow False"), proc


@pytest.mark.parametrize("argv, needles", [
    (["run", "--shots", "0"], ("argument --shots: '0' is out of range", "from 1 to 40",
                               "see python -m transferkit run --help")),
    (["run", "--strategy", "gradual_unfreezing", "--epochs", "3"],
     ("--epochs 3 is too few for strategy 'gradual_unfreezing'", "--epochs 4 or more")),
    (["sweep", "--learning-rate", "fast"], ("'fast' is not a number", "e.g. --learning-rate")),
    ([], ("the following arguments are required: COMMAND",)),
], ids=["shots-0", "epochs-below-phases", "learning-rate", "no-command"])
def test_c57_command_line_argument_errors_answer_before_keras(tmp_path, argv, needles):
    code, lines, stdout, imported = run_cli(*argv, cwd=tmp_path)
    assert_cli_error(code, lines, imported, 2, *needles)
    assert stdout == "" and list(tmp_path.iterdir()) == []  # nothing written


def test_c57_help_answers_before_keras(tmp_path):
    code, lines, stdout, imported = run_cli("--help", cwd=tmp_path)
    assert code == 0 and lines == [] and "fine_tune_top" in stdout
    assert not {"keras", "tensorflow", "numpy"} & imported


def test_c58_out_is_an_existing_file(tmp_path):
    target = tmp_path / "results"
    target.write_text("keep me")
    code, lines, stdout, imported = run_cli("run", "--strategy", "scratch", "--out", str(target))
    assert_cli_error(code, lines, imported, 2, f"--out {str(target)!r} is a file, not a folder",
                     "e.g. --out results")
    assert target.read_text() == "keep me" and [p.name for p in tmp_path.iterdir()] == ["results"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_c59_out_in_an_unwritable_place(tmp_path):
    code, lines, _, imported = run_cli("compare", "--strategies", "scratch", "--out",
                                       "/proc/results")
    assert_cli_error(code, lines, imported, 2, "--out '/proc/results' is not writable",
                     "choose a writable folder")
    holder = tmp_path / "out"
    (holder / "run.csv").mkdir(parents=True)  # a folder where a results file goes
    code, lines, _, imported = run_cli("run", "--strategy", "scratch", "--out", str(holder))
    assert_cli_error(code, lines, imported, 2, "holds a folder named 'run.csv'",
                     "remove or rename it")


def test_c60_cache_variable_pointing_at_a_file(tmp_path, monkeypatch):
    blocker = tmp_path / "cache.txt"
    blocker.write_text("")
    code, lines, _, imported = run_cli("prepare", env={"TRANSFERKIT_CACHE": str(blocker)})
    assert_cli_error(code, lines, imported, 2,
                     f"the cache folder {str(blocker)!r} is a file, not a folder",
                     "set TRANSFERKIT_CACHE to a writable folder")
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(blocker))
    with pytest.raises(OSError) as err:  # the library: the same gist
        tk.cache_dir()
    assert_clear(err, str(blocker), "set TRANSFERKIT_CACHE to a writable folder")
    assert blocker.read_text() == ""


def test_c61_unknown_preset_variable_on_the_command_line(tmp_path):
    code, lines, _, imported = run_cli("run", "--out", str(tmp_path / "r"),
                                       env={"TRANSFERKIT_PRESET": "bogus"})
    assert_cli_error(code, lines, imported, 2, "TRANSFERKIT_PRESET='bogus' is unknown",
                     "choose one of ['cpu', 'gpu']")
    assert list(tmp_path.iterdir()) == []


def test_c62_truncated_source_weights_on_the_command_line(tmp_path, weights_file, capsys):
    from transferkit import cli

    cut = tmp_path / "cut.weights.h5"
    data = Path(weights_file).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    argv = ["run", "--strategy", "feature_extraction", "--source-weights", str(cut),
            "--out", str(out)]
    assert cli.main(argv) == 1
    stderr = capsys.readouterr().err.splitlines()
    assert len(stderr) == 1 and stderr[0].startswith(f"transferkit: error: {str(cut)!r} is not a "
                                                     "readable Keras weights file"), stderr
    assert "delete it and save again" in stderr[0] and not out.exists()
    with pytest.raises(ValueError):  # --debug: the traceback, for a bug report
        cli.main(argv + ["--debug"])


def test_c63_source_weights_of_another_kit_cnn_on_the_command_line(tmp_path, narrow_weights,
                                                                   capsys):
    from transferkit import cli

    out = tmp_path / "out"
    argv = ["run", "--strategy", "fine_tune_top", "--source-weights", str(narrow_weights.narrow),
            "--shots", "1", "--epochs", "2", "--test-per-class", "2", "--out", str(out)]
    assert cli.main(argv) == 1
    stdout, stderr = capsys.readouterr()
    lines = stderr.splitlines()
    assert len(lines) == 1 and "fills only 0 of the 6 backbone layers" in lines[0], lines
    assert "--allow-partial" in lines[0] and stdout == "" and not out.exists()
    assert cli.main(argv + ["--allow-partial", "--quiet"]) == 0
    rows = json.loads((out / "run.json").read_text())["results"]
    assert rows[0]["transfer"].startswith("loaded 0 of 6 backbone layers from narrow.weights.h5")


def test_c64_images_too_small_for_the_blocks():
    """Found by tests/test_fuzz.py: Keras failed deep inside MaxPooling2D."""
    with pytest.raises(ValueError) as err:
        tk.build_model(3, input_shape=(2, 2, 1))
    assert_clear(err, "input_shape=(2, 2, 1) is too small for 3 blocks",
                 "at least 3x3 pixels (resize them) or fewer widths")


@pytest.mark.parametrize("call, error, needles", [
    (lambda: tk.augmentation_layers(rotation=0.7), ValueError,
     ("rotation=0.7 is out of range", "a fraction from 0 to 0.5", "e.g. rotation=0.1")),
    (lambda: tk.augmentation_layers(rotation=0, translation=0, zoom=0), ValueError,
     ("all 0: nothing to augment", "augmentation=None")),
    (lambda: tk.build_model(3, widths=TINY_WIDTHS, augmentation="flip"), TypeError,
     ("augmentation='flip' is not a Keras layer", "tk.augmentation_layers(...)")),
])
def test_c65_augmentation_that_cannot_work(call, error, needles):
    with pytest.raises(error) as err:
        call()
    assert_clear(err, *needles)


def test_c66_worst_mistakes_asked_for_more_images_than_there_are_or_drawn_from_scores(letters):
    model = tiny_model(3, name="mistaken")
    with pytest.raises(ValueError) as err:
        tk.worst_mistakes(model, letters, n=100)
    assert_clear(err, "n=100 is out of range", "from 1 to 36")
    with pytest.raises(TypeError) as err:
        tk.plot_mistakes(tk.evaluate(model, letters))
    assert_clear(err, "got Scores", "tk.worst_mistakes(model, test_data, n=12)")


@pytest.mark.parametrize("models, histories, error, needles", [
    ("teacher", None, TypeError, ("models=str", "{'teacher': teacher, 'student': student}")),
    ("ok", {"studnet": None}, ValueError, ("histories={'studnet': None}", "labels of models")),
    ("ok", {"student": [0.5]}, TypeError, ("histories['student'] is a list", "RunHistory")),
])
def test_c67_complexity_given_no_models_or_foreign_histories(letters, models, histories, error,
                                                             needles):
    models = {"student": tiny_model(3, name="student")} if models == "ok" else models
    with pytest.raises(error) as err:
        tk.complexity(models, letters, histories=histories)
    assert_clear(err, *needles)


def test_c68_a_figure_that_fails_the_figure_check():
    """A figure drawn with matplotlib in a notebook, passed to tk.plots.check_figure: no title,
    no axis labels, two curves without a legend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="train")
    ax.plot([0, 1], [1, 0], label="validation")
    with pytest.raises(tk.plots.FigureCheckError) as err:
        tk.plots.check_figure(fig, "my plot")
    assert_clear(err, "figure my plot", "axes 1 has no title", "no x label", "no y label",
                 "2 labelled curves or point sets but no legend", "give every axes a title")
    with pytest.raises(TypeError) as err:
        tk.plots.check_figure(ax)
    assert_clear(err, "got Axes", "matplotlib Figure")


def test_c69_unknown_batchnorm_mode(letters):
    for call in (lambda: tk.run_strategy("scratch", letters, None, 3, epochs=1, bn_mode="adabn"),
                 lambda: tk.sweep(["scratch"], tk.target_task(4, 1, 1), shots=[1], epochs=1,
                                  bn_mode="adabn")):
        with pytest.raises(ValueError) as err:
            call()
        assert_clear(err, "bn_mode='adabn' is unknown", "['frozen', 'adapt', 'train']")


def test_c70_unlabelled_images_without_adapt(letters):
    with pytest.raises(ValueError) as err:
        tk.run_strategy("feature_extraction", letters, None, 3, epochs=1, source_weights="x",
                        unlabelled=letters.x)
    assert_clear(err, "only with bn_mode='adapt'", "bn_mode='frozen'", "leave out unlabelled=")


# --------------------------------------------------------------------------- interruption
class InterruptAt(keras.callbacks.Callback):
    """Ctrl-C (Kernel -> Interrupt) arriving after training step ``step`` of epoch ``epoch``."""

    def __init__(self, epoch, step):
        super().__init__()
        self.epoch, self.step, self.current = epoch, step, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.step):
            raise KeyboardInterrupt


def test_interrupted_fit_keeps_a_usable_model_and_the_finished_epochs(letters, capsys):
    model = tk.compile_model(tiny_model(3, name="interrupted"), 1e-2)
    history = tk.fit(model, letters, letters, epochs=4, batch_size=8,
                     callbacks=[InterruptAt(epoch=1, step=2)])
    assert history.interrupted and history.epochs == 1  # epoch 0 finished, epoch 1 did not
    assert all(math.isfinite(history.metrics[k][0]) for k in tk.history.METRICS)
    assert "Interrupted after 1 epochs" in capsys.readouterr().out
    weights = snapshot(model)
    assert all(np.isfinite(a).all() for arrays in weights.values() for a in arrays)
    pred = model.predict(letters.x, verbose=0)
    assert pred.shape == (36, 3) and np.isfinite(pred).all()
    assert 0.0 <= tk.evaluate(model, letters).accuracy <= 1.0
    more = tk.fit(model, letters, epochs=1, batch_size=8)  # trains on, no recompile needed
    assert more.epochs == 1 and not more.interrupted
    assert not all_equal(snapshot(model), weights)


def test_interrupted_save_leaves_the_earlier_file_and_no_temporary(tmp_path):
    model = tiny_model(3)
    target = tk.save_weights(model, tmp_path / "model.weights.h5")
    earlier = Path(target).read_bytes()

    def write_then_interrupt(tmp):
        tiny_model(3, seed=1).save_weights(tmp)  # a whole, different file ...
        raise KeyboardInterrupt                  # ... interrupted before the rename

    with pytest.raises(KeyboardInterrupt):
        save_atomically(write_then_interrupt, target)
    assert Path(target).read_bytes() == earlier
    assert [p.name for p in tmp_path.iterdir()] == ["model.weights.h5"]


def test_interrupted_lab_run_keeps_earlier_results_and_can_run_again(monkeypatch, tmp_path):
    tk.set_seed(5)
    source = tk.save_weights(tk.build_model(26, name="source"), tmp_path / "s.weights.h5")
    task = tk.target_task(train_per_class=4, val_per_class=2, test_per_class=3)
    lab = tk.StrategyLab(SimpleNamespace(weights_path=source), task, shots=2, epochs=2)
    first = lab.run(strategy="feature_extraction")
    kept = ([dict(r) for r in lab.results], [list(h.metrics["loss"]) for h in lab.histories])

    class InterruptingCurves(tk.LiveCurves):  # a real callback: Ctrl-C after the first step
        def on_train_batch_end(self, batch, logs=None):
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("transferkit.lab.LiveCurves", InterruptingCurves)
        assert lab.run(strategy="scratch") is None
    assert "Interrupted" in lab.message and "\n" not in lab.message
    assert ([dict(r) for r in lab.results],
            [list(h.metrics["loss"]) for h in lab.histories]) == kept
    assert not lab.busy and not lab.run_button.disabled
    again = lab.run(strategy="scratch")
    assert again is not None and [r["strategy"] for r in lab.results] == [
        first["strategy"], "from scratch"]


# --------------------------------------------------------------------------- damaged caches
@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """A source-model cache built once with TINY_RECIPE; tests copy it."""
    folder = tmp_path_factory.mktemp("tiny-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERKIT_CACHE", str(folder))
        with contextlib.redirect_stdout(io.StringIO()):
            built = tk.source_model(TINY_RECIPE)
        weights, meta = source_paths(TINY_RECIPE)
    return SimpleNamespace(folder=folder, weights=weights.name, meta=meta.name,
                           snapshot=snapshot(built.model), bytes=weights.read_bytes())


def _copy_cache(tiny_cache, tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "cache"
    shutil.copytree(tiny_cache.folder, folder)
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(folder))
    return folder, folder / tiny_cache.weights, folder / tiny_cache.meta


def test_cache_metadata_records_the_weights_checksum(tiny_cache):
    import hashlib

    info = json.loads((tiny_cache.folder / tiny_cache.meta).read_text())
    assert info["sha256"] == hashlib.sha256(tiny_cache.bytes).hexdigest()


@pytest.mark.parametrize("damage", ["truncated", "other weights"])
def test_damaged_cached_weights_are_rebuilt_never_used(tiny_cache, tmp_path, monkeypatch,
                                                       capsys, damage):
    """A torn copy, or a readable file that is not the one the metadata describes
    (same architecture, other weights), is detected on load and trained again."""
    folder, weights, meta = _copy_cache(tiny_cache, tmp_path, monkeypatch)
    if damage == "truncated":
        weights.write_bytes(tiny_cache.bytes[: len(tiny_cache.bytes) // 2])
    else:
        tk.set_seed(9)
        tk.save_weights(tk.build_model(26, widths=TINY_WIDTHS, name="source"), weights)
    again = tk.source_model(TINY_RECIPE)
    out = capsys.readouterr().out
    assert "damaged or incomplete" in out and "training it again" in out and "Saved" in out
    assert all_equal(snapshot(again.model), tiny_cache.snapshot)  # same recipe, same model
    assert tk.source_model(TINY_RECIPE, verbose=False).info == json.loads(meta.read_text())
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [tiny_cache.weights, tiny_cache.meta, tiny_cache.meta + ".lock"])


def test_a_leftover_temporary_file_is_never_read(tiny_cache, tmp_path, monkeypatch, capsys):
    """A process killed mid-save leaves its temporary file; only the published pair counts."""
    folder, weights, meta = _copy_cache(tiny_cache, tmp_path, monkeypatch)
    leftover = folder / f".{weights.name}.k1ll3d.tmp.weights.h5"
    leftover.write_bytes(tiny_cache.bytes[:100])
    weights.unlink()  # the killed save never published: the cache is missing, not torn
    built = tk.source_model(TINY_RECIPE)
    assert "training it now" in capsys.readouterr().out
    assert all_equal(snapshot(built.model), tiny_cache.snapshot)
    assert leftover.read_bytes() == tiny_cache.bytes[:100]  # ignored, not mistaken for the cache


# --------------------------------------------------------------------------- issue 23: checks
# where inputs enter (C82 ...): tests/test_api_walk.py walks every public function with these
# kinds of bad input; the entries here pin the messages.
def _foreign(name="mine", softmax=False):
    """A classifier of one's own: Flatten + Dense, the kit's input and output shapes."""
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax" if softmax else None)],
                            name=name)


def _with_nan(x, at=(2, 3, 3, 0)):
    x = np.array(x, copy=True)
    x[at] = np.nan
    return x


@pytest.mark.parametrize("call, what", [
    (lambda m, x: tk.adapt_batchnorm(m, x), "unlabelled images"),
    (lambda m, x: tk.extract_features(m, x), "images"),
    (lambda m, x: tk.predict(m, x), "images"),
    (lambda m, x: tk.teacher_logits(m, x), "images"),
    (lambda m, x: tk.feature_maps(m, x[2]), "image"),
    (lambda m, x: tk.unlabelled_rest(x, x[:3]), "pool"),
], ids=["adapt_batchnorm", "extract_features", "predict", "teacher_logits", "feature_maps",
        "unlabelled_rest"])
def test_c82_nan_or_0_255_images_in_functions_that_skipped_the_data_check(letters, call, what):
    """They passed NaN pixels (BatchNorm statistics became NaN: 73.5 % -> 10 %; features and
    'confidence nan') and 0-255 images (AdaBN on them: 10 % instead of 68 %) silently."""
    model = tiny_model(3, name="checked")
    before = snapshot(model)
    with pytest.raises(ValueError) as err:
        call(model, _with_nan(letters.x))
    assert_clear(err, f"{what} has 1 image(s) with NaN or infinite pixels", "np.nan_to_num")
    with pytest.raises(ValueError) as err:
        call(model, np.round(letters.x * 255).astype(np.uint8))
    assert_clear(err, f"{what} pixel values reach 255", "x.astype('float32') / 255")
    assert all_equal(snapshot(model), before)  # adapt_batchnorm changed nothing


@pytest.mark.parametrize("change, needles", [
    (lambda d: setattr(d, "y", d.y - 1), ("has label -1 but 3 class names ('A', 'B', 'C')",
                                          "(labels 0..2)", "pass labels in that range")),
    (lambda d: setattr(d, "y", d.y + 1), ("has label 3 but 3 class names",)),
    (lambda d: setattr(d, "y", d.y.astype(np.float32)), ("dtype float32",
                                                        "convert with y.astype('int64')")),
    (lambda d: setattr(d, "y", d.y[:30]), ("36 images but 30 labels",
                                           "set x and y together")),
], ids=["negative", "equal-to-classes", "float", "x-and-y-apart"])
def test_c83_labels_a_dataset_cannot_hold(letters, change, needles):
    """few_shot failed inside NumPy on them, or at k=1 dropped the image silently; a Dataset
    whose x and y were changed apart (found by tests/test_fuzz.py) failed with an IndexError."""
    changed = copy.copy(letters)
    change(changed)
    with pytest.raises(ValueError) as err:
        tk.few_shot(changed, 1)
    assert_clear(err, "dataset 'abc train'", *needles)
    with pytest.raises(ValueError) as err:  # and when a Dataset is made
        tk.Dataset(changed.x, changed.y, letters.class_names, "made")
    assert_clear(err, "Dataset 'made'", needles[0])


@pytest.mark.parametrize("call, needles", [
    (lambda m: tk.freeze(m), ("model 'mine' has no blocks named block1_..., block2_...",
                              "not built by tk.build_model", "layer.trainable = False")),
    (lambda m: tk.unfreeze(m, top=1), ("tk.unfreeze works on the kit's named blocks",
                                       "layer.trainable = True")),
    (lambda m: tk.param_summary(m), ("has no layer named 'head'", "model.summary()")),
    (lambda m: tk.extract_features(m, np.zeros((1, 28, 28, 1))),
     ("has no layer named 'features'", "keras.Model(model.input")),
    (lambda m: tk.with_head(m, tiny_model(3)), ("backbone_model 'mine' has no blocks",
                                                "pass models built with tk.build_model")),
    (lambda m: tk.adapt_batchnorm(m, np.random.default_rng(0).random((4, 28, 28, 1))),
     ("has no BatchNormalization layers: there is nothing to adapt",)),
    (lambda m: tk.weight_change(m, m), ("by='block' groups the kit's blocks", "use by='layer'")),
    (lambda m: tk.attach_l2sp(m), ("L2-SP anchors every layer but the new head",)),
], ids=["freeze", "unfreeze", "param_summary", "extract_features", "with_head",
        "adapt_batchnorm", "weight_change", "attach_l2sp"])
def test_c84_a_model_the_kit_did_not_build_where_the_kit_reads_its_blocks(call, needles):
    """freeze froze nothing and returned [], adapt_batchnorm adapted nothing, the others
    failed inside Keras ('No such layer: head')."""
    model = _foreign()
    flags = [layer.trainable for layer in model.layers]
    with pytest.raises(ValueError) as err:
        call(model)
    assert_clear(err, *needles)
    assert [layer.trainable for layer in model.layers] == flags


def test_c85_blocks_and_top_together():
    """freeze(model, 'block1', top=1) froze block3: top won, silently."""
    model = tiny_model(3)
    with pytest.raises(ValueError) as err:
        tk.freeze(model, "block1", top=1)
    assert_clear(err, "freeze(model, blocks='block1', top=1) names blocks twice",
                 "pass either blocks=[...] (by name) or top=n")
    assert all(layer.trainable for layer in model.layers)
    with pytest.raises(TypeError) as err:
        tk.unfreeze(model, blocks=3)
    assert_clear(err, "blocks=3 must be a block name or a list of them")


@pytest.mark.parametrize("block_lr, error, needles", [
    ({"blok1": 0.1}, ValueError, ("block_lr names 'blok1'", "['block1', 'block2', 'head']")),
    ({"block1": float("nan")}, ValueError, ("block_lr['block1']=nan is out of range",
                                           "a positive multiplier")),
    ({"block1": 0}, ValueError, ("block_lr['block1']=0", "tk.freeze it")),
    ({"head": -1.0}, ValueError, ("block_lr['head']=-1.0",)),
    ([0.1, 1.0], TypeError, ("block_lr=[0.1, 1.0] must be a dict",
                             "block_lr={'block1': 0.1}")),
], ids=["unknown-block", "nan", "zero", "negative", "list"])
def test_c86_block_learning_rates_that_cannot_be_right(block_lr, error, needles):
    """An unknown block was ignored; a NaN multiplier gave NaN weights after one epoch."""
    with pytest.raises(error) as err:
        tk.compile_model(tiny_model(3), block_lr=block_lr)
    assert_clear(err, *needles)


def test_c87_a_model_that_ends_in_a_softmax(letters):
    """tk.predict applied softmax to its probabilities again (every 'confidence' near 1/3)."""
    article = _foreign("article", softmax=True)
    probabilities = keras.ops.convert_to_numpy(article(letters.x[:5]))
    np.testing.assert_allclose(tk.predict(article, letters.x[:5]).probabilities, probabilities,
                               rtol=1e-6)
    with pytest.raises(ValueError) as err:
        tk.compile_model(article)
    assert_clear(err, "model 'article' ends in a softmax", "loss reads logits",
                 "loss='sparse_categorical_crossentropy'")
    with pytest.raises(ValueError) as err:
        tk.teacher_logits(article, letters.x)
    assert_clear(err, "teacher 'article' ends in a softmax", "distillation needs logits")


@pytest.fixture(scope="module")
def nan_weights_file(tmp_path_factory):
    """Weights of a model whose training diverged: one NaN in block1's kernel."""
    model = tk.build_model(3, widths=TINY_WIDTHS, name="diverged")
    kernel = model.get_layer("block1_conv").kernel
    values = keras.ops.convert_to_numpy(kernel).copy()
    values.flat[0] = np.nan
    kernel.assign(values)
    path = tmp_path_factory.mktemp("nan") / "diverged.weights.h5"
    model.save_weights(path)
    return path, model


def test_c88_weights_that_hold_nan(nan_weights_file, letters, capsys):
    """They loaded as "6 of 6 layers" and trained to 10 %."""
    path, diverged = nan_weights_file
    model = tiny_model(3)
    before = snapshot(model)
    for load in (lambda: tk.read_weights_file(path), lambda: tk.load_matching_weights(model, path)):
        with pytest.raises(ValueError) as err:
            load()
        assert_clear(err, str(path), "holds 1 NaN or infinite weight(s) in layer 'block1_conv'",
                     "training diverged", "tk.source_model().weights_path")
    assert all_equal(snapshot(model), before)
    with pytest.raises(ValueError) as err:
        tk.run_strategy("feature_extraction", letters, None, 3, source_weights=path, epochs=1,
                        allow_partial=True)
    assert_clear(err, "NaN or infinite weight(s)")
    assert capsys.readouterr().out == ""  # before training
    with pytest.raises(ValueError) as err:  # nor does the cache take them
        tk.publish_source(diverged, tk.evaluate(tiny_model(3), letters), TINY_RECIPE)
    assert_clear(err, "model 'diverged' holds 1 NaN or infinite weight(s)")


@pytest.mark.parametrize("make, needles", [
    (lambda p: p.write_bytes(b""), ("is empty (0 bytes)", "delete it and save again")),
    (lambda p: p.write_text("not HDF5"), ("is not an HDF5 file", "so not a Keras weights file",
                                          "tk.save_weights(model, path)")),
    (lambda p: h5py_file(p, data=np.arange(3.0)), ("is an HDF5 file but not a Keras weights file",
                                                   "it holds data", "tk.save_weights")),
    (lambda p: h5py_file(p, attrs={"layer_names": [b"dense"]}),
     ("is a Keras 2 (legacy .h5) weights file", "model.load_weights(path)")),
], ids=["empty", "not-hdf5", "other-hdf5", "keras-2"])
def test_c89_a_file_that_is_not_a_keras_3_weights_file(tmp_path, make, needles):
    """Each was diagnosed 'it may be truncated by an interrupted save'."""
    path = tmp_path / "other.weights.h5"
    make(path)
    with pytest.raises(ValueError) as err:
        tk.load_matching_weights(tiny_model(3), path)
    assert_clear(err, str(path), *needles)
    assert "truncated" not in str(err.value) or "empty" in needles[0]


def h5py_file(path, data=None, attrs=None):
    import h5py

    with h5py.File(path, "w") as f:
        if data is not None:
            f.create_dataset("data", data=data)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value


@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), ("Yes", True),
                                            ("on", True), ("0", False), ("false", False),
                                            ("no", False), ("off", False), ("", False)])
def test_c90_the_offline_switch_reads_as_a_switch(monkeypatch, value, offline):
    """TRANSFERKIT_OFFLINE=false meant offline (anything but '' and '0' did)."""
    monkeypatch.setenv("TRANSFERKIT_OFFLINE", value)
    assert tk.online.offline_requested() is offline
    assert (tk.online.check_connection("http://127.0.0.1:9/", timeout=0.5)
            == "TRANSFERKIT_OFFLINE is set") is offline


def test_c90_an_offline_switch_the_kit_cannot_read(monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_OFFLINE", "maybe")
    with pytest.raises(ValueError) as err:
        tk.online_task("mnist", timeout=1)
    assert_clear(err, "TRANSFERKIT_OFFLINE='maybe' is not understood",
                 "set it to 1 (never download) or 0 (downloads allowed), or unset it")


def test_c91_keras_backend_set_after_keras_loaded(monkeypatch, recwarn):
    """It was ignored without a word: the kit kept training with the backend it loaded."""
    running = keras.backend.backend()
    other = "jax" if running != "jax" else "torch"
    monkeypatch.setenv("KERAS_BACKEND", other)
    monkeypatch.setattr(tk.environment, "_warned_backends", set())
    tiny_model(3)
    tiny_model(3)
    said = [w for w in recwarn if issubclass(w.category, tk.environment.BackendWarning)]
    assert len(said) == 1, said  # once, not at every model
    message = str(said[0].message)
    assert "\n" not in message and f"KERAS_BACKEND={other!r} was set after Keras loaded" in message
    assert "restart the kernel and set it before importing transferkit" in message
    assert f"(warning: KERAS_BACKEND={other!r} was set after" in tk.describe_device()
    monkeypatch.setenv("KERAS_BACKEND", running)
    assert "warning" not in tk.describe_device()


def test_c92_a_model_whose_outputs_are_nan(letters):
    """Found by tests/test_fuzz.py: a model whose weights went NaN scored as if it always said
    class 0 (the argmax of NaN: 33 % here) and predicted probabilities of NaN."""
    model = tiny_model(3, name="diverged")
    kernel = model.get_layer("head").kernel
    kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
    for call in (lambda: tk.evaluate(model, letters), lambda: tk.predict(model, letters.x),
                 lambda: tk.worst_mistakes(model, letters, n=3)):
        with pytest.raises(ValueError) as err:
            call()
        assert_clear(err, "model 'diverged' gives NaN or infinite outputs for 36 of 36 images",
                     "training diverged", "lower learning rate")


@pytest.mark.parametrize("call, error, needles", [
    (lambda d: tk.score_predictions([0, 1, 5], [0, 1, 2], ("a", "b", "c")), ValueError,
     ("y_true has label 5 but 3 class names are given", "pass class_names")),
    (lambda d: tk.linear_probe(tiny_model(3), d.subset(np.flatnonzero(d.y < 2)), d), ValueError,
     ("test data has label 2, which the training data does not have",
      "tk.few_shot(task.train, k) and task.test")),
    (lambda d: tk.unlabelled_rest(d, tk.data.glyph_dataset("ABC", 2, seed=5)), ValueError,
     ("6 of the 6 labelled images are not in the pool", "pass the pool they were drawn from")),
    (lambda d: tk.embed(tiny_model(3), tk.few_shot(d, 2)), ValueError,
     ("needs at least 2 classes of 5 images each", "the smallest with 2", "pass more images")),
    (lambda d: tk.predict(tiny_model(3), d.x[:2], class_names=("a", "b")), ValueError,
     ("class_names=('a', 'b') must name each of the model's 3 classes",)),
    (lambda d: tk.Task("t", d, d, tk.Dataset(d.x, d.y, ("x", "y", "z"), "other")), ValueError,
     ("Task 't': test has class names ('x', 'y', 'z') but train ('A', 'B', 'C')",
      "pass splits of one task")),
    (lambda d: tk.with_head(tk.build_model(3, widths=(4, 8)), tk.build_model(3, widths=(4, 16))),
     ValueError, ("reads 16 features but the backbone", "the same widths")),
    (lambda d: tk.shift((d.x, d.y), "noisy"), TypeError,
     ("shift takes one Dataset, got tuple", "tk.Dataset(x, y, class_names)")),
], ids=["score_predictions", "linear_probe", "unlabelled_rest", "embed", "predict-names",
        "task-splits", "with_head-widths", "shift-a-pair"])
def test_c93_arguments_that_disagreed_silently_or_failed_deep(letters, call, error, needles):
    """Each returned a wrong result (scores that left a class out, the whole pool as 'the
    rest') or failed inside scikit-learn, NumPy or Keras."""
    with pytest.raises(error) as err:
        call(letters)
    assert_clear(err, *needles)


# ---- the engineer's files: what the walk and the new checks found there (flip when fixed)
def test_c94_a_seed_numpy_cannot_take():
    with pytest.raises(ValueError) as err:
        tk.set_seed(2 ** 32)
    assert_clear(err, "seed=4294967296", "from 0 to 4294967295")


@pytest.mark.parametrize("kwargs, needle", [({"finetune_epochs": 0}, "finetune_epochs=0"),
                                            ({"finetune_lr": 5.0}, "finetune_lr=5.0"),
                                            ({"head_lr": "fast"}, "head_lr='fast'")],
                         ids=["finetune_epochs", "finetune_lr", "head_lr"])
def test_c95_fine_tune_names_its_own_argument_before_training(letters, kwargs, needle):
    args = {"head_epochs": 1, "finetune_epochs": 1, **kwargs}
    model = tk.compile_model(tiny_model(3))
    with mock.patch.object(keras.Model, "fit", side_effect=AssertionError("trained")):
        with pytest.raises((ValueError, TypeError)) as err:
            tk.fine_tune(model, letters, None, **args)
    assert_clear(err, needle)


def test_c96_sweep_checks_the_test_split_before_training(letters, weights_file):
    test = copy.copy(letters)
    test.x = _with_nan(letters.x)
    task = copy.copy(tk.Task("abc", letters, letters, letters))
    task.test = test
    with mock.patch.object(keras.Model, "fit", side_effect=AssertionError("trained")):
        with pytest.raises(ValueError) as err:
            tk.sweep(["scratch"], task, shots=[1], epochs=1)
    assert_clear(err, "NaN")


KILLED_WRITER = textwrap.dedent("""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("kit_io", sys.argv[1])
    kit_io = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit_io)  # the kit's atomic writer alone: no Keras to wait for

    def write(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"half a file")
        print("WRITING", tmp, flush=True)
        time.sleep(120)  # killed here, before the rename

    kit_io.save_atomically(write, sys.argv[2])
""")


def _start_writer(target):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(KIT / "files.py"), str(target)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("WRITING "), line
    return proc, Path(line.split(" ", 1)[1].strip())


@pytest.mark.skipif(os.name != "posix", reason="process ids are asked with os.kill(pid, 0)")
def test_temporary_files_of_killed_writers_are_removed_at_the_next_start(tmp_path, monkeypatch):
    """A process killed while saving left its temporary file in the cache for good; now the
    first use of the cache in a process removes it, and never a live writer's file."""
    cache = tmp_path / "cache"
    (cache / "online" / "datasets").mkdir(parents=True)
    killed, killed_tmp = _start_writer(cache / "source-abc.weights.h5")
    live, live_tmp = _start_writer(cache / "online" / "datasets" / "mnist.npz")
    try:
        assert f"-{killed.pid}-" in killed_tmp.name and killed_tmp.parent == cache
        killed.kill()
        killed.wait(timeout=30)
        old = cache / ".source-def.weights.h5.abc123.tmp.weights.h5"  # an older kit's name
        fresh = cache / ".run.json.xyz789.tmp.json"
        keep = [cache / ".gitignore", cache / "source-abc.json.lock", fresh, live_tmp]
        for path in (old, *keep[:-1]):
            path.write_text("x")
        os.utime(old, (0, 0))  # 1970: far older than STALE_AGE
        monkeypatch.setenv("TRANSFERKIT_CACHE", str(cache))
        assert tk.cache_dir() == cache
        assert not killed_tmp.exists() and not old.exists()
        assert all(path.exists() for path in keep)  # the live writer's file, others' files
    finally:
        for proc in (killed, live):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            proc.stdout.close()
    assert remove_stale_temporaries(cache) == [live_tmp]  # its writer is gone now
