"""A throwaway class hub on loopback, built by deploy/setup.sh's own steps, for the hub test
(tests/test_hub.py) and the load benchmark (benchmarks/hub_load.py).

    with LoopbackHub(["tkstu_a", "tkstu_b"]) as hub:
        student = hub.student("tkstu_a")      # a deploy/hubclient.Student
        ...

``start()``: a fresh folder ``/tmp/tkhub-XXXX`` standing in for /srv (course, shared cache,
the teacher's folder, nbgrader's exchange, the hub's state), built with ``setup.sh course``,
``setup.sh teacher`` (which builds the shared cache as the teacher: real training) and
``setup.sh students`` (real Unix users, 0700 homes); then JupyterHub with
deploy/jupyterhub_config.py on 127.0.0.1 at free ports, the shared-password authenticator (for
tests only) and the checkout's kit (TK_KIT_PATH).  ``close()`` always: the hub stopped (it
stops the servers), its proxy killed by pid, every process left by the users it made killed
by pid, the users and their homes removed, the folder removed.

Only users whose names start with ``PREFIX`` (``tkstu_``) are ever made or removed, so a real
account can never be touched; one left by a killed run is removed before it is made again.
"""
from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cgroups import enforcement  # noqa: E402
from hubclient import Student  # noqa: E402

__all__ = ["PREFIX", "LoopbackHub", "missing_tools"]

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
PREFIX = "tkstu_"
VENV = Path(os.environ.get("TK_VENV", "/opt/transferkit-venv"))


def missing_tools(venv=VENV):
    """Why a loopback hub cannot start here (None if it can): root, the venv, the proxy."""
    if os.geteuid() != 0:
        return "needs root (it creates Unix users and starts servers as them)"
    for tool in ("useradd", "userdel", "runuser", "chpasswd"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if not (venv / "bin" / "jupyterhub").exists():
        return (f"no JupyterHub in {venv}: run `deploy/setup.sh venv` (a venv from "
                "/usr/bin/python3, outside any home)")
    if shutil.which("configurable-http-proxy") is None:
        return "configurable-http-proxy not found: `npm install -g configurable-http-proxy@5`"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, env=None, timeout=600):
    done = subprocess.run(cmd, env=dict(os.environ, **(env or {})), capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return done.stdout


def _remove_user(name):
    """Kill the user's processes (by pid) and remove the user and home: ``PREFIX`` users only."""
    assert name.startswith(PREFIX), name
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    for _ in range(3):
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == uid]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.3)
    subprocess.run(["userdel", "-r", name], capture_output=True)


def _uid_of(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


class LoopbackHub:
    def __init__(self, students, *, teacher=PREFIX + "teacher", mem_limit=None, cpu_limit=None,
                 prepare="", venv=VENV, kernel_idle_s=1200, log_path=None):
        assert all(n.startswith(PREFIX) for n in [*students, teacher])
        self.students, self.teacher = list(students), teacher
        self.group = PREFIX + "students"
        self.mem_limit, self.cpu_limit, self.prepare = mem_limit, cpu_limit, prepare
        self.venv, self.kernel_idle_s, self.log_path = Path(venv), kernel_idle_s, log_path
        self.password = secrets.token_urlsafe(12)
        self.proc = self.root = None
        self.timings = {}

    # ------------------------------------------------------------------ paths
    @property
    def srv(self):
        return self.root / "srv"

    @property
    def shared_cache(self):
        return self.srv / "transferkit" / "cache"

    @property
    def course(self):
        return self.srv / "transferkit" / "course"

    @property
    def teacher_folder(self):
        return self.srv / "teacher"

    def home(self, name):
        return Path(pwd.getpwnam(name).pw_dir)

    # ------------------------------------------------------------------ start / stop
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _setup_env(self):
        return {"TK_VENV": str(self.venv), "TK_SRV": str(self.srv), "TK_TEACHER": self.teacher,
                "TK_STUDENTS_GROUP": self.group, "TK_PREPARE": self.prepare,
                "TK_KIT_PATH": str(self.root / "kit"),
                "TK_PASSWORDS": str(self.root / "state" / "passwords.txt")}

    def start(self):
        self.root = Path(tempfile.mkdtemp(prefix="tkhub-", dir="/tmp"))
        self.root.chmod(0o755)
        (self.root / "state").mkdir(mode=0o700)
        # the checkout's kit, readable by the students (the checkout may lie in a 0700 home)
        shutil.copytree(REPO / "transferkit", self.root / "kit" / "transferkit",
                        ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run(["chmod", "-R", "a+rX", str(self.root / "kit")], check=True)
        for name in [*self.students, self.teacher]:
            _remove_user(name)  # left by a killed run
        if _group_exists(self.group):
            subprocess.run(["groupdel", self.group], capture_output=True)
        env, setup = self._setup_env(), ["bash", str(DEPLOY / "setup.sh")]
        start = time.perf_counter()
        _run([*setup, "course", str(self.course)], env)
        _run([*setup, "teacher"], env)
        self.timings["teacher_and_shared_cache_s"] = time.perf_counter() - start
        _run([*setup, "students", *self.students], env)
        self._start_hub()
        return self

    def _start_hub(self):
        self.port, api, proxy_api = free_port(), free_port(), free_port()
        env = dict(os.environ, TK_IP="127.0.0.1", TK_PORT=str(self.port),
                   TK_HUB_API_PORT=str(api), TK_PROXY_API_PORT=str(proxy_api),
                   TK_STATE_DIR=str(self.root / "state"), TK_VENV=str(self.venv),
                   TK_COURSE=str(self.course), TK_SHARED_CACHE=str(self.shared_cache),
                   TK_TEACHER=self.teacher, TK_KIT_PATH=str(self.root / "kit"),
                   TK_AUTH="shared-password", TK_TEST_PASSWORD=self.password,
                   TK_ALLOWED_USERS=",".join(self.students),
                   TK_KERNEL_IDLE_S=str(self.kernel_idle_s))
        if self.mem_limit:
            env["TK_MEM_LIMIT"] = str(self.mem_limit)
        if self.cpu_limit:
            env["TK_CPU_LIMIT"] = str(self.cpu_limit)
        self.log_file = open(self.log_path or self.root / "state" / "hub.log", "w")
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "jupyterhub"), "-f", str(DEPLOY / "jupyterhub_config.py")],
            cwd=self.root / "state", env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True)
        url = f"{self.url}/hub/api/"
        while time.perf_counter() - start < 90:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                urllib.request.urlopen(url, timeout=2).read()
                self.timings["hub_start_s"] = time.perf_counter() - start
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the hub did not answer within 90 s:\n{self.log_tail()}")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines=40):
        try:
            self.log_file.flush()
            return "\n".join(Path(self.log_file.name).read_text().splitlines()[-lines:])
        except (OSError, AttributeError):
            return ""

    def student(self, name):
        return Student(self.url, name, self.password)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # cleanup_servers: it stops every server
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.root is not None:
            _stop_proxy(self.root / "state" / "jupyterhub-proxy.pid")
        for name in [*self.students, self.teacher]:
            _remove_user(name)
        if _group_exists(self.group):
            subprocess.run(["groupdel", self.group], capture_output=True)
        _remove_empty_cgroup_parents()
        if getattr(self, "log_file", None):
            self.log_file.close()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def _remove_empty_cgroup_parents(parent="transferkit"):
    """The spawner's parent groups, once no student group is left in them (rmdir refuses
    a group that still has children: another hub's students are never touched)."""
    version, dirs = enforcement()
    for folder in (set(dirs.values()) if version else ()):
        try:
            (Path(folder) / parent).rmdir()
        except OSError:
            pass


def _stop_proxy(pid_file):
    """The hub's proxy, if it outlived the hub (it would keep the port): by its pid, after
    checking that the pid is still that proxy."""
    try:
        pid = int(pid_file.read_text().strip())
        if b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass


def _group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False
