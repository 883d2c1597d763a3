// The lichen controller's web UI: a single page that reads and changes the controller through
// its admin API (/api/admin/v1) with a session cookie, sending the session's CSRF token with
// every request that changes something.
//
// Every string that comes from the controller (and so possibly from a device) is inserted as a
// text node or an attribute value through the DOM, never parsed as HTML: see `h`.
"use strict";

const API = "/api/admin/v1";
let csrf = null;
// Bumped on every navigation: loops of a previous view (live tail) stop when it changes.
let generation = 0;

// ---- DOM helpers ----------------------------------------------------------------------------

// Creates an element. `attrs`: `class`, `href`, `title`, `type`, `value`, `placeholder`, `id`,
// `name`, `for`, `checked`, `disabled`, `data-*`, and `on<event>` handlers. Children: nodes,
// strings (as text), arrays, null.
function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "href") element.setAttribute("href", safeHref(value));
    else if (name === "value") element.value = value;
    else if (name === "checked" || name === "disabled") element[name] = true;
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

// Appends children (nodes, strings as text, arrays of them, nested) to `parent`.
function append(parent, ...children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, ...child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

// Only links within the page.
function safeHref(value) {
  const text = String(value);
  return text.startsWith("#") ? text : "#/";
}

function clear(element) {
  while (element.firstChild) element.removeChild(element.firstChild);
}

function show(...children) {
  const app = document.getElementById("app");
  clear(app);
  append(app, children);
}

function when(ms) {
  if (!ms) return "never";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function ago(ms) {
  if (!ms) return "never";
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 60) return seconds + " s ago";
  if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
  if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " d ago";
}

// Online if heard from within three default EVE poll intervals.
function connectivity(lastSeenMs) {
  const online = lastSeenMs && Date.now() - lastSeenMs < 180000;
  return h("span", { class: "badge " + (online ? "good" : "bad") }, online ? "online" : "offline");
}

function stateBadge(state) {
  const name = String(state || "").replace(/^ZDEVICE_STATE_|^ZNETINST_STATE_/, "");
  if (!name) return h("span", { class: "muted" }, "no info");
  const tone = /ONLINE|RUNNING|ONLINE|UP|INSTALLED|LOADED/.test(name)
    ? "good" : /ERROR|FAIL|BROKEN|HALT/.test(name) ? "bad" : "warn";
  return h("span", { class: "badge " + tone }, name);
}

function message(kind, text) {
  return h("div", { class: "message " + kind, role: kind === "error" ? "alert" : "status" }, text);
}

// ---- the admin API ---------------------------------------------------------------------------

class HttpError extends Error {
  constructor(status, text) { super(text || "HTTP " + status); this.status = status; }
}

// The total of the last paged list (X-Total-Count), if any.
let lastTotal = null;

async function api(method, path, body, contentType) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = csrf || "";
  if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
  const response = await fetch(API + path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : (typeof body === "string" ? body : JSON.stringify(body)),
  });
  if (response.status === 401) { csrf = null; showLogin("Your session ended: log in again."); throw new HttpError(401); }
  if (!response.ok) throw new HttpError(response.status, (await response.text()).trim());
  const total = response.headers.get("x-total-count");
  lastTotal = total === null ? null : Number(total);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// ---- login -----------------------------------------------------------------------------------

function showLogin(note) {
  generation++;
  renderNav(false);
  const token = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password", placeholder: "admin token" });
  const status = h("div");
  const form = h("form", { id: "login",
    onsubmit: async (event) => {
      event.preventDefault();
      clear(status);
      const response = await fetch("/ui/login", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: token.value }),
      });
      if (!response.ok) { append(status, message("error", "Wrong admin token.")); return; }
      csrf = (await response.json()).csrf;
      if (!location.hash || location.hash === "#/login") location.hash = "#/";
      route();
    } },
    h("h1", {}, "Log in"),
    h("p", { class: "muted" }, "Paste the admin token (admin.token in the controller's state directory)."),
    h("label", { for: "token" }, "Admin token"), token,
    h("button", { type: "submit" }, "Log in"), status, note ? message("error", note) : null);
  show(h("section", { class: "card login" }, form));
  token.focus();
}

async function logout() {
  await fetch("/ui/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf || "" } });
  csrf = null;
  showLogin();
}

function renderNav(loggedIn) {
  const nav = document.getElementById("nav");
  clear(nav);
  if (!loggedIn) return;
  append(nav, [h("a", { href: "#/" }, "Fleet"),
    h("a", { href: "#/", class: "right", id: "logout", onclick: (e) => { e.preventDefault(); logout(); } }, "Log out")]);
}

// ---- router ----------------------------------------------------------------------------------

async function route() {
  const mine = ++generation;
  if (!csrf) {
    const response = await fetch("/ui/session", { credentials: "same-origin" });
    if (!response.ok) return showLogin();
    csrf = (await response.json()).csrf;
  }
  renderNav(true);
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "device" && parts[1] && parts[2] === "config") await configView(parts[1], mine);
    else if (parts[0] === "device" && parts[1]) await deviceView(parts[1], mine);
    else if (parts[0] === "fleet") await fleetView(mine, parts[1]);
    else await fleetView(mine, 0);
  } catch (error) {
    if (error.status !== 401 && mine === generation) show(message("error", "Could not load: " + error.message));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);

// ---- fleet -----------------------------------------------------------------------------------

// Devices per page of the fleet view.
const PAGE = 100;

async function fleetView(mine, page) {
  page = Math.max(0, Number(page) || 0);
  const devices = await api("GET", `/devices?with_status=true&offset=${page * PAGE}&limit=${PAGE}`);
  const total = lastTotal === null ? devices.length : lastTotal;
  const [pending, onboarding] = await Promise.all([api("GET", "/onboarding/pending"), api("GET", "/onboarding")]);
  if (mine !== generation) return;
  const pages = Math.max(1, Math.ceil(total / PAGE));
  const pager = pages > 1 ? h("div", { class: "toolbar", id: "pager" },
    page > 0 ? h("a", { href: "#/fleet/" + (page - 1) }, "‹ previous") : null,
    h("span", { class: "muted" }, `page ${page + 1} of ${pages}`),
    page + 1 < pages ? h("a", { href: "#/fleet/" + (page + 1) }, "next ›") : null) : null;
  const note = h("div");
  const rows = devices.map((d) => h("tr", { "data-uuid": d.uuid },
    h("td", {}, h("a", { href: "#/device/" + encodeURIComponent(d.uuid) }, d.serial || "(no serial)"),
      d.status && d.status.host_name ? h("div", { class: "muted" }, d.status.host_name) : null),
    h("td", { class: "mono" }, d.uuid),
    h("td", {}, stateBadge(d.status && d.status.state), " ", connectivity(d.last_seen_ms)),
    h("td", { title: when(d.last_seen_ms) }, ago(d.last_seen_ms)),
    h("td", {}, (d.status && d.status.version) || h("span", { class: "muted" }, "unknown")),
    h("td", {}, String(d.config_version))));
  const queue = pending.map((p) => h("tr", { "data-pending": p.id },
    h("td", {}, p.subject), h("td", { class: "mono" }, p.serial), h("td", {}, String(p.attempts)),
    h("td", { title: when(p.last_ms) }, ago(p.last_ms)),
    h("td", {},
      h("button", { class: "admit", onclick: async () => {
        try {
          await api("POST", "/onboarding/pending/" + encodeURIComponent(p.id) + "/admit", { serials: [] });
          route();
        } catch (error) { clear(note); append(note, message("error", "Admit failed: " + error.message)); }
      } }, "Admit"), " ",
      h("button", { class: "secondary", onclick: async () => {
        await api("DELETE", "/onboarding/pending/" + encodeURIComponent(p.id)); route();
      } }, "Dismiss"))));
  show(
    h("h1", {}, "Fleet"),
    h("section", { class: "card", id: "devices" },
      h("h2", {}, "Devices (" + total + ")"), pager,
      devices.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Serial", "UUID", "State", "Last seen", "Version", "Config"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows)) : h("p", { class: "muted" }, "No device has registered yet.")),
    h("section", { class: "card", id: "onboarding-queue" },
      h("h2", {}, "Onboarding queue (" + pending.length + ")"),
      h("p", { class: "muted" }, "Register attempts refused because their onboarding certificate or serial is not admitted. Admit only devices you expect."),
      note,
      pending.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Onboarding certificate", "Serial", "Attempts", "Last attempt", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, queue)) : h("p", { class: "muted" }, "Nothing waiting.")),
    h("section", { class: "card", id: "onboarding" },
      h("h2", {}, "Admitted onboarding certificates"),
      h("table", {},
        h("thead", {}, h("tr", {}, ["Subject", "Serials", "Id"].map((t) => h("th", {}, t)))),
        h("tbody", {}, onboarding.map((o) => h("tr", {}, h("td", {}, o.subject),
          h("td", { class: "mono" }, o.serials.join(", ")), h("td", { class: "mono" }, o.id)))))));
}

// ---- device ----------------------------------------------------------------------------------

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter((p) => p[1] !== undefined && p[1] !== null && p[1] !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

async function deviceView(uuid, mine) {
  const path = "/devices/" + encodeURIComponent(uuid);
  const [device, status, config, metrics, flows] = await Promise.all([
    api("GET", path), api("GET", path + "/status"), api("GET", path + "/config"),
    api("GET", path + "/metrics?limit=360"),
    api("GET", path + "/reports?kinds=flowlog&newest_first=true")]);
  if (mine !== generation) return;
  const info = (status.device && status.device.info) || {};
  const software = (info.swList || []).find((sw) => sw.activated) || (info.swList || [])[0] || {};
  const appsInfo = new Map(status.apps.map((a) => [a.object, a]));
  const niInfo = new Map(status.network_instances.map((n) => [n.object, n]));
  const niMetrics = new Map((status.network_metrics || []).map((n) => [n.object, n]));
  const logsBox = h("div");
  show(
    h("h1", {}, "Device ", h("span", { class: "mono" }, device.serial)),
    h("div", { class: "toolbar" }, h("a", { href: "#/device/" + encodeURIComponent(uuid) + "/config" }, h("button", { type: "button" }, "Edit configuration"))),
    h("section", { class: "card", id: "info" }, h("h2", {}, "Info"), facts([
      ["UUID", h("span", { class: "mono" }, device.uuid)], ["Serial", device.serial],
      ["State", stateBadge(info.state)], ["Connectivity", connectivity(device.last_seen_ms)],
      ["Last seen", when(device.last_seen_ms)], ["Host name", info.HostName || info.hostName],
      ["Version", software.shortVersion], ["Platform", info.platform], ["Architecture", info.machineArch],
      ["CPUs", info.ncpu], ["Memory", info.memory ? info.memory + " MiB" : ""],
      ["Storage", info.storage ? info.storage + " MiB" : ""], ["Last reboot reason", info.lastRebootReason],
      ["Configuration", "version " + device.config_version], ["Certificate", device.subject],
      ["Registered", when(device.registered_at * 1000)], ["Info received", status.device ? when(status.device.received_at_ms) : "none yet"],
    ])),
    h("section", { class: "card", id: "apps" }, h("h2", {}, "Apps"), appsTable(config.apps || [], appsInfo)),
    h("section", { class: "card", id: "network-instances" }, h("h2", {}, "Network instances"),
      networkTable(config.networkInstances || [], niInfo, niMetrics)),
    h("section", { class: "card", id: "metrics" }, h("h2", {}, "Metrics"), charts(metrics)),
    h("section", { class: "card", id: "logs" }, h("h2", {}, "Logs"), logsBox),
    h("section", { class: "card", id: "flows" }, h("h2", {}, "Flow log"), flowTable(flows.reports)));
  logsPanel(logsBox, path, mine);
}

function appsTable(apps, infos) {
  const ids = new Set(apps.map((a) => (a.uuidandversion || {}).uuid));
  const rows = apps.map((app) => {
    const id = (app.uuidandversion || {}).uuid;
    const reported = infos.get(id);
    const state = reported ? reported.info.state : null;
    return h("tr", {}, h("td", {}, app.displayname), h("td", { class: "mono" }, id),
      h("td", {}, app.activate ? "yes" : "no"), h("td", {}, stateBadge(state)),
      h("td", {}, reported ? appErrors(reported.info) : ""),
      h("td", {}, reported ? ago(reported.received_at_ms) : "—"));
  });
  // Apps the device reports that are not configured (any more); not those it reported gone
  // (a report with the app's UUID alone).
  for (const [id, reported] of infos) {
    if (ids.has(id)) continue;
    const name = reported.info.AppName || reported.info.appName;
    if (!name && !reported.info.state) continue;
    rows.push(h("tr", {}, h("td", {}, name || "(unnamed)"),
      h("td", { class: "mono" }, id), h("td", { class: "muted" }, "not configured"),
      h("td", {}, stateBadge(reported.info.state)), h("td", {}, appErrors(reported.info)),
      h("td", {}, ago(reported.received_at_ms))));
  }
  if (!rows.length) return h("p", { class: "muted" }, "No apps.");
  return h("table", {}, h("thead", {}, h("tr", {}, ["Name", "UUID", "Activated", "State", "Error", "Reported"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
}

// An app's errors as it reports them (text, and when).
function appErrors(info) {
  return (info.appErr || []).map((e) => (e.description || "") + (e.timestamp ? " (" + e.timestamp + ")" : "")).join("; ");
}

function networkTable(instances, infos, metrics) {
  if (!instances.length && !infos.size) return h("p", { class: "muted" }, "No network instances.");
  const rows = instances.map((ni) => {
    const id = (ni.uuidandversion || {}).uuid;
    const reported = infos.get(id);
    const ip = ni.ip || {};
    return h("tr", {}, h("td", {}, ni.displayname), h("td", { class: "mono" }, id),
      h("td", {}, String(ni.instType || "")), h("td", { class: "mono" }, ip.subnet || ""),
      h("td", {}, (ni.port || {}).name || ""),
      h("td", {}, reported ? [stateBadge(reported.info.state), " ", reported.info.bridgeName || ""] : stateBadge(null)),
      h("td", { class: "mono" }, reported ? appAddresses(reported.info) : ""),
      h("td", {}, drops(metrics.get(id))));
  });
  return h("table", {}, h("thead", {}, h("tr", {}, ["Name", "UUID", "Type", "Subnet", "Port", "State", "App addresses", "Drops"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
}

// The addresses a network instance leased, one line per MAC (`MAC IP`).
function appAddresses(info) {
  return (info.ipAssignments || []).map((a) => h("div", {}, (a.macAddress || "") + " " + (a.ipAddress || []).join(", ")));
}

// A network instance's ACL and rate-limit drops, from the newest metrics (64-bit counters are strings in proto3 JSON).
function drops(metric) {
  if (!metric) return "—";
  let acl = 0, limit = 0;
  for (const n of metric.info.network || []) {
    acl += Number(n.txAclDrops || 0) + Number(n.rxAclDrops || 0);
    limit += Number(n.txAclRateLimitDrops || 0) + Number(n.rxAclRateLimitDrops || 0);
  }
  return "ACL " + acl + ", rate limit " + limit;
}

function flowTable(reports) {
  const rows = [];
  for (const report of reports) {
    const message = report.message || {};
    const scope = message.scope || {};
    for (const flow of message.flows || []) {
      const ip = flow.flow || {};
      rows.push(h("tr", {}, h("td", {}, when(report.received_at_ms)), h("td", { class: "mono" }, scope.uuid || report.object),
        h("td", { class: "mono" }, (ip.src || "") + ":" + (ip.srcPort || 0)),
        h("td", { class: "mono" }, (ip.dest || "") + ":" + (ip.destPort || 0)),
        h("td", {}, String(ip.protocol || "")), h("td", {}, flow.inbound ? "in" : "out"),
        h("td", {}, String(flow.action || "")), h("td", {}, String(flow.txBytes || 0)), h("td", {}, String(flow.rxBytes || 0))));
      if (rows.length >= 200) break;
    }
  }
  if (!rows.length) return h("p", { class: "muted" }, "No flow records.");
  return h("table", { class: "flows" },
    h("thead", {}, h("tr", {}, ["Received", "App", "Source", "Destination", "Protocol", "Direction", "Action", "Tx bytes", "Rx bytes"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
}

// ---- charts (inline SVG) ----------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) element.setAttribute(name, String(value));
  for (const child of children) {
    if (typeof child === "string") element.appendChild(document.createTextNode(child));
    else if (child) element.appendChild(child);
  }
  return element;
}

function charts(points) {
  if (points.length < 2) return h("p", { class: "muted" }, "Not enough metrics yet (" + points.length + " point).");
  return h("div", { class: "charts" },
    chart("CPU used (%)", points, [["cpu", (p) => p.cpu_share === undefined ? null : p.cpu_share * 100, "#2f6f4f"]]),
    chart("Memory used (MiB)", points, [["used", (p) => p.memory_used_mib, "#7a4fbf"]]),
    chart("Network (bytes/s)", points, [["rx", (p) => p.network_rx_per_s, "#1f6fb2"], ["tx", (p) => p.network_tx_per_s, "#c2410c"]]));
}

function chart(title, points, series) {
  const width = 360, height = 150, left = 44, bottom = 18, top = 8;
  const t0 = points[0].at_ms, t1 = points[points.length - 1].at_ms || t0 + 1;
  let max = 0;
  for (const [, get] of series) for (const p of points) { const v = get(p); if (v !== null && v !== undefined) max = Math.max(max, v); }
  max = max || 1;
  const x = (t) => left + (width - left - 4) * ((t - t0) / Math.max(1, t1 - t0));
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  svg.appendChild(s("line", { class: "axis", x1: left, y1: y(0), x2: width - 4, y2: y(0) }));
  svg.appendChild(s("line", { class: "axis", x1: left, y1: top, x2: left, y2: y(0) }));
  svg.appendChild(s("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, formatNumber(max)));
  svg.appendChild(s("text", { x: left - 4, y: y(0), "text-anchor": "end" }, "0"));
  svg.appendChild(s("text", { x: left, y: height - 4 }, new Date(t0).toISOString().slice(11, 19)));
  svg.appendChild(s("text", { x: width - 4, y: height - 4, "text-anchor": "end" }, new Date(t1).toISOString().slice(11, 19)));
  for (const [name, get, color] of series) {
    const coords = points.map((p) => [p.at_ms, get(p)]).filter(([, v]) => v !== null && v !== undefined)
      .map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1));
    if (coords.length) svg.appendChild(s("polyline", { class: "line", stroke: color, points: coords.join(" ") }));
  }
  return h("div", { class: "chart" }, h("h3", { class: "muted" }, title, series.length > 1 ? " — " + series.map((x) => x[0]).join(", ") : ""), svg);
}

function formatNumber(value) {
  if (value >= 1e9) return (value / 1e9).toFixed(1) + "G";
  if (value >= 1e6) return (value / 1e6).toFixed(1) + "M";
  if (value >= 1e3) return (value / 1e3).toFixed(1) + "k";
  return value >= 10 ? value.toFixed(0) : value.toFixed(1);
}

// ---- logs: filter and live tail ----------------------------------------------------------------

function logsPanel(box, path, mine) {
  const severities = ["error", "warning", "info", "debug"];
  const checks = severities.map((sev) => h("input", { type: "checkbox", name: "severity", value: sev, id: "sev-" + sev }));
  const text = h("input", { type: "search", name: "text", id: "log-text", placeholder: "text contains…" });
  const tail = h("input", { type: "checkbox", id: "live-tail" });
  const table = h("div", { id: "log-lines" });
  const state = h("span", { class: "muted", id: "tail-state" });
  let lastSeq = 0;
  async function load() {
    const chosen = checks.filter((c) => c.checked).map((c) => c.value);
    const query = new URLSearchParams({ newest_first: "true", limit: "200" });
    if (chosen.length) query.set("severity", chosen.join(","));
    if (text.value) query.set("text", text.value);
    const lines = await api("GET", path + "/logs?" + query);
    if (mine !== generation) return;
    for (const line of lines) lastSeq = Math.max(lastSeq, line.seq);
    clear(table);
    append(table, lines.length ? h("table", { class: "logs" },
      h("thead", {}, h("tr", {}, ["Time", "Severity", "Source", "Text"].map((t) => h("th", {}, t)))),
      h("tbody", {}, lines.map((l) => h("tr", { class: "log-line", "data-seq": l.seq }, h("td", {}, when(l.at_ms)),
        h("td", { class: /err|crit|fatal|emerg|alert/i.test(l.severity) ? "bad" : /warn/i.test(l.severity) ? "warn" : "" }, l.severity),
        h("td", {}, l.source), h("td", { class: "text" }, l.text))))) : h("p", { class: "muted" }, "No matching log lines."));
  }
  // Live tail: wait (long poll) for newer log reports, then reload the filtered lines.
  async function follow() {
    state.textContent = "following…";
    while (tail.checked && mine === generation) {
      try {
        const news = await api("GET", path + "/reports?kinds=logs,newlogs&wait_ms=20000&after=" + lastSeq);
        if (!tail.checked || mine !== generation) break;
        if (news.reports.length) {
          for (const r of news.reports) lastSeq = Math.max(lastSeq, r.seq);
          await load();
          state.textContent = "following… updated " + new Date().toISOString().slice(11, 19);
        }
      } catch (error) {
        state.textContent = "stopped: " + error.message;
        return;
      }
    }
    state.textContent = "";
  }
  const form = h("form", { class: "inline", id: "log-filter", onsubmit: (e) => { e.preventDefault(); load(); } },
    severities.map((sev, i) => h("label", { for: "sev-" + sev }, checks[i], " " + sev)), text,
    h("button", { type: "submit" }, "Filter"),
    h("label", { for: "live-tail" }, tail, " live tail"), state);
  tail.addEventListener("change", async () => {
    if (!tail.checked) return;
    // Start after the newest log report there is.
    const newest = await api("GET", path + "/reports?kinds=logs,newlogs&newest_first=true");
    for (const r of newest.reports) lastSeq = Math.max(lastSeq, r.seq);
    follow();
  });
  append(box, [form, table]);
  load();
}

// ---- configuration: edit, check, diff, apply ---------------------------------------------------

async function configView(uuid, mine) {
  const path = "/devices/" + encodeURIComponent(uuid);
  const [device, first] = await Promise.all([api("GET", path), api("POST", path + "/config/check", "{}", "application/yaml")]);
  if (mine !== generation) return;
  let reviewed = null;
  const editor = h("textarea", { id: "config-text", spellcheck: "false" });
  editor.value = first.current_yaml;
  const result = h("div", { id: "config-result" });
  const apply = h("button", { id: "apply", disabled: true, onclick: async () => {
    if (!reviewed) return;
    try {
      const set = await api("PUT", path + "/config?expect_version=" + reviewed.current_version, reviewed.text, "application/yaml");
      reviewed = null;
      apply.disabled = true;
      clear(result);
      append(result, message("ok", "Applied: configuration version " + set.version + ". The device gets it at its next poll."));
    } catch (error) {
      clear(result);
      append(result, message("error", "Not applied: " + error.message));
    }
  } }, "Apply");
  editor.addEventListener("input", () => { reviewed = null; apply.disabled = true; });
  const check = h("button", { id: "check", class: "secondary", onclick: async () => {
    const text = editor.value;
    const checked = await api("POST", path + "/config/check", text, "application/yaml");
    clear(result);
    if (checked.problems.length) {
      append(result, message("error", "Not valid; nothing applied:"), h("ul", { class: "problems" }, checked.problems.map((p) => h("li", {}, p))));
      return;
    }
    const diff = lineDiff(checked.current_yaml, checked.proposed_yaml);
    const changed = diff.some((d) => d[0] !== " ");
    append(result, h("h2", {}, "Changes from version " + checked.current_version),
      changed ? h("pre", { class: "diff", id: "diff" }, withContext(diff, 3).map(([op, line]) =>
        h("span", { class: op === "+" ? "add" : op === "-" ? "del" : "same" }, op + " " + line)))
        : h("p", { class: "muted" }, "No changes."));
    reviewed = changed ? { text, current_version: checked.current_version } : null;
    apply.disabled = !changed;
  } }, "Check and show changes");
  show(h("h1", {}, "Configuration of ", h("a", { href: "#/device/" + encodeURIComponent(uuid) }, device.serial)),
    h("p", { class: "muted" }, "YAML or JSON in the proto3 JSON mapping of EdgeDevConfig (see docs/controller.md). Version " + first.current_version + " is served now."),
    editor, h("div", { class: "toolbar" }, check, apply), result);
}

// A diff with only `context` unchanged lines around each change; longer runs become "…".
function withContext(diff, context) {
  const near = diff.map(() => false);
  diff.forEach(([op], i) => {
    if (op === " ") return;
    for (let j = Math.max(0, i - context); j <= Math.min(diff.length - 1, i + context); j++) near[j] = true;
  });
  const out = [];
  diff.forEach((entry, i) => {
    if (near[i]) out.push(entry);
    else if (i === 0 || near[i - 1]) out.push([" ", "…"]);
  });
  return out;
}

// The lines of `before` and `after` as ["-"|"+"|" ", line] (a longest common subsequence diff;
// past 4 million cells, everything is shown as replaced).
function lineDiff(before, after) {
  const a = before.split("\n"), b = after.split("\n");
  if (a[a.length - 1] === "") a.pop();
  if (b[b.length - 1] === "") b.pop();
  const n = a.length, m = b.length;
  if (n * m > 4000000) return a.map((l) => ["-", l]).concat(b.map((l) => ["+", l]));
  const table = new Uint32Array((n + 1) * (m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      table[i * (m + 1) + j] = a[i] === b[j] ? table[(i + 1) * (m + 1) + j + 1] + 1
        : Math.max(table[(i + 1) * (m + 1) + j], table[i * (m + 1) + j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
    else if (table[(i + 1) * (m + 1) + j] >= table[i * (m + 1) + j + 1]) out.push(["-", a[i++]]);
    else out.push(["+", b[j++]]);
  }
  while (i < n) out.push(["-", a[i++]]);
  while (j < m) out.push(["+", b[j++]]);
  return out;
}
