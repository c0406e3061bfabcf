#!/usr/bin/env python
"""The load of a class on one server: N simulated students on the real hub at once.

    sudo python -m benchmarks.hub_load                        # N = 1, 2, 4, 8
    sudo python -m benchmarks.hub_load --students 1 4 --steps notebooks/04_fine_tuning.ipynb lab

One class hub on loopback (deploy/loopback.py: deploy/setup.sh's steps, the shared cache built
by the teacher, deploy/jupyterhub_config.py with its default limits, real Unix users), then
one round per N: the first N students at the same moment log in through the hub's login form
and REST API, start their servers, and run the steps in kernels through the websocket
(deploy/hubclient.py), then stop. A step is a notebook of the course (every code cell, in a
fresh kernel started in the notebook's folder) or ``lab`` (a StrategyLab run of notebook 05:
one fine-tuning run of 10 epochs). Measured per N:

- time to a running server (asked for -> the hub says ready);
- each step's seconds, and its ratio to the same step with one student alone (N = 1);
- hub API latency, median and p95, over every request the students made (the token, the
  status polls during a start, a ``GET /hub/api/user`` every 2 s per student while its
  notebooks run, as a server's extensions ask) but the start and stop requests themselves,
  which wait for the spawner (their times are in the JSON);
- memory per student: the cgroup's peak (``memory.max_usage_in_bytes`` / ``memory.peak``:
  what the limit is checked against, page cache included), and the peak proportional set
  size (PSS: shared library pages split between the processes sharing them) of the
  student's processes, sampled every second; in all: the peak of the students' summed PSS;
- CPU seconds per student (the cgroup's cpuacct), failures (a cell in error, a timeout),
  kernel deaths (a kernel restarted or dead, OOM kills in the group), and source trainings
  (a "training it now" / "again" line in any output, or a source model in a student's own
  cache) against loads from the shared cache.

Writes benchmarks/results/hub_load.json and hub_load.md; the load average before and after
every round is in both. Needs root and the hub's venv (deploy/setup.sh venv). The machine's
other work shares the same cores: quiet machines only for numbers to keep.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "deploy"))
import cgroups  # noqa: E402  (deploy/, standard library only)
import loopback  # noqa: E402
from hubclient import notebook_cells  # noqa: E402

MB = 1024 * 1024
LAB_CODE = """import transferkit as tk
source = tk.source_model()
lab = tk.StrategyLab(source, shots=10, learning_rate=1e-2, epochs=10, seed=0)
row = lab.run(strategy="fine_tune_top")
assert row is not None, lab.message
print(lab.table_text())"""
LAB_NOTEBOOK = "notebooks/05_strategy_lab.ipynb"
TRAINED = ("training it now", "training it again")
LOADED_SHARED = "Loaded the source model from the shared cache"
SERVER_CALLS = ("POST server", "DELETE server")  # they wait for the spawner: see server_s


def pct(values, q):
    values = sorted(values)
    if not values:
        return None
    k = (len(values) - 1) * q
    low, high = int(k), min(int(k) + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (k - low)


def _round(value, digits=2):
    return None if value is None else round(value, digits)


def pss_rss(pid):
    """(PSS, RSS) in bytes of one process, from /proc/<pid>/smaps_rollup."""
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
            elif line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return pss, rss


class Sampler:
    """Every ``interval`` s: each student's summed PSS / RSS and cgroup charge."""

    def __init__(self, hub, names, interval=1.0):
        self.hub, self.names, self.interval = hub, names, interval
        self.uids = {loopback.pwd.getpwnam(n).pw_uid: n for n in names}
        self.peak = {n: {"pss": 0, "rss": 0, "cgroup_anon": 0} for n in names}
        self.total_pss_peak = 0
        self.groups = {}
        self.version = cgroups.enforcement()[0]
        self.running = True

    def group(self, name, pids):
        """The student's cgroup, once a process of theirs sits in it (the course copy runs
        before the server joins its group)."""
        if name not in self.groups and pids and self.version:
            keys = ("memory", "cpu", "cpuacct") if self.version == "v1" else ("unified",)
            found = cgroups.process_groups(pids[-1])
            folders = {k: found[k] for k in keys if k in found}
            if keys[0] in folders and folders[keys[0]].name == name:
                self.groups[name] = cgroups.StudentGroup(self.version, folders)
        return self.groups.get(name)

    def sample(self):
        by_user = {n: [] for n in self.names}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                name = self.uids.get(loopback._uid_of(entry))
                if name:
                    by_user[name].append(int(entry))
        total = 0
        for name, pids in by_user.items():
            pss = rss = 0
            for pid in pids:
                p, r = pss_rss(pid)
                pss, rss = pss + p, rss + r
            total += pss
            peak = self.peak[name]
            peak["pss"], peak["rss"] = max(peak["pss"], pss), max(peak["rss"], rss)
            group = self.group(name, pids)
            if group is not None:
                anon = group.memory_now()[1] or 0
                peak["cgroup_anon"] = max(peak["cgroup_anon"], anon)
        self.total_pss_peak = max(self.total_pss_peak, total)

    async def run(self):
        while self.running:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.interval)


async def whoami_poll(student, stop, every=2.0):
    while not stop.is_set():
        try:
            await student.hub_api("GET", "/user", what="GET /user (poll)")
        except Exception:  # a slow or refused poll is a latency sample at most
            pass
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass


async def run_step(student, hub, step, timeout):
    """One step in a fresh kernel: (record, text of every output)."""
    if step == "lab":
        path, cells = LAB_NOTEBOOK, [(0, LAB_CODE, False)]
    else:
        path, cells = step, notebook_cells(hub.course / step)
    start = time.perf_counter()
    kernel = await student.open_kernel(f"transferkit/{path}")
    record = {"step": step, "status": "ok", "cells": len(cells), "deaths": 0}
    texts = []
    try:
        for index, code, raises in cells:
            result = await kernel.execute(code, timeout=timeout)
            texts.append(result.text)
            if result.kernel_states or result.status == "died":
                record["deaths"] += 1
            if result.status != "ok" and not (raises and result.status == "error"):
                record["status"] = f"{result.status} in cell {index}: {result.error}"[:300]
                break
    finally:
        await kernel.close()
    record["seconds"] = round(time.perf_counter() - start, 2)
    return record, "".join(texts)


async def one_student(hub, name, steps, timeout, sampler):
    student = hub.student(name)
    rec = {"student": name, "steps": []}
    stop = asyncio.Event()
    try:
        await student.login()
        rec["server_s"] = round(await student.start_server(timeout=600), 2)
        poll = asyncio.create_task(whoami_poll(student, stop))
        out = ""
        for step in steps:
            record, text = await run_step(student, hub, step, timeout)
            rec["steps"].append(record)
            out += text
            if record["status"] != "ok":
                break
        stop.set()
        await poll
        rec["trainings"] = sum(out.count(marker) for marker in TRAINED)
        rec["shared_loads"] = out.count(LOADED_SHARED)
        group = sampler.groups.get(name)
        if group is not None:
            rec["cgroup_peak_mb"] = round((group.memory_peak() or 0) / MB)
            rec["cpu_s"] = round(group.cpu_seconds() or 0, 1)
            rec["oom_kills"] = group.oom_kills() or 0
            rec["memory_limit_mb"] = round((group.memory_limit() or 0) / MB)
            rec["cpu_limit"] = group.cpu_quota()
        own = hub.home(name) / ".cache" / "transferkit"
        rec["own_cache_models"] = sorted(p.name for p in own.glob("source-*.weights.h5"))
    except Exception as exc:  # a failed student is a result, not the end of the round
        rec["error"] = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        stop.set()
        await student.stop_server()
        rec["hub_api_s"] = {}
        for what, seconds in student.latencies:
            rec["hub_api_s"].setdefault(what, []).append(round(seconds, 4))
        student.close()
    return rec


async def one_round(hub, n, steps, timeout):
    names = hub.students[:n]
    sampler = Sampler(hub, names)
    task = asyncio.create_task(sampler.run())
    load_before = os.getloadavg()
    start = time.perf_counter()
    records = await asyncio.gather(*(one_student(hub, name, steps, timeout, sampler)
                                     for name in names))
    sampler.running = False
    await task
    for rec in records:
        peak = sampler.peak[rec["student"]]
        rec["pss_peak_mb"], rec["rss_peak_mb"] = round(peak["pss"] / MB), round(peak["rss"] / MB)
        rec["cgroup_anon_peak_mb"] = round(peak["cgroup_anon"] / MB)
    return {"n": n, "seconds": round(time.perf_counter() - start, 1),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "total_pss_peak_mb": round(sampler.total_pss_peak / MB), "students": records}


def summarise(rounds, steps):
    alone = {}
    rows = []
    for rnd in rounds:
        recs = rnd["students"]
        # responsiveness: every request but the two that wait for a server to start or stop
        latencies = [t for r in recs for what, ts in r["hub_api_s"].items() for t in ts
                     if what not in SERVER_CALLS]
        spawn_calls = [t for r in recs for t in r["hub_api_s"].get("POST server", [])]
        row = {"n": rnd["n"],
               "server_s_median": _round(pct([r["server_s"] for r in recs if "server_s" in r], 0.5)),
               "server_s_max": max((r["server_s"] for r in recs if "server_s" in r), default=None),
               "hub_api_ms_median": round(1000 * pct(latencies, 0.5), 1) if latencies else None,
               "hub_api_ms_p95": round(1000 * pct(latencies, 0.95), 1) if latencies else None,
               "hub_api_requests": len(latencies),
               "post_server_ms_median": round(1000 * pct(spawn_calls, 0.5)) if spawn_calls
               else None,
               "failures": sum(1 for r in recs if "error" in r or any(
                   s["status"] != "ok" for s in r["steps"]) or len(r["steps"]) < len(steps)),
               "kernel_deaths": sum(s["deaths"] for r in recs for s in r["steps"]) +
               sum(r.get("oom_kills", 0) for r in recs),
               "source_trainings": sum(r.get("trainings", 0) + len(r.get("own_cache_models", []))
                                       for r in recs),
               "shared_cache_loads": sum(r.get("shared_loads", 0) for r in recs),
               "cgroup_peak_mb_max": max((r.get("cgroup_peak_mb", 0) for r in recs), default=0),
               "pss_peak_mb_max": max(r["pss_peak_mb"] for r in recs),
               "total_pss_peak_mb": rnd["total_pss_peak_mb"],
               "cpu_s_median": _round(pct([r["cpu_s"] for r in recs if "cpu_s" in r], 0.5)),
               "memory_limit_mb": recs[0].get("memory_limit_mb"),
               "cpu_limit": recs[0].get("cpu_limit"),
               "loadavg_before": rnd["loadavg_before"][0], "loadavg_after": rnd["loadavg_after"][0]}
        for step in steps:
            times = [s["seconds"] for r in recs for s in r["steps"] if s["step"] == step
                     and s["status"] == "ok"]
            median = _round(pct(times, 0.5))
            row[f"{step} s"] = median
            if rnd["n"] == 1 and median:
                alone[step] = median
            row[f"{step} x alone"] = round(median / alone[step], 2) if median and alone.get(step) \
                else None
        rows.append(row)
    return rows


def checks(rows):
    """PASS / FAIL lines: each round with no failed notebook, no kernel death, no source
    training, every student's source model from the shared cache, peaks within the limit."""
    lines = []
    for r in rows:
        ok = (r["failures"] == 0 and r["kernel_deaths"] == 0 and r["source_trainings"] == 0
              and r["shared_cache_loads"] >= r["n"]
              and (not r["memory_limit_mb"] or r["cgroup_peak_mb_max"] <= r["memory_limit_mb"]))
        lines.append(f"{'PASS' if ok else 'FAIL'}: {r['n']} student(s): {r['failures']} failed, "
                     f"{r['kernel_deaths']} kernel deaths, {r['source_trainings']} source "
                     f"trainings, {r['shared_cache_loads']} loads from the shared cache, peak "
                     f"{r['cgroup_peak_mb_max']} MB per student (limit {r['memory_limit_mb']} MB)")
    return lines


def markdown(rows, steps, meta):
    head = ["N", "server s (median / max)"] + [f"{Path(s).stem} s (x alone)" for s in steps] + [
        "hub API ms median / p95", "peak MB per student: cgroup / PSS", "PSS in all MB",
        "CPU s per student", "failures", "kernel deaths", "trainings / shared loads", "load 1 min"]
    lines = [f"# Class hub load: {meta['when']}, {meta['cpu']}, {meta['cores']} cores",
             "", f"Limits per student: {rows[0]['memory_limit_mb']} MB, {rows[0]['cpu_limit']} CPU. "
             f"Steps per student: {', '.join(meta['steps'])}. Machine load (1-min average) "
             f"before / after the run: {meta['load_start']:.2f} / {meta['load_end']:.2f}; the "
             "last column: before / after each round.", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    def num(value, digits=1):
        return "-" if value is None else f"{value:.{digits}f}"

    for r in rows:
        cells = [r["n"], f"{num(r['server_s_median'])} / {num(r['server_s_max'])}"]
        cells += [f"{num(r[f'{s} s'], 0)} ({r[f'{s} x alone']})" for s in steps]
        cells += [f"{r['hub_api_ms_median']} / {r['hub_api_ms_p95']}",
                  f"{r['cgroup_peak_mb_max']} / {r['pss_peak_mb_max']}", r["total_pss_peak_mb"],
                  r["cpu_s_median"], r["failures"], r["kernel_deaths"],
                  f"{r['source_trainings']} / {r['shared_cache_loads']}",
                  f"{r['loadavg_before']:.1f} -> {r['loadavg_after']:.1f}"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += [""] + [f"- {line}" for line in checks(rows)]
    return "\n".join(lines) + "\n"


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", nargs="+", default=["notebooks/04_fine_tuning.ipynb", "lab"],
                        help="course notebooks (paths inside the course) and/or 'lab'")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="hub_load")
    parser.add_argument("--summarise", type=Path, metavar="JSON",
                        help="recompute the summary and the table of a results file, no run")
    args = parser.parse_args(argv)
    if args.summarise:
        data = json.loads(args.summarise.read_text())
        data["summary"] = summarise(data["rounds"], data["meta"]["steps"])
        table = markdown(data["summary"], data["meta"]["steps"], data["meta"])
        print(table)
        from transferkit.files import write_text  # the kit's atomic writer (Keras loads: only now)

        write_text(args.summarise, json.dumps(data, indent=1))
        write_text(args.summarise.with_suffix(".md"), table)
        return 0
    why = loopback.missing_tools()
    if why:
        parser.exit(2, f"hub_load: {why}\n")
    names = [f"{loopback.PREFIX}b{i:02d}" for i in range(1, max(args.students) + 1)]
    meta = {"when": _dt.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_model(),
            "cores": os.cpu_count(), "load_start": os.getloadavg()[0],
            "uptime_start": os.popen("uptime").read().strip(), "steps": args.steps,
            "cgroups": cgroups.enforcement()[0] or "not enforced"}
    rounds = []
    with loopback.LoopbackHub(names, prepare="") as hub:
        meta["hub_start_s"] = round(hub.timings["hub_start_s"], 1)
        meta["teacher_builds_shared_cache_s"] = round(hub.timings["teacher_and_shared_cache_s"], 1)
        for n in args.students:
            print(f"-- {n} student(s) ...", flush=True)
            rounds.append(asyncio.run(one_round(hub, n, args.steps, args.timeout)))
            print(markdown(summarise(rounds, args.steps), args.steps,
                           dict(meta, load_end=os.getloadavg()[0])).splitlines()[-1], flush=True)
    meta["load_end"] = os.getloadavg()[0]
    meta["uptime_end"] = os.popen("uptime").read().strip()
    rows = summarise(rounds, args.steps)
    table = markdown(rows, args.steps, meta)
    print(table)
    from transferkit.files import write_text  # the kit's atomic writer (Keras loads: only now)

    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / f"{args.name}.json", json.dumps(
        {"meta": meta, "summary": rows, "rounds": rounds}, indent=1))
    write_text(args.out / f"{args.name}.md", table)
    print(f"wrote {args.out / args.name}.json and .md")
    return 1 if any(line.startswith("FAIL") for line in checks(rows)) else 0


if __name__ == "__main__":
    sys.exit(main())
