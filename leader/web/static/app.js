// The pioactors dashboard: one page, hash routes, no build step. History comes from the JSON API
// (/api/...), live values from the server's WebSocket relay (/api/ws): the browser never talks MQTT.
// Element ids and data-testid attributes are stable: the browser tests and scripts rely on them.

const state = { me: null, catalog: null, experiment: null, route: null, cleanup: [] };
const CHART_POINTS = 720; // per unit per chart, as the reference UI caps its series
const LIVE_CAP = 4000; // x values kept per chart before the oldest live points are trimmed
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];

// ---------------------------------------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "testid") node.dataset.testid = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c.nodeType ? c : String(c));
  return node;
}

const canOperate = () => state.me && (state.me.role === "operator" || state.me.role === "admin");
const isAdmin = () => state.me && state.me.role === "admin";

function showMessage(text, kind = "error") {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
  if (kind !== "error" && text) setTimeout(() => { if (box.textContent === text) box.hidden = true; }, 4000);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.me) headers["X-CSRF-Token"] = state.me.csrf_token;
  let response;
  try {
    response = await fetch(path, { method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "the leader did not answer; is it running and is this computer on its network?");
  }
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (response.status === 401 && path !== "/api/login" && path !== "/api/me") {
    showLogin("your session ended; log in again");
    throw new ApiError(401, "log in first");
  }
  if (!response.ok) {
    let text = (data && data.error) || `${response.status} ${response.statusText}`;
    if (response.status === 504) text = `${data && data.unit ? data.unit : "the unit"} did not answer: it may be offline or unreachable (${text})`;
    if (response.status === 403) text = `not allowed: ${text}`;
    throw new ApiError(response.status, text);
  }
  return data;
}

// Runs an actuation from a button: disables it meanwhile and reports the outcome on the page.
async function act(button, what, fn) {
  if (button) button.disabled = true;
  try {
    await fn();
    showMessage(`${what}: done`, "ok");
    return true;
  } catch (e) {
    showMessage(`${what}: ${e.message}`);
    return false;
  } finally {
    if (button) button.disabled = false;
  }
}

const fmtTime = (ms) => new Date(ms).toLocaleString();
const fmt = (v, digits = 3) => (typeof v === "number" ? (Math.abs(v) >= 1000 ? v.toFixed(0) : v.toPrecision(digits)) : String(v));

function parseJSON(text) {
  try { return JSON.parse(text); } catch (e) { return text; }
}

function topicMatches(filter, topic) {
  const f = filter.split("/"), t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

// ------------------------------------------------------------------------------------------ live relay

const live = {
  ws: null, handlers: new Map(), retry: 500, wanted: false,
  connect() {
    this.wanted = true;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 500;
      setLive(true);
      const filters = [...this.handlers.keys()];
      if (filters.length) ws.send(JSON.stringify({ subscribe: filters }));
    };
    ws.onmessage = (ev) => {
      const frame = JSON.parse(ev.data);
      if (frame.error) { console.warn("live:", frame.error); return; }
      if (frame.dropped) { showMessage(`live updates: ${frame.dropped} messages skipped (this browser fell behind)`, "warn"); return; }
      if (!frame.topic) return;
      for (const [filter, set] of this.handlers) {
        if (topicMatches(filter, frame.topic)) for (const h of set) h(frame.topic, frame.payload, frame.retain);
      }
    };
    ws.onclose = () => {
      setLive(false);
      if (this.ws === ws && this.wanted) {
        setTimeout(() => { if (this.wanted && this.ws === ws) this.connect(); }, this.retry);
        this.retry = Math.min(this.retry * 2, 10000);
      }
    };
  },
  close() { this.wanted = false; if (this.ws) this.ws.close(); this.ws = null; setLive(false); },
  // Returns a function that removes the subscription (the page's cleanup calls it on leaving).
  subscribe(filter, handler) {
    let set = this.handlers.get(filter);
    if (!set) {
      set = new Set();
      this.handlers.set(filter, set);
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ subscribe: [filter] }));
    }
    set.add(handler);
    return () => {
      set.delete(handler);
      if (!set.size) {
        this.handlers.delete(filter);
        if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ unsubscribe: [filter] }));
      }
    };
  },
};

function setLive(on) {
  const badge = document.getElementById("live-status");
  badge.textContent = on ? "live" : "live: off";
  badge.className = on ? "live on" : "live off";
}

// -------------------------------------------------------------------------------------- login / boot

function showLogin(reason = "") {
  state.me = null;
  live.close();
  document.getElementById("topbar").hidden = true;
  document.getElementById("page").replaceChildren();
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = reason;
  document.getElementById("login-username").focus();
}

async function boot() {
  document.getElementById("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const username = document.getElementById("login-username").value.trim();
    const password = document.getElementById("login-password").value;
    try {
      state.me = await api("POST", "/api/login", { username, password });
      document.getElementById("login-password").value = "";
      await start();
    } catch (e) {
      document.getElementById("login-error").textContent = e.message;
    }
  });
  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("POST", "/api/logout"); } catch (e) { /* the session is gone either way */ }
    showLogin("logged out");
  });
  window.addEventListener("hashchange", () => { if (state.me) route(); });
  try {
    state.me = await api("GET", "/api/me");
  } catch (e) {
    showLogin(e.status === 401 ? "" : e.message); // not logged in yet: just the form
    return;
  }
  await start();
}

async function start() {
  document.getElementById("login").hidden = true;
  document.getElementById("topbar").hidden = false;
  document.getElementById("whoami").textContent = `${state.me.username} (${state.me.role})`;
  document.body.dataset.role = state.me.role;
  live.connect();
  try { state.catalog = await api("GET", "/api/catalog"); } catch (e) { showMessage(e.message); }
  route();
}

const PAGES = { overview: overviewPage, units: unitsPage, cluster: clusterPage, logs: logsPage,
  experiments: experimentsPage, export: exportPage };

async function route() {
  for (const undo of state.cleanup.splice(0)) undo();
  const name = (location.hash.replace(/^#\/?/, "").split("/")[0]) || "overview";
  const page = PAGES[name] || overviewPage;
  state.route = name;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.id === `nav-${name}`);
  const main = document.getElementById("page");
  main.replaceChildren();
  main.dataset.page = name;
  try {
    await page(main);
  } catch (e) {
    if (e.status !== 401) showMessage(e.message);
  }
}

async function experiments() {
  const list = await api("GET", "/api/experiments");
  return list;
}

function currentExperiment(list) {
  const names = list.map((e) => e.experiment);
  if (state.experiment && names.includes(state.experiment)) return state.experiment;
  const running = list.filter((e) => !e.ended_at && e.units.length);
  const pick = running.length ? running[running.length - 1] : list[list.length - 1];
  state.experiment = pick ? pick.experiment : null;
  return state.experiment;
}

function experimentPicker(list, onChange) {
  const select = el("select", { id: "experiment-select", testid: "experiment-select" },
    list.map((e) => el("option", { value: e.experiment, selected: e.experiment === state.experiment },
      `${e.experiment}${e.ended_at ? " (ended)" : ""}`)));
  select.addEventListener("change", () => { state.experiment = select.value; onChange(); });
  return el("label", { class: "picker" }, "Experiment ", select);
}

// ------------------------------------------------------------------------------------------- overview

const CHARTS = [
  { series: "od", title: "Optical density", topic: "od_reading/ods", value: odFromPayload },
  { series: "od_filtered", title: "Normalised OD", topic: "growth_rate_calculating/od_filtered", value: (p) => fieldValue(p, "od_filtered") },
  { series: "growth_rate", title: "Implied growth rate", topic: "growth_rate_calculating/growth_rate", value: (p) => fieldValue(p, "growth_rate") },
  { series: "temperature", title: "Temperature", topic: "temperature_automation/temperature", value: (p) => fieldValue(p, "temperature") },
  { series: "volume", title: "Culture volume", topic: "bioreactor/current_volume_ml", value: (p) => fieldValue(p, null) },
];

function fieldValue(payload, field) {
  const obj = parseJSON(payload);
  if (field === null) {
    const v = typeof obj === "object" && obj !== null ? obj.current_volume_ml : Number(obj);
    return Number.isFinite(v) ? { y: v, t: Date.now() } : null;
  }
  if (!obj || typeof obj !== "object" || !Number.isFinite(obj[field])) return null;
  return { y: obj[field], t: obj.timestamp ? Date.parse(obj.timestamp) : Date.now() };
}

// The 90° channel, else channel 2, else the only one: the same choice as the server's history.
function odFromPayload(payload) {
  const obj = parseJSON(payload);
  if (!obj || typeof obj !== "object" || !obj.ods) return null;
  const entries = Object.entries(obj.ods);
  if (!entries.length) return null;
  let chosen = entries.find(([, e]) => e && Number(e.angle) === 90) || entries.find(([k]) => k === "2") || entries[0];
  const e = chosen[1];
  if (!e || !Number.isFinite(e.od)) return null;
  return { y: e.od, t: Date.parse(e.timestamp || obj.timestamp) || Date.now() };
}

// One uPlot chart with one line per unit. uPlot wants a single x array: history of every unit is
// merged on its timestamps (others null, gaps spanned) and live points are appended at the end.
class UnitChart {
  constructor(box, spec, unitOfMeasure) {
    this.box = box; this.spec = spec; this.unitOfMeasure = unitOfMeasure;
    this.units = []; this.x = []; this.ys = []; this.plot = null;
    this.lastBox = el("div", { class: "last-values" });
    this.liveCounts = {};
  }

  load(answer) {
    this.units = Object.keys(answer.units).sort();
    const stamps = new Set();
    for (const u of this.units) for (const t of answer.units[u].t) stamps.add(t);
    const xs = [...stamps].sort((a, b) => a - b);
    const index = new Map(xs.map((t, i) => [t, i]));
    this.x = xs.map((t) => t / 1000);
    this.ys = this.units.map((u) => {
      const col = new Array(xs.length).fill(null);
      const s = answer.units[u];
      s.t.forEach((t, i) => { col[index.get(t)] = s.y[i]; });
      return col;
    });
    this.render();
    for (const u of this.units) {
      const s = answer.units[u];
      if (s.t.length) this.showLast(u, s.y[s.y.length - 1], s.t[s.t.length - 1], false);
    }
  }

  render() {
    const width = Math.max(300, this.box.clientWidth - 10);
    const opts = {
      width, height: 220, legend: { show: true },
      scales: { x: { time: true } },
      series: [{}, ...this.units.map((u, i) => ({ label: u, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true, points: { show: false } }))],
      axes: [{}, { label: this.unitOfMeasure, size: 60 }],
    };
    if (this.plot) this.plot.destroy();
    this.plot = new uPlot(opts, [this.x, ...this.ys], this.box);
  }

  showLast(unit, y, t, fromLive) {
    let row = this.lastBox.querySelector(`[data-unit="${CSS.escape(unit)}"]`);
    if (!row) {
      row = el("span", { class: "last", "data-unit": unit, testid: `last-${this.spec.series}-${unit}` });
      this.lastBox.append(row);
    }
    if (fromLive) {
      this.liveCounts[unit] = (this.liveCounts[unit] || 0) + 1;
      row.dataset.livePoints = String(this.liveCounts[unit]);
    }
    row.textContent = `${unit}: ${fmt(y)} ${this.unitOfMeasure} @ ${new Date(t).toLocaleTimeString()}`;
  }

  append(unit, y, t) {
    let k = this.units.indexOf(unit);
    const fresh = k < 0;
    if (fresh) { // a unit's first point: add its line
      this.units.push(unit);
      this.ys.push(new Array(this.x.length).fill(null));
      k = this.units.length - 1;
    }
    // Units' clocks differ (a simulated unit runs its own accelerated clock), so a point may belong
    // before the newest one: insert it in time order.
    const xs = t / 1000;
    let lo = 0, hi = this.x.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.x[mid] < xs) lo = mid + 1; else hi = mid; }
    if (this.x[lo] === xs) {
      this.ys[k][lo] = y;
    } else {
      this.x.splice(lo, 0, xs);
      this.ys.forEach((col, i) => col.splice(lo, 0, i === k ? y : null));
    }
    if (this.x.length > LIVE_CAP) { this.x.shift(); this.ys.forEach((col) => col.shift()); }
    if (fresh) this.render(); else this.plot.setData([this.x, ...this.ys]);
    this.showLast(unit, y, t, true);
  }
}

async function overviewPage(main) {
  const list = await experiments();
  const experiment = currentExperiment(list);
  const lookback = el("select", { id: "lookback-select", testid: "lookback-select" },
    [["1", "last hour"], ["6", "last 6 h"], ["24", "last 24 h"], ["72", "last 3 days"], ["", "whole experiment"]]
      .map(([v, label]) => el("option", { value: v, selected: v === (state.lookback ?? "24") }, label)));
  lookback.addEventListener("change", () => { state.lookback = lookback.value; route(); });
  main.append(el("div", { class: "toolbar" }, experimentPicker(list, route), el("label", { class: "picker" }, "Show ", lookback)));
  if (!experiment) {
    main.append(el("p", { class: "empty", testid: "no-experiment" }, "No experiment yet: create one on the Experiments page."));
    return;
  }
  const info = list.find((e) => e.experiment === experiment);
  main.append(el("p", { class: "summary", testid: "experiment-summary" },
    `${info.description || "no description"} · started ${new Date(info.created_at).toLocaleString()}`,
    info.ended_at ? ` · ended ${new Date(info.ended_at).toLocaleString()}` : "",
    ` · units: ${info.units.join(", ") || "none assigned"}`));
  const grid = el("div", { class: "charts" });
  const events = el("div", { class: "card events" }, el("h2", {}, "Recent events"),
    el("ol", { id: "event-log", testid: "event-log", class: "log-list" }));
  main.append(grid, events);

  const lookbackHours = state.lookback ?? "24";
  await Promise.all(CHARTS.map(async (spec) => {
    const box = el("div", { class: "chart-body" });
    const card = el("div", { class: "card chart", id: `chart-${spec.series}`, testid: `chart-${spec.series}` }, el("h2", {}, spec.title), box);
    grid.append(card);
    const q = new URLSearchParams({ points: String(CHART_POINTS) });
    if (lookbackHours) q.set("lookback_hours", lookbackHours);
    let answer;
    try {
      answer = await api("GET", `/api/experiments/${encodeURIComponent(experiment)}/timeseries/${spec.series}?${q}`);
    } catch (e) {
      card.append(el("p", { class: "error" }, e.message));
      answer = { units: {}, unit_of_measure: "" };
    }
    const chart = new UnitChart(box, spec, answer.unit_of_measure);
    card.append(chart.lastBox);
    chart.load(answer);
    state.cleanup.push(live.subscribe(`pioreactor/+/${experiment}/${spec.topic}`, (topic, payload) => {
      const point = spec.value(payload);
      if (point) chart.append(topic.split("/")[1], point.y, point.t);
    }));
    state.cleanup.push(() => chart.plot && chart.plot.destroy());
  }));

  const logList = document.getElementById("event-log");
  const addLog = (row, atTop) => {
    const li = el("li", { class: `level-${String(row.level).toLowerCase()}` },
      el("time", {}, row.timestamp ? new Date(row.timestamp).toLocaleTimeString() : ""), " ",
      el("b", {}, row.unit || ""), " ", el("span", { class: "src" }, row.source || row.task || ""), " ", row.message);
    if (atTop) logList.prepend(li); else logList.append(li);
    while (logList.children.length > 50) logList.lastChild.remove();
  };
  try {
    const recent = await api("GET", `/api/logs?experiment=${encodeURIComponent(experiment)}&level=info&limit=30`);
    recent.logs.forEach((r) => addLog(r, false));
  } catch (e) { logList.append(el("li", { class: "error" }, e.message)); }
  state.cleanup.push(live.subscribe(`pioreactor/+/${experiment}/logs/+/+`, (topic, payload) => {
    const p = parseJSON(payload);
    const level = topic.split("/").pop();
    if (level === "debug" || typeof p !== "object" || !p) return;
    addLog({ ...p, unit: topic.split("/")[1], level }, true);
  }));
}

// ---------------------------------------------------------------------------------------------- units

const STATE_CLASSES = { ready: "ok", init: "busy", sleeping: "paused", disconnected: "off", lost: "bad", unknown: "bad" };

function badge(text, testid) {
  return el("span", { class: `badge ${STATE_CLASSES[text] || ""}`, testid }, text);
}

function settingInput(spec, id, value) {
  if (spec.datatype === "boolean") {
    return el("select", { id, testid: id }, ["true", "false"].map((v) => el("option", { value: v, selected: String(value) === v }, v)));
  }
  if (spec.choices) {
    return el("select", { id, testid: id }, spec.choices.map((v) => el("option", { value: v, selected: String(value) === String(v) }, v)));
  }
  const numeric = spec.datatype === "float" || spec.datatype === "integer";
  return el("input", { id, testid: id, type: numeric ? "number" : "text", step: numeric ? "any" : undefined,
    min: spec.minimum ?? undefined, max: spec.maximum ?? undefined,
    value: value === undefined || value === null || typeof value === "object" ? "" : String(value), size: 8 });
}

function inputValue(input, spec) {
  const raw = input.value.trim();
  if (spec && (spec.datatype === "float" || spec.datatype === "integer") && raw !== "") return Number(raw);
  if (spec && spec.datatype === "boolean") return raw === "true";
  return raw;
}

function displayValue(value) {
  if (value && typeof value === "object") {
    for (const key of ["measured_rpm", "growth_rate", "od_filtered", "temperature"]) if (key in value) return fmt(value[key]);
    return JSON.stringify(value).slice(0, 60);
  }
  return value === null || value === undefined ? "" : fmt(value);
}

function jobSpecs(job) {
  return (state.catalog && state.catalog.jobs[job] && state.catalog.jobs[job].settings) || [];
}

function jobRow(unit, job, info) {
  const id = `${unit}-${job}`;
  const specs = Object.fromEntries(jobSpecs(job).map((s) => [s.name, s]));
  const controls = canOperate() ? el("span", { class: "controls", "data-actuation": true },
    info.state === "sleeping"
      ? el("button", { testid: `job-resume-${id}`, onclick: (ev) => act(ev.target, `resume ${job} on ${unit}`, () => api("POST", `/api/units/${unit}/jobs/${job}/resume`)) }, "Resume")
      : el("button", { testid: `job-pause-${id}`, onclick: (ev) => act(ev.target, `pause ${job} on ${unit}`, () => api("POST", `/api/units/${unit}/jobs/${job}/pause`)) }, "Pause"),
    el("button", { class: "danger", testid: `job-stop-${id}`, onclick: async (ev) => {
      if (await act(ev.target, `stop ${job} on ${unit}`, () => api("POST", `/api/units/${unit}/jobs/${job}/stop`))) refreshUnitsSoon();
    } }, "Stop")) : null;
  const settings = el("table", { class: "settings" });
  const names = Object.keys(info.settings || {}).sort();
  for (const name of names) {
    const spec = specs[name];
    const value = info.settings[name];
    const valueCell = el("span", { testid: `setting-value-${id}-${name}`, "data-topic-attr": `${job}/${name}` }, displayValue(value));
    let edit = null;
    if (canOperate() && spec && spec.settable) {
      const input = settingInput(spec, `setting-input-${id}-${name}`, value);
      edit = el("span", { class: "edit", "data-actuation": true }, input,
        el("button", { testid: `setting-apply-${id}-${name}`, onclick: (ev) => act(ev.target, `set ${job} ${name} on ${unit}`,
          () => api("PATCH", `/api/units/${unit}/jobs/${job}/settings`, { setting: name, value: inputValue(input, spec) })) }, "Set"));
    }
    settings.append(el("tr", {}, el("th", { title: spec ? spec.description || "" : "" }, name, spec && spec.unit ? ` (${spec.unit})` : ""),
      el("td", {}, valueCell), el("td", {}, edit)));
  }
  return el("div", { class: "job", testid: `job-${id}`, "data-job": job },
    el("div", { class: "job-head" }, el("b", {}, job), " ", badge(info.state, `job-state-${id}`), controls), settings);
}

function optionsForm(unit, fields, idPrefix) {
  // fields: catalog settings; returns [element, () => options]
  const inputs = [];
  const box = el("div", { class: "options" });
  for (const spec of fields) {
    const input = settingInput(spec, `${idPrefix}-${spec.name}`, spec.default);
    inputs.push([spec, input]);
    box.append(el("label", { title: spec.description || "" }, `${spec.name}${spec.required ? " *" : ""}${spec.unit ? ` (${spec.unit})` : ""} `, input));
  }
  const read = () => {
    const out = {};
    for (const [spec, input] of inputs) if (input.value.trim() !== "") out[spec.name] = inputValue(input, spec);
    return out;
  };
  return [box, read];
}

function startJobForm(unit) {
  const jobs = Object.entries((state.catalog && state.catalog.jobs) || {}).filter(([, j]) => !j.automation_family).map(([n]) => n).sort();
  const select = el("select", { testid: `start-job-select-${unit}` }, jobs.map((j) => el("option", { value: j }, j)));
  const holder = el("div");
  let read = () => ({});
  const build = () => {
    const fields = jobSpecs(select.value).filter((s) => s.startup || s.settable).filter((s) => s.datatype !== "json");
    const [box, r] = optionsForm(unit, fields, `start-option-${unit}`);
    holder.replaceChildren(box);
    read = r;
  };
  select.addEventListener("change", build);
  build();
  return el("details", { class: "form", "data-actuation": true }, el("summary", {}, "Start a job"), select, holder,
    el("button", { testid: `start-job-${unit}`, onclick: async (ev) => {
      if (await act(ev.target, `start ${select.value} on ${unit}`, () => api("POST", `/api/units/${unit}/jobs/${select.value}/run`, { options: read() }))) refreshUnitsSoon();
    } }, "Start"));
}

function automationForm(unit) {
  const families = Object.keys((state.catalog && state.catalog.automations) || {}).sort();
  if (!families.length) return null;
  const family = el("select", { testid: `automation-family-${unit}` }, families.map((f) => el("option", { value: f }, f)));
  const name = el("select", { testid: `automation-name-${unit}` });
  const holder = el("div");
  let read = () => ({});
  const buildParams = () => {
    const params = ((state.catalog.automations[family.value] || {})[name.value] || {}).parameters || [];
    const [box, r] = optionsForm(unit, params, `automation-param-${unit}`);
    holder.replaceChildren(box);
    read = r;
  };
  const buildNames = () => {
    name.replaceChildren(...Object.keys(state.catalog.automations[family.value] || {}).sort().map((n) => el("option", { value: n }, n)));
    buildParams();
  };
  family.addEventListener("change", buildNames);
  name.addEventListener("change", buildParams);
  buildNames();
  return el("details", { class: "form", "data-actuation": true }, el("summary", {}, "Start an automation"), family, " ", name, holder,
    el("button", { testid: `automation-start-${unit}`, onclick: async (ev) => {
      const options = { automation_name: name.value, ...read() };
      if (await act(ev.target, `start ${family.value} ${name.value} on ${unit}`, () => api("POST", `/api/units/${unit}/jobs/${family.value}/run`, { options }))) refreshUnitsSoon();
    } }, "Start"));
}

function doseForm(unit) {
  const pump = el("select", { testid: `dose-pump-${unit}` }, ["media", "alt_media", "waste"].map((p) => el("option", { value: p }, p)));
  const amount = el("input", { type: "number", step: "any", min: "0", value: "1", size: 5, testid: `dose-amount-${unit}` });
  const by = el("select", { testid: `dose-by-${unit}` }, el("option", { value: "ml" }, "mL"), el("option", { value: "duration" }, "seconds"));
  return el("details", { class: "form", "data-actuation": true }, el("summary", {}, "Dose by hand"), pump, " ", amount, " ", by, " ",
    el("button", { testid: `dose-${unit}`, onclick: (ev) => act(ev.target, `${pump.value} ${amount.value} ${by.value} on ${unit}`,
      () => api("POST", `/api/units/${unit}/dose`, { pump: pump.value, [by.value]: Number(amount.value) })) }, "Dose"));
}

function ledForm(unit) {
  const channel = el("select", { testid: `led-channel-${unit}` }, ["A", "B", "C", "D"].map((c) => el("option", { value: c }, c)));
  const intensity = el("input", { type: "number", min: "0", max: "100", step: "any", value: "0", size: 5, testid: `led-intensity-${unit}` });
  return el("details", { class: "form", "data-actuation": true }, el("summary", {}, "LEDs"), "channel ", channel, " intensity % ", intensity, " ",
    el("button", { testid: `led-set-${unit}`, onclick: (ev) => act(ev.target, `LED ${channel.value} on ${unit}`,
      () => api("POST", `/api/units/${unit}/leds`, { channel: channel.value, intensity: Number(intensity.value) })) }, "Set"));
}

function unitCard(u) {
  const health = [];
  health.push(u.reachable ? "reachable" : "not reachable");
  health.push(u.in_sync ? "in sync" : "not in sync with its desired state");
  if (u.ingest) {
    const parts = [];
    if (u.ingest.rows_per_min !== undefined) parts.push(`${fmt(u.ingest.rows_per_min)} rows/min`);
    if (u.ingest.lag_s !== undefined && u.ingest.lag_s !== null) parts.push(`lag ${fmt(u.ingest.lag_s)} s`);
    if (parts.length) health.push(`data: ${parts.join(", ")}`);
  }
  const jobs = Object.entries(u.jobs || {});
  const card = el("div", { class: `card unit ${u.reachable ? "" : "offline"}`, id: `unit-${u.unit}`, testid: `unit-card-${u.unit}`, "data-unit": u.unit },
    el("div", { class: "unit-head" }, el("h2", {}, u.unit), badge(u.state, `unit-state-${u.unit}`),
      el("span", { class: "exp" }, u.experiment ? `experiment ${u.experiment}` : "no experiment")),
    el("p", { class: "health", testid: `unit-health-${u.unit}` }, health.join(" · ")),
    u.errors && u.errors.length ? el("ul", { class: "errors" }, u.errors.map((e) => el("li", {}, typeof e === "string" ? e : JSON.stringify(e)))) : null,
    el("div", { class: "jobs" }, jobs.length ? jobs.map(([job, info]) => jobRow(u.unit, job, info)) : el("p", { class: "empty" }, "no jobs running")),
    canOperate() ? el("div", { class: "actions" }, startJobForm(u.unit), automationForm(u.unit), doseForm(u.unit), ledForm(u.unit)) : null);
  return card;
}

let refreshTimer = null;
function refreshUnitsSoon() {
  if (state.route !== "units") return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { if (state.route === "units") renderUnits(); }, 700);
}

async function renderUnits() {
  const grid = document.getElementById("unit-cards");
  if (!grid) return;
  const units = await api("GET", "/api/units");
  // Keep open forms open across a refresh: only replace cards whose content changed shape.
  const openForms = new Set([...grid.querySelectorAll("details[open]")].map((d) => `${d.closest("[data-unit]").dataset.unit}/${d.querySelector("summary").textContent}`));
  const focused = document.activeElement && grid.contains(document.activeElement) && document.activeElement.dataset.testid;
  // What the user has typed or chosen survives the redraw too (a job changing state mid-form must
  // not wipe the form): selects first, since choosing one redraws the fields below it.
  const fields = "select[data-testid], input[data-testid], textarea[data-testid]";
  const typed = new Map([...grid.querySelectorAll(fields)].map((f) => [f.dataset.testid, f.type === "checkbox" ? f.checked : f.value]));
  grid.replaceChildren(...units.map(unitCard));
  for (const d of grid.querySelectorAll("details")) {
    if (openForms.has(`${d.closest("[data-unit]").dataset.unit}/${d.querySelector("summary").textContent}`)) d.open = true;
  }
  for (let pass = 0, changed = true; changed && pass < 4; pass++) {  // a choice can redraw the selects after it
    changed = false;
    for (const s of grid.querySelectorAll("select[data-testid]")) {
      const v = typed.get(s.dataset.testid);
      if (v !== undefined && v !== s.value && [...s.options].some((o) => o.value === v)) {
        s.value = v;
        s.dispatchEvent(new Event("change"));
        changed = true;
      }
    }
  }
  for (const f of grid.querySelectorAll("input[data-testid], textarea[data-testid]")) {
    const v = typed.get(f.dataset.testid);
    if (v === undefined) continue;
    if (f.type === "checkbox") f.checked = v; else f.value = v;
  }
  if (focused) { const f = grid.querySelector(`[data-testid="${CSS.escape(focused)}"]`); if (f) f.focus(); }
  if (!units.length) grid.append(el("p", { class: "empty" }, "No units in the topology."));
}

async function unitsPage(main) {
  main.append(el("div", { id: "unit-cards", class: "unit-grid", testid: "unit-cards" }));
  await renderUnits();
  // Live: every job setting and state in place; a job appearing or going away redraws the cards.
  state.cleanup.push(live.subscribe("pioreactor/+/+/+/+", (topic, payload) => {
    const [, unit, , job, attr] = topic.split("/");
    if (attr === "$state") {
      const b = document.querySelector(`[data-testid="job-state-${CSS.escape(`${unit}-${job}`)}"]`);
      if (!b || b.textContent !== payload) refreshUnitsSoon();
      return;
    }
    const cell = document.querySelector(`[data-testid="setting-value-${CSS.escape(`${unit}-${job}-${attr}`)}"]`);
    if (cell && payload !== "") cell.textContent = displayValue(parseJSON(payload));
  }));
  state.cleanup.push(live.subscribe("pioreactor/+/$node/$state", (topic, payload) => {
    const b = document.querySelector(`[data-testid="unit-state-${CSS.escape(topic.split("/")[1])}"]`);
    if (b && b.textContent !== payload) refreshUnitsSoon();
  }));
  const timer = setInterval(() => renderUnits().catch((e) => showMessage(e.message)), 15000);
  state.cleanup.push(() => clearInterval(timer));
}

// -------------------------------------------------------------------------------------------- cluster

async function clusterPage(main) {
  const box = el("div", { id: "cluster", testid: "cluster" });
  main.append(box);
  const render = async () => {
    const view = await api("GET", "/api/cluster");
    const rows = view.units.map((u) => el("tr", { testid: `cluster-row-${u.unit}`, class: u.in_sync ? "" : "drift" },
      el("td", {}, u.unit), el("td", {}, badge(u.state, `cluster-state-${u.unit}`)), el("td", {}, u.experiment || ""),
      el("td", { testid: `cluster-desired-${u.unit}` }, (u.desired_jobs || []).join(", ")),
      el("td", { testid: `cluster-actual-${u.unit}` }, (u.actual_jobs || []).join(", ")),
      el("td", { testid: `cluster-sync-${u.unit}` }, u.in_sync ? "yes" : "no"),
      el("td", {}, (u.errors || []).map((e) => (typeof e === "string" ? e : JSON.stringify(e))).join("; ")),
      el("td", {}, u.ingest ? Object.entries(u.ingest).filter(([, v]) => typeof v !== "object").map(([k, v]) => `${k}: ${fmt(v)}`).join(", ") : "")));
    const ingest = view.ingest ? el("p", { testid: "cluster-ingest" }, "Ingest: ",
      Object.entries(view.ingest).filter(([, v]) => typeof v !== "object").map(([k, v]) => `${k} ${fmt(v)}`).join(" · ")) : el("p", {}, "Ingest: no figures yet");
    box.replaceChildren(el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ["unit", "state", "experiment", "desired jobs", "running jobs", "in sync", "errors", "data"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)), ingest);
  };
  await render();
  const timer = setInterval(() => render().catch((e) => showMessage(e.message)), 5000);
  state.cleanup.push(() => clearInterval(timer));
}

// ----------------------------------------------------------------------------------------------- logs

async function logsPage(main) {
  const list = await experiments();
  const units = await api("GET", "/api/units").catch(() => []);
  const unit = el("select", { id: "logs-unit", testid: "logs-unit" }, el("option", { value: "" }, "all units"), units.map((u) => el("option", { value: u.unit }, u.unit)));
  const level = el("select", { id: "logs-level", testid: "logs-level" }, ["debug", "info", "notice", "warning", "error"].map((l) => el("option", { value: l, selected: l === "info" }, l)));
  const exp = el("select", { id: "logs-experiment", testid: "logs-experiment" }, el("option", { value: "" }, "all experiments"), list.map((e) => el("option", { value: e.experiment }, e.experiment)));
  const table = el("tbody", { id: "logs-rows", testid: "logs-rows" });
  const more = el("button", { id: "logs-more", testid: "logs-more" }, "Older");
  let before = null;
  const LEVELS = ["debug", "info", "notice", "warning", "error", "critical"];
  const row = (r) => el("tr", { class: `level-${String(r.level).toLowerCase()}` }, el("td", {}, r.timestamp ? new Date(r.timestamp).toLocaleString() : ""),
    el("td", {}, r.unit), el("td", {}, String(r.level).toLowerCase()), el("td", {}, r.source || r.task || ""), el("td", {}, r.message));
  const load = async (reset) => {
    const q = new URLSearchParams({ level: level.value, limit: "200" });
    if (unit.value) q.set("units", unit.value);
    if (exp.value) q.set("experiment", exp.value);
    if (!reset && before) q.set("before_id", String(before));
    const page = await api("GET", `/api/logs?${q}`);
    if (reset) table.replaceChildren();
    page.logs.forEach((r) => table.append(row(r)));
    before = page.next_before_id;
    more.hidden = !before;
  };
  for (const s of [unit, level, exp]) s.addEventListener("change", () => load(true).catch((e) => showMessage(e.message)));
  more.addEventListener("click", () => load(false).catch((e) => showMessage(e.message)));
  main.append(el("div", { class: "toolbar" }, el("label", {}, "Unit ", unit), el("label", {}, "Level at least ", level), el("label", {}, "Experiment ", exp)),
    el("table", { class: "grid logs" }, el("thead", {}, el("tr", {}, ["time", "unit", "level", "source", "message"].map((h) => el("th", {}, h)))), table), more);
  await load(true);
  state.cleanup.push(live.subscribe("pioreactor/+/+/logs/+/+", (topic, payload) => {
    const parts = topic.split("/");
    const p = parseJSON(payload);
    if (!p || typeof p !== "object") return;
    const r = { ...p, unit: parts[1], level: parts[5] };
    if (unit.value && r.unit !== unit.value) return;
    if (exp.value && parts[2] !== exp.value) return;
    if (LEVELS.indexOf(String(r.level).toLowerCase()) < LEVELS.indexOf(level.value)) return;
    table.prepend(row(r));
    while (table.children.length > 1000) table.lastChild.remove();
  }));
}

// ---------------------------------------------------------------------------------------- experiments

async function experimentsPage(main) {
  const list = await experiments();
  const rows = list.slice().reverse().map((e) => el("tr", { testid: `experiment-row-${e.experiment}` },
    el("td", {}, e.experiment), el("td", {}, e.description || ""), el("td", {}, new Date(e.created_at).toLocaleString()),
    el("td", {}, e.ended_at ? new Date(e.ended_at).toLocaleString() : "running"), el("td", {}, e.units.join(", ")),
    el("td", { "data-actuation": canOperate() || undefined }, canOperate() ? [
      el("button", { testid: `experiment-open-${e.experiment}`, onclick: () => { state.experiment = e.experiment; location.hash = "#/overview"; } }, "Charts"),
      el("button", { testid: `experiment-end-${e.experiment}`, onclick: async (ev) => {
        if (confirm(`End ${e.experiment}? Its units are unassigned (their jobs keep running until you stop them).`)
          && await act(ev.target, `end ${e.experiment}`, () => api("POST", `/api/experiments/${encodeURIComponent(e.experiment)}/end`))) route();
      } }, "End"),
      isAdmin() ? el("button", { class: "danger", testid: `experiment-delete-${e.experiment}`, onclick: async (ev) => {
        const typed = prompt(`Delete ${e.experiment} and ALL its data? Type its name to confirm.`);
        if (typed === e.experiment && await act(ev.target, `delete ${e.experiment}`,
          () => api("DELETE", `/api/experiments/${encodeURIComponent(e.experiment)}?confirm=${encodeURIComponent(typed)}`))) route();
      } }, "Delete") : null,
    ] : el("button", { onclick: () => { state.experiment = e.experiment; location.hash = "#/overview"; } }, "Charts"))));
  main.append(el("table", { class: "grid", testid: "experiments" },
    el("thead", {}, el("tr", {}, ["experiment", "description", "created", "ended", "units", ""].map((h) => el("th", {}, h)))), el("tbody", {}, rows)));
  if (!canOperate()) return;
  const name = el("input", { id: "experiment-name", testid: "experiment-name", placeholder: "name", required: true });
  const description = el("input", { id: "experiment-description", testid: "experiment-description", placeholder: "description", size: 40 });
  const target = el("select", { testid: "assign-experiment" }, list.map((e) => el("option", { value: e.experiment }, e.experiment)));
  const units = el("input", { testid: "assign-units", placeholder: "pio01, pio02" });
  main.append(el("div", { class: "card form", "data-actuation": true }, el("h2", {}, "New experiment"), name, " ", description, " ",
    el("button", { testid: "experiment-create", onclick: async (ev) => {
      if (await act(ev.target, `create ${name.value}`, () => api("POST", "/api/experiments", { experiment: name.value.trim(), description: description.value }))) route();
    } }, "Create")),
  el("div", { class: "card form", "data-actuation": true }, el("h2", {}, "Assign units"), target, " ", units, " ",
    el("button", { testid: "assign-submit", onclick: async (ev) => {
      const names = units.value.split(/[\s,]+/).filter(Boolean);
      if (await act(ev.target, `assign ${names.join(", ")} to ${target.value}`, () => api("POST", `/api/experiments/${encodeURIComponent(target.value)}/units`, { units: names }))) route();
    } }, "Assign")));
}

// --------------------------------------------------------------------------------------------- export

async function exportPage(main) {
  const list = await experiments();
  currentExperiment(list);
  const exp = el("select", { id: "export-experiment", testid: "export-experiment" }, list.map((e) => el("option", { value: e.experiment, selected: e.experiment === state.experiment }, e.experiment)));
  const datasets = el("input", { id: "export-datasets", testid: "export-datasets", placeholder: "all datasets (or e.g. od_readings, growth_rates)", size: 40 });
  const start = el("input", { id: "export-start", testid: "export-start", placeholder: "from (UTC ISO, optional)" });
  const end = el("input", { id: "export-end", testid: "export-end", placeholder: "to (UTC ISO, optional)" });
  const partition = el("input", { type: "checkbox", id: "export-partition", testid: "export-partition" });
  const progress = el("progress", { id: "export-progress", testid: "export-progress", max: "1", value: "0", hidden: true });
  const status = el("p", { id: "export-status", testid: "export-status" });
  const go = el("button", { id: "export-start-button", testid: "export-go" }, "Export");
  go.addEventListener("click", async () => {
    const body = { experiment: exp.value, partition_by_unit: partition.checked };
    const names = datasets.value.split(/[\s,]+/).filter(Boolean);
    if (names.length) body.datasets = names;
    if (start.value.trim()) body.start = start.value.trim();
    if (end.value.trim()) body.end = end.value.trim();
    go.disabled = true;
    try {
      const { id } = await api("POST", "/api/exports", body);
      progress.hidden = false;
      for (;;) {
        const s = await api("GET", `/api/exports/${id}`);
        progress.max = Math.max(1, s.rows_total || 1);
        progress.value = s.rows_done || 0;
        status.textContent = `${s.state}: ${s.rows_done || 0} of ${s.rows_total ?? "?"} rows`;
        if (s.state === "done") {
          status.replaceChildren(`done: ${s.rows_done} rows · `, el("a", { href: `/api/exports/${id}/download`, id: "export-download", testid: "export-download", download: "" }, "download the zip"));
          break;
        }
        if (s.state === "failed") { status.textContent = `failed: ${s.error}`; break; }
        await new Promise((r) => setTimeout(r, 500));
      }
    } catch (e) {
      status.textContent = e.message;
    } finally {
      go.disabled = false;
    }
  });
  main.append(el("div", { class: "card form" }, el("h2", {}, "Export data"),
    el("label", {}, "Experiment ", exp), el("label", {}, "Datasets ", datasets), el("label", {}, "From ", start), el("label", {}, "To ", end),
    el("label", {}, partition, " one file per unit"), go, progress, status));
}

boot();
