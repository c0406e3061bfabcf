#!/usr/bin/env python
"""Run the kit's notebooks top to bottom and measure time and memory.

Each notebook runs in a fresh kernel (nbclient; cwd = the notebook's folder,
timeout per cell 600 s by default).  Outputs are kept in memory only: the
notebook files are never written.  For every notebook:

  seconds       wall time from asking for a kernel to the end of the last cell
                (kernel start-up included, shutdown excluded)
  peak RSS      the kernel process plus its children, summed, sampled every 0.1 s
                in a thread (psutil); also the kernel's own VmHWM from
                /proc/<pid>/status read just before shutdown.  The budget is
                checked against the larger of the two.
  status        ok / error in cell N / timeout in cell N / kernel died / ...

Budgets (flags): the notebooks numbered 00-04 together take <= 120 s, each
notebook <= 60 s, and each notebook's peak RSS <= 1536 MB.  Any notebook that
does not finish is a FAIL.

    python -m benchmarks.notebooks                       # notebooks/*.ipynb
    python -m benchmarks.notebooks notebooks/02_*.ipynb  # some of them

Writes benchmarks/results/notebooks.json.  Exit status 0 when every check
passes, 1 when one fails, 2 when there is no notebook to run.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MB = 1024 * 1024


# --------------------------------------------------------------------------- files




# --------------------------------------------------------------------------- memory
class RssMonitor(threading.Thread):
    """Samples the summed RSS of a process and all its descendants every ``interval`` s."""

    def __init__(self, pid, interval=0.1):
        super().__init__(daemon=True, name=f"rss-monitor-{pid}")
        import psutil

        self.psutil = psutil
        self.interval = interval
        self.peak = 0          # bytes
        self.samples = 0
        self.alive = True
        self._halt = threading.Event()
        try:
            self.proc = psutil.Process(pid)
        except psutil.Error:
            self.proc, self.alive = None, False

    def sample(self):
        ps = self.psutil
        if self.proc is None:
            return
        try:
            total = self.proc.memory_info().rss
            children = self.proc.children(recursive=True)
        except ps.Error:        # the kernel is gone (finished, killed, OOM)
            self.alive = False
            return
        for child in children:
            try:
                total += child.memory_info().rss
            except ps.Error:    # a child that exited between listing and reading
                pass
        self.samples += 1
        self.peak = max(self.peak, total)

    def run(self):
        self.sample()
        while self.alive and not self._halt.wait(self.interval):
            self.sample()

    def stop(self):
        self._halt.set()
        self.join(timeout=5)


def proc_status(pid):
    """VmHWM and VmRSS of ``pid`` in MB from /proc (None where unavailable)."""
    out = {"vm_hwm_mb": None, "vm_rss_mb": None}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for key, name in (("VmHWM", "vm_hwm_mb"), ("VmRSS", "vm_rss_mb")):
        m = re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.M)
        if m:
            out[name] = int(m.group(1)) / 1024
    return out


def kernel_pid(km):
    provisioner = getattr(km, "provisioner", None)
    pid = getattr(provisioner, "pid", None)
    if pid is None:
        process = getattr(provisioner, "process", None) or getattr(km, "kernel", None)
        pid = getattr(process, "pid", None)
    return pid


# --------------------------------------------------------------------------- running
def _first_line(source):
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:80]
    return ""


def run_notebook(path: Path, timeout, kernel, poll):
    import nbformat
    import psutil
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    kernel_name = kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(path.parent)}})
    result = {"notebook": path.name, "path": str(path), "kernel": kernel_name,
              "code_cells": sum(c.cell_type == "code" for c in nb.cells),
              "cells_run": 0, "status": "ok", "error": None, "seconds": None,
              "kernel_start_seconds": None, "peak_rss_mb": None,
              "polled_peak_rss_mb": None, "vm_hwm_mb": None, "vm_rss_end_mb": None,
              "rss_samples": 0, "kernel_cpu_seconds": None, "cells": []}
    monitor, index, pid = None, None, None
    # The kernel process's own stdout/stderr (start-up warnings, C++ logs, a crash
    # message) go to a log instead of this table; its tail is kept when a run fails.
    log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
    start = time.perf_counter()
    client.reset_execution_trackers()
    try:
        with client.setup_kernel(stdout=log, stderr=log):
            ready = time.perf_counter()
            result["kernel_start_seconds"] = ready - start
            pid = kernel_pid(client.km)
            result["kernel_pid"] = pid
            if pid is not None:
                monitor = RssMonitor(pid, poll)
                monitor.start()
            try:
                for index, cell in enumerate(nb.cells):
                    cell_start = time.perf_counter()
                    client.execute_cell(cell, index,
                                        execution_count=client.code_cells_executed + 1)
                    if cell.cell_type == "code":
                        result["cells_run"] += 1
                        result["cells"].append({"index": index,
                                                "seconds": time.perf_counter() - cell_start,
                                                "first_line": _first_line(cell.source)})
                index = None
            finally:
                result["seconds"] = time.perf_counter() - start
                if pid is not None:
                    status = proc_status(pid)          # before shutdown, while it lives
                    result["vm_hwm_mb"] = status["vm_hwm_mb"]
                    result["vm_rss_end_mb"] = status["vm_rss_mb"]
                    try:
                        cpu = psutil.Process(pid).cpu_times()
                        result["kernel_cpu_seconds"] = (cpu.user + cpu.system + cpu.children_user
                                                        + cpu.children_system)
                    except psutil.Error:
                        pass
                if monitor is not None:
                    monitor.stop()
    except CellTimeoutError:
        result["status"] = f"timeout in cell {index}"
        result["error"] = f"cell {index} ran longer than {timeout} s"
    except DeadKernelError as exc:
        result["status"] = f"kernel died in cell {index}"
        result["error"] = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else None
    except CellExecutionError as exc:
        result["status"] = f"error in cell {index}"
        result["error"] = f"{exc.ename}: {exc.evalue}"[:300]
    except Exception as exc:  # kernel failed to start, unreadable notebook, ...
        result["status"] = f"failed: {type(exc).__name__}"
        result["error"] = str(exc)[:300]
    finally:
        if result["seconds"] is None:
            result["seconds"] = time.perf_counter() - start
        if monitor is not None:
            monitor.stop()
            result["rss_samples"] = monitor.samples
            result["polled_peak_rss_mb"] = monitor.peak / MB if monitor.samples else None
        if result["status"] != "ok":
            log.seek(0)
            result["kernel_log_tail"] = log.read().splitlines()[-20:]
        log.close()
    peaks = [v for v in (result["polled_peak_rss_mb"], result["vm_hwm_mb"]) if v is not None]
    result["peak_rss_mb"] = max(peaks) if peaks else None
    return result


def environment_probe(timeout=300):
    """tk.device_report() and the source-model cache state, from a separate process.

    A subprocess keeps TensorFlow out of this (measuring) process; run before the
    notebooks, it also says whether notebook 02+ will find the source model cached.
    """
    code = ("import json, transferkit as tk\n"
            "from transferkit.source import source_paths\n"
            "print('@@' + json.dumps({'device': tk.device_report(),\n"
            "  'source_cached': all(p.exists() for p in source_paths()),\n"
            "  'cache_dir': str(tk.cache_dir(create=False))}))\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout)
        for line in proc.stdout.splitlines():
            if line.startswith("@@"):
                return json.loads(line[2:])
        return {"device": None, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return {"device": None, "error": str(exc)[:300]}


# --------------------------------------------------------------------------- budgets
def number_of(name):
    m = re.match(r"(\d+)", name)
    return int(m.group(1)) if m else None


def parse_range(text):
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: give a range of notebook numbers like 00-04")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if hi < lo:
        raise argparse.ArgumentTypeError(f"{text!r}: the range is empty")
    return lo, hi


def check_budgets(results, total_range, total_budget, max_rss_mb, max_seconds=None):
    lo, hi = total_range
    label = f"{lo:02d}-{hi:02d}"
    counted = [r for r in results if (n := number_of(r["notebook"])) is not None and lo <= n <= hi]
    checks = []
    if counted:
        total = sum(r["seconds"] for r in counted)
        unfinished = [r["notebook"] for r in counted if r["status"] != "ok"]
        checks.append({
            "name": f"total time of notebooks {label}",
            "value": total, "budget": total_budget, "unit": "s",
            "notebooks": [r["notebook"] for r in counted],
            "passed": total <= total_budget and not unfinished,
            "note": (f"did not finish: {', '.join(unfinished)}" if unfinished else None),
        })
    else:
        checks.append({"name": f"total time of notebooks {label}", "value": None,
                       "budget": total_budget, "unit": "s", "notebooks": [], "passed": None,
                       "note": f"skipped: no notebook numbered {label} was run"})
    if max_seconds is not None:
        for r in results:
            checks.append({"name": f"time of {r['notebook']}", "value": r["seconds"],
                           "budget": max_seconds, "unit": "s",
                           "passed": r["status"] == "ok" and r["seconds"] <= max_seconds,
                           "note": None if r["status"] == "ok" else "did not finish"})
    for r in results:
        peak = r["peak_rss_mb"]
        checks.append({"name": f"peak RSS of {r['notebook']}", "value": peak,
                       "budget": max_rss_mb, "unit": "MB", "passed": peak is not None
                       and peak <= max_rss_mb,
                       "note": None if peak is not None else "not measured"})
    for r in results:
        checks.append({"name": f"{r['notebook']} runs to the end", "value": None,
                       "budget": None, "unit": "", "passed": r["status"] == "ok",
                       "note": None if r["status"] == "ok" else f"{r['status']}: {r['error']}"})
    return checks


def _mb(value):
    return "-" if value is None else f"{value:.0f}"


def report(results, checks):
    width = max([len("notebook")] + [len(r["notebook"]) for r in results])
    dev = max([len("device")] + [len(str(r.get("device"))) for r in results])
    lines = [f"{'notebook':<{width}}  {'seconds':>8}  {'peak RSS MB':>11}  {'backend':<10}  "
             f"{'device':<{dev}}  {'preset':<6}  status"]
    for r in results:
        lines.append(f"{r['notebook']:<{width}}  {r['seconds']:8.1f}  "
                     f"{_mb(r['peak_rss_mb']):>11}  {str(r.get('backend')):<10}  "
                     f"{str(r.get('device')):<{dev}}  {str(r.get('preset')):<6}  {r['status']}")
    lines.append(f"{'total':<{width}}  {sum(r['seconds'] for r in results):8.1f}")
    lines.append("")
    for c in checks:
        status = {True: "PASS", False: "FAIL", None: "SKIP"}[c["passed"]]
        if c["value"] is not None:
            value = f"{c['value']:.1f} {c['unit']} (budget {c['budget']:g} {c['unit']})"
        elif c["budget"] is not None:
            value = f"budget {c['budget']:g} {c['unit']}"
        else:
            value = ""
        note = f"  [{c['note']}]" if c["note"] else ""
        lines.append(f"{status}  {c['name']}{': ' + value if value else ''}{note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebooks", nargs="*", type=Path,
                   help="notebooks to run (default: notebooks/*.ipynb, sorted)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: 600)")
    p.add_argument("--kernel", default=None,
                   help="kernel name (default: the notebook's kernelspec, else python3)")
    p.add_argument("--total-budget", type=float, default=120.0, metavar="SECONDS",
                   help="budget for the total time of the --total-range notebooks (default: 120)")
    p.add_argument("--total-range", type=parse_range, default=(0, 4), metavar="LO-HI",
                   help="notebook numbers (file name prefix) the total budget covers "
                        "(default: 00-04)")
    p.add_argument("--max-seconds", type=float, default=60.0, metavar="SECONDS",
                   help="budget for each notebook's wall time (default: 60; 0 = no check)")
    p.add_argument("--max-rss-mb", type=float, default=1536.0,
                   help="budget for each notebook's peak RSS in MB (default: 1536)")
    p.add_argument("--poll", type=float, default=0.1, help="RSS sampling interval in s")
    p.add_argument("--out", type=Path, default=HERE / "results",
                   help="results folder (default: benchmarks/results)")
    p.add_argument("--name", default="notebooks", help="file stem of the results JSON")
    p.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None,
                   help="Keras backend for the kernels (default: $KERAS_BACKEND, else tensorflow)")
    p.add_argument("--preset", choices=("cpu", "gpu"), default=None,
                   help="the kit's preset (default: $TRANSFERKIT_PRESET, else by device)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or sorted((REPO / "notebooks").glob("*.ipynb"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not paths:
        print(f"no notebooks to run in {REPO / 'notebooks'}", file=sys.stderr)
        return 2

    # The probe and every kernel inherit this process's environment.
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    if args.preset:
        os.environ["TRANSFERKIT_PRESET"] = args.preset
    started = _dt.datetime.now().astimezone()
    t0 = time.perf_counter()
    probe = environment_probe()
    device = probe.get("device")
    if device:
        print(f"Keras {device['keras']} on {device['backend']} {device['backend_version']}; "
              f"{device['device']} ({device['cpu_cores']} CPU cores); preset "
              f"{device.get('preset')}; source model "
              f"{'cached' if probe.get('source_cached') else 'NOT cached (a notebook will train it)'}")
    else:
        print(f"device report failed: {probe.get('error')}")
    load_start = os.getloadavg()

    results = []
    try:
        for i, path in enumerate(paths, 1):
            print(f"[{i}/{len(paths)}] {path.name} ...", end=" ", flush=True)
            r = run_notebook(path, args.timeout, args.kernel, args.poll)
            # what the kernel trained on: it inherits the environment the probe saw
            r.update({k: (device or {}).get(k) for k in ("backend", "device", "preset")})
            results.append(r)
            print(f"{r['seconds']:.1f} s, peak {_mb(r['peak_rss_mb'])} MB, {r['status']}",
                  flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: reporting the notebooks that finished")
    checks = check_budgets(results, args.total_range, args.total_budget, args.max_rss_mb,
                           args.max_seconds or None)
    print()
    print(report(results, checks))
    passed = all(c["passed"] is not False for c in checks) and len(results) == len(paths)
    print(f"\nOverall: {'PASS' if passed else 'FAIL'}")

    out = {
        "benchmark": "notebooks",
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": time.perf_counter() - t0,
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "device": device, "device_error": probe.get("error"),
        "source_cached_before_run": probe.get("source_cached"),
        "cache_dir": probe.get("cache_dir"),
        "config": {"timeout_per_cell": args.timeout, "kernel": args.kernel,
                   "total_budget_seconds": args.total_budget,
                   "total_range": list(args.total_range), "max_rss_mb": args.max_rss_mb,
                   "max_seconds_per_notebook": args.max_seconds or None,
                   "poll_seconds": args.poll,
                   "requested": [str(p) for p in paths]},
        "total_seconds": sum(r["seconds"] for r in results),
        "notebooks": results, "checks": checks, "passed": passed,
    }
    path = args.out / f"{args.name}.json"
    from transferkit.files import json_safe as _clean, write_text as write_atomic  # Keras: only now
    write_atomic(path, json.dumps(_clean(out), indent=1) + "\n")
    print(f"Wrote {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
