"""LocalProcessSpawner that enforces ``mem_limit`` and ``cpu_limit`` with a cgroup per student.

JupyterHub's LocalProcessSpawner starts each student's server as that Unix user but ignores
``mem_limit`` and ``cpu_limit`` (it only passes them on as MEM_LIMIT / CPU_LIMIT for display).
Where systemd is PID 1, jupyterhub-systemdspawner enforces them through systemd units. On a
server without systemd (a container, a CI machine) this spawner does it with cgroups:

- before the start: a group ``<hub's group>/transferkit/<user>`` (cgroups.py), emptied if one
  was left over, with the memory and CPU limits;
- the server joins it between fork and exec, while still root (``make_preexec_fn``): every
  kernel and terminal it starts is inside too, so the limit covers one student as a whole.
  Over the memory limit the kernel's OOM killer ends a process of that student only (the
  largest: a kernel; the server's restarter reports the kernel's death to the notebook);
- after the stop: what is left in the group (kernels of a killed server) is killed and the
  group removed.

No writable cgroup with memory and cpu controllers: the hub log says so at each start and the
server runs unlimited, unless ``require_limits`` is True, which refuses to start it.
"""
from __future__ import annotations

import os
import sys

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Bool, Unicode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cgroups import StudentGroup, enforcement  # noqa: E402  (beside this file)

__all__ = ["CgroupSpawner"]


class CgroupSpawner(LocalProcessSpawner):
    cgroup_parent = Unicode("transferkit", config=True,
                            help="Folder under the hub's own cgroup holding one group per user")
    require_limits = Bool(False, config=True,
                          help="Refuse to start a server whose limits cannot be enforced")

    def _group(self):
        version, dirs = enforcement()
        if version is None:
            message = f"memory and CPU limits are NOT enforced for {self.user.name}: {dirs}"
            if self.require_limits:
                raise RuntimeError(message)
            self.log.warning(message)
            return None
        return StudentGroup.for_user(version, dirs, self.cgroup_parent, self.user.name)

    async def start(self):
        self.group = self._group()
        if self.group is not None:
            self.group.create(self.mem_limit, self.cpu_limit)
            self.log.info("%s: cgroup %s, memory limit %s bytes, %s CPUs", self.user.name,
                          self.group.version, self.mem_limit, self.cpu_limit)
        return await super().start()

    def make_preexec_fn(self, name):
        drop_root = super().make_preexec_fn(name)
        group = getattr(self, "group", None)
        procs = [str(p) for p in group.procs_files()] if group is not None else []

        def preexec():
            for path in procs:  # root still: join first, then become the student
                with open(path, "w") as handle:
                    handle.write(str(os.getpid()))
            drop_root()
        return preexec

    async def stop(self, now=False):
        await super().stop(now=now)
        group = getattr(self, "group", None) or self._group()
        if group is not None:
            group.remove()
