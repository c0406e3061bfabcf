"""Linux control groups for the class hub: one per student, with memory and CPU limits.

Standard library only: the spawner (cgroupspawner.py) creates and removes the groups, the
load benchmark (benchmarks/hub_load.py) and the hub test read what they measured.

Both layouts are handled:
- cgroup v1 (a hierarchy per controller, e.g. /sys/fs/cgroup/memory): memory.limit_in_bytes
  (+ memory.memsw.limit_in_bytes where swap is accounted), cpu.cfs_quota_us over
  cpu.cfs_period_us, cpuacct.usage for CPU time, memory.max_usage_in_bytes for the peak;
- cgroup v2 (one unified hierarchy): memory.max, memory.swap.max, cpu.max, cpu.stat,
  memory.peak, where the memory and cpu controllers are enabled for the hub's children.

A student's group lies under the hub's own group (``/proc/self/cgroup``), in a folder named
by ``parent`` (``transferkit``): it never touches groups the hub did not make.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StudentGroup", "enforcement", "process_groups"]

V1_CONTROLLERS = ("memory", "cpu", "cpuacct")
PERIOD_US = 100_000


def _mounts():
    """[(fstype, mount point, root inside the hierarchy, controllers)] of cgroup mounts."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not tail or tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = set(tail[2].split(",")) if len(tail) > 2 else set()
        found.append((tail[0], Path(fields[4]), fields[3], options))
    return found


def process_groups(pid="self"):
    """{controller: folder} of the groups process ``pid`` is in; v2's under key "unified"."""
    paths = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in (names.split(",") if names else ["unified"]):
            paths[name.removeprefix("name=")] = path
    groups = {}
    for fstype, point, root, options in _mounts():
        names = ["unified"] if fstype == "cgroup2" else [o for o in options if o in paths]
        for name in names:
            path = paths.get(name)
            if path is None:
                continue
            inside = path[len(root):] if root != "/" and path.startswith(root) else path
            groups[name] = point / inside.lstrip("/")
    return groups


def _v2_ready(folder):
    try:
        enabled = set((folder / "cgroup.subtree_control").read_text().split())
    except OSError:
        return False
    return {"memory", "cpu"} <= enabled


def _writable(folder):
    probe = folder / f"transferkit-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


def enforcement():
    """("v1" | "v2", {controller: hub's folder}) where memory and CPU limits can be set by
    this process, else (None, reason)."""
    groups = process_groups()
    if all(c in groups for c in V1_CONTROLLERS[:2]):
        dirs = {c: groups[c] for c in V1_CONTROLLERS if c in groups}
        if all(_writable(d) for d in set(dirs.values())):
            return "v1", dirs
        return None, f"cgroup v1 folders {sorted(map(str, set(dirs.values())))} are not writable"
    unified = groups.get("unified")
    if unified is not None and _v2_ready(unified) and _writable(unified):
        return "v2", {"unified": unified}
    return None, ("no writable cgroup with the memory and cpu controllers (v1 hierarchies, or "
                  "v2 with them enabled in cgroup.subtree_control); on a server with systemd "
                  "use SystemdSpawner")


def _write(path, value):
    Path(path).write_text(f"{value}\n")


@dataclass
class StudentGroup:
    """One student's group(s): ``folders`` per controller, the layout ``version``."""
    version: str
    folders: dict

    @classmethod
    def for_user(cls, version, hub_dirs, parent, name):
        return cls(version, {c: Path(d) / parent / name for c, d in hub_dirs.items()})

    @property
    def unique(self):
        return sorted(set(self.folders.values()))

    def procs_files(self):
        return [folder / "cgroup.procs" for folder in self.unique]

    def create(self, mem_bytes=None, cpus=None):
        """Make the folders (emptying any left over) and set the limits."""
        for folder in self.unique:
            if folder.exists():
                self.kill_all(folder)
            folder.mkdir(parents=True, exist_ok=True)
        if self.version == "v1":
            memory = self.folders["memory"]
            memsw = memory / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                _write(memsw, -1)  # first: memsw may never be below the memory limit
            _write(memory / "memory.limit_in_bytes", mem_bytes or -1)
            if memsw.exists() and mem_bytes:
                _write(memsw, mem_bytes)  # no swap beyond the limit
            _write(memory / "memory.max_usage_in_bytes", 0)  # the peak of this session
            cpu = self.folders["cpu"]
            _write(cpu / "cpu.cfs_period_us", PERIOD_US)
            _write(cpu / "cpu.cfs_quota_us", int(cpus * PERIOD_US) if cpus else -1)
        else:
            folder = self.folders["unified"]
            _write(folder / "memory.max", mem_bytes or "max")
            if (folder / "memory.swap.max").exists():
                _write(folder / "memory.swap.max", 0 if mem_bytes else "max")
            _write(folder / "cpu.max", f"{int(cpus * PERIOD_US) if cpus else 'max'} {PERIOD_US}")

    def join(self, pid):
        """Move process ``pid`` (and its later children) into the group."""
        for procs in self.procs_files():
            _write(procs, pid)

    def pids(self):
        found = set()
        for procs in self.procs_files():
            try:
                found |= {int(p) for p in procs.read_text().split()}
            except OSError:
                pass
        return found

    @staticmethod
    def kill_all(folder, wait_s=5.0):
        """SIGKILL every process left in ``folder`` (kernels a stopped server left behind)."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def remove(self):
        """Kill what is left and remove the folders (the parent stays for other students)."""
        for folder in self.unique:
            self.kill_all(folder)
            for _ in range(50):  # the kernel frees a group a moment after its last process
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)

    # ------------------------------------------------------------------ measurements
    def _read(self, controller, name):
        try:
            return int((self.folders[controller] / name).read_text().split()[0])
        except (OSError, KeyError, ValueError, IndexError):
            return None

    def memory_limit(self):
        if self.version == "v1":
            return self._read("memory", "memory.limit_in_bytes")
        return self._read("unified", "memory.max")  # None for "max"

    def cpu_quota(self):
        """CPUs allowed (quota / period), or None when unlimited."""
        if self.version == "v1":
            quota, period = self._read("cpu", "cpu.cfs_quota_us"), self._read("cpu", "cpu.cfs_period_us")
        else:
            try:
                text = (self.folders["unified"] / "cpu.max").read_text().split()
            except OSError:
                return None
            quota, period = (None if text[0] == "max" else int(text[0])), int(text[1])
        return quota / period if quota and quota > 0 and period else None

    def memory_now(self):
        """(charged bytes incl. page cache, anonymous bytes) now."""
        if self.version == "v1":
            usage, stat = self._read("memory", "memory.usage_in_bytes"), "memory.stat"
            anon_key = "rss"
            folder = self.folders["memory"]
        else:
            usage, stat = self._read("unified", "memory.current"), "memory.stat"
            anon_key = "anon"
            folder = self.folders["unified"]
        anon = None
        try:
            for line in (folder / stat).read_text().splitlines():
                key, value = line.split()
                if key == anon_key:
                    anon = int(value)
        except OSError:
            pass
        return usage, anon

    def memory_peak(self):
        if self.version == "v1":
            return self._read("memory", "memory.max_usage_in_bytes")
        return self._read("unified", "memory.peak")

    def oom_kills(self):
        """Processes the kernel killed for going over the limit, in this group."""
        name, folder = (("memory.oom_control", self.folders.get("memory")) if self.version == "v1"
                        else ("memory.events", self.folders.get("unified")))
        try:
            for line in (folder / name).read_text().splitlines():
                key, value = line.split()
                if key == "oom_kill":
                    return int(value)
        except (OSError, TypeError, ValueError):
            pass
        return None

    def cpu_seconds(self):
        if self.version == "v1":
            ns = self._read("cpuacct", "cpuacct.usage")
            return None if ns is None else ns / 1e9
        try:
            for line in (self.folders["unified"] / "cpu.stat").read_text().splitlines():
                key, value = line.split()
                if key == "usage_usec":
                    return int(value) / 1e6
        except OSError:
            pass
        return None
