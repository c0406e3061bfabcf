"""End to end: the class hub of deploy/ on loopback, two real Unix students, one notebook.

deploy/loopback.py builds a stand-in /srv with deploy/setup.sh's own steps (the course as the
student version, the teacher's folder, the shared cache built by the teacher: real training
of the letters source), makes the users, and starts JupyterHub with deploy/jupyterhub_config.py
and configurable-http-proxy on free loopback ports.  Two simulated students
(deploy/hubclient.py) log in through the hub's login form and REST API, start their servers
and run code through the kernel's websocket:

- the course reached each 0700 home and notebook 00 runs there, cell by cell;
- each student's source model comes from the shared cache: "loaded", no training, nothing
  written to the shared cache or to the student's own cache;
- isolation, probed from inside a student's kernel (a real process of that Unix user): the
  other student's home and notebooks, the teacher's folder (solutions, answers, the grading
  course folder), the teacher's home and the hub's state cannot be read; the shared cache and
  the course cannot be written; the other student's server cannot be signalled; controls
  (their own files, the shared cache, the course) can be read;
- where the host has writable cgroups: each server in its own group with the configured
  memory and CPU limits, and a kernel that goes over the memory limit is killed alone (the
  other student's kernel keeps working);
- everything is cleaned up: no process of the test users is left once the servers stop.

Needs root, a venv with JupyterHub made from /usr/bin/python3 (``deploy/setup.sh venv``) and
configurable-http-proxy; else skipped, unless TRANSFERKIT_REQUIRE_HUB=1 (set by .ci/run),
which turns a missing tool into a failure.  About a minute on the 2-core CPU.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.hub

REPO = Path(__file__).resolve().parents[1]
REQUIRE = os.environ.get("TRANSFERKIT_REQUIRE_HUB") == "1"
STUDENTS = ("tkstu_t1", "tkstu_t2")
MEM_LIMIT = 1536 * 1024 * 1024  # room for notebook 00 (about 0.9 GB), not for 2 GB more
NOTEBOOK = "transferkit/notebooks/00_index.ipynb"
STEP_S = 300                    # any one wait of the scenario


def _module(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "deploy" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


loopback = _module("loopback")
hubclient = sys.modules["hubclient"]
cgroups = sys.modules["cgroups"]


def tree(folder):
    """{relative path: (mode, size, mtime, sha256)} of everything under ``folder``."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        st = path.lstat()
        data = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns, data)
    return out


def pids_of(user):
    uid = loopback.pwd.getpwnam(user).pw_uid
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and loopback._uid_of(p) == uid)


def server_pid(user):
    """The student's jupyterhub-singleuser process."""
    for pid in pids_of(user):
        try:
            if b"jupyterhub-singleuser" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    return None


PROBE = r"""
import json, os
def probe(path, mode):
    try:
        if mode == "list":
            os.listdir(path)
        elif mode == "read":
            open(path, "rb").read(1)
        elif mode == "write":
            with open(path, "ab"):
                pass
        elif mode == "mkdir":
            os.mkdir(path)
            os.rmdir(path)
        elif mode == "signal":
            os.kill(int(path), 0)
        return "allowed"
    except PermissionError:
        return "denied"
    except OSError as exc:
        return type(exc).__name__
print("PROBES " + json.dumps({f"{mode} {path}": probe(path, mode) for mode, path in CHECKS}))
"""


def checks_for(hub, me, other):
    home, theirs = hub.home(me), hub.home(other)
    cache_file = next(hub.shared_cache.glob("source-*.weights.h5"))
    denied = [
        ("list", theirs), ("read", theirs / NOTEBOOK), ("write", theirs / NOTEBOOK),
        ("write", theirs / "transferkit" / "planted.txt"),
        ("list", hub.teacher_folder), ("read", hub.teacher_folder / "solutions" / "answers.md"),
        ("read", hub.teacher_folder / "solutions" / "04_fine_tuning.ipynb"),
        ("list", hub.teacher_folder / "course" / "source"), ("list", hub.home(hub.teacher)),
        ("read", hub.root / "state" / "jupyterhub.sqlite"),
        ("read", hub.root / "state" / "jupyterhub_cookie_secret"),
        ("write", hub.shared_cache / "planted.weights.h5"), ("write", cache_file),
        ("mkdir", hub.shared_cache / "planted"), ("write", hub.course / "planted.txt"),
        ("write", hub.course / "notebooks" / "00_index.ipynb"),
        ("signal", server_pid(other)),
    ]
    allowed = [
        ("read", home / NOTEBOOK), ("write", home / "transferkit" / "mine.txt"),
        ("read", cache_file), ("list", hub.shared_cache), ("list", hub.course / "notebooks"),
        ("signal", server_pid(me)),
    ]
    return {f"{m} {p}": "denied" for m, p in denied}, {f"{m} {p}": "allowed" for m, p in allowed}


async def run_probes(kernel, expected):
    """The probe results of ``expected``'s keys ("mode path"), run in the student's kernel."""
    checks = [tuple(key.split(" ", 1)) for key in expected]
    result = await kernel.execute(f"CHECKS = {checks!r}\n{PROBE}", timeout=60)
    assert result.status == "ok", result
    line = next(x for x in result.text.splitlines() if x.startswith("PROBES "))
    return json.loads(line[len("PROBES "):])


def student_group(pid):
    """The cgroup(s) a server process is in, as a StudentGroup (to read its limits)."""
    version, _ = cgroups.enforcement()
    if version is None:
        return None
    groups = cgroups.process_groups(pid)
    names = ("memory", "cpu", "cpuacct") if version == "v1" else ("unified",)
    return cgroups.StudentGroup(version, {c: groups[c] for c in names if c in groups})




async def scenario(hub):
    """Everything the tests below read, in one pass (servers and kernels cost seconds)."""
    out = {"shared_before": tree(hub.shared_cache)}
    students = {name: hub.student(name) for name in STUDENTS}
    first, second = STUDENTS
    try:
        await asyncio.gather(*(s.login() for s in students.values()))
        starts = await asyncio.gather(*(s.start_server(timeout=STEP_S) for s in students.values()))
        out["start_s"] = dict(zip(STUDENTS, starts))
        out["groups"] = {}
        for name in STUDENTS:
            group = student_group(server_pid(name))
            out["groups"][name] = None if group is None else (
                group.folders, group.memory_limit(), group.cpu_quota())
        out["homes"] = {n: (hub.home(n).stat().st_mode & 0o777,
                            (hub.home(n) / NOTEBOOK).stat().st_uid == loopback.pwd.getpwnam(n).pw_uid)
                        for n in STUDENTS}
        kernels = {n: await s.open_kernel(NOTEBOOK) for n, s in students.items()}
        out["source"], out["probes"], out["checks"] = {}, {}, {}
        for name, kernel in kernels.items():  # one at a time: each waits for TensorFlow
            out["source"][name] = await kernel.execute(
                "import transferkit as tk\nsrc = tk.source_model()\nprint('FROM', src.weights_path)",
                timeout=STEP_S)
        for me, other in ((first, second), (second, first)):
            out["checks"][me] = denied, allowed = checks_for(hub, me, other)
            out["probes"][me] = await run_probes(kernels[me], {**denied, **allowed})
        await kernels[first].close()
        notebook = await students[first].open_kernel(NOTEBOOK)  # a fresh kernel, as Lab's
        out["notebook"] = []
        for index, code, _ in hubclient.notebook_cells(hub.course / "notebooks" / "00_index.ipynb"):
            result = await notebook.execute(code, timeout=STEP_S)
            out["notebook"].append((index, result))
            if result.status != "ok":
                break
        if out["groups"][second] is not None:
            # over the memory limit: that kernel is killed, the server restarts it, the other
            # student's kernel goes on
            out["oom"] = await kernels[second].execute("hog = bytearray(2 * 2**30)", timeout=120)
            out["oom_server_alive"] = server_pid(second) is not None
            await asyncio.sleep(5)  # the restarter brings a new kernel up
            out["after_oom"] = await kernels[second].execute("print('again')", timeout=120)
            out["neighbour_after_oom"] = await notebook.execute("print('unaffected')", timeout=60)
        await notebook.close()
        await kernels[second].close()
        out["own_caches"] = {n: sorted(p.name for p in (hub.home(n) / ".cache" / "transferkit")
                                       .glob("source-*")) for n in STUDENTS}
        out["shared_after"] = tree(hub.shared_cache)
        await asyncio.gather(*(s.stop_server() for s in students.values()))
        await asyncio.sleep(1)
        out["left"] = {n: pids_of(n) for n in STUDENTS}
    finally:
        for s in students.values():
            s.close()
    return out


@pytest.fixture(scope="module")
def hub():
    why = loopback.missing_tools()
    if why:
        message = f"class hub test: {why}"
        if REQUIRE:
            pytest.fail(message + " (TRANSFERKIT_REQUIRE_HUB=1)")
        pytest.skip(message)
    with loopback.LoopbackHub(STUDENTS, mem_limit=MEM_LIMIT, cpu_limit=1) as running:
        yield running


@pytest.fixture(scope="module")
def seen(hub):
    try:
        return asyncio.run(asyncio.wait_for(scenario(hub), 900))
    except Exception as exc:  # the hub's own account of what went wrong, with the error
        raise AssertionError(f"{type(exc).__name__}: {exc}\n--- the hub's log, last lines:\n"
                             f"{hub.log_tail(80)}") from None


def test_each_student_gets_a_server_through_the_hub(seen):
    assert set(seen["start_s"]) == set(STUDENTS)
    assert all(0 < t < STEP_S for t in seen["start_s"].values())


def test_the_course_reaches_each_private_home(seen):
    for name, (mode, owned) in seen["homes"].items():
        assert mode == 0o700, f"{name}'s home is {oct(mode)}"
        assert owned, f"{name}'s copy of the course is not theirs"


def test_notebook_00_runs_in_a_students_server(seen):
    results = seen["notebook"]
    assert len(results) >= 5
    failed = [(i, r.status, r.error) for i, r in results if r.status != "ok"]
    assert not failed, failed


def test_every_student_loads_the_source_model_from_the_shared_cache_without_training(hub, seen):
    for name, result in seen["source"].items():
        assert result.status == "ok", (name, result)
        assert "Loaded the source model from the shared cache" in result.text, result.text
        assert "training" not in result.text
        assert f"FROM {hub.shared_cache}/source-" in result.text
    assert seen["own_caches"] == {n: [] for n in STUDENTS}, "a source model in a student's cache"
    assert seen["shared_after"] == seen["shared_before"], "the shared cache was written"


def test_students_cannot_read_each_other_the_teachers_files_or_write_the_shared_cache(hub, seen):
    for me in STUDENTS:
        denied, allowed = seen["checks"][me]
        assert len(denied) == 17 and len(allowed) == 6
        got = seen["probes"][me]
        assert {k: got[k] for k in denied} == denied, f"{me} reached what must be denied"
        assert {k: got[k] for k in allowed} == allowed, f"{me} was refused its own files"


def test_each_server_runs_in_its_own_cgroup_with_the_limits(seen):
    version, why = cgroups.enforcement()
    if version is None:
        pytest.skip(f"limits not enforceable on this host: {why}")
    for name in STUDENTS:
        folders, memory, cpus = seen["groups"][name]
        for folder in folders.values():
            assert folder.name == name and folder.parent.name == "transferkit", folder
        assert memory == MEM_LIMIT and cpus == 1.0


def test_a_kernel_over_the_memory_limit_dies_alone(seen):
    if "oom" not in seen:
        pytest.skip("limits not enforceable on this host")
    assert seen["oom"].status == "died", seen["oom"]
    assert seen["oom_server_alive"], "the student's server died with its kernel"
    assert seen["after_oom"].status == "ok" and "again" in seen["after_oom"].text
    assert seen["neighbour_after_oom"].status == "ok"


def test_nothing_of_the_students_is_left_running_after_their_servers_stop(seen):
    assert seen["left"] == {n: [] for n in STUDENTS}
