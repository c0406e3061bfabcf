"""The same training job on each Keras backend: TensorFlow, JAX, torch.

    python -m benchmarks.backends                    # all three, 5 epochs; prints a table
    python -m benchmarks.backends --backends jax torch --epochs 3

The job is the kit's source model as notebook 01 trains it (the textbook CNN on the
letters task, 120 images per class, batch 64, Adam 3e-3, ``tk.fit`` with its validation
pass), for ``--epochs`` epochs.  Each backend runs in its own process with
``KERAS_BACKEND`` set (a process can hold only one backend); the images are rendered
once here and handed over in a file, so every backend trains on identical data.

Measured per backend: import time of the kit (Keras + backend), model build + compile,
the first epoch (includes tracing / compiling the training step), the steady-state
epoch (median of the later epochs), and the test accuracy reached (numbers differ a
little between backends: other kernels, other random streams).  Ratios are against
TensorFlow.  Writes ``benchmarks/results/backends.json``.  Timings: run on an otherwise
idle machine; the load average at start and end is recorded.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BACKENDS = ("tensorflow", "jax", "torch")


# --------------------------------------------------------------------------- one backend
def worker(data_file, epochs, batch_size):
    """Runs in the child process: train once, print one JSON line prefixed with '@@'."""
    t0 = time.perf_counter()
    import transferkit as tk  # first: portable numerics before NumPy and TensorFlow load
    import keras
    import numpy as np
    imported = time.perf_counter() - t0

    data = np.load(data_file)
    train = tk.Dataset(data["train_x"], data["train_y"], tuple(data["names"]), "train")
    val = tk.Dataset(data["val_x"], data["val_y"], tuple(data["names"]), "val")
    test = tk.Dataset(data["test_x"], data["test_y"], tuple(data["names"]), "test")

    epoch_times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_times.append(time.perf_counter() - self.start)

    t = time.perf_counter()
    tk.set_seed(0)
    model = tk.build_model(train.num_classes, name="source")
    tk.compile_model(model, 3e-3)
    built = time.perf_counter() - t
    history = tk.fit(model, train, val, epochs=epochs, batch_size=batch_size, callbacks=[Timer()])
    scores = tk.evaluate(model, test)
    later = epoch_times[1:]
    print("@@" + json.dumps({
        "device": tk.device_report(), "import_seconds": imported, "build_seconds": built,
        "epoch_seconds": epoch_times, "first_epoch_seconds": epoch_times[0],
        "steady_epoch_seconds": statistics.median(later) if later else None,
        "train_seconds": history.seconds, "final_loss": history.last("loss"),
        "val_accuracy": history.last("val_accuracy"), "test_accuracy": scores.accuracy,
    }), flush=True)


def run_backend(backend, data_file, epochs, batch_size, timeout):
    env = dict(os.environ, KERAS_BACKEND=backend)
    # the worker is this module, started the way the benchmarks run: from the repository
    # root, as a module of the benchmarks package (no sys.path edits)
    cmd = [sys.executable, "-m", "benchmarks.backends", "--worker", str(Path(data_file).resolve()),
           "--epochs", str(epochs), "--batch-size", str(batch_size)]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, cwd=HERE.parent, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"backend": backend, "status": f"timeout after {timeout} s"}
    wall = time.perf_counter() - t
    for line in proc.stdout.splitlines():
        if line.startswith("@@"):
            return {"backend": backend, "status": "ok", "process_seconds": wall,
                    **json.loads(line[2:])}
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"backend": backend, "status": f"failed: {last[:200]}", "process_seconds": wall}


# --------------------------------------------------------------------------- report
def _ratio(value, base):
    return f"{value / base:.2f}x" if value and base else "-"


def _s(value):
    return "-" if value is None else f"{value:.2f}"


def report(rows):
    base = next((r for r in rows if r["backend"] == "tensorflow" and r["status"] == "ok"), {})
    head = (f"{'backend':<11}{'version':<14}{'import s':>9}{'build s':>9}{'1st epoch s':>12}"
            f"{'epoch s':>9}{'epoch vs TF':>12}{'1st vs TF':>10}{'test acc':>9}  status")
    lines = [head]
    for r in rows:
        d = r.get("device") or {}
        acc = r.get("test_accuracy")
        lines.append(
            f"{r['backend']:<11}{str(d.get('backend_version', '-')):<14}"
            f"{_s(r.get('import_seconds')):>9}{_s(r.get('build_seconds')):>9}"
            f"{_s(r.get('first_epoch_seconds')):>12}{_s(r.get('steady_epoch_seconds')):>9}"
            f"{_ratio(r.get('steady_epoch_seconds'), base.get('steady_epoch_seconds')):>12}"
            f"{_ratio(r.get('first_epoch_seconds'), base.get('first_epoch_seconds')):>10}"
            f"{'-' if acc is None else f'{acc:.1%}':>9}  {r['status']}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--epochs", type=int, default=5, help="epochs per backend (default: 5)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--timeout", type=int, default=900, help="seconds per backend (default: 900)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--name", default="backends", help="file stem of the results JSON")
    p.add_argument("--worker", metavar="DATA", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error(f"--epochs={args.epochs}: use 2 or more (the first epoch includes tracing)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker(args.worker, args.epochs, args.batch_size)
        return 0
    import numpy as np

    from transferkit.data import source_task  # NumPy and matplotlib only: any backend

    started = _dt.datetime.now().astimezone()
    load_start = os.getloadavg()
    task = source_task()  # the recipe's 120 per class
    rows = []
    with tempfile.TemporaryDirectory(prefix="tk-backends-") as folder:
        data_file = os.path.join(folder, "letters.npz")
        np.savez(data_file, train_x=task.train.x, train_y=task.train.y, val_x=task.val.x,
                 val_y=task.val.y, test_x=task.test.x, test_y=task.test.y,
                 names=np.array(task.train.class_names))
        for backend in args.backends:
            print(f"{backend} ...", end=" ", flush=True)
            rows.append(run_backend(backend, data_file, args.epochs, args.batch_size,
                                    args.timeout))
            print(rows[-1]["status"], flush=True)
    print()
    print(report(rows))
    out = {"benchmark": "backends", "started": started.isoformat(timespec="seconds"),
           "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
           "config": {"epochs": args.epochs, "batch_size": args.batch_size,
                      "train_images": len(task.train), "backends": args.backends},
           "runs": rows}
    from transferkit.files import json_safe as clean, write_text as write_atomic  # Keras: only now
    path = args.out / f"{args.name}.json"
    write_atomic(path, json.dumps(clean(out), indent=1) + "\n")
    print(f"\nWrote {path}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
