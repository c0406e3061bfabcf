"""Online datasets and the pretrained backbone, exercised offline.

The files are written by the tests into the private cache, in exactly the format
the real downloads have, so the loading code runs for real with no network; the
fast-fail path is tested against hosts that cannot answer.
"""
from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import threading

import numpy as np
import pytest

import transferkit as tk
from transferkit import files, online


KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"


def fake_images(n, shape, seed):
    return np.random.default_rng(seed).integers(0, 256, (n,) + shape, dtype=np.uint8)


def write_mnist(n_train=60, n_test=30):
    """An mnist.npz laid out as keras.datasets.mnist's file (uint8 images, uint8 labels)."""
    path = tk.online_file_paths("mnist")[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"x_train": fake_images(n_train, (28, 28), 0),
              "y_train": (np.arange(n_train) % 10).astype(np.uint8),
              "x_test": fake_images(n_test, (28, 28), 1),
              "y_test": (np.arange(n_test) % 10).astype(np.uint8)}
    np.savez(path, **arrays)
    return arrays


def test_mnist_file_in_the_cache_loads_without_network(monkeypatch):
    monkeypatch.setenv(online.ENV_OFFLINE, "1")  # any network use would raise
    arrays = write_mnist()
    train, test = tk.load_online_dataset("mnist")
    assert isinstance(train, tk.Dataset) and train.x.shape == (60, 28, 28, 1)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64
    np.testing.assert_allclose(train.x[..., 0] * 255, arrays["x_train"], atol=1e-3)
    assert np.array_equal(test.y, arrays["y_test"]) and train.class_names == tuple("0123456789")
    assert tk.online.is_cached("mnist")


def test_online_task_is_balanced_disjoint_and_fits_the_kit(monkeypatch):
    monkeypatch.setenv(online.ENV_OFFLINE, "1")
    write_mnist(n_train=100, n_test=50)
    task = tk.online_task("mnist", train_per_class=3, val_per_class=2, test_per_class=4, seed=0)
    assert task.train.counts() == [3] * 10 and task.val.counts() == [2] * 10
    assert task.test.counts() == [4] * 10 and task.input_shape == (28, 28, 1)
    train_rows = {row.tobytes() for row in task.train.x}
    assert not train_rows & {row.tobytes() for row in task.val.x}
    again = tk.online_task("mnist", train_per_class=3, val_per_class=2, test_per_class=4, seed=0)
    assert np.array_equal(again.train.x, task.train.x)  # same seed, same draw
    assert len(tk.few_shot(task.train, 1)) == 10
    with pytest.raises(ValueError, match="at most"):
        tk.online_task("mnist", train_per_class=9, val_per_class=2)


def test_fashion_mnist_gzip_idx_files_load(monkeypatch):
    monkeypatch.setenv(online.ENV_OFFLINE, "1")
    labels = {"train": np.arange(20, dtype=np.uint8) % 10, "t10k": np.arange(10, dtype=np.uint8)}
    images = {"train": fake_images(20, (28, 28), 2), "t10k": fake_images(10, (28, 28), 3)}
    for path in tk.online_file_paths("fashion_mnist"):
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.name.split("-")[0]
        header, body = ((b"\0" * 8, labels[part]) if "labels" in path.name
                        else (b"\0" * 16, images[part]))
        with gzip.open(path, "wb") as f:
            f.write(header + body.tobytes())
    train, test = tk.load_online_dataset("fashion_mnist")
    assert train.x.shape == (20, 28, 28, 1) and np.array_equal(test.y, labels["t10k"])
    np.testing.assert_allclose(train.x[..., 0] * 255, images["train"], atol=1e-3)
    assert train.class_names[9] == "Ankle boot"


def cifar_batch(n, seed):
    x = fake_images(n, (3, 32, 32), seed)
    return {b"data": x.reshape(n, -1), b"labels": [i % 10 for i in range(n)]}, x


def test_cifar10_archive_loads_channels_last(monkeypatch):
    monkeypatch.setenv(online.ENV_OFFLINE, "1")
    path = tk.online_file_paths("cifar10")[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    firsts = []
    with tarfile.open(path, "w:gz") as archive:
        for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
            batch, x = cifar_batch(4, seed=i)
            firsts.append(x)
            raw = pickle.dumps(batch, protocol=4)  # bytes inline, like the real (py2) files
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    train, test = tk.load_online_dataset("cifar10")
    assert train.x.shape == (20, 32, 32, 3) and len(test) == 4
    np.testing.assert_allclose(train.x[0] * 255, firsts[0][0].transpose(1, 2, 0), atol=1e-3)
    assert test.class_names[0] == "airplane"


def test_a_cifar_pickle_that_could_run_code_is_refused(monkeypatch):
    monkeypatch.setenv(online.ENV_OFFLINE, "1")
    path = tk.online_file_paths("cifar10")[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = pickle.dumps({b"data": threading.Lock}, protocol=2)  # a non-numpy global
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(raw)
        archive.addfile(info, io.BytesIO(raw))
    with pytest.raises(ValueError, match="refusing .*delete them and fetch again"):
        tk.load_online_dataset("cifar10")


def test_offline_without_cache_fails_with_the_alternative_and_the_folder(monkeypatch):
    monkeypatch.setenv(online.ENV_OFFLINE, "1")
    with pytest.raises(tk.OfflineError) as caught:
        tk.load_online_dataset("mnist")
    message = str(caught.value)
    assert "MNIST" in message and "tk.target_task()" in message
    folder = files.shown(tk.online_file_paths("mnist")[0].parent)
    assert f"copy mnist.npz into {folder}" in message and "\n" not in message
    assert isinstance(caught.value, ConnectionError)
    assert not tk.online_file_paths("mnist")[0].exists()


def use_mnist_url(monkeypatch, url, file_hash):
    spec = online.ONLINE_DATASETS["mnist"]
    file = online.OnlineFile("mnist.npz", url, file_hash)
    monkeypatch.setitem(online.ONLINE_DATASETS, "mnist",
                        online.OnlineDataset(spec.key, spec.title, (file,), spec.class_names,
                                             spec.image_shape))


def test_unresolvable_host_fails_at_once(monkeypatch):
    monkeypatch.delenv(online.ENV_OFFLINE, raising=False)
    use_mnist_url(monkeypatch, "https://host.invalid/mnist.npz", None)  # RFC 2606: never resolves
    with pytest.raises(tk.OfflineError, match=r"cannot download MNIST .*no connection to "
                                              r"host\.invalid.*tk\.target_task"):
        tk.load_online_dataset("mnist", timeout=0.5)
    assert not tk.online_file_paths("mnist")[0].parent.exists()


def test_a_server_that_never_answers_times_out_instead_of_hanging(monkeypatch):
    """The connection is accepted (listen backlog) but no byte ever comes back."""
    import socket

    monkeypatch.delenv(online.ENV_OFFLINE, raising=False)
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        use_mnist_url(monkeypatch, f"http://127.0.0.1:{silent.getsockname()[1]}/mnist.npz",
                      None)
        with pytest.raises(tk.OfflineError, match="the download failed .*timed out"):
            tk.load_online_dataset("mnist", timeout=0.5)
    finally:
        silent.close()
    assert list(tk.online_file_paths("mnist")[0].parent.iterdir()) == []  # no partial file


@pytest.fixture
def local_server(tmp_path, monkeypatch):
    """A real HTTP server on localhost serving tmp_path/www: the download path, offline."""
    import functools
    import http.server

    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)  # talk to localhost directly

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_is_checked_and_published_atomically(monkeypatch, local_server, capsys):
    import hashlib

    monkeypatch.delenv(online.ENV_OFFLINE, raising=False)
    root, base = local_server
    served = root / "mnist.npz"
    np.savez(served, x_train=fake_images(20, (28, 28), 4), y_train=np.arange(20) % 10,
             x_test=fake_images(10, (28, 28), 5), y_test=np.arange(10) % 10)
    digest = hashlib.sha256(served.read_bytes()).hexdigest()

    use_mnist_url(monkeypatch, base + "mnist.npz", "0" * 64)  # a wrong checksum
    with pytest.raises(ValueError, match="hash does not match"):
        tk.online.fetch_online("mnist")
    folder = tk.online_file_paths("mnist")[0].parent
    assert list(folder.iterdir()) == []  # nothing half-checked is left in the cache

    use_mnist_url(monkeypatch, base + "mnist.npz", digest)
    assert tk.online.fetch_online("mnist") == tk.online_file_paths("mnist")
    served.unlink()  # from now on only the cache can answer
    train, test = tk.load_online_dataset("mnist")
    assert len(train) == 20 and len(test) == 10 and [p.name for p in folder.iterdir()] == [
        "mnist.npz"]


def test_missing_file_on_the_server_is_an_offline_error(monkeypatch, local_server):
    monkeypatch.delenv(online.ENV_OFFLINE, raising=False)
    _, base = local_server
    use_mnist_url(monkeypatch, base + "nothing-here.npz", None)
    with pytest.raises(tk.OfflineError, match=r"the download failed .*404"):
        tk.load_online_dataset("mnist")
    assert list(tk.online_file_paths("mnist")[0].parent.iterdir()) == []


def test_the_connection_check_goes_to_the_proxy_when_one_is_set(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert online._proxy_for(KERAS_URL) == ("proxy.example", 3128)
    monkeypatch.delenv("https_proxy")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    assert online._proxy_for(KERAS_URL) is None


def test_try_online_prints_one_line_and_returns_none(monkeypatch, capsys):
    monkeypatch.setenv(online.ENV_OFFLINE, "1")
    assert tk.try_online(tk.pretrained_backbone, input_size=32) is None
    out = capsys.readouterr().out.strip()
    assert out.startswith("Offline: cannot download the ImageNet weights of MobileNetV3Small")
    assert "tk.source_model()" in out and "\n" not in out
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in out


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown online dataset 'mnst'.*'fashion_mnist'"):
        tk.load_online_dataset("mnst")
    with pytest.raises(ValueError, match=r"input_size=8.*>= 32"):
        tk.pretrained_backbone(input_size=8)


def test_cached_backbone_weights_load_bit_equal_under_a_new_head(monkeypatch):
    monkeypatch.setenv(online.ENV_OFFLINE, "1")
    tk.set_seed(3)
    saved = tk.backbone_architecture(input_size=32)  # random weights, no download
    path = tk.online_file_paths("mobilenet_v3_small")[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    saved.save(str(path))  # the legacy .h5 layout of the Keras Applications file
    loaded = tk.pretrained_backbone(input_size=32)
    assert not loaded.trainable
    for a, b in zip(saved.weights, loaded.weights):
        assert a.path == b.path and np.array_equal(a.numpy(), b.numpy()), a.path

    # (no training here: tracing MobileNetV3 costs tens of seconds on a small CPU)
    model = tk.pretrained_target_model(loaded, num_classes=3)
    assert [w.path for w in model.trainable_weights] == ["head/kernel", "head/bias"]
    assert [l.name for l in model.layers[1:4]] == ["resize", "grey_to_rgb", "scale"]
    assert model.output_shape == (None, 3)


def test_target_model_on_the_kits_own_backbone():
    from helpers import tiny_model
    backbone = tk.feature_extractor(tiny_model(num_classes=3))
    model = tk.pretrained_target_model(backbone, num_classes=4)
    assert model.output_shape == (None, 4) and "scale" not in [l.name for l in model.layers]
    assert [w.path for w in model.trainable_weights] == ["head/kernel", "head/bias"]
    with pytest.raises(ValueError, match="num_classes=1"):
        tk.pretrained_target_model(backbone, num_classes=1)
