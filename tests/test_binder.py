"""Binder (repo2docker reads only binder/): its files must stay in step with requirements.txt.

A manual, deeper check (needs `pip install jupyter-repo2docker`, no Docker):
``jupyter-repo2docker --no-build --debug .`` prints the Dockerfile Binder would build.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
# needed to test or benchmark the kit, not to run its notebooks on Binder
DEV_ONLY = {"nbclient", "nbformat", "psutil", "pytest", "nbval", "playwright", "hypothesis"}
# Binder builds CPU-only images: the smaller CPU wheel of the same release
BINDER_NAME = {"tensorflow": "tensorflow-cpu"}


def _pins(path):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        name, spec = re.match(r"([A-Za-z0-9_.\-\[\]]+)\s*(.*)", line).groups()
        pins[name.lower()] = spec.replace(" ", "")
    return pins


def test_binder_requirements_pin_what_the_notebooks_need_at_the_same_versions():
    main, binder = _pins(ROOT / "requirements.txt"), _pins(BINDER / "requirements.txt")
    for name, spec in main.items():
        if name in DEV_ONLY:
            continue
        there = BINDER_NAME.get(name, name)
        assert there in binder, f"binder/requirements.txt lacks {there} (requirements.txt: {name}{spec})"
        assert binder[there] == spec, f"{there}: binder pins {binder[there]!r}, requirements.txt {spec!r}"


def test_binder_python_version_is_one_the_kit_supports():
    version = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.(10|11|12)", version), version


def test_post_build_is_executable_stops_on_errors_and_prepares_the_source_models():
    script = BINDER / "postBuild"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert os.access(script, os.X_OK), "chmod +x binder/postBuild"
    assert "set -euo pipefail" in text  # repo2docker does not stop on errors otherwise
    # not editable: on a hub the home volume hides the checkout ($HOME), and the kit with it
    assert re.search(r"pip install --no-deps \.$", text, re.M)
    # the source model, and the alternative sources notebooks 08-09 would otherwise train,
    # into the shared cache under /srv (repo2docker's environment), not under $HOME
    assert 'TRANSFERKIT_CACHE="$share/cache" python -m transferkit prepare --all-sources' in text
    assert 'share="${NB_PYTHON_PREFIX' in text and "/share/transferkit" in text
    assert "deploy/setup.sh course" in text  # the course a hub copies into each home


def test_start_names_the_cache_post_build_built_as_the_shared_cache():
    script = BINDER / "start"
    text = script.read_text()
    assert os.access(script, os.X_OK), "chmod +x binder/start"
    assert 'exec "$@"' in text  # repo2docker's entrypoint runs the server through it
    assert re.search(r'export TRANSFERKIT_SHARED_CACHE="\$\{TRANSFERKIT_SHARED_CACHE:-'
                     r'\$\{NB_PYTHON_PREFIX:-/srv/conda/envs/notebook\}/share/transferkit/cache\}"',
                     text), text
