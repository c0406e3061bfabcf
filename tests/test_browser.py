"""End-to-end: the strategy lab notebook in JupyterLab, driven by a real (headless) Chromium.

nbval runs the notebook's cells but has no front end, so it cannot see whether the
``tk.StrategyLab`` panel renders and responds.  This test starts JupyterLab on a throw-away
copy of the notebook, runs all cells in the browser and then uses the panel as a learner:

- Run: the plot is sampled (pixels, not just the ``<img>`` element) during the run and must
  show >= 3 different frames; the progress text counts epochs; after "Done" the new run's
  colour must be drawn inside the axes; exactly one row is added;
- a double-click on Run adds exactly one row;
- Stop mid-run: the panel says "Stopped" within 2 s, no row is added, earlier rows are unchanged;
- Kernel -> Interrupt during a button-started run does the same;
- with 9 runs (one diverging at learning rate 0.3), screenshots at 1024x768 and 1600x1000:
  the plot follows the panel's width;
- the page's console shows no errors.
Screenshots of every state go to tests/artifacts/.

Needs Debian's ``chromium`` (/usr/bin/chromium) and the ``playwright`` Python package
(Playwright's own browser download is not used).  Without them the test is skipped, unless
``TRANSFERKIT_REQUIRE_BROWSER=1`` (set by .ci/run), in which case it fails.

Selectors follow the panel's DOM contract: root box ``.tk-lab``; strategy selector
``.widget-toggle-buttons``; buttons ``.tk-lab-run``, ``.tk-lab-stop``; status line
``.tk-lab-status``; progress text ``.tk-lab-progress-text``; results ``.tk-lab-results`` (an
HTML widget with a ``<table>``, one ``<tbody><tr>`` per finished run); plot ``.tk-lab-plot``
(an ``ipywidgets.Image``: an ``<img>`` whose picture is replaced during a run).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The notebook under test.  TRANSFERKIT_BROWSER_NOTEBOOK overrides it (e.g. a stand-in).
NOTEBOOK = Path(os.environ.get("TRANSFERKIT_BROWSER_NOTEBOOK",
                               REPO / "notebooks" / "05_strategy_lab.ipynb"))
CACHE = REPO / "data" / "cache"            # the shared cache: the source model is reused
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SCREENSHOT = "strategy_lab.png"

# Time limits (seconds).
SERVER_START_S = 90       # jupyter lab answers /api/status
KERNEL_IDLE_S = 120       # the notebook is open and its kernel idle
FIRST_CELL_S = 120        # Run All made progress (one cell finished); else reload and retry
RUN_ALL_S = 240           # all cells finished, panel shown with at least one row
RUN_CLICK_S = 60          # pressing Run added a row (a run at the defaults takes ~5-10 s)
STOP_S = 2.0              # Stop (or Kernel -> Interrupt) acted on: the panel says "Stopped"
SHUTDOWN_S = 20
STABLE_S = 2              # a state must hold this long to count (kernel ready, row count)
LOST_S = 10               # Run All with no cell queued after this long: lost, retry

LAB = ".tk-lab"
TOGGLES = ".widget-toggle-buttons"
RUN_BUTTON = ".tk-lab-run"
STOP_BUTTON = ".tk-lab-stop"
ROWS = ".tk-lab-results tbody tr"
PLOT_IMG = "img.tk-lab-plot"
STATUS = ".tk-lab-status"
PROGRESS = ".tk-lab-progress-text"

# One snapshot of the page's state, for the polling loops below.
STATE_JS = """() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent.trim());
  const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const lab = document.querySelector('%(lab)s');
  return {
    prompts,
    kernel: ind ? ind.getAttribute('data-status') : null,
    lab: !!lab,
    toggles: lab ? lab.querySelectorAll('%(toggles)s').length : 0,
    rows: lab ? lab.querySelectorAll('%(rows)s').length : 0,
    // textContent, not innerText: JupyterLab skips rendering cells out of view, and
    // innerText of an unrendered element is empty
    table: lab ? [...lab.querySelectorAll('%(rows)s')].map(r => r.textContent) : [],
    status: lab && lab.querySelector('%(status)s')
      ? lab.querySelector('%(status)s').textContent : '',
    progress: lab && lab.querySelector('%(progress)s')
      ? lab.querySelector('%(progress)s').textContent : '',
    imgs: lab ? [...lab.querySelectorAll('%(img)s')]
      .filter(i => i.complete && i.naturalWidth > 0).length : 0,
    plot: lab ? [...lab.querySelectorAll('%(img)s')]            // a short signature
      .map(i => i.src.length + ':' + i.src.slice(-24)).join(' ') : '',
    errors: [...document.querySelectorAll(
        '.jp-Notebook .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
      .map(o => o.innerText).filter(t => t.includes('Traceback (most recent call last)')),
  };
}""" % {"lab": LAB, "toggles": TOGGLES, "rows": ROWS, "img": PLOT_IMG, "status": STATUS,
         "progress": PROGRESS}

# Text of all outputs (for failure messages).
OUTPUTS_JS = """() => [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')]
  .map(o => o.innerText).join('\\n---\\n')"""


def _unavailable(reason):
    """Skip, or fail when the environment says the browser test must run (CI)."""
    if os.environ.get("TRANSFERKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (TRANSFERKIT_REQUIRE_BROWSER=1, so this is a failure)")
    pytest.skip(reason)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, n=4000):
    try:
        return Path(path).read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _start_server(tmp, root, token, log_path):
    """jupyter lab from this Python, isolated config/runtime/settings/workspaces in `tmp`.

    Returns (process, base_url) once /api/status answers.  A port taken between choosing
    and binding (port_retries=0) makes the server exit: then try another port."""
    env = os.environ.copy()
    for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTER_DATA_DIR", "data"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                     ("JUPYTERLAB_WORKSPACES_DIR", "workspaces")]:
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(tmp / sub)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["TRANSFERKIT_CACHE"] = str(CACHE)    # conftest points it at a private tmp dir
    env.pop("JUPYTER_PATH", None)
    # No news / update toast covering the notebook.
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # No autosave: the copy on disk stays output-free, so a reload starts from a clean page.
    docmanager = tmp / "settings" / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True, exist_ok=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))

    for attempt in range(3):
        port = _free_port()
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}"]
        log = open(log_path, "ab")
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        return proc, base
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        if proc.poll() is None:        # still running but never answered: give up
            _stop_server(proc, None, token)
            break
    raise AssertionError(f"jupyter lab did not answer /api/status within {SERVER_START_S} s; "
                         f"log tail:\n{_tail(log_path)}")


def _stop_server(proc, base, token):
    """Shut kernels down, end the server's process group, and any kernel left behind.

    Kernels are started in their own session (jupyter_client), so killing the server's
    process group alone would leave them running: note the server's descendants first."""
    try:
        import psutil
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except Exception:
        descendants = []
    if base is not None:
        try:
            with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=5) as r:
                kernels = json.load(r)
            for k in kernels:
                req = urllib.request.Request(f"{base}/api/kernels/{k['id']}?token={token}",
                                             method="DELETE")
                urllib.request.urlopen(req, timeout=10).close()
        except Exception:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=SHUTDOWN_S)
            break
        except subprocess.TimeoutExpired:
            continue
    for child in descendants:
        try:
            if child.is_running():
                child.kill()
        except Exception:
            pass


def _poll(page, until, timeout_s, what):
    """Evaluate STATE_JS every 0.5 s until `until(state)` is true; return the last state.

    `until` may raise AssertionError to fail fast.  On timeout, raise TimeoutError."""
    start = time.monotonic()
    deadline = start + timeout_s
    state = last = None
    while True:
        state = page.evaluate(STATE_JS)
        if state != last:          # a trace of what the page went through (shown on failure)
            print(f"[{time.monotonic() - start:6.1f} s] {what}: {state}")
            last = state
        if until(state):
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout_s} s; last state {state}")
        page.wait_for_timeout(500)


def _raise_on_traceback(state):
    """A cell (or a widget callback) raised: fail now, with the traceback; no retry."""
    if state["errors"]:
        raise AssertionError("the notebook raised an exception:\n" + state["errors"][0][-4000:])


def _numbered(prompt):
    return prompt.startswith("[") and prompt[1:2].isdigit()


def _copy_without_outputs(src, dst):
    """A copy of the notebook with no outputs, execution counts or saved widget state, so
    that whatever the page shows after Run All comes from this run.

    Returns, per code cell, whether Run All gives it a number (blank cells are skipped)."""
    nb = json.loads(Path(src).read_text(encoding="utf-8"))
    runs = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            source = cell.get("source", "")
            runs.append(bool(("".join(source) if isinstance(source, list) else source).strip()))
    nb.get("metadata", {}).pop("widgets", None)
    Path(dst).write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return runs


def _run_all(page):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).first.click()


def _kernels(base, token):
    """The server's kernels (/api/kernels): id, execution_state, connections, ..."""
    try:
        with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=5) as r:
            return json.load(r)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
        return []


def _wait_kernel_ready(page, base, token):
    """Wait until the notebook's kernel is idle *and connected to this page*.

    The execution indicator says "idle" before the kernel even starts (then goes
    initializing -> connecting -> unknown -> idle): a Run All clicked in that window is lost
    (no cell gets [*]).  So also require, for STABLE_S, a kernel with a websocket
    connection that the server reports idle."""
    start = time.monotonic()
    since = None
    while True:
        state = page.evaluate(STATE_JS)
        kernels = _kernels(base, token)
        ready = (state["kernel"] == "idle"
                 and any(k.get("connections", 0) >= 1 and k.get("execution_state") == "idle"
                         for k in kernels))
        now = time.monotonic()
        since = (since or now) if ready else None
        if since is not None and now - since >= STABLE_S:
            print(f"[{now - start:6.1f} s] kernel ready: {kernels}")
            return
        if now - start > KERNEL_IDLE_S:
            raise TimeoutError(f"kernel not idle and connected within {KERNEL_IDLE_S} s: "
                               f"page {state}, server {kernels}")
        page.wait_for_timeout(250)


class _Stalled(Exception):
    """Run All did nothing, or stopped before the last cell with no cell running."""


class _Started:
    """Run All made progress: a cell finished.  Raises _Stalled when, for LOST_S, the
    kernel is idle and no cell is queued, running or finished (the Run All was lost)."""

    def __init__(self):
        self.idle_since = None

    def __call__(self, state):
        _raise_on_traceback(state)
        prompts = state["prompts"]
        if any(_numbered(p) for p in prompts):
            return True
        now = time.monotonic()
        if state["kernel"] == "idle" and not any(p.startswith("[*]") for p in prompts):
            self.idle_since = self.idle_since or now
            if now - self.idle_since >= LOST_S:
                raise _Stalled(f"Run All did nothing: prompts {prompts}")
        else:
            self.idle_since = None
        return False


class _AllDone:
    """All code cells ran, kernel idle, panel shown with at least one row, and the row count
    unchanged for STABLE_S (in case runs finish after their cell).

    Raises _Stalled when, for STABLE_S, no cell is queued or running, the kernel is idle and
    cells are left unrun with no traceback shown (seen twice in ~20 runs: the queue reset to
    [ ] after a cell finished).  A traceback fails the test at once."""

    def __init__(self, runs):
        self.runs = runs          # per code cell: does it get a number?
        self.since = self.rows = self.stalled_since = None

    def __call__(self, state):
        _raise_on_traceback(state)
        prompts = state["prompts"]
        running = any(p.startswith("[*]") for p in prompts)
        done = (len(prompts) == len(self.runs)
                and all(_numbered(p) for p, run in zip(prompts, self.runs) if run))
        now = time.monotonic()
        if state["kernel"] == "idle" and not running and prompts and not done:
            self.stalled_since = self.stalled_since or now
            if now - self.stalled_since >= STABLE_S:
                raise _Stalled(f"Run All stopped before the end: prompts {prompts}")
        else:
            self.stalled_since = None
        if not (done and state["kernel"] == "idle" and state["toggles"] > 0
                and state["rows"] >= 1):
            self.since = None
            return False
        if self.since is None or state["rows"] != self.rows:
            self.since, self.rows = now, state["rows"]
        return now - self.since >= STABLE_S


def _save_screenshot(page, tmp_path, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = page.screenshot()
    for folder in (ARTIFACTS, tmp_path):
        (folder / name).write_bytes(png)
    return ARTIFACTS / name


def _plot_png(page):
    """The plot as the browser draws it (an element screenshot: real pixels)."""
    return page.locator(PLOT_IMG).first.screenshot(animations="disabled")


def _color_pixels_in_axes(png, color, tolerance=40):
    """How many pixels of ``color`` lie in the plot's axes area (left of the legend)."""
    import io

    import numpy as np
    from matplotlib.colors import to_rgb
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    axes = image[:, : int(image.shape[1] * 0.76)]    # the legend stands right of 0.78
    target = np.array(to_rgb(color)) * 255
    return int((np.abs(axes - target).max(axis=2) <= tolerance).sum())


def _rows_added(page, before, what, timeout_s=RUN_CLICK_S):
    state = _poll(page, lambda s: _raise_on_traceback(s) or (
        s["rows"] >= before + 1 and "Done" in s["status"]), timeout_s, what)
    return state


def _settled(page, seconds=3.0):
    """The panel's state after nothing changed for ``seconds`` (a queued second run would
    have started by then)."""
    end = time.monotonic() + seconds
    state = page.evaluate(STATE_JS)
    while time.monotonic() < end:
        page.wait_for_timeout(250)
        now = page.evaluate(STATE_JS)
        if (now["rows"], now["status"]) != (state["rows"], state["status"]):
            end = time.monotonic() + seconds
        state = now
    return state


def _kernel_client(runtime_dir):
    """A client of the notebook's kernel (the only one the server runs), to set up extra
    runs as a cell would; its widget messages still go to the page."""
    from jupyter_client import BlockingKernelClient

    files = sorted(Path(runtime_dir).glob("kernel-*.json"), key=lambda p: p.stat().st_mtime)
    assert files, f"no kernel connection file in {runtime_dir}"
    client = BlockingKernelClient(connection_file=str(files[-1]))
    client.load_connection_file()
    client.start_channels()
    client.wait_for_ready(timeout=30)
    return client


def _execute(client, code, timeout_s=240):
    reply = client.execute_interactive(code, timeout=timeout_s, output_hook=lambda msg: None)
    assert reply["content"]["status"] == "ok", reply["content"]


def _menu(page, menu, item):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).first.click()


def _run_and_watch(page, lab, rows_before, tmp_path):
    """Press Run and sample the plot's pixels until Done: (frames seen, epochs seen)."""
    frames, epochs, shot = [], set(), False
    lab.locator(RUN_BUTTON).first.click()
    deadline = time.monotonic() + RUN_CLICK_S
    while True:
        state = page.evaluate(STATE_JS)
        _raise_on_traceback(state)
        if state["rows"] >= rows_before + 1 and "Done" in state["status"]:
            return state, frames, epochs
        if state["progress"].startswith("epoch"):
            epochs.add(state["progress"].split(" ·")[0])
            png = _plot_png(page)
            if not frames or png != frames[-1]:
                frames.append(png)
            if not shot and len(epochs) >= 4:
                _save_screenshot(page, tmp_path, "strategy_lab_2_during_run.png")
                shot = True
        if time.monotonic() > deadline:
            raise AssertionError(f"Run did not finish within {RUN_CLICK_S} s; last {state}")
        page.wait_for_timeout(150)


def _stop_mid_run(page, lab, how):
    """Start a run, wait for epoch 2, stop it (``how``), return seconds until 'Stopped'."""
    lab.locator(RUN_BUTTON).first.click()
    _poll(page, lambda s: _raise_on_traceback(s) or re.match(r"epoch ([2-9]|\d\d) of 40",
                                                             s["progress"]),
          RUN_CLICK_S, "a run reached epoch 2")
    t = time.monotonic()
    how()
    _poll(page, lambda s: "Stopped" in s["status"], 15, "the panel says Stopped")
    return time.monotonic() - t


@pytest.mark.browser
def test_strategy_lab_runs_in_jupyterlab(tmp_path):
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    assert NOTEBOOK.is_file(), f"the notebook under test, {NOTEBOOK}, is missing"
    from transferkit.curves import run_color

    # Evidence left by an earlier run would be mistaken for this one's.
    for stale in ARTIFACTS.glob("strategy_lab*"):
        stale.unlink()

    root = tmp_path / "root"
    root.mkdir()
    name = "strategy_lab_e2e.ipynb"          # a name starting with '.' would 404
    runs = _copy_without_outputs(NOTEBOOK, root / name)
    token = secrets.token_hex(24)
    log_path = tmp_path / "jupyter.log"
    console = []

    t0 = time.monotonic()
    proc, base = _start_server(tmp_path / "jupyter", root, token, log_path)
    client = None
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                         headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("dialog", lambda dialog: dialog.accept())   # "leave page?" on reload
            page.on("console", lambda m: m.type == "error" and console.append(m.text))
            page.on("pageerror", lambda e: console.append(f"page error: {e}"))
            try:
                page.goto(f"{base}/lab/tree/{name}?token={token}",
                          timeout=KERNEL_IDLE_S * 1000)
                _wait_kernel_ready(page, base, token)

                # Run All.  If no cell finishes (stale kernel connection: cells stuck at
                # [*]) or the run stops early, reload the page and run all again, once.
                for attempt in (1, 2):
                    _run_all(page)
                    try:
                        _poll(page, _Started(), FIRST_CELL_S,
                              f"Run All #{attempt}: a first cell finished")
                        _poll(page, _AllDone(runs), RUN_ALL_S,
                              f"Run All #{attempt}: all cells done, panel with toggle "
                              "buttons and >= 1 row")
                        break
                    except (TimeoutError, _Stalled) as exc:
                        if attempt == 2:
                            raise AssertionError(f"Run All failed twice; last: {exc}") from exc
                        print(f"Run All #{attempt} failed ({exc}); reloading and retrying")
                        _save_screenshot(page, tmp_path, f"strategy_lab_attempt{attempt}.png")
                        print("notebook outputs:\n", page.evaluate(OUTPUTS_JS)[-6000:])
                        page.reload(timeout=KERNEL_IDLE_S * 1000)
                        _wait_kernel_ready(page, base, token)

                lab = page.locator(LAB).first
                lab.scroll_into_view_if_needed()
                lab.locator(TOGGLES).first.wait_for(state="visible", timeout=10_000)
                before = page.evaluate(STATE_JS)
                rows, table = before["rows"], before["table"]
                assert rows >= 1 and rows == lab.locator(ROWS).count()
                _save_screenshot(page, tmp_path, "strategy_lab_1_ready.png")

                # 1. Run: the plot changes during the run, the finished run is drawn.
                color = run_color(rows)           # the new run's colour
                plot_before = _plot_png(page)
                t_click = time.monotonic()
                state, frames, epochs = _run_and_watch(page, lab, rows, tmp_path)
                run_s = time.monotonic() - t_click
                assert state["rows"] == rows + 1, f"one Run added {state['rows'] - rows} rows"
                assert state["table"][:rows] == table, "earlier rows changed"
                assert len(set(frames)) >= 3, \
                    f"the plot showed {len(set(frames))} different frames during the run " \
                    f"(progress seen: {sorted(epochs)})"
                assert len(epochs) >= 3, f"progress did not count epochs: {sorted(epochs)}"
                page.wait_for_timeout(500)
                plot_after = _plot_png(page)
                drawn_before = _color_pixels_in_axes(plot_before, color)
                drawn_after = _color_pixels_in_axes(plot_after, color)
                assert drawn_after >= 150 and drawn_after > 5 * drawn_before + 50, \
                    f"the finished run ({color}) is not drawn in the axes: " \
                    f"{drawn_before} -> {drawn_after} pixels"
                _save_screenshot(page, tmp_path, "strategy_lab_3_done.png")
                rows, table = state["rows"], state["table"]
                print(f"Run: {run_s:.1f} s, {len(set(frames))} frames, progress {sorted(epochs)}"
                      f", run colour {color}: {drawn_before} -> {drawn_after} px")

                # 2. A double-click trains once.
                lab.locator(RUN_BUTTON).first.dblclick()
                _rows_added(page, rows, "double-click: a run finished")
                state = _settled(page)
                assert state["rows"] == rows + 1, \
                    f"a double-click on Run added {state['rows'] - rows} rows"
                assert state["table"][:rows] == table
                rows, table = state["rows"], state["table"]

                # 3. Stop mid-run: acted on at once, nothing added, earlier rows intact.
                # A 40-epoch run, so that it is still training when Stop comes (on a quiet
                # 2-core machine a 10-epoch run can end before the click).  The epochs are set
                # from a second client of the kernel, as a cell would; the slider follows.
                client = _kernel_client(tmp_path / "jupyter" / "runtime")
                _execute(client, "lab.epochs.value = 40")
                stop_s = _stop_mid_run(page, lab, lambda: lab.locator(STOP_BUTTON).first.click())
                _save_screenshot(page, tmp_path, "strategy_lab_4_stopped.png")
                state = _settled(page)
                assert stop_s <= STOP_S, f"Stop took {stop_s:.1f} s to act"
                assert state["rows"] == rows and state["table"] == table
                # 4. Kernel -> Interrupt does the same for a run started by the button.
                interrupt_s = _stop_mid_run(page, lab,
                                            lambda: _menu(page, "Kernel", "Interrupt Kernel"))
                state = _settled(page)
                assert interrupt_s <= STOP_S, f"Interrupt took {interrupt_s:.1f} s to act"
                assert state["rows"] == rows and state["table"] == table
                print(f"Stop acted on in {stop_s:.2f} s, Kernel -> Interrupt in "
                      f"{interrupt_s:.2f} s")

                # 5. Nine runs, one diverging, at two window sizes.
                extra = [("gradual_unfreezing", 1e-2), ("discriminative", 1e-2),
                         ("fine_tune_all", 1e-2), ("scratch", 0.3)][: max(0, 9 - rows)]
                _execute(client, f"for s, lr in {extra!r}:\n"
                                 "    lab.run(strategy=s, learning_rate=lr, epochs=4)\n")
                state = _poll(page, lambda s: s["rows"] >= 9, 30, "nine rows")
                widths = {}
                for width, height in ((1024, 768), (1600, 1000)):
                    page.set_viewport_size({"width": width, "height": height})
                    page.wait_for_timeout(1000)
                    lab.locator(PLOT_IMG).first.scroll_into_view_if_needed()
                    widths[width] = lab.locator(PLOT_IMG).first.bounding_box()["width"]
                    _save_screenshot(page, tmp_path, f"strategy_lab_9runs_{width}x{height}.png")
                    lab.screenshot(path=str(ARTIFACTS / f"strategy_lab_panel_{width}x{height}.png"))
                assert widths[1600] > 1.3 * widths[1024], f"the plot keeps its width: {widths}"
                print(f"plot width: {widths}; total {time.monotonic() - t0:.1f} s")

                assert not console, "the page's console shows errors:\n" + "\n".join(console)
            except BaseException:
                # Evidence for CI: screenshot, cell outputs, server log (also in artifacts/).
                try:
                    _save_screenshot(page, tmp_path, "strategy_lab_failure.png")
                    print("notebook outputs at failure:\n", page.evaluate(OUTPUTS_JS)[-6000:])
                    print("console errors:", console)
                except Exception:
                    pass
                print("jupyter log tail:\n", _tail(log_path))
                try:
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(log_path, ARTIFACTS / "strategy_lab_jupyter.log")
                except OSError:
                    pass
                raise
            finally:
                browser.close()
    finally:
        if client is not None:
            client.stop_channels()
        _stop_server(proc, base, token)
