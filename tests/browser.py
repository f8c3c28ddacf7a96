"""Open a local HTML file in headless Chromium and report what a reader would get.

Test helper (not part of medspark): `check_page(html_path, screenshot_path)` drives the system's
`chromium` through the Chrome DevTools Protocol over `--remote-debugging-pipe` (file descriptors
3 and 4, NUL-separated JSON), so nothing is downloaded and no port is opened. The page is loaded
with JavaScript disabled (the report must be readable without it); every request the page makes
is recorded from the Network domain. Host names resolve to nothing, so even a page that tried
to fetch something could not reach the network.

Returns a dict:
    url              the file:// URL loaded
    title            document.title
    text_chars       characters of visible text (document.body.innerText)
    scripts          number of <script> elements
    images           [{"src": first 60 chars, "complete": bool, "natural_width": int}, ...]
    images_failed    the images whose naturalWidth is 0 (did not load)
    requests         every URL the page requested (data: URLs shortened to 40 chars)
    external_requests  requests other than the page itself and data: URLs
    failed_requests  URLs whose loading failed
    screenshot       the PNG written (full page)
    width, height    the screenshot's size in pixels
    pixel_std        standard deviation of the screenshot's grey levels (0 = blank)
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-pipe"]
TIMEOUT_S = 30.0


def chromium_path() -> str | None:
    """The Chromium executable (env MEDSPARK_CHROMIUM, else `chromium` on PATH), or None."""
    exe = os.environ.get("MEDSPARK_CHROMIUM") or shutil.which("chromium") or \
        shutil.which("chromium-browser")
    return exe if exe and os.access(exe, os.X_OK) else None


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process, spoken to over the DevTools pipe. Use as a context manager."""

    def __init__(self, executable: str | None = None):
        self.exe = executable or chromium_path()
        if self.exe is None:
            raise FileNotFoundError("chromium not found (Debian: apt-get install chromium)")
        self._next_id = 0
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        self._profile = tempfile.mkdtemp(prefix="medspark-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # the child's ends, copied above fd 10 (close-on-exec) so that the dup2 onto 3 and 4
        # in the child cannot overwrite one another
        hi_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)

        def _fds() -> None:  # in the child, before exec: CDP reads fd 3 and writes fd 4
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [self.exe, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_fds, close_fds=False)
        for fd in (to_chrome_r, from_chrome_w, hi_r, hi_w):
            os.close(fd)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):  # closing a browser that already died is fine
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._inbox.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self._inbox.put(json.loads(msg))

    def _wait(self, done, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError("timed out waiting for Chromium")
            try:
                msg = self._inbox.get(timeout=left)
            except queue.Empty as err:
                raise CDPError("timed out waiting for Chromium") from err
            if msg is None:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] \
                    if self.proc.poll() is not None and self.proc.stderr else ""
                raise CDPError(f"Chromium closed the pipe {err}")
            if "id" not in msg:
                self.events.append(msg)
            if done(msg):
                return msg

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             session: str | None = None, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == mid, timeout)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, timeout: float = TIMEOUT_S) -> dict:
        for ev in self.events:
            if ev.get("method") == method and ev.get("sessionId") == session:
                return ev
        return self._wait(lambda m: m.get("method") == method and m.get("sessionId") == session,
                          timeout)

    def check(self, html_path: str | Path, screenshot_path: str | Path, *, width: int = 1280,
              height: int = 900) -> dict[str, Any]:
        """Load the page (JavaScript off), screenshot the whole page, report images/requests."""
        url = Path(html_path).resolve().as_uri()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        first_event = len(self.events)
        for method, params in [("Network.enable", {}), ("Page.enable", {}),
                               ("Emulation.setDeviceMetricsOverride",
                                {"width": width, "height": height, "deviceScaleFactor": 1,
                                 "mobile": False}),
                               ("Emulation.setScriptExecutionDisabled", {"value": True})]:
            self.call(method, params, session=sid)
        self.call("Page.navigate", {"url": url}, session=sid)
        self.wait_event("Page.loadEventFired", sid)
        info = self.call("Runtime.evaluate", {"returnByValue": True, "expression": _PROBE},
                         session=sid)["result"]["value"]
        metrics = self.call("Page.getLayoutMetrics", session=sid)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = self.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": min(size["height"], 16000),
                     "scale": 1}}, session=sid)
        out = Path(screenshot_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        self.call("Target.closeTarget", {"targetId": target})
        events = [e for e in self.events[first_event:] if e.get("sessionId") == sid]
        requested = [e["params"]["request"]["url"] for e in events
                     if e.get("method") == "Network.requestWillBeSent"]
        failed_ids = {e["params"]["requestId"] for e in events
                      if e.get("method") == "Network.loadingFailed"}
        failed = [e["params"]["request"]["url"] for e in events
                  if e.get("method") == "Network.requestWillBeSent"
                  and e["params"]["requestId"] in failed_ids]
        external = [u for u in requested if u != url and not u.startswith("data:")]
        w, h, std = _pixel_stats(out)
        return {
            "url": url, "title": info["title"], "text_chars": info["text_chars"],
            "scripts": info["scripts"], "images": info["images"],
            "images_failed": [i["src"] for i in info["images"] if i["natural_width"] <= 0],
            "requests": [_short(u) for u in requested], "external_requests": external,
            "failed_requests": [_short(u) for u in failed], "screenshot": str(out),
            "width": w, "height": h, "pixel_std": std,
        }


_PROBE = """JSON.parse(JSON.stringify({
  title: document.title,
  text_chars: (document.body ? document.body.innerText : '').length,
  scripts: document.scripts.length,
  images: Array.from(document.images).map(i => ({src: i.src.slice(0, 60),
    complete: i.complete, natural_width: i.naturalWidth}))
}))"""


def _short(url: str) -> str:
    return url[:40] + "…" if url.startswith("data:") and len(url) > 40 else url


def _pixel_stats(png: Path) -> tuple[int, int, float]:
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        grey = np.asarray(im.convert("L"), dtype=float)
    return grey.shape[1], grey.shape[0], float(grey.std())


def check_page(html_path: str | Path, screenshot_path: str | Path, **kwargs: Any) -> dict:
    """Open `html_path` in a fresh headless Chromium and return `Browser.check`'s report."""
    with Browser() as browser:
        return browser.check(html_path, screenshot_path, **kwargs)
