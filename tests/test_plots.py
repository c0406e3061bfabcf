"""Curves and image grids (plots.py); no display needed, figures are plain matplotlib."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

import transferkit as tk
from transferkit.curves import in_jupyter


def _lines(ax):
    return [line for line in ax.get_lines() if len(line.get_xdata()) > 0]


def test_plot_history_draws_loss_and_accuracy(trained):
    fig = tk.plot_history(trained.history)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_title() == "loss" and acc_ax.get_title() == "accuracy"
    train_line, val_line = _lines(loss_ax)[:2]
    np.testing.assert_array_equal(train_line.get_xdata(), [1, 2])
    np.testing.assert_allclose(train_line.get_ydata(), trained.history.metrics["loss"])
    np.testing.assert_allclose(val_line.get_ydata(), trained.history.metrics["val_loss"])
    assert len(_lines(acc_ax)) == 2


def test_plot_history_marks_phase_boundaries():
    a, b = tk.history.RunHistory("head"), tk.history.RunHistory("tune")
    for h, n in ((a, 2), (b, 3)):
        for _ in range(n):
            h.add_epoch({"loss": 1.0, "accuracy": 0.5})
    fig = tk.plot_history(a.then(b))
    loss_ax = fig.axes[0]
    # one training curve (no validation: all NaN) and one vertical phase marker at 2.5
    assert len(loss_ax.get_lines()) == 2
    marker = loss_ax.get_lines()[1]
    assert list(marker.get_xdata()) == [2.5, 2.5]
    assert "tune" in [t.get_text() for t in loss_ax.texts]


def test_plot_history_rejects_other_objects():
    with pytest.raises(TypeError, match="RunHistory"):
        tk.plot_history({"loss": [1.0]})


def test_live_curves_as_callback_outside_jupyter(trained):
    """`trained` was fitted for 2 epochs (with validation) with a LiveCurves callback."""
    assert not in_jupyter()
    live, history = trained.live, trained.history
    assert live.current.epochs == 2
    assert live.current.metrics == history.metrics
    assert isinstance(live.figure, Figure) and len(live.figure.axes) == 2
    for ax, metric in zip(live.figure.axes, ("loss", "accuracy")):
        lines = _lines(ax)
        assert len(lines) == 2  # training and validation
        for line in lines:
            np.testing.assert_array_equal(line.get_xdata(), [1, 2])
        np.testing.assert_allclose(lines[0].get_ydata(), history.metrics[metric])
        np.testing.assert_allclose(lines[1].get_ydata(), history.metrics[f"val_{metric}"])


def test_show_images_grid(letters):
    fig = tk.show_images(letters, n=4, per_class=True)
    assert len(fig.axes) == 3 * 4
    assert sum(len(ax.images) for ax in fig.axes) == 12
    fig = tk.show_images(letters, n=5)
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes] == [letters.class_names[c] for c in letters.y[:5]]


def test_plot_confusion_and_bars(trained, letters_val):
    scores = tk.evaluate(trained.model, letters_val)
    fig = tk.plot_confusion(scores)
    assert isinstance(fig, Figure)
    assert fig.axes[0].get_title() == f"accuracy {scores.accuracy:.1%}"
    assert len(fig.axes[0].texts) == int(np.count_nonzero(scores.confusion))
    fig = tk.plot_bars({"scratch": 0.4, "transfer": 0.9}, title="k=5", ylabel="test accuracy",
                       xlabel="model")
    assert len(fig.axes[0].patches) == 2
    assert [t.get_text() for t in fig.axes[0].texts] == ["40.0%", "90.0%"]


class _Watched(tk.LiveCurves):
    """LiveCurves as in Jupyter, keeping the PNGs it would send and counting full redraws."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._live = True
        self.pngs, self.full_redraws = [], 0

    def _publish(self, png):
        self.pngs.append(png)

    def _full_redraw(self):
        self.full_redraws += 1
        super()._full_redraw()


def test_live_curves_in_jupyter_send_updated_pngs_with_few_full_redraws(letters, letters_val):
    import io

    from PIL import Image
    from helpers import TINY_WIDTHS

    tk.set_seed(0)
    model = tk.compile_model(tk.build_model(3, widths=TINY_WIDTHS), 1e-2)
    live = _Watched("live", min_interval=0, epochs=4, dpi=50)
    tk.fit(model, letters, letters_val, epochs=2, batch_size=8, callbacks=[live])
    tk.compile_model(model, 1e-3)
    tk.fit(model, letters, letters_val, epochs=2, batch_size=8, callbacks=[live])
    # at least one update per fit (the one at its end), each a whole PNG of the figure
    assert len(live.pngs) >= 2
    assert live.pngs[0] != live.pngs[-1]
    assert Image.open(io.BytesIO(live.pngs[-1])).size == (500, 175)
    # axes fixed for 4 epochs from the start: the second phase needs no full redraw
    # (unless the loss rose above the first limit)
    assert 1 <= live.full_redraws <= 2
    assert live._limits[0] == 4
    # read after training, the figure shows all 4 epochs and the phase boundary
    loss_ax = live.figure.axes[0]
    curves = [line for line in loss_ax.get_lines() if not line.get_label().startswith("_")]
    assert [len(line.get_xdata()) for line in curves] == [4, 4]
    assert "phase 2" in [t.get_text() for t in loss_ax.texts]


def test_plot_mistakes_titles_every_image_with_true_and_predicted_class(trained, letters):
    mistakes = tk.worst_mistakes(trained.model, letters, n=7)
    fig = tk.plot_mistakes(mistakes, columns=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 8          # 2 rows of 4, one left blank
    assert " ".join(fig._suptitle.get_text().split()).startswith("The 7 test images with the highest loss")
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 7
    names = letters.class_names
    for k, ax in enumerate(shown):
        true, predicted = names[mistakes.true[k]], names[mistakes.predicted[k]]
        assert ax.get_title() == (f"true {true}\npredicted {predicted} "
                                  f"({mistakes.confidence[k]:.0%})")
        np.testing.assert_array_equal(ax.images[0].get_array(), mistakes.images[k, ..., 0])
    assert tk.plot_mistakes(mistakes, title="mine")._suptitle.get_text() == "mine"
    with pytest.raises(TypeError, match=r"draws what tk.worst_mistakes\(model, data\) returns, "
                                        r"got Scores"):
        tk.plot_mistakes(tk.evaluate(trained.model, letters))


def test_show_augmented_puts_each_original_beside_its_random_copies(letters):
    augment = tk.augmentation_layers()
    fig = tk.show_augmented(augment, letters.x[:2], copies=3)
    assert len(fig.axes) == 2 * 4 and fig._suptitle.get_text()
    assert [ax.get_title() for ax in fig.axes[:4]] == ["original", "random 1", "random 2", "random 3"]
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), letters.x[0, ..., 0])
    assert not np.array_equal(fig.axes[1].images[0].get_array(), letters.x[0, ..., 0])
    assert len(tk.show_augmented(augment, letters.x[0], copies=1).axes) == 2   # one image
    with pytest.raises(TypeError, match=r"augmentation=.* is not a Keras layer"):
        tk.show_augmented("rotate", letters.x[:1])
    with pytest.raises(ValueError, match=r"copies=0 is out of range"):
        tk.show_augmented(augment, letters.x[:1], copies=0)


# --------------------------------------------------------------------------- the figure check
from transferkit.figures import FigureCheckError, check_figure, figure_problems  # noqa: E402


def _axes(**kwargs):
    fig = Figure(figsize=kwargs.pop("figsize", (5, 3)))
    return fig, fig.subplots()


def _labelled(ax, title="t"):
    ax.set_title(title)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.figure.tight_layout()


def test_the_check_passes_a_well_made_figure():
    fig, ax = _axes()
    ax.plot([0, 1, 2], [0, 1, 4], label="a")
    ax.plot([0, 1, 2], [4, 1, 0], label="b")
    _labelled(ax)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    assert check_figure(fig) is fig


def test_the_check_rejects_a_figure_without_title_or_labels():
    fig, ax = _axes()
    ax.plot([0, 1], [0, 1])
    with pytest.raises(FigureCheckError) as err:
        check_figure(fig, "bare")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("figure bare fails the figure check")
    assert "no title" in msg and "no x label" in msg and "no y label" in msg
    ax.set_title("t")
    assert figure_problems(fig) == ["axes 't' has no x label", "axes 't' has no y label"]
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    assert figure_problems(fig) == ["text 'x' reaches outside the figure"]   # the default margins
    fig.tight_layout()
    assert figure_problems(fig) == []


def test_the_check_asks_image_grids_for_a_title_only():
    fig = Figure(figsize=(4, 1.5))
    for ax in fig.subplots(1, 3):
        ax.imshow(np.eye(3))
        ax.axis("off")
    assert figure_problems(fig) == ["no axes has a title and the figure no suptitle"]
    fig.suptitle("three images")
    assert figure_problems(fig) == []


def test_the_check_wants_a_legend_for_two_labelled_curves():
    fig, ax = _axes()
    ax.plot([0, 1], [0, 1], label="train")
    ax.plot([0, 1], [1, 0], label="validation")
    _labelled(ax)
    assert figure_problems(fig) == ["axes 't' has 2 labelled curves or point sets but no legend"]


@pytest.mark.parametrize("kind", ["line", "scatter", "bars"])
def test_the_check_rejects_a_legend_over_data(kind):
    fig, ax = _axes()
    x = np.linspace(0, 1, 50)
    if kind == "line":     # one segment crosses the legend's corner (no vertex inside it)
        ax.plot([0, 1], [1, 0], label="a")
        ax.plot([0, 1], [0.5, 0.5], label="b")
    elif kind == "scatter":
        ax.scatter(x, np.full_like(x, 0.95), label="a")
        ax.scatter(x, np.zeros_like(x), label="b")
    else:
        ax.bar(["a", "b", "c"], [1, 1, 1], label="bars")
        ax.plot([0, 2], [0.1, 0.1], label="level")
    _labelled(ax)
    ax.legend(loc="upper left")
    problems = figure_problems(fig)
    assert len(problems) == 1 and problems[0].startswith("the legend covers"), problems
    with pytest.raises(FigureCheckError, match="the legend covers"):
        check_figure(fig)
    ax.get_legend().remove()      # beside the axes it hides nothing
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    assert figure_problems(fig) == []


def test_the_check_rejects_overlapping_tick_labels_and_text_outside():
    fig, ax = _axes(figsize=(3, 2))
    names = [f"a long strategy name {i}" for i in range(4)]
    ax.bar(names, [1, 2, 3, 4])
    _labelled(ax)
    problems = figure_problems(fig)
    assert any("tick labels 'a long strategy name 0' and 'a long strategy name 1'" in p
               for p in problems), problems
    fig, ax = _axes()
    ax.plot([0, 1], [0, 1])
    _labelled(ax)
    ax.text(1.5, 0.5, "far to the right of everything", transform=ax.transAxes)
    assert figure_problems(fig) == ["text 'far to the right of everything' reaches outside "
                                    "the figure"]


def test_the_check_takes_figures_only():
    with pytest.raises(TypeError, match="matplotlib Figure, got dict"):
        check_figure({})


def _history(label, n, offset=0.0):
    h = tk.history.RunHistory(label)
    for e in range(n):
        h.add_epoch({"loss": 2 / (e + 1) + offset, "accuracy": 1 - 1 / (e + 2),
                     "val_loss": 2.5 / (e + 1) + 0.5, "val_accuracy": 0.7 - 0.5 / (e + 2)})
    return h


def test_every_figure_of_the_kit_passes_the_check(letters):
    """The kit's plot functions end by calling check_figure; here their figures are measured
    once more, with the awkward inputs the notebooks give them (long names, many runs)."""
    rows = [{"strategy": name, "shots": k, "accuracy": a + 0.05 * i}
            for i, name in enumerate(("from scratch", "feature extraction", "gradual unfreezing"))
            for k, a in ((1, .2), (5, .5), (20, .8))]
    points = np.random.default_rng(0).normal(size=(60, 2))
    embedding = tk.features.Embedding(points, np.arange(60) % 3, letters.class_names, "pca",
                                      0.5, 0.1, "map")
    scores = tk.evaluation.score_predictions(letters.y, letters.y[::-1], letters.class_names)
    figures = {
        "plot_history": tk.plot_history(_history("from scratch", 12), _history("fine-tuned", 14)),
        "plot_bars": tk.plot_bars({"from scratch": 0.1, "letters source": 0.6,
                                   "shapes source": 0.3, "noise source": 0.2},
                                  title="sources", ylabel="test accuracy", xlabel="source"),
        "plot_sweep": tk.plot_sweep(rows),
        "plot_confusion": tk.plot_confusion(scores),
        "show_images": tk.show_images(letters, n=4, per_class=True),
        "plot_embeddings": tk.plot_embeddings(embedding, embedding),
        "plot_filters": tk.plot_filters(np.ones((8, 3, 3))),
        "plot_feature_maps": tk.plot_feature_maps(np.ones((14, 14, 8))),
        "plot_weight_change": tk.plot_weight_change({"block1": 0.01, "block2": 0.1, "head": 1.0}),
        "by layer": tk.plot_weight_change({f"block{i}_{k}": 0.1 for i in (1, 2, 3)
                                           for k in ("conv", "bn")}, title="by layer"),
    }
    for name, fig in figures.items():
        assert figure_problems(fig) == [], name


def test_plot_bars_lays_long_names_down_instead_of_printing_them_over_each_other():
    values = {"from scratch": 0.1, "letters source": 0.6, "shapes source": 0.3,
              "noise source": 0.2, "rotated digits source": 0.5}
    fig = tk.plot_bars(values, title="sources", ylabel="test accuracy", xlabel="source")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(values)   # names down the left
    assert ax.get_xlabel() == "test accuracy" and ax.get_ylabel() == "source"
    short = tk.plot_bars({"a": 0.1, "b": 0.2}, title="t", ylabel="test accuracy", xlabel="model")
    assert [t.get_text() for t in short.axes[0].get_xticklabels()] == ["a", "b"]   # standing


def test_plot_embeddings_has_axis_labels_and_a_class_legend(letters):
    embedding = tk.features.Embedding(np.random.default_rng(0).normal(size=(30, 2)),
                                      np.arange(30) % 3, letters.class_names, "pca", 0.5, 0.1, "m")
    fig = tk.plot_embeddings(embedding)
    assert fig.axes[0].get_xlabel() == "PCA component 1"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(letters.class_names)


def test_plot_history_legend_hides_no_curve_of_many_runs():
    runs = [_history(f"strategy number {i} (10 shots)", 10, 0.1 * i) for i in range(6)]
    assert figure_problems(tk.plot_history(*runs)) == []


def test_the_live_plot_is_checked_once_per_full_redraw(letters, letters_val, monkeypatch):
    from transferkit import curves as plots  # LiveCurves checks its figure there

    checks = []
    real = plots.check_figure
    monkeypatch.setattr(plots, "check_figure",
                        lambda fig, *a, **k: checks.append(a) or real(fig, *a, **k))
    live = _Watched("live", min_interval=0, epochs=4, dpi=50)
    model = tk.compile_model(tk.build_model(3, widths=__import__("helpers").TINY_WIDTHS), 1e-2)
    tk.fit(model, letters, letters_val, epochs=2, batch_size=8, callbacks=[live])
    live._show()   # two more frames of the same axes: blitted, not checked again
    live._show()
    assert len(live.pngs) >= 3 and 1 <= len(checks) == live.full_redraws < len(live.pngs)


# --------------------------------------------------------------------------- one picture per call
class _Publisher:
    """Keeps what a kernel would send: new outputs (an update replaces one in place)."""

    def __init__(self):
        self.outputs, self.updates = [], 0

    def publish(self, data, metadata=None, *, update=False, **kwargs):
        if update:
            self.updates += 1
        else:
            self.outputs.append(data)


@pytest.fixture()
def notebook_shell():
    """An IPython shell that the kit takes for a Jupyter kernel, publishing into a list."""
    from IPython.core.interactiveshell import InteractiveShell

    class ZMQInteractiveShell(InteractiveShell):   # the name in_jupyter() looks for
        pass

    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = ZMQInteractiveShell.instance(config=config)   # IPython.display uses the instance
    shell.display_pub = _Publisher()
    try:
        assert in_jupyter()   # nothing registered: the kit's figures show themselves
        yield shell
    finally:
        ZMQInteractiveShell.clear_instance()
        assert not in_jupyter()


def _pictures_of_a_cell(shell, call):
    """The image/png outputs a cell ending in ``call()`` shows: what it displays while running,
    its value through the display hook, and pyplot figures the inline backend would add."""
    import sys

    before = len(shell.display_pub.outputs)
    value = call()
    shown = [d for d in shell.display_pub.outputs[before:] if "image/png" in d]
    if value is not None:
        data, _ = shell.display_formatter.format(value)
        shown += [data] if "image/png" in data else []
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == [], "a pyplot figure would show again"
    return shown


def test_a_plot_function_in_a_notebook_cell_shows_one_picture(notebook_shell, letters):
    for call in (lambda: tk.plot_bars({"a": 0.1, "b": 0.2}, title="t", ylabel="y", xlabel="x"),
                 lambda: tk.plot_history(_history("run", 3)),
                 lambda: tk.show_images(letters, n=3),
                 lambda: tk.plot_filters(np.ones((4, 3, 3)))):
        assert len(_pictures_of_a_cell(notebook_shell, call)) == 1


def test_live_curves_in_a_notebook_cell_show_one_picture_updated_in_place(notebook_shell, letters):
    from helpers import TINY_WIDTHS

    live = tk.LiveCurves("live", min_interval=0, dpi=40)
    model = tk.compile_model(tk.build_model(3, widths=TINY_WIDTHS), 1e-2)
    shown = _pictures_of_a_cell(notebook_shell, lambda: tk.fit(model, letters, epochs=2,
                                                               batch_size=12, callbacks=[live]))
    assert len(shown) == 1 and notebook_shell.display_pub.updates >= 1   # later frames update it
