"""deploy/ without a hub (fast): the pieces that must stay in step with each other.

- the Kubernetes values (deploy/z2jh-values.yaml) carry the one-server hub's limits, culler
  and start page, and mount the shared cache read-only where TRANSFERKIT_SHARED_CACHE says,
  filled from where binder/postBuild builds it;
- the course copy (the config's, and the Kubernetes hook's) adds missing files and never
  overwrites a student's;
- ``deploy/setup.sh course`` writes the student version with what the notebooks read;
- the cgroup helpers read this process's groups.
The hub itself, with real users, is tests/test_hub.py.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CONFIG = (DEPLOY / "jupyterhub_config.py").read_text()
VALUES = yaml.safe_load((DEPLOY / "z2jh-values.yaml").read_text())


def default(name):
    """A setting's default in deploy/jupyterhub_config.py: setting("NAME", "default")."""
    return re.search(rf'setting\("{name}", "([^"]*)"\)', CONFIG).group(1)


def copy_course_script():
    tree = ast.parse(CONFIG)
    return next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", None) == "COPY_COURSE")


def test_kubernetes_limits_culler_and_start_page_are_the_one_server_hubs():
    single = VALUES["singleuser"]
    assert single["memory"]["limit"] == default("MEM_LIMIT")
    assert float(single["cpu"]["limit"]) == float(default("CPU_LIMIT"))
    assert VALUES["cull"]["enabled"] and VALUES["cull"]["timeout"] == int(default("CULL_IDLE_S"))
    assert f'"/lab/tree/transferkit/notebooks/00_index.ipynb"' in CONFIG
    assert single["defaultUrl"] == "/lab/tree/transferkit/notebooks/00_index.ipynb"
    args = VALUES["hub"]["config"]["Spawner"]["args"]
    assert f"--MappingKernelManager.cull_idle_timeout={default('KERNEL_IDLE_S')}" in args


def test_kubernetes_mounts_the_shared_cache_read_only_filled_from_the_image():
    single = VALUES["singleuser"]
    path = single["extraEnv"]["TRANSFERKIT_SHARED_CACHE"]
    mount = next(m for m in single["storage"]["extraVolumeMounts"] if m["mountPath"] == path)
    assert mount["readOnly"] is True
    init = next(c for c in single["initContainers"] if c["name"] == mount["name"])
    assert init["image"] == f"{single['image']['name']}:{single['image']['tag']}"
    start = (REPO / "binder" / "start").read_text()
    built = re.search(r"NB_PYTHON_PREFIX:-([^}]+)\}(/share/transferkit/cache)", start)
    assert f"cp -r {built.group(1)}{built.group(2)}/. /cache/" in init["command"][-1]
    assert single["extraEnv"]["R2D_ENTRYPOINT"] == ""  # binder/start is under the hidden $HOME


@pytest.mark.parametrize("where", ["config", "kubernetes"])
def test_the_course_copy_adds_missing_files_and_never_overwrites(tmp_path, where):
    course, home = tmp_path / "course", tmp_path / "home" / "transferkit"
    (course / "notebooks").mkdir(parents=True)
    (course / "notebooks" / "00.ipynb").write_text("course 00")
    (course / "notebooks" / "01.ipynb").write_text("course 01")
    (home / "notebooks").mkdir(parents=True)
    (home / "notebooks" / "00.ipynb").write_text("the student's work")
    if where == "config":
        script, argv = copy_course_script(), [str(course), str(home)]
    else:
        script = VALUES["singleuser"]["lifecycleHooks"]["postStart"]["exec"]["command"][-1]
        script = script.replace('"/srv/conda/envs/notebook/share/transferkit/course"',
                                repr(str(course)))
        argv = []
    subprocess.run([sys.executable, "-c", script, *argv], check=True,
                   env=dict(os.environ, HOME=str(tmp_path / "home")))
    assert (home / "notebooks" / "00.ipynb").read_text() == "the student's work"
    assert (home / "notebooks" / "01.ipynb").read_text() == "course 01"


def test_setup_course_writes_the_student_version_and_what_the_notebooks_read(tmp_path):
    out = tmp_path / "course"
    subprocess.run(["bash", str(DEPLOY / "setup.sh"), "course", str(out)], check=True,
                   capture_output=True, env=dict(os.environ, TK_PYTHON=sys.executable))
    notebooks = sorted(p.name for p in (out / "notebooks").glob("*.ipynb"))
    assert notebooks == sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    for path in (out / "notebooks").glob("*.ipynb"):
        tags = [t for c in json.loads(path.read_text())["cells"]
                for t in c.get("metadata", {}).get("tags", [])]
        assert "solution" not in tags, f"{path.name} still holds a solution"
    assert (out / "tests" / "reference_numerics.json").is_file()
    assert (out / "benchmarks" / "results" / "arc.json").is_file()
    assert not (out / "docs" / "teaching" / "answers.md").exists()
    for path in out.rglob("*"):
        assert path.stat().st_mode & 0o004, f"{path} is not readable by the students"


def test_setup_script_parses_and_refuses_to_run_a_root_step_as_another_user():
    subprocess.run(["bash", "-n", str(DEPLOY / "setup.sh")], check=True)
    assert "need_root" in (DEPLOY / "setup.sh").read_text()


@pytest.mark.skipif(not Path("/proc/self/cgroup").exists(), reason="no cgroups (not Linux)")
def test_the_cgroup_helpers_find_this_process_groups():
    sys.path.insert(0, str(DEPLOY))
    try:
        import cgroups
    finally:
        sys.path.remove(str(DEPLOY))
    groups = cgroups.process_groups()
    assert groups and all(folder.is_dir() for folder in groups.values())
    assert all(str(os.getpid()) in (folder / "cgroup.procs").read_text().split()
               for folder in groups.values() if (folder / "cgroup.procs").exists())
