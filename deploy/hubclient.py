"""A simulated student: logs in to a JupyterHub, starts a server, runs code in a kernel.

What a browser does, through the same doors: the hub's login form, the hub's REST API (a
token the student makes for themself, the server started and polled), the server's REST API
(a session for a notebook path, so the kernel starts in the notebook's folder) and the
kernel's websocket (the Jupyter messaging protocol: execute_request on the shell channel,
outputs on iopub, execute_reply). Used by tests/test_hub.py and benchmarks/hub_load.py.

hubtraf and 2i2c's jupyterhub-simulator do this too, but neither is on PyPI (only their git
repositories), so this small client (tornado, already a dependency of Jupyter) stands in;
every wait is bounded.
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

__all__ = ["CellResult", "HubError", "Kernel", "Student", "notebook_cells"]


class HubError(RuntimeError):
    """A request the hub or the server refused, or a wait that ran out."""


def notebook_cells(path):
    """The code cells of a notebook file: [(index, source, expected to raise)]."""
    nb = json.loads(open(path, encoding="utf-8").read())
    cells = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        raises = "raises-exception" in cell.get("metadata", {}).get("tags", [])
        if source.strip():
            cells.append((i, source, raises))
    return cells


@dataclass
class CellResult:
    status: str                      # "ok", "error", "timeout", "died"
    seconds: float
    text: str = ""                   # stdout, stderr and text/plain results, in order
    error: str = ""                  # ename: evalue of an error
    kernel_states: list = field(default_factory=list)  # "restarting" / "dead" seen


class Student:
    """One student on the hub at ``base`` (e.g. ``http://127.0.0.1:8000``)."""

    def __init__(self, base, name, password, request_timeout=60):
        self.base, self.name, self.password = base.rstrip("/"), name, password
        self.http = AsyncHTTPClient(force_instance=True)
        self.timeout = request_timeout
        self.cookies = {}
        self.token = None
        self.latencies = []   # (what, seconds) of every hub API request

    # ------------------------------------------------------------------ HTTP
    def _cookie_header(self):
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _keep_cookies(self, response_headers):
        for header in response_headers.get_list("Set-Cookie"):
            pair = header.split(";", 1)[0]
            key, _, value = pair.partition("=")
            self.cookies[key.strip()] = value.strip()

    async def request(self, method, path, body=None, *, what=None, headers=None, form=None,
                      ok=(200, 201, 202, 204), hub_api=False):
        """(status, parsed JSON or text) of ``method path``; HubError if not in ``ok``."""
        hdrs = dict(headers or {})
        if self.token:
            hdrs["Authorization"] = f"token {self.token}"
        if self.cookies:
            hdrs["Cookie"] = self._cookie_header()
        if form is not None:
            data = urllib.parse.urlencode(form)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = None if body is None else json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = ""
        req = HTTPRequest(self.base + path, method=method, headers=hdrs, body=data,
                          follow_redirects=False, request_timeout=self.timeout,
                          allow_nonstandard_methods=True)
        start = time.perf_counter()
        try:
            response = await self.http.fetch(req, raise_error=False)
        finally:
            if hub_api:
                self.latencies.append((what or f"{method} {path}", time.perf_counter() - start))
        self._keep_cookies(response.headers)
        if response.code not in ok:
            text = (response.body or b"").decode(errors="replace")[:300]
            raise HubError(f"{method} {path}: HTTP {response.code} {text}")
        text = (response.body or b"").decode()
        try:
            return response.code, json.loads(text) if text else None
        except ValueError:
            return response.code, text

    async def hub_api(self, method, path, body=None, what=None, **kw):
        return await self.request(method, f"/hub/api{path}", body, what=what, hub_api=True, **kw)

    # ------------------------------------------------------------------ the hub
    async def login(self):
        """The login form (as a browser posts it), then an API token of the student's own."""
        await self.request("GET", "/hub/login", ok=(200,))
        await self.request("POST", "/hub/login?next=", ok=(302,),
                           form={"username": self.name, "password": self.password,
                                 "_xsrf": self.cookies.get("_xsrf", "")},
                           headers={"Referer": self.base + "/hub/login"})
        _, reply = await self.hub_api("POST", f"/users/{self.name}/tokens",
                                      {"note": "simulated student", "expires_in": 7200},
                                      what="POST token", ok=(200, 201),
                                      headers={"X-XSRFToken": self.cookies.get("_xsrf", "")})
        self.token = reply["token"]
        self.cookies = {}  # from here on, the token alone (as an extension or a script)
        return self.token

    async def start_server(self, timeout=300, poll_s=0.5):
        """Ask for the server and wait until the hub says it is ready: the seconds taken."""
        start = time.perf_counter()
        await self.hub_api("POST", f"/users/{self.name}/server", what="POST server",
                           ok=(201, 202))
        while time.perf_counter() - start < timeout:
            _, user = await self.hub_api("GET", f"/users/{self.name}", what="GET user")
            server = (user.get("servers") or {}).get("")
            if server and server.get("ready"):
                return time.perf_counter() - start
            if not user.get("pending") and not server:
                raise HubError(f"{self.name}: the server stopped while starting")
            await asyncio.sleep(poll_s)
        raise HubError(f"{self.name}: server not ready after {timeout} s")

    async def stop_server(self, timeout=120):
        try:
            await self.hub_api("DELETE", f"/users/{self.name}/server", what="DELETE server",
                               ok=(202, 204))
        except HubError:
            return
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            _, user = await self.hub_api("GET", f"/users/{self.name}", what="GET user")
            if not user.get("servers") and not user.get("pending"):
                return
            await asyncio.sleep(0.5)

    # ------------------------------------------------------------------ the server
    async def open_kernel(self, notebook_path):
        """A kernel for ``notebook_path`` (relative to the home): a session, as Lab makes."""
        _, session = await self.request(
            "POST", f"/user/{self.name}/api/sessions", ok=(201,),
            body={"path": notebook_path, "name": notebook_path.rsplit("/", 1)[-1],
                  "type": "notebook", "kernel": {"name": "python3"}})
        return await Kernel.connect(self, session)

    def close(self):
        self.http.close()


class Kernel:
    """The websocket of one kernel, speaking the Jupyter messaging protocol (v5)."""

    def __init__(self, student, session, ws):
        self.student, self.session, self.ws = student, session, ws
        self.session_id = uuid.uuid4().hex
        self.states = []

    @classmethod
    async def connect(cls, student, session):
        kernel_id = session["kernel"]["id"]
        url = (student.base.replace("http", "ws", 1) +
               f"/user/{student.name}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}")
        req = HTTPRequest(url, headers={"Authorization": f"token {student.token}"},
                          request_timeout=student.timeout)
        ws = await websocket_connect(req, max_message_size=256 * 1024 * 1024)
        return cls(student, session, ws)

    def _message(self, code):
        msg_id = uuid.uuid4().hex
        return msg_id, json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username":
                       self.student.name, "session": self.session_id, "version": "5.3",
                       "date": _dt.datetime.now(_dt.timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}})

    async def execute(self, code, timeout=600):
        """Run ``code``; wait for its reply and for the kernel to be idle again."""
        msg_id, text = self._message(code)
        start = time.perf_counter()
        await self.ws.write_message(text)
        result = CellResult("ok", 0.0)
        parts, replied, idle = [], False, False
        while not (replied and idle):
            left = timeout - (time.perf_counter() - start)
            if left <= 0:
                result.status = "timeout"
                break
            try:
                raw = await asyncio.wait_for(self.ws.read_message(), left)
            except asyncio.TimeoutError:
                result.status = "timeout"
                break
            if raw is None:  # the server closed the socket: the kernel is gone
                result.status = "died"
                break
            if isinstance(raw, bytes):
                continue  # binary frames: widget buffers
            msg = json.loads(raw)
            kind, content = msg.get("msg_type") or msg["header"]["msg_type"], msg.get("content", {})
            if kind == "status" and content.get("execution_state") in ("restarting", "dead"):
                result.kernel_states.append(content["execution_state"])
                self.states.append(content["execution_state"])
                result.status = "died"
                break
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if kind == "stream":
                parts.append(content.get("text", ""))
            elif kind in ("execute_result", "display_data"):
                parts.append(content.get("data", {}).get("text/plain", "") + "\n")
            elif kind == "error":
                result.error = f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind == "execute_reply":
                replied = True
                if content.get("status") != "ok":
                    result.status = "error"
        result.seconds = time.perf_counter() - start
        result.text = "".join(parts)
        if result.error and result.status == "ok":
            result.status = "error"
        return result

    async def close(self):
        self.ws.close()
        try:
            await self.student.request("DELETE", f"/user/{self.student.name}/api/sessions/"
                                       f"{self.session['id']}", ok=(204, 404))
        except (HubError, HTTPClientError, OSError):
            pass
