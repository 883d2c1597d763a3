#!/usr/bin/env python3
"""The web UI end to end, in headless Chromium (Debian's), driven over the DevTools protocol.

Starts a lichen-controller and simulated devices (lichen-devsim), two of them with hostile
strings in their serial and log lines, and one whose onboarding certificate is not admitted
yet. Then, in the browser: logs in with the admin token, checks the session cookie, visits the
fleet, device and configuration views, filters and live-tails logs, edits a configuration
(invalid first, then valid with a diff) and applies it, admits the waiting device, checks that
no hostile string ran or became markup, and logs out. Screenshots of each view go to
--artifacts.

    controller/tests/ui/test_ui.py --bin target/debug --artifacts target/test-artifacts/ui
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_YAML = os.path.join(HERE, "..", "common", "node.yaml")
# Would run (or become an element) if the page ever treated device strings as HTML.
HOSTILE_SERIAL = "sim-<img src=x onerror=window.__pwned=1>"
HOSTILE_LOG = "<img src=x onerror=window.__pwned=2><script>window.__pwned=3</script> hostile"


def fail(message):
    raise AssertionError(message)


def check(condition, message):
    if not condition:
        fail(message)


class Admin:
    """The admin API, with the bearer token (for setup and for checks behind the browser's back)."""

    def __init__(self, url, state_dir):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.context = ssl.create_default_context(cafile=os.path.join(state_dir, "ca.pem"))
        with open(os.path.join(state_dir, "admin.token")) as file:
            self.token = file.read().strip()

    def request(self, method, path, body=None, headers=None, bearer=True):
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                                 timeout=30)
        all_headers = dict(headers or {})
        if bearer:
            all_headers["Authorization"] = f"Bearer {self.token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            all_headers["Content-Type"] = "application/json"
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, data

    def json(self, method, path, body=None):
        status, data = self.request(method, "/api/admin/v1" + path, body)
        check(200 <= status < 300, f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None


def start_controller(binaries, work):
    controller = subprocess.Popen(
        [os.path.join(binaries, "lichen-controller"), "serve", "--state-dir",
         os.path.join(work, "state"), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=open(os.path.join(work, "controller.log"), "wb"))
    line = controller.stdout.readline().decode().strip()
    check(line.startswith("listening on "), f"controller said {line!r}")
    return controller, line.removeprefix("listening on ")


def devsim(binaries, work, url, onboarding, prefix, devices, log_text, name, retry=0):
    return subprocess.Popen(
        [os.path.join(binaries, "lichen-devsim"), "run", "--url", url, "--ca",
         os.path.join(work, "state", "ca.pem"), "--onboarding", onboarding, "--identities",
         os.path.join(work, "identities-" + name), "--devices", str(devices), "--serial-prefix",
         prefix, "--config-interval", "1", "--report-interval", "1", "--log-text", log_text,
         "--register-retry", str(retry)],
        stdout=open(os.path.join(work, f"devsim-{name}.log"), "wb"), stderr=subprocess.STDOUT)


def wait_until(what, probe, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    fail(f"timed out waiting for {what}")


def spki_pin(state_dir):
    """Base64 of the SHA-256 of the server certificate's public key, for Chromium's
    --ignore-certificate-errors-spki-list: trust exactly this key, nothing else."""
    key = subprocess.run(["openssl", "x509", "-in", os.path.join(state_dir, "server.pem"),
                          "-pubkey", "-noout"], check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=key,
                         check=True, capture_output=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der, check=True,
                            capture_output=True).stdout
    import base64
    return base64.b64encode(digest).decode()


def js(value):
    return json.dumps(value)


def run(args):
    binaries = os.path.abspath(args.bin)
    artifacts = os.path.abspath(args.artifacts)
    shutil.rmtree(artifacts, ignore_errors=True)
    os.makedirs(artifacts)
    work = tempfile.mkdtemp(prefix="lichen-ui-")
    processes = []
    browser = None
    started = time.monotonic()
    try:
        controller, url = start_controller(binaries, work)
        processes.append(controller)
        state = os.path.join(work, "state")
        admin = Admin(url, state)

        # Two onboarding certificates: one admitted for sim-*, one not (its device waits).
        for name in ("admitted", "waiting"):
            subprocess.run([os.path.join(binaries, "lichen-devsim"), "onboarding-cert", "--out",
                            os.path.join(work, name)], check=True, capture_output=True)
        with open(os.path.join(work, "admitted", "onboard.pem")) as file:
            admin.json("POST", "/onboarding", {"cert_pem": file.read(), "serials": ["sim-*"]})

        processes.append(devsim(binaries, work, url, os.path.join(work, "admitted"), "sim-", 2,
                                HOSTILE_LOG, "plain"))
        processes.append(devsim(binaries, work, url, os.path.join(work, "admitted"),
                                HOSTILE_SERIAL, 1, "hostile device says hello", "hostile"))
        processes.append(devsim(binaries, work, url, os.path.join(work, "waiting"), "lab-", 1,
                                "lab line", "waiting", retry=1))
        devices = wait_until("3 devices", lambda: (lambda d: d if len(d) == 3 else None)(
            admin.json("GET", "/devices")))
        by_serial = {device["serial"]: device["uuid"] for device in devices}
        sim0, hostile = by_serial["sim-0"], by_serial[HOSTILE_SERIAL + "0"]
        with open(NODE_YAML) as file:
            node_yaml = file.read()
        status, body = admin.request("PUT", f"/api/admin/v1/devices/{sim0}/config", node_yaml,
                                     {"Content-Type": "application/yaml"})
        check(status == 200, f"setting sim-0's config: {status} {body!r}")
        wait_until("the waiting device in the onboarding queue",
                   lambda: admin.json("GET", "/onboarding/pending"))
        # Enough reports for charts, logs of every severity and flows.
        wait_until("metrics, app info and network-instance metrics of sim-0", lambda: len(
            admin.json("GET", f"/devices/{sim0}/metrics")) >= 3 and admin.json(
                "GET", f"/devices/{sim0}/status")["apps"] and admin.json(
                "GET", f"/devices/{sim0}/status")["network_metrics"], timeout=30)

        browser = Browser(args.chromium, os.path.join(work, "chromium"),
                          [f"--ignore-certificate-errors-spki-list={spki_pin(state)}"],
                          os.path.join(work, "chromium.log"))
        browser.open_page()

        # Login.
        browser.navigate(url + "/")
        browser.wait_for("!!document.querySelector('#login')", what="the login form")
        browser.screenshot(os.path.join(artifacts, "01-login.png"))
        browser.type_into("#token", "not the token")
        browser.click("#login button[type=submit]")
        browser.wait_for("document.body.textContent.includes('Wrong admin token')",
                         what="the wrong token refused")
        browser.evaluate("document.querySelector('#token').value = ''")
        browser.type_into("#token", admin.token)
        browser.click("#login button[type=submit]")
        browser.wait_for("!!document.querySelector('#devices tbody')", what="the fleet view")

        cookies = browser.send("Network.getCookies", {"urls": [url + "/"]})["cookies"]
        session = [c for c in cookies if c["name"] == "__Host-lichen_session"]
        check(len(session) == 1, f"session cookie: {cookies}")
        session = session[0]
        check(session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict",
              f"cookie flags: {session}")
        lifetime = session["expires"] - time.time()
        check(0 < lifetime <= 8 * 3600 + 60, f"cookie lifetime {lifetime} s")
        check("lichen_session" not in browser.evaluate("document.cookie"),
              "the session cookie is readable by scripts")
        cookie_header = {"Cookie": f"__Host-lichen_session={session['value']}"}
        # Without its CSRF token, the session cannot change anything.
        status, _ = admin.request("DELETE", f"/api/admin/v1/devices/{sim0}",
                                  headers=cookie_header, bearer=False)
        check(status == 403, f"DELETE with the cookie and no CSRF token: {status}")
        status, _ = admin.request("GET", "/api/admin/v1/devices", headers=cookie_header,
                                  bearer=False)
        check(status == 200, f"GET with the session cookie: {status}")

        # Fleet view: every device, its state and version, the waiting one in the queue.
        rows = browser.wait_for(
            "document.querySelectorAll('#devices tbody tr').length === 3 &&"
            " [...document.querySelectorAll('#devices tbody tr')].map(r => r.textContent)",
            what="3 device rows")
        check(any("sim-0" in row and "lichen-devsim" in row and "ONLINE" in row for row in rows),
              f"sim-0's row: {rows}")
        check(any(HOSTILE_SERIAL in row for row in rows), "the hostile serial shown as text")
        queue = browser.evaluate("document.querySelector('#onboarding-queue').textContent")
        check("lab-0" in queue and "CN=lichen devsim onboarding" in queue, f"queue: {queue}")
        browser.screenshot(os.path.join(artifacts, "02-fleet.png"))

        # Device view: info, apps, network instances, charts, logs, flows.
        browser.click(f"#devices tr[data-uuid={js(sim0)}] a")
        browser.wait_for("!!document.querySelector('#flows')", what="the device view")
        info = browser.evaluate("document.querySelector('#info').textContent")
        for expected in (sim0, "ONLINE", "lichen-devsim", "x86_64"):
            check(expected in info, f"{expected!r} not in device info: {info}")
        apps = browser.evaluate("document.querySelector('#apps').textContent")
        check("nginx" in apps and "RUNNING" in apps, f"apps: {apps}")
        networks = browser.evaluate("document.querySelector('#network-instances').textContent")
        check("local" in networks and "10.1.0.0/24" in networks and "ONLINE" in networks,
              f"network instances: {networks}")
        # nginx's address (devsim's niinfo) and the drops (its metrics).
        check("02:16:3e:00:00:01 10.1.0.10" in networks and "ACL " in networks,
              f"network instances' addresses and drops: {networks}")
        lines = browser.evaluate("document.querySelectorAll('#metrics svg polyline').length")
        check(lines >= 4, f"{lines} chart lines (CPU, memory, network rx and tx)")
        flows = browser.wait_for("document.querySelectorAll('#flows tbody tr').length")
        flow_text = browser.evaluate("document.querySelector('#flows').textContent")
        check("93.184.216.34:443" in flow_text, f"flows: {flow_text[:300]}")
        check(flows >= 3, f"{flows} flow rows")
        log_rows = browser.wait_for("document.querySelectorAll('#log-lines tr.log-line').length")
        check(log_rows >= 3, f"{log_rows} log rows")
        browser.screenshot(os.path.join(artifacts, "03-device.png"))

        # Logs: a severity filter, a text filter, then live tail. Each filter replaces the
        # table: mark the old one and wait for a new one.
        def refilter():
            browser.evaluate("document.querySelector('#log-lines > *').dataset.old = '1'")
            browser.click("#log-filter button[type=submit]")
            browser.wait_for("(() => { const t = document.querySelector('#log-lines > *');"
                             " return t && !t.dataset.old; })()", what="the filtered lines")
            return browser.evaluate(
                "[...document.querySelectorAll('#log-lines tr.log-line')].map(r =>"
                " [r.children[1].textContent, r.children[3].textContent, Number(r.dataset.seq)])")

        browser.click("#sev-warning")
        rows = refilter()
        check(rows and {row[0] for row in rows} == {"warning"}, f"severity filter: {rows}")
        browser.click("#sev-warning")
        browser.type_into("#log-text", "hostile 1")
        rows = refilter()
        check(rows and all("hostile 1" in row[1] and row[1].startswith(HOSTILE_LOG)
                           for row in rows), f"text filter: {rows[:3]}")
        browser.evaluate("document.querySelector('#log-text').value = ''")
        rows = refilter()
        check(len(rows) >= 3 and any(row[0] == "info" for row in rows), f"unfiltered: {rows[:3]}")
        newest = max(row[2] for row in rows)
        browser.click("#live-tail")
        browser.wait_for(
            f"[...document.querySelectorAll('#log-lines tr.log-line')].some(r =>"
            f" Number(r.dataset.seq) > {newest})", timeout=20, what="a new line from live tail")
        check("following" in browser.evaluate("document.querySelector('#tail-state').textContent"),
              "live tail state")
        browser.screenshot(os.path.join(artifacts, "04-device-logs-live.png"))

        # The hostile device: its strings are text, nothing ran, no element was made of them.
        browser.navigate(url + "/ui/#/device/" + hostile)
        browser.wait_for("!!document.querySelector('#log-lines tr.log-line')",
                         what="the hostile device's logs")
        browser.navigate(url + "/ui/#/")
        browser.wait_for("!!document.querySelector('#devices tbody tr')")
        browser.navigate(url + "/ui/#/device/" + sim0)
        browser.wait_for("!!document.querySelector('#log-lines td.text')")
        shown = browser.evaluate("document.querySelector('#log-lines td.text').textContent")
        check(shown.startswith(HOSTILE_LOG), f"hostile log line shown as {shown!r}")
        browser.screenshot(os.path.join(artifacts, "05-hostile-strings.png"))

        # Configuration: an invalid change is refused with its problem, a valid one shows a
        # diff and applies.
        browser.click(f"a[href={js('#/device/' + sim0 + '/config')}]")
        current = browser.wait_for("document.querySelector('#config-text') &&"
                                   " document.querySelector('#config-text').value")
        check("displayname: nginx" in current, f"config text: {current[:200]}")
        broken = current.replace("networkId: 2a4f8c1e-0b1d-4d6e-9a53-6c0f3f0e1a01",
                                 "networkId: 2a4f8c1e-0b1d-4d6e-9a53-6c0f3f0e1a99")
        check(broken != current, "the config has the network reference")
        browser.evaluate(f"(() => {{ const t = document.querySelector('#config-text');"
                         f" t.value = {js(broken)}; t.dispatchEvent(new Event('input')); }})()")
        browser.click("#check")
        problems = browser.wait_for("document.querySelector('ul.problems') &&"
                                    " document.querySelector('ul.problems').textContent")
        check("is not configured" in problems, f"problems: {problems}")
        check(browser.evaluate("document.querySelector('#apply').disabled"), "apply enabled")
        edited = current.replace("displayname: nginx\n", "displayname: nginx-edited\n")
        check(edited != current, "the app's name to edit")
        browser.evaluate(f"(() => {{ const t = document.querySelector('#config-text');"
                         f" t.value = {js(edited)}; t.dispatchEvent(new Event('input')); }})()")
        browser.click("#check")
        diff = browser.wait_for("document.querySelector('#diff') &&"
                                " [...document.querySelectorAll('#diff span.add, #diff span.del')]"
                                ".map(s => s.textContent)")
        check(diff == ["-   displayname: nginx", "+   displayname: nginx-edited"],
              f"diff: {diff}")
        browser.screenshot(os.path.join(artifacts, "06-config-diff.png"))
        browser.click("#apply")
        applied = browser.wait_for("document.querySelector('#config-result .message') &&"
                                   " document.querySelector('#config-result .message').textContent")
        check("version 2" in applied, f"apply: {applied}")
        config = admin.json("GET", f"/devices/{sim0}/config")
        check(config["apps"][0]["displayname"] == "nginx-edited", f"stored: {config['apps']}")
        browser.screenshot(os.path.join(artifacts, "07-config-applied.png"))

        # Onboarding admission: the waiting device registers once admitted.
        browser.navigate(url + "/ui/#/")
        browser.wait_for("!!document.querySelector('#onboarding-queue button.admit')")
        browser.click("#onboarding-queue button.admit")
        browser.wait_for("document.querySelector('#onboarding-queue').textContent.includes('Nothing waiting')",
                         what="the queue emptied")
        wait_until("lab-0 registered", lambda: any(
            d["serial"] == "lab-0" for d in admin.json("GET", "/devices")))
        browser.navigate(url + "/ui/#/device/" + sim0)
        browser.wait_for("!!document.querySelector('#info')")
        browser.navigate(url + "/ui/#/")
        browser.wait_for("document.querySelectorAll('#devices tbody tr').length === 4",
                         what="4 devices in the fleet view")
        onboarding = browser.evaluate("document.querySelector('#onboarding').textContent")
        check("lab-0" in onboarding, f"admitted serial not listed: {onboarding}")
        browser.screenshot(os.path.join(artifacts, "08-fleet-admitted.png"))
        # The paged route (100 devices a page: one page here, so no pager).
        browser.navigate(url + "/ui/#/fleet/0")
        browser.wait_for("document.querySelectorAll('#devices tbody tr').length === 4 &&"
                         " document.querySelector('#devices h2').textContent === 'Devices (4)'",
                         what="page 1 of the fleet")
        check(browser.evaluate("!document.querySelector('#pager')"), "a pager for one page")

        # Nothing hostile ran or became an element, and the policy was never needed.
        check(browser.evaluate("window.__pwned === undefined"), "a hostile string ran")
        check(browser.evaluate("document.querySelectorAll('img, script:not([src])').length") == 0,
              "a hostile string became an element")
        dialogs = browser.events_named("Page.javascriptDialogOpening")
        check(not dialogs, f"dialogs: {dialogs}")
        exceptions = browser.events_named("Runtime.exceptionThrown")
        check(not exceptions, f"page errors: {exceptions[:2]}")
        violations = [e for e in browser.events_named("Log.entryAdded")
                      if "Content Security Policy" in e["params"]["entry"].get("text", "")]
        check(not violations, f"CSP violations: {violations[:2]}")

        # Logout ends the session, also for the cookie's value used elsewhere.
        browser.click("#logout")
        browser.wait_for("!!document.querySelector('#login')", what="the login form after logout")
        status, _ = admin.request("GET", "/api/admin/v1/devices", headers=cookie_header,
                                  bearer=False)
        check(status == 401, f"GET with the logged-out cookie: {status}")
        print(f"ui test passed in {time.monotonic() - started:.1f} s; screenshots in {artifacts}")
    except Exception:
        for name in sorted(os.listdir(work)):
            if name.endswith(".log"):
                with open(os.path.join(work, name), "rb") as file:
                    tail = file.read()[-2000:].decode(errors="replace")
                print(f"--- {name} (end)\n{tail}", file=sys.stderr)
        if browser is not None:
            try:
                browser.screenshot(os.path.join(artifacts, "failure.png"))
            except Exception as error:  # noqa: BLE001 - the failure itself matters more
                print(f"no failure screenshot: {error}", file=sys.stderr)
        raise
    finally:
        if browser is not None:
            browser.close()
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="target/debug",
                        help="directory with lichen-controller and lichen-devsim")
    parser.add_argument("--artifacts", default="target/test-artifacts/ui")
    # Debian's /usr/bin/chromium is a wrapper script; the browser itself is beside its libraries.
    default = "/usr/lib/chromium/chromium"
    if not os.path.exists(default):
        default = shutil.which("chromium") or "chromium"
    parser.add_argument("--chromium", default=default)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
