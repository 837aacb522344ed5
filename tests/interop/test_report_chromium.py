"""The HTML boot report in a real browser: headless Chromium (Debian `chromium`, installed by .ci/run)
opens it through the DevTools protocol, the page loads with no console error, no failed resource and
no script exception, every section is there with its pictures decoded, and a screenshot goes to the
test's tmp dir. A control page with an error shows that the harness sees errors."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tools.cli import main
from tools.report import SECTIONS

pytestmark = pytest.mark.interop
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1024")
ERROR_LEVELS = ("error", "assert")

PAGE_FACTS = """JSON.stringify({
  title: document.title,
  sections: [...document.querySelectorAll('section')].map(s => ({
      id: s.id, heading: (s.querySelector('h2') || {}).textContent, height: s.getBoundingClientRect().height})),
  images: [...document.images].map(i => ({complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})),
})"""


class DevTools:
    """The Chrome DevTools protocol over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-separated JSON)."""

    def __init__(self, profile: Path, timeout: float = 60.0) -> None:
        to_chrome, self._commands = os.pipe()
        self._replies, from_chrome = os.pipe()

        def pipes() -> None:             # in the child: the two ends on fds 3 and 4
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                                      "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=pipes, pass_fds=(3, 4))
        os.close(to_chrome)
        os.close(from_chrome)
        self.deadline = time.monotonic() + timeout
        self.next_id = 0
        self.events: list[dict] = []
        self._buffer = b""
        self.session: str | None = None

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, *, session: bool = True) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read()
            self.events.append(event)
            if event.get("method") == method:
                return event

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        self.call("Runtime.evaluate", {"expression": "new Promise(r => setTimeout(r, 200))", "awaitPromise": True})

    def errors(self) -> list[str]:
        """Console errors, failed loads and uncaught exceptions seen so far."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ERROR_LEVELS:
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                out.append("exception: " + params["exceptionDetails"].get("text", ""))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return out

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"]["value"]

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, TimeoutError, RuntimeError):   # it may be gone already
            self.call("Browser.close", session=False)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._commands)
        os.close(self._replies)


@pytest.fixture
def browser(tmp_path):
    devtools = DevTools(tmp_path / "chromium-profile")
    yield devtools
    devtools.close()


skip_without_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")


@skip_without_chromium
def test_the_report_renders_in_chromium_with_no_console_errors(tmp_path, capsys, browser):
    report = tmp_path / "boot.html"
    assert main(["boot", "--console", str(tmp_path / "console.txt"), "--report", str(report)]) == 0
    capsys.readouterr()
    browser.open(report.as_uri())
    facts = json.loads(browser.evaluate(PAGE_FACTS))
    browser.screenshot(tmp_path / "report.png")
    assert browser.errors() == []
    assert facts["title"] == "armboard boot report: GENERIC-VIRT on virt"
    assert [(s["id"], s["heading"]) for s in facts["sections"]] == list(SECTIONS)
    assert all(s["height"] > 20 for s in facts["sections"])
    assert len(facts["images"]) >= 4
    assert all(i["complete"] and i["width"] > 100 and i["height"] > 50 for i in facts["images"]), facts["images"]
    shot = (tmp_path / "report.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000


@skip_without_chromium
def test_the_harness_sees_a_console_error_and_a_missing_picture(tmp_path, browser):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="missing.png"><script>console.error("boom")</script>'
                    "</body></html>")
    browser.open(page.as_uri())
    errors = browser.errors()
    assert any(e.startswith("console: boom") for e in errors), errors
    assert any(e.startswith("log: ") and "missing.png" in e for e in errors), errors
