"""Headless Chromium, driven over the DevTools protocol through a pipe.

`--remote-debugging-pipe` makes Chromium read protocol messages (JSON, each ended by
a NUL byte) on its file descriptor 3 and write answers and events on 4: no port, no
WebSocket library. The web edition's tests and its screenshots use it.

    with Browser(find_chromium()) as b:
        b.goto(page.as_uri())
        b.evaluate("document.title")
        b.screenshot(path)
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from llm_reference.errors import UserError

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# key -> (code, Windows virtual key code, text it types)
KEYS = {"Enter": ("Enter", 13, "\r"), " ": ("Space", 32, " "),
        "Escape": ("Escape", 27, ""), "Tab": ("Tab", 9, ""),
        "ArrowUp": ("ArrowUp", 38, ""), "ArrowDown": ("ArrowDown", 40, ""),
        "ArrowLeft": ("ArrowLeft", 37, ""), "ArrowRight": ("ArrowRight", 39, "")}


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) on PATH, or None."""
    return next((p for p in map(shutil.which, NAMES) if p), None)


class Browser:
    """One headless Chromium with one page; records the page's console errors."""

    def __init__(self, executable: str, width: int = 1280, height: int = 900,
                 timeout: float = 30.0):
        self.timeout = timeout
        self.profile = tempfile.TemporaryDirectory(prefix="chromium-")
        to_chrome, self._out = os.pipe()    # we write, Chromium reads on fd 3
        self._in, from_chrome = os.pipe()   # Chromium writes on fd 4, we read

        def plumb() -> None:  # in the child, before exec: the pipes become 3 and 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome,
                                                                   from_chrome)]
            os.dup2(high[0], 3)  # dup2 leaves the copies open across exec
            os.dup2(high[1], 4)

        args = [executable, "--headless", "--remote-debugging-pipe",
                "--no-first-run", "--no-default-browser-check", "--disable-gpu",
                "--disable-extensions", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self.profile.name}",
                f"--window-size={width},{height}"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to sandbox as root
        self.process = subprocess.Popen(
            [*args, "about:blank"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=plumb)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.viewport(width, height)

    # --- the protocol ---------------------------------------------------------

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe (did it crash?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _record(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details["text"]
            self.errors.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in (
                "error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", "")))
                            for a in params["args"])
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"{entry['source']}: {entry['text']} "
                               f"{entry.get('url', '')}".rstrip())

    def call(self, method: str, session: bool = False, **params: Any) -> dict:
        """Send one command and wait for its answer; events meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']['message']}")
                return answer.get("result", {})
            self._record(answer)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The next event `method` (events seen before this call do not count)."""
        deadline = time.monotonic() + self.timeout
        while True:
            event = self._read(deadline)
            self._record(event)
            if event.get("method") == method:
                return event.get("params", {})

    # --- what a test does -----------------------------------------------------

    def viewport(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)

    def goto(self, url: str) -> None:
        """Open `url` and wait for its load event."""
        seen = len(self.events)
        self.call("Page.navigate", session=True, url=url)
        if not any(e.get("method") == "Page.loadEventFired"
                   for e in self.events[seen:]):  # it may come before the answer
            self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']['text']}")
        return result["result"].get("value")

    def press(self, key: str) -> None:
        """Press and release a key in the focused element, as a user would."""
        code, vk, text = KEYS[key]
        common = {"key": key, "code": code, "windowsVirtualKeyCode": vk}
        self.call("Input.dispatchKeyEvent", session=True, type="keyDown",
                  text=text, **common)
        self.call("Input.dispatchKeyEvent", session=True, type="keyUp", **common)

    def click(self, selector: str) -> None:
        """A mouse click in the middle of the first element `selector` matches."""
        x, y = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y,
                      button="left", clickCount=1)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """A PNG of the page (all of it, or the viewport)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            w, h = self.evaluate("[document.documentElement.scrollWidth,"
                                 " document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        data = self.call("Page.captureScreenshot", session=True, **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            self.process.kill()
        self.process.wait(timeout=self.timeout)
        os.close(self._out)
        os.close(self._in)
        self.profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def require_chromium() -> str:
    path = find_chromium()
    if path is None:
        raise UserError("--screenshots needs Chromium on PATH: install it "
                        "(Debian: apt-get install chromium) or leave --screenshots out")
    return path
