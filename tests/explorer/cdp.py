"""Headless Chromium driven over the DevTools protocol through a pipe (``--remote-debugging-pipe``): no
WebDriver, no extra package. Used by the explorer's browser tests and ``benchmarks/explorer_speed.py``.

    with Chromium() as browser:
        page = browser.open("file:///.../explorer.html")
        page.wait("document.querySelectorAll('.cx-edge').length > 0")
        page.eval("1 + 1")  # -> 2
        page.errors         # console errors and uncaught exceptions seen so far
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from typing import Any


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab: evaluate JavaScript, dispatch mouse events, collect console errors."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser, self.session = browser, session
        self.errors: list[str] = []

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        """One DevTools command on this tab."""
        return self.browser.send(method, params, self.session, timeout)

    def eval(self, expression: str, timeout: float = 60) -> Any:
        """The value of a JavaScript expression (promises awaited); a thrown error raises AssertionError."""
        res = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout,
        )
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression[:80]}: {res['exceptionDetails'].get('exception', res)}")
        return res["result"].get("value")

    def wait(self, expression: str, timeout: float = 60) -> Any:
        """Poll until ``expression`` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
            except AssertionError:
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {expression}; errors: {self.errors}")

    def hover(self, x: float, y: float) -> None:
        """Move the mouse to viewport point (x, y)."""
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})


class Chromium:
    """A headless Chromium process; a context manager that ends it."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        binary = chromium_path()
        if binary is None:
            raise RuntimeError("chromium is not installed")
        cmd_r, self._cmd_w = os.pipe()  # we write commands, chromium reads them on fd 3
        self._res_r, res_w = os.pipe()  # chromium writes replies on fd 4
        for name in ("cmd_r", "res_w"):  # above 9, so that moving them onto 3 and 4 cannot clobber either
            fd = locals()[name]
            high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
            os.close(fd)
            if name == "cmd_r":
                cmd_r = high
            else:
                res_w = high
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                "--allow-file-access-from-files", "--no-first-run", f"--window-size={width},{height}"]  # fmt: skip
        script = f'exec "$0" "$@" 3<&{cmd_r} 4>&{res_w} {cmd_r}<&- {res_w}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, binary, *args, "about:blank"],
            pass_fds=(cmd_r, res_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._id = 0
        self._pages: dict[str, Page] = {}

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the browser."""
        try:
            self.send("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply (events that arrive meanwhile are handled)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise AssertionError("chromium did not answer in time")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise AssertionError("chromium closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _event(self, msg: dict[str, Any]) -> None:
        page = self._pages.get(msg.get("sessionId", ""))
        if page is None:
            return
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            page.errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            page.errors.append(str(details.get("exception", {}).get("description", details.get("text"))))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            page.errors.append(f"{params['entry'].get('url', '')}: {params['entry'].get('text')}")

    def open(self, url: str) -> Page:
        """A new tab at ``url`` (console and exceptions recorded from the start)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        self._pages[session] = page
        for domain in ("Runtime", "Log", "Page"):
            page.send(f"{domain}.enable")
        page.send("Page.navigate", {"url": url})
        return page
