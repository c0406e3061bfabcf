"""Feature transfer: what the source network's features are worth, and what they look like.

- ``extract_features`` / ``linear_probe``: the frozen backbone as a fixed feature
  extractor, scored with a scikit-learn logistic regression (a *linear probe*);
- ``coral``: align labelled source-domain features to unlabelled target-domain ones
  (CORAL: match the mean and covariance) before a probe is trained on them;
- ``embed``: a 2-D map (PCA or t-SNE) of examples through a network, with a k-NN
  accuracy and a silhouette score so two maps can be compared by number;
- ``first_layer_filters`` / ``feature_maps``: what the first block looks for;
- ``snapshot_weights`` / ``weight_change``: which layers moved during fine-tuning.

Layer: after ``training`` and ``source``; plots here are ``figures.Figure`` s (matplotlib
only, shown as pictures in Jupyter like those of ``plots``), so ``plots`` and ``lab`` stay
above it.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .arraychecks import check_finite
from .checks import check_choice, check_number
from .data import Dataset
from .datachecks import check_data, checked_outputs
from .environment import set_seed
from .evaluation import Scores, score_predictions
from .figures import Figure, check_figure, overlapping_tick_labels
from .models import HEAD, check_model, feature_extractor

EMBEDDING_METHODS = ("pca", "tsne")
KNN_FOLDS = 5  # embed's k-NN score: 5-fold cross-validation


# --------------------------------------------------------------------------- features
def extract_features(model, data, batch_size=256):
    """The pooled feature vectors (n, width) of ``model``'s backbone for a Dataset or images."""
    extractor = feature_extractor(model)  # a model the kit did not build: refused here
    x = check_data(data, "images", model, labels=False)
    # training=False inside predict: BatchNorm uses its moving statistics, nothing updates
    return checked_outputs(extractor, x, batch_size)


def _symmetric_power(c, power):
    values, vectors = np.linalg.eigh(c)
    return (vectors * np.clip(values, 1e-12, None) ** power) @ vectors.T


def coral(source_features, target_features, *, eps=1.0):
    """CORAL (Sun, Feng and Saenko, 2016): ``source_features`` re-coloured to the target's
    second-order statistics, for a classifier trained on them to work on the target domain.

    Centred source features are whitened by their covariance and re-coloured by the target's
    (each plus ``eps`` times the identity, as in the paper), then moved to the target's mean.
    ``target_features`` need no labels: e.g. the features of unlabelled shifted images.
    Returns an array shaped like ``source_features``.
    """
    check_number(eps, "eps", 0, 1e6, "use a small positive regulariser such as eps=1.0")
    try:
        fs, ft = (np.asarray(f, dtype=np.float64) for f in (source_features, target_features))
    except (TypeError, ValueError):
        raise TypeError("coral takes two arrays of features, e.g. tk.extract_features(model, "
                        "images)") from None
    for features, what in ((fs, "source_features"), (ft, "target_features")):
        check_finite(features, what, "compute them from finite images with tk.extract_features "
                                     "(a model whose weights are NaN gives NaN features)")
    if fs.ndim != 2 or ft.ndim != 2 or fs.shape[1] != ft.shape[1] or min(len(fs), len(ft)) < 2:
        raise ValueError(f"coral needs two feature matrices (n, d) with the same d and n >= 2, "
                         f"got {fs.shape} and {ft.shape}; pass tk.extract_features(model, ...) "
                         "of the labelled source images and of the unlabelled target images")
    eye = eps * np.eye(fs.shape[1])
    whiten = _symmetric_power(np.cov(fs, rowvar=False) + eye, -0.5)
    recolour = _symmetric_power(np.cov(ft, rowvar=False) + eye, 0.5)
    return ((fs - fs.mean(axis=0)) @ whiten @ recolour + ft.mean(axis=0)).astype(np.float32)


@dataclass
class ProbeResult:
    """A linear probe: the fitted scikit-learn pipeline and its test scores."""

    classifier: object
    scores: Scores
    train_accuracy: float

    def __str__(self):
        return f"linear probe: {self.scores}"

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def linear_probe(model, train, test, C=1.0, max_iter=2000):
    """Logistic regression on the frozen features of ``train``, scored on ``test``.

    The features are standardised first (scikit-learn pipeline), so ``C`` means the
    same thing whatever the scale of the backbone's activations.
    """
    check_number(C, "C", 0, 1e6, "use a positive regularisation strength such as C=1.0")
    feature_extractor(model)  # a model the kit did not build: refused before any work
    # the probe is a new classifier: its labels need not fit the model's head
    tx, ty = check_data(train, "training data", model, head=False)
    vx, vy = check_data(test, "test data", model, head=False)
    if len(np.unique(ty)) < 2:
        raise ValueError(f"training data has {len(np.unique(ty))} class(es); a probe needs "
                         "examples of at least 2 classes (use tk.few_shot)")
    unseen = np.setdiff1d(vy, ty)
    if len(unseen):
        raise ValueError(f"test data has label {int(unseen[0])}, which the training data does not "
                         f"have (labels {sorted(set(ty.tolist()))[:6]}); pass training and test "
                         "data of the same task, e.g. tk.few_shot(task.train, k) and task.test")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    classifier.fit(extract_features(model, tx), ty)
    train_accuracy = float(classifier.score(extract_features(model, tx), ty))
    names = (test.class_names if isinstance(test, Dataset) and test.class_names
             else tuple(map(str, range(int(max(ty.max(), vy.max())) + 1))))
    pred = classifier.predict(extract_features(model, vx))
    return ProbeResult(classifier, score_predictions(vy, pred, names), train_accuracy)


def random_like(model, seed=0):
    """A freshly initialised network of the same architecture (the 'no transfer' control)."""
    check_model(model)
    set_seed(seed)
    return keras.models.clone_model(model)  # clone_model re-initialises every weight


# --------------------------------------------------------------------------- embeddings
@dataclass
class Embedding:
    """Examples mapped to 2-D, with two numbers saying how well classes separate there."""

    points: np.ndarray      # (n, 2)
    labels: np.ndarray      # (n,)
    class_names: tuple
    method: str
    knn_accuracy: float     # cross-validated 5-NN accuracy in the 2-D map
    silhouette: float       # -1..1, higher = tighter, better separated classes
    title: str = ""

    def __str__(self):
        return (f"{self.title or self.method}: 5-NN accuracy {self.knn_accuracy:.1%}, "
                f"silhouette {self.silhouette:.2f}")

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def knn_accuracy(points, labels, k=5, folds=KNN_FOLDS, seed=0):
    """Cross-validated k-nearest-neighbour accuracy: how often a point's neighbours share its class."""
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(KNeighborsClassifier(k), points, labels, cv=cv).mean())


def embed(model, data, method="pca", seed=0, title=""):
    """Map ``data`` through ``model``'s backbone, then to 2-D with PCA or t-SNE (scikit-learn)."""
    check_choice(method, "method", EMBEDDING_METHODS)
    if not isinstance(data, Dataset):
        raise TypeError(f"embed needs a tk.Dataset (labels colour the map), got "
                        f"{type(data).__name__}; pass e.g. task.test")
    check_data(data, "data", model, head=False)
    fewest = min(np.bincount(data.y)[np.unique(data.y)])
    if fewest < KNN_FOLDS or len(np.unique(data.y)) < 2:
        raise ValueError(f"embed scores the map with a {KNN_FOLDS}-fold k-NN, so it needs at "
                         f"least 2 classes of {KNN_FOLDS} images each; {data.name!r} has "
                         f"{len(np.unique(data.y))} class(es), the smallest with {fewest}; pass "
                         "more images, e.g. task.test")
    # standardise: a random network's features have arbitrary scales per channel
    features = StandardScaler().fit_transform(extract_features(model, data))
    if method == "pca":
        points = PCA(2, random_state=seed).fit_transform(features)
    else:
        perplexity = min(30.0, (len(features) - 1) / 3)
        points = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    points = points.astype(np.float32)
    return Embedding(points, np.asarray(data.y), tuple(data.class_names), method,
                     knn_accuracy(points, data.y), float(silhouette_score(points, data.y)),
                     title)


def plot_embeddings(*embeddings, figsize=None):
    """Side-by-side scatter plots of ``embed`` results, one colour per class, scores in the title."""
    if not embeddings or not all(isinstance(e, Embedding) for e in embeddings):
        raise TypeError("plot_embeddings takes one or more results of tk.embed(...)")
    fig = Figure(figsize=figsize or (4.2 * len(embeddings) + 1.1, 4))
    axes = np.atleast_1d(fig.subplots(1, len(embeddings)))
    for ax, e in zip(axes, embeddings):
        for c, name in enumerate(e.class_names):
            sel = e.labels == c
            ax.scatter(e.points[sel, 0], e.points[sel, 1], s=8, color=f"C{c % 10}", label=name)
            if sel.any():  # the class name at the class's centre
                cx, cy = np.median(e.points[sel], axis=0)
                ax.text(cx, cy, name, fontsize=11, weight="bold", ha="center", va="center",
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "alpha": 0.7, "lw": 0})
        ax.set_title(f"{e.title or e.method}\n5-NN acc. {e.knn_accuracy:.0%}, "
                     f"silhouette {e.silhouette:.2f}", fontsize=9)
        axis_name = {"pca": "PCA component", "tsne": "t-SNE axis"}.get(e.method, e.method)
        ax.set_xlabel(f"{axis_name} 1", fontsize=9)
        ax.set_ylabel(f"{axis_name} 2", fontsize=9)
        ax.set_xticks([])   # the units of a projection mean nothing
        ax.set_yticks([])
    # one colour legend for every panel, beside them (never on a point)
    handles, labels = axes[0].get_legend_handles_labels()
    legend = fig.legend(handles, labels, loc="center right", bbox_to_anchor=(0.995, 0.5),
                        title="class", fontsize=8, title_fontsize=8, frameon=False,
                        markerscale=1.5, ncols=1 if len(labels) <= 16 else 2)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    width = legend.get_window_extent(FigureCanvasAgg(fig).get_renderer()).width
    fig.tight_layout(rect=(0, 0, 0.99 - width / fig.bbox.width, 1))
    return check_figure(fig, "plot_embeddings")


# --------------------------------------------------------------------------- filters and maps
def first_layer_filters(model):
    """The first convolution's kernels as (filters, height, width) for the first input channel."""
    check_model(model)
    conv = next((layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)), None)
    if conv is None:
        raise ValueError(f"model {model.name!r} has no Conv2D layer; build it with tk.build_model")
    kernel = keras.ops.convert_to_numpy(conv.kernel)  # (h, w, in, out)
    return np.moveaxis(kernel[:, :, 0, :], -1, 0)


def feature_maps(model, image, layer="block1_relu"):
    """The activations (height, width, channels) of ``layer`` for one image (28, 28, 1)."""
    check_model(model)
    names = [lyr.name for lyr in model.layers]
    if layer not in names:
        blocks = [n for n in names if n.startswith("block")]
        raise ValueError(f"layer={layer!r} is not in model {model.name!r}; choose one of "
                         f"{blocks or names[1:]}")
    image = np.asarray(image.x if isinstance(image, Dataset) else image)
    batch = image[None] if image.ndim == len(model.inputs[0].shape) - 1 else image
    batch = check_data(batch, "image", model, labels=False)
    if len(batch) != 1:
        raise ValueError(f"feature_maps takes one image, got a batch of {len(batch)}; "
                         "pass images[i]")
    probe = keras.Model(model.input, model.get_layer(layer).output)
    return np.asarray(probe.predict(batch, verbose=0))[0]  # predict: inference mode


def _grid(images, n, title, figsize, cmap, symmetric):
    n = min(n, len(images))
    cols = min(8, n)
    rows = -(-n // cols)
    fig = Figure(figsize=figsize or (cols * 0.9, rows * 0.9 + 0.4))
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = images[i]
            if symmetric:  # zero is grey: positive weights light, negative dark
                lim = float(np.abs(img).max()) or 1.0
                ax.imshow(img, cmap=cmap, vmin=-lim, vmax=lim)
            else:
                ax.imshow(img, cmap=cmap)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _checked_grid(images, n, title, figsize, cmap, symmetric, name):
    return check_figure(_grid(images, n, title, figsize, cmap, symmetric), name)


def plot_filters(filters, n=16, title="first-layer filters", figsize=None):
    """A grid of 2-D kernels from ``first_layer_filters`` (grey = 0)."""
    filters = np.asarray(filters)
    if filters.ndim != 3:
        raise ValueError(f"filters of shape {filters.shape}: expected (filters, height, width), "
                         "as returned by tk.first_layer_filters")
    return _checked_grid(filters, n, title, figsize, "gray", True, "plot_filters")


def plot_feature_maps(maps, n=16, title="feature maps", figsize=None):
    """A grid of the channels of one ``feature_maps`` result (bright = strong response)."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps of shape {maps.shape}: expected (height, width, channels), "
                         "as returned by tk.feature_maps")
    return _checked_grid(np.moveaxis(maps, -1, 0), n, title, figsize, "magma", False,
                         "plot_feature_maps")


# --------------------------------------------------------------------------- weight change
def _is_statistic(variable):
    # BatchNorm's moving mean/variance are running averages, not learned weights
    return "moving_" in variable.path


def snapshot_weights(model):
    """{layer name: [NumPy copies of its learned weights]}, to compare before / after training."""
    check_model(model)
    return {layer.name: [np.array(keras.ops.convert_to_numpy(v), copy=True)
                         for v in layer.weights if not _is_statistic(v)]
            for layer in model.layers if any(not _is_statistic(v) for v in layer.weights)}


def _is_kit_layer(name):
    return name == HEAD or (name.startswith("block") and name[5:6].isdigit())


def _snapshot_of(value, what):
    """A ``snapshot_weights`` dict of finite NumPy arrays, taken from a model if need be."""
    if not isinstance(value, dict):
        if not hasattr(value, "layers"):
            raise TypeError(f"{what} must be a model or tk.snapshot_weights(model), got "
                            f"{type(value).__name__}; e.g. before = tk.snapshot_weights(model)")
        value = snapshot_weights(value)
    for name, arrays in value.items():
        if not isinstance(arrays, (list, tuple)) or not all(isinstance(a, np.ndarray)
                                                            for a in arrays):
            raise TypeError(f"{what}[{name!r}] is not a list of arrays; pass what "
                            "tk.snapshot_weights(model) returns")
        for a in arrays:
            check_finite(a, f"{what}[{name!r}] (the weights of layer {name!r})",
                         "the model diverged in training: train it again, e.g. with a lower "
                         "learning rate")
    return value


def weight_change(before, after, by="block"):
    """Relative change ``||w_after - w_before|| / ||w_before||`` per block or per layer.

    ``before`` / ``after``: ``snapshot_weights`` results or models.  ``by="block"``
    groups a block's conv and BatchNorm weights (and the head); ``by="layer"`` does not.
    """
    if by not in ("block", "layer"):
        raise ValueError(f"by={by!r} is not known; use 'block' or 'layer'")
    before, after = (_snapshot_of(s, what) for s, what in ((before, "before"), (after, "after")))
    if by == "block" and not all(_is_kit_layer(name) for name in [*before, *after]):
        other = [n for n in dict.fromkeys([*before, *after]) if not _is_kit_layer(n)][:3]
        raise ValueError(f"by='block' groups the kit's blocks (block1_conv, ...) and head, but "
                         f"the snapshots hold layers {other} (a model not built by "
                         "tk.build_model); use by='layer' for it")
    if before.keys() != after.keys():
        raise ValueError(f"the two snapshots have different layers ({sorted(before)} vs "
                         f"{sorted(after)}); compare the same architecture: snapshots of one "
                         "model before and after training, e.g. before = "
                         "tk.snapshot_weights(model)")
    diff, norm = {}, {}
    for name in before:
        if len(before[name]) != len(after[name]) or any(
                a.shape != b.shape for a, b in zip(before[name], after[name])):
            raise ValueError(f"layer {name!r} has different weight shapes in the two snapshots; "
                             "compare the same architecture")
        key = name.split("_")[0] if by == "block" else name
        diff[key] = diff.get(key, 0.0) + sum(float(np.sum((b.astype(np.float64) - a) ** 2))
                                             for a, b in zip(before[name], after[name]))
        norm[key] = norm.get(key, 0.0) + sum(float(np.sum(a.astype(np.float64) ** 2))
                                             for a in before[name])
    return {k: (float(np.sqrt(diff[k] / norm[k])) if norm[k] > 0 else
                (0.0 if diff[k] == 0 else float("inf"))) for k in diff}


def plot_weight_change(changes, title="relative weight change", figsize=(6, 3)):
    """Bar chart of a ``weight_change`` dict (in percent)."""
    if not isinstance(changes, dict) or not changes:
        raise TypeError("plot_weight_change takes the dict returned by tk.weight_change")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names = list(changes)
    values = [100 * float(changes[k]) for k in names]
    bars = ax.bar(names, values, color=[f"C{i % 10}" for i in range(len(names))])
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{v:.1f}%",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("||w_after - w_before|| / ||w_before|| (%)", fontsize=8)
    by_block = all(k == "head" or (k.startswith("block") and k[5:].isdigit()) for k in names)
    ax.set_xlabel("block" if by_block else "layer", fontsize=9)
    ax.set_title(title)
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.canvas.draw()
    if overlapping_tick_labels(ax):   # by="layer": many long names; stand them upright
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        fig.tight_layout()
    return check_figure(fig, "plot_weight_change")


__all__ = ["EMBEDDING_METHODS", "KNN_FOLDS", "Embedding", "ProbeResult", "coral", "embed",
           "extract_features", "feature_maps", "first_layer_filters", "knn_accuracy",
           "linear_probe", "plot_embeddings", "plot_feature_maps", "plot_filters",
           "plot_weight_change", "random_like", "snapshot_weights", "weight_change"]
