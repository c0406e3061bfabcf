"""The benchmark scripts: run each from the repository root, e.g. ``python -m benchmarks.lab``."""
