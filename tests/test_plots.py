"""Curves and image grids (plots.py); no display needed, figures are plain matplotlib."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

import transferkit as tk
from transferkit.plots import in_jupyter


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
    fig = tk.plot_bars({"scratch": 0.4, "transfer": 0.9}, title="k=5")
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
    assert fig._suptitle.get_text().startswith("The 7 test images with the highest loss")
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
