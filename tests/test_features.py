"""Feature transfer (features.py): linear probe, embeddings, filters, weight change."""
from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.figure import Figure

import transferkit as tk
from helpers import TINY_WIDTHS, tiny_model


def test_extract_features_is_the_pooled_backbone_output(trained, letters):
    features = tk.extract_features(trained.model, letters)
    assert features.shape == (len(letters), TINY_WIDTHS[-1])
    direct = np.asarray(tk.feature_extractor(trained.model).predict(letters.x, verbose=0))
    np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-6)  # eager vs traced
    assert (features >= 0).all()  # average of ReLU outputs


def test_linear_probe_scores_are_valid_and_beat_chance(well_trained, letters, letters_val):
    probe = tk.linear_probe(well_trained, letters, letters_val)
    s = probe.scores
    for value in (s.accuracy, s.precision, s.recall, s.f1, probe.train_accuracy):
        assert np.isfinite(value) and 0.0 <= value <= 1.0
    assert s.accuracy > 0.5  # 3 classes: chance is 1/3
    assert s.confusion.shape == (3, 3) and s.confusion.sum() == len(letters_val)
    assert s.class_names == letters_val.class_names
    # the scores are scikit-learn's, on the probe's own predictions
    pred = probe.classifier.predict(tk.extract_features(well_trained, letters_val))
    assert s.accuracy == pytest.approx(np.mean(pred == letters_val.y))
    assert "linear probe: accuracy" in str(probe)


@pytest.mark.parametrize("C", [0, -1.0, float("nan"), "strong"])
def test_linear_probe_rejects_bad_C(trained, letters, C):
    with pytest.raises(ValueError, match=r"C=.*positive"):
        tk.linear_probe(trained.model, letters, letters, C=C)


def test_linear_probe_needs_two_classes(trained, letters):
    one_class = letters.subset(letters.y == 0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        tk.linear_probe(trained.model, one_class, letters)


def test_random_like_same_architecture_new_weights(trained):
    fresh = tk.random_like(trained.model, seed=1)
    assert [layer.name for layer in fresh.layers] == [layer.name for layer in trained.model.layers]
    assert [w.shape for w in fresh.weights] == [w.shape for w in trained.model.weights]
    kernel = trained.model.get_layer("block1_conv").kernel.numpy()
    assert not np.array_equal(fresh.get_layer("block1_conv").kernel.numpy(), kernel)
    again = tk.random_like(trained.model, seed=1)  # seeded: the same again
    np.testing.assert_array_equal(again.get_layer("block1_conv").kernel.numpy(),
                                  fresh.get_layer("block1_conv").kernel.numpy())


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_shapes_and_scores(trained, letters, method):
    e = tk.embed(trained.model, letters, method=method, title="trained")
    assert e.points.shape == (len(letters), 2) and e.points.dtype == np.float32
    np.testing.assert_array_equal(e.labels, letters.y)
    assert 0.0 <= e.knn_accuracy <= 1.0 and -1.0 <= e.silhouette <= 1.0
    assert e.method == method and str(e).startswith("trained: 5-NN accuracy")


def test_knn_accuracy_separates_clusters_from_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    clustered = rng.normal(size=(60, 2)) * 0.1 + labels[:, None] * 5.0
    assert tk.features.knn_accuracy(clustered, labels) == 1.0
    assert tk.features.knn_accuracy(rng.normal(size=(60, 2)), labels) < 0.7


def test_embed_rejects_bad_arguments(trained, letters):
    with pytest.raises(ValueError, match=r"method='umap'.*\['pca', 'tsne'\]"):
        tk.embed(trained.model, letters, method="umap")
    with pytest.raises(TypeError, match="tk.Dataset"):
        tk.embed(trained.model, letters.x)


def test_plot_embeddings_one_panel_per_embedding(trained, letters):
    a = tk.embed(trained.model, letters, title="a")
    fig = tk.plot_embeddings(a, a)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert "5-NN" in fig.axes[0].get_title()
    with pytest.raises(TypeError, match="tk.embed"):
        tk.plot_embeddings(a.points)


def test_feature_plots_display_as_pngs_in_a_notebook_like_display(trained, letters):
    """What a notebook cell returning a features plot shows: IPython's display formatter,
    fresh (nothing registered on it, whatever the kit imported, in whatever order), gives a
    PNG; the text form stays matplotlib's."""
    from IPython.core.formatters import DisplayFormatter

    before = tk.snapshot_weights(trained.model)
    figures = [tk.plot_embeddings(tk.embed(trained.model, letters, title="a")),
               tk.plot_filters(tk.first_layer_filters(trained.model)),
               tk.plot_weight_change(tk.weight_change(before, trained.model))]
    for fig in figures:
        data, _ = DisplayFormatter().format(fig)
        assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n", sorted(data)
        assert data["text/plain"].startswith("<Figure size ")


def test_first_layer_filters_are_the_conv_kernels(trained):
    filters = tk.first_layer_filters(trained.model)
    kernel = trained.model.get_layer("block1_conv").kernel.numpy()
    assert filters.shape == (TINY_WIDTHS[0], 3, 3)
    np.testing.assert_array_equal(filters[2], kernel[:, :, 0, 2])
    assert isinstance(tk.plot_filters(filters), Figure)
    with pytest.raises(ValueError, match="expected \\(filters, height, width\\)"):
        tk.plot_filters(filters[0])


def test_feature_maps_of_one_image(trained, letters):
    maps = tk.feature_maps(trained.model, letters.x[0])
    assert maps.shape == (14, 14, TINY_WIDTHS[0])  # block1 has stride 2
    assert (maps >= 0).all()  # after ReLU
    deeper = tk.feature_maps(trained.model, letters.x[:1], layer="block2_relu")
    assert deeper.shape[-1] == TINY_WIDTHS[1]
    fig = tk.plot_feature_maps(maps, n=3)
    assert sum(ax.get_images() != [] for ax in fig.axes) == 3


def test_feature_maps_rejects_bad_arguments(trained, letters):
    with pytest.raises(ValueError, match=r"layer='block9_relu'.*block1_conv"):
        tk.feature_maps(trained.model, letters.x[0], layer="block9_relu")
    with pytest.raises(ValueError, match="one image, got a batch of 2"):
        tk.feature_maps(trained.model, letters.x[:2])
    with pytest.raises(ValueError, match="does not fit model"):
        tk.feature_maps(trained.model, np.zeros((32, 32, 1)))


def test_weight_change_zero_for_untouched_model(trained):
    before = tk.snapshot_weights(trained.model)
    assert all("moving" not in name for name in before)  # statistics are not weights
    change = tk.weight_change(before, trained.model)
    assert set(change) == {"block1", "block2", "head"}
    assert all(v == 0.0 for v in change.values())


def test_weight_change_is_relative_norm_per_layer():
    model = tiny_model()
    before = tk.snapshot_weights(model)
    conv = model.get_layer("block2_conv")
    conv.kernel.assign(conv.kernel.numpy() * 1.5)
    by_layer = tk.weight_change(before, model, by="layer")
    assert by_layer["block2_conv"] == pytest.approx(0.5, rel=1e-6)
    assert by_layer["block1_conv"] == 0.0 and by_layer["block2_bn"] == 0.0
    by_block = tk.weight_change(before, model)
    assert 0 < by_block["block2"] < 0.5  # block2_bn's unchanged weights dilute it
    assert isinstance(tk.plot_weight_change(by_block), Figure)


def test_weight_change_only_where_training_happened(letters):
    model = tiny_model()
    tk.freeze(model)
    tk.compile_model(model, learning_rate=1e-2)
    before = tk.snapshot_weights(model)
    tk.fit(model, letters, epochs=1, batch_size=12)
    change = tk.weight_change(before, model)
    assert change["head"] > 0
    assert change["block1"] == 0.0 and change["block2"] == 0.0


def test_weight_change_rejects_bad_arguments():
    a, b = tiny_model(), tk.build_model(3, widths=(4, 8, 16))
    with pytest.raises(ValueError, match=r"by='blocks'.*'block' or 'layer'"):
        tk.weight_change(a, a, by="blocks")
    with pytest.raises(ValueError, match="same architecture"):
        tk.weight_change(a, b)
    with pytest.raises(TypeError, match="tk.weight_change"):
        tk.plot_weight_change([0.1, 0.2])


def test_coral_gives_source_features_the_target_mean_and_covariance():
    rng = np.random.default_rng(0)
    fs = rng.normal(size=(4000, 3)) @ np.array([[2.0, 0, 0], [0.5, 1, 0], [0, 0, 0.2]])
    ft = rng.normal(size=(4000, 3)) @ np.array([[0.3, 0, 0], [0, 3, 0], [1, 0, 1]]) + 5.0
    out = tk.coral(fs, ft, eps=1e-6)
    assert out.shape == fs.shape and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=0), ft.mean(axis=0), atol=1e-3)
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.cov(ft, rowvar=False), atol=1e-2)


def test_coral_lets_a_classifier_trained_on_the_source_work_on_a_shifted_target():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 600)
    fs = rng.normal(size=(600, 2)) * 0.6 + np.where(y[:, None] == 1, [1.5, 0.0], [-1.5, 0.0])
    # the target domain: the same classes, stretched and moved (labels unknown to CORAL)
    ft = fs * [3.0, 0.5] + [6.0, -2.0]
    plain = LogisticRegression().fit(fs, y).score(ft, y)
    aligned = LogisticRegression().fit(tk.coral(fs, ft), y).score(ft, y)
    assert plain < 0.7 < 0.95 < aligned, (plain, aligned)


@pytest.mark.parametrize("fs, ft, needle", [
    (np.zeros((5, 3)), np.zeros((5, 4)), "got (5, 3) and (5, 4)"),
    (np.zeros(5), np.zeros((5, 1)), "got (5,) and (5, 1)"),
    (np.zeros((1, 3)), np.zeros((5, 3)), "n >= 2"),
])
def test_coral_refuses_features_that_cannot_be_aligned(fs, ft, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        tk.coral(fs, ft)
    with pytest.raises(ValueError, match=r"eps=0 is out of range"):
        tk.coral(np.ones((3, 2)), np.ones((3, 2)), eps=0)
