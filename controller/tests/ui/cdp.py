"""A small driver for headless Chromium over the Chrome DevTools Protocol, standard library only.

Chromium is started with --remote-debugging-pipe: it reads protocol commands from its file
descriptor 3 and writes replies and events to descriptor 4, each a JSON text ended by a NUL
byte. No network port, no WebSocket library, and nothing downloaded.
"""

import base64
import json
import os
import subprocess
import threading
import time


class CdpError(Exception):
    """A protocol command failed, or the browser went away."""


class Browser:
    """A headless Chromium process and one page in it."""

    def __init__(self, executable, user_data_dir, extra_args=(), log_path=None):
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def child_fds():
            # The browser expects commands on 3 and writes on 4; move them out of the way first
            # so that neither dup2 clobbers the other.
            high_read = os.dup(commands_read)
            high_write = os.dup(replies_write)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        args = [
            executable, "--headless=new", "--remote-debugging-pipe", "--no-first-run",
            "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-extensions", "--disable-sync",
            "--mute-audio", "--no-sandbox" if os.geteuid() == 0 else "--enable-sandbox",
            f"--user-data-dir={user_data_dir}", "--window-size=1280,900", *extra_args, "about:blank",
        ]
        log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        close_fds=False, preexec_fn=child_fds)
        os.close(commands_read)
        os.close(replies_write)
        self._next_id = 0
        self._lock = threading.Lock()
        self._waiting = {}
        self.events = []
        self._events_changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = None

    def _read(self):
        buffer = b""
        while True:
            try:
                chunk = os.read(self._replies, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                text, buffer = buffer.split(b"\0", 1)
                message = json.loads(text)
                if "id" in message:
                    with self._lock:
                        slot = self._waiting.pop(message["id"], None)
                    if slot is not None:
                        slot["reply"] = message
                        slot["done"].set()
                else:
                    with self._events_changed:
                        self.events.append(message)
                        self._events_changed.notify_all()
        with self._lock:
            for slot in self._waiting.values():
                slot["done"].set()
            self._waiting.clear()

    def send(self, method, params=None, session=True, timeout=30):
        """Sends a command (to the attached page unless `session` is False); returns its result."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            slot = {"done": threading.Event(), "reply": None}
            self._waiting[ident] = slot
        message = {"id": ident, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        if not slot["done"].wait(timeout):
            raise CdpError(f"{method}: no reply within {timeout} s")
        reply = slot["reply"]
        if reply is None:
            raise CdpError(f"{method}: the browser exited")
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open_page(self):
        """Attaches to a new page and enables the domains the tests watch."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})

    def events_named(self, method):
        """Events of `method` received so far."""
        with self._events_changed:
            return [event for event in self.events if event.get("method") == method]

    def navigate(self, url):
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'")

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout=15, what=None):
        """Waits until a JavaScript expression is truthy in the page; returns its value."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
            except CdpError as error:
                last_error = error
            time.sleep(0.1)
        raise CdpError(f"timed out waiting for {what or expression}" +
                       (f" (last error: {last_error})" if last_error else ""))

    def _center(self, selector):
        box = self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect(); return r.width ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()",
            what=f"element {selector}")
        return box

    def click(self, selector):
        """Clicks an element the way a mouse does."""
        x, y = self._center(selector)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent",
                      {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def type_into(self, selector, text):
        """Focuses an input and types `text` into it."""
        self.click(selector)
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path):
        """Saves a PNG of the whole page."""
        height = self.evaluate("Math.ceil(document.documentElement.scrollHeight)") or 900
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": min(max(height, 600), 8000), "deviceScaleFactor": 1,
                   "mobile": False})
        shot = self.send("Page.captureScreenshot", {"format": "png"})
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        with open(path, "wb") as file:
            file.write(base64.b64decode(shot["data"]))

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=5)
        except CdpError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
