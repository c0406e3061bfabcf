"""A class hub for transferkit on one Linux server (JupyterHub 6, configurable-http-proxy 5).

    /opt/transferkit-venv/bin/jupyterhub -f deploy/jupyterhub_config.py   # as root

deploy/setup.sh installs everything and starts it; the hub test (tests/test_hub.py) and the
load benchmark (benchmarks/hub_load.py) run this same file on loopback. Every setting a site
changes is an environment variable read below (TK_...), with the setup script's value as
the default:

- one Unix user per student (the ``transferkit-students`` group), started by CgroupSpawner:
  LocalProcessSpawner plus a cgroup per student enforcing TK_MEM_LIMIT and TK_CPU_LIMIT
  (deploy/cgroupspawner.py; on a server with systemd, SystemdSpawner does the same);
- the learners' environment: the venv TK_VENV made from the system Python, outside any home;
- the course (TK_COURSE, the student version of the notebooks) copied into ~/transferkit at
  each start, as the student, never overwriting what a student changed;
- the shared, read-only source-model cache TK_SHARED_CACHE (TRANSFERKIT_SHARED_CACHE), each
  student's own cache in ~/.cache/transferkit;
- homes kept 0700 (reset at each start), the idle culler as a hub service, idle kernels
  culled inside each server (a Keras kernel holds about 1 GB until it is shut down).
"""
import asyncio
import os
import pwd
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from jupyterhub.spawner import set_user_setuid  # noqa: E402

c = get_config()  # noqa: F821  (JupyterHub's config loader defines it)


def setting(name, default):
    return os.environ.get(f"TK_{name}", default)


VENV = setting("VENV", "/opt/transferkit-venv")
STATE = setting("STATE_DIR", "/srv/jupyterhub")
COURSE = setting("COURSE", "/srv/transferkit/course")
SHARED_CACHE = setting("SHARED_CACHE", "/srv/transferkit/cache")
TEACHER = setting("TEACHER", "teacher")
STUDENTS_GROUP = setting("STUDENTS_GROUP", "transferkit-students")
# Per student (benchmarks/results/hub_load.json; docs/teaching/guide.md, "Running a class on
# one server"): a notebook's Keras kernel and the server charge about 0.7 GB to the student's
# group (about 1.05 GB of PSS, shared libraries included); 2 GB leaves room for a second open
# notebook.  One CPU each: a laptop's worth, and a fair share when many train at once.
MEM_LIMIT = setting("MEM_LIMIT", "2G")
CPU_LIMIT = float(setting("CPU_LIMIT", "1"))
CULL_IDLE_S = int(setting("CULL_IDLE_S", "3600"))      # idle servers stopped after an hour
KERNEL_IDLE_S = int(setting("KERNEL_IDLE_S", "1200"))  # idle kernels shut down after 20 min

os.makedirs(STATE, mode=0o700, exist_ok=True)

# --------------------------------------------------------------------------- network
c.JupyterHub.bind_url = f"http://{setting('IP', '')}:{setting('PORT', '8000')}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{setting('HUB_API_PORT', '8081')}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{setting('PROXY_API_PORT', '8001')}"
c.ConfigurableHTTPProxy.command = [setting("PROXY", shutil.which("configurable-http-proxy")
                                           or "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = os.path.join(STATE, "jupyterhub-proxy.pid")
if setting("SSL_CERT", ""):  # a real class over a network: HTTPS (or a TLS proxy in front)
    c.JupyterHub.ssl_cert, c.JupyterHub.ssl_key = setting("SSL_CERT", ""), setting("SSL_KEY", "")
c.JupyterHub.db_url = f"sqlite:///{os.path.join(STATE, 'jupyterhub.sqlite')}"
c.JupyterHub.cookie_secret_file = os.path.join(STATE, "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every student's server

# --------------------------------------------------------------------------- who logs in
c.Authenticator.admin_users = {TEACHER}
if setting("AUTH", "pam") == "shared-password":
    # TESTS AND THE LOAD BENCHMARK ONLY: anyone with the password is any allowed user.
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = os.environ["TK_TEST_PASSWORD"]
    c.Authenticator.allowed_users = set(filter(None, setting("ALLOWED_USERS", "").split(",")))
    c.Authenticator.admin_users = set()
else:
    # The students' and the teacher's Unix passwords (PAM); NativeAuthenticator (sign-up
    # with the teacher's approval) or LTIAuthenticator (from the school's LMS) fit too:
    # see deploy/README.md.
    c.JupyterHub.authenticator_class = "pam"
    c.LocalAuthenticator.allowed_groups = {STUDENTS_GROUP}

# --------------------------------------------------------------------------- the servers
c.JupyterHub.spawner_class = "cgroupspawner.CgroupSpawner"
if setting("SPAWNER", "cgroup") == "systemd":
    # where systemd is PID 1 (deploy/setup.sh start sets this): a transient unit per student
    # with the same limits (jupyterhub-systemdspawner; not run on the project's machines,
    # which have no systemd)
    c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
    c.SystemdSpawner.isolate_tmp = True
    c.SystemdSpawner.disable_user_sudo = True
c.Spawner.mem_limit = int(MEM_LIMIT) if MEM_LIMIT.isdigit() else MEM_LIMIT  # bytes, or 2G
c.Spawner.cpu_limit = CPU_LIMIT
c.CgroupSpawner.require_limits = setting("REQUIRE_LIMITS", "0") == "1"
c.Spawner.cmd = [os.path.join(VENV, "bin", "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab/tree/transferkit/notebooks/00_index.ipynb"
c.Spawner.start_timeout = 180  # a crowded 2-core server starts 8 servers in about a minute
c.Spawner.http_timeout = 180
c.Spawner.args = [f"--MappingKernelManager.cull_idle_timeout={KERNEL_IDLE_S}",
                  "--MappingKernelManager.cull_interval=60"]


def own_cache(spawner):
    return os.path.join(pwd.getpwnam(spawner.user.name).pw_dir, ".cache", "transferkit")


c.Spawner.environment = {
    "TRANSFERKIT_SHARED_CACHE": SHARED_CACHE,  # read-only, built by the teacher
    "TRANSFERKIT_CACHE": own_cache,            # what the student's notebooks save
    "PATH": f"{os.path.join(VENV, 'bin')}:/usr/local/bin:/usr/bin:/bin",
}
if setting("KIT_PATH", ""):  # the hub test: the checkout's kit instead of the installed one
    c.Spawner.environment["PYTHONPATH"] = setting("KIT_PATH", "")


# Run as the student: the files missing from ~/transferkit, copied from the course.
COPY_COURSE = """
import os, shutil, sys
source, home = sys.argv[1], sys.argv[2]
for folder, _, files in os.walk(source):
    target = os.path.join(home, os.path.relpath(folder, source))
    os.makedirs(target, exist_ok=True)
    for name in files:
        if not os.path.lexists(os.path.join(target, name)):
            shutil.copyfile(os.path.join(folder, name), os.path.join(target, name))
"""


async def prepare_home(spawner):
    """Home 0700, then the course copied in as the student (so no link a student made can
    send root's writes elsewhere); files a student already has are never overwritten."""
    user = pwd.getpwnam(spawner.user.name)
    os.chmod(user.pw_dir, 0o700)
    if not os.path.isdir(COURSE):
        spawner.log.warning("no course folder %s: nothing copied", COURSE)
        return
    copy = await asyncio.create_subprocess_exec(
        os.path.join(VENV, "bin", "python"), "-c", COPY_COURSE, COURSE,
        os.path.join(user.pw_dir, "transferkit"), preexec_fn=set_user_setuid(user.pw_name),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await copy.communicate()
    if copy.returncode:
        spawner.log.warning("copying the course for %s: %s", user.pw_name,
                            err.decode().strip().splitlines()[-1:])


c.Spawner.pre_spawn_hook = prepare_home

# --------------------------------------------------------------------------- idle culler
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [os.path.join(VENV, "bin", "python"), "-m", "jupyterhub_idle_culler",
                f"--timeout={CULL_IDLE_S}", "--cull-every=300"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]
