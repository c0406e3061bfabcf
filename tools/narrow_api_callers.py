"""Rewrite ``tk.X`` to ``tk.<module>.X`` where X is no longer public (not in ``transferkit._api``).

    python tools/narrow_api_callers.py tests/*.py benchmarks/*.py README.md docs/*.md

For scripts, tests and docs only; notebooks keep their ``tk.X`` (every name they use is public).
"""
import re, sys, glob
import transferkit as tk, transferkit._api as api
from types import ModuleType
public = set(api.__all__)
home = {}
for name in dir(tk):
    mod = getattr(tk, name)
    if isinstance(mod, ModuleType) and mod.__name__.startswith("transferkit."):
        for n in getattr(mod, "__all__", []):
            if n not in home or mod.__name__.split(".")[1] == getattr(getattr(mod, n), "__module__", "").split(".")[-1]:
                home[n] = mod.__name__.split(".")[1]
pat = re.compile(r"(?<![\w.])tk\.([A-Za-z_]\w*)")
def fix(m):
    n = m[1]
    if n in public or n.startswith("__") or isinstance(getattr(tk, n, None), ModuleType):
        return m[0]
    return f"tk.{home[n]}.{n}" if n in home else m[0]
files = sys.argv[1:]
for p in files:
    s = open(p).read(); t = pat.sub(fix, s)
    if t != s:
        open(p, "w").write(t); print(p, len(pat.findall(s)))
