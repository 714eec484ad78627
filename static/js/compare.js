// The compare page: one chart per metric key with one trace per run (each run one colour
// everywhere) in sections (key metrics open, the rest folded), smoothing, x by step / time /
// tokens, log y, a metric filter, a legend that hides a run on every chart, live growth
// while runs train (Plotly.react with a fixed uirevision keeps zoom), and completions side
// by side that can be sent to ranking.
(function () {
  "use strict";
  const page = document.getElementById("compare-page");
  if (!page) return;
  const C = window.RLHFCharts;
  const RUNS = JSON.parse(document.getElementById("compare-runs").textContent);
  const byId = new Map(RUNS.map((r) => [String(r.id), r]));
  const ENDED = ["succeeded", "failed", "cancelled"];
  const X_TITLES = { step: "step", time: "training time (s)", tokens: "completion tokens" };
  const POLL_MS = 5000;
  const state = { x: "step", smoothing: 0, logY: false, filter: "", hidden: new Set(), data: null };
  const charts = new Map(); // metric key -> chart div
  const $ = (sel, root) => (root || document).querySelector(sel);

  function csrf() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; } catch (e) { return ""; }
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error((await response.json()).detail || response.statusText);
    return response.json();
  }

  // --- charts ---
  // One chart per metric key, in sections (the catalogue's, with its titles): "Key metrics"
  // open, the rest folded and drawn when first opened (Plotly cannot size a hidden chart).

  function isKeyMetric(key) {
    const found = C.chartOf(key);
    return Boolean(found && found.chart.key && found.order === 0);
  }

  function sectionFor(key) {
    return isKeyMetric(key) ? "key" : C.sectionOf(key);
  }

  function groupFor(section) {
    let group = document.querySelector(`.chart-group[data-section="${section}"]`);
    if (group) return group;
    group = document.createElement("details");
    group.className = "chart-group card";
    group.dataset.section = section;
    group.open = section === "key";
    const summary = document.createElement("summary");
    const title = document.createElement("h2");
    title.textContent = C.SECTION_TITLES[section] || section;
    const count = document.createElement("span");
    count.className = "muted small count";
    summary.append(title, count);
    const box = document.createElement("div");
    box.className = "charts";
    group.append(summary, box);
    group.addEventListener("toggle", () => { if (group.open) render(); });
    const rank = (s) => { const i = C.SECTION_ORDER.indexOf(s); return i < 0 ? C.SECTION_ORDER.length : i; };
    const after = [...document.querySelectorAll(".chart-group")].find((g) => rank(g.dataset.section) > rank(section));
    $("#chart-groups").insertBefore(group, after || null);
    return group;
  }

  function chartDiv(key, keys) {
    if (charts.has(key)) return charts.get(key);
    const div = document.createElement("div");
    div.className = "chart";
    div.dataset.key = key;
    const box = $(".charts", groupFor(sectionFor(key)));
    const later = keys.slice(keys.indexOf(key) + 1).map((k) => charts.get(k)).find((d) => d && d.parentNode === box);
    box.insertBefore(div, later || null);
    charts.set(key, div);
    return div;
  }

  function traces(key) {
    const out = [];
    for (const run of RUNS) { // in the page's order (object keys would sort by id)
      const runId = String(run.id);
      const s = (state.data.series[runId] || {})[key];
      if (!s) continue;
      const colour = C.runColour(run.index);
      const hidden = state.hidden.has(runId);
      if (state.smoothing > 0) {
        out.push({ x: s.x, y: s.y, name: run.name + " (raw)", mode: "lines", hoverinfo: "skip",
          line: { color: colour, width: 1 }, opacity: 0.25, showlegend: false,
          visible: !hidden, meta: { run: runId, raw: true } });
      }
      out.push({ x: s.x, y: C.smooth(s.y, state.smoothing), name: run.name, meta: { run: runId },
        mode: s.x.length > 1 ? "lines" : "markers", line: { color: colour, width: 2 },
        marker: { color: colour, size: 6 }, visible: !hidden });
    }
    return out;
  }

  // The runs' colours are named once, in the legend above the charts; each chart's title is
  // the key's human title (its raw key in the hover box).
  function draw(key, keys) {
    const div = chartDiv(key, keys);
    if (!div.closest(".chart-group").open) { div.dataset.stale = "1"; return; }
    delete div.dataset.stale;
    const data = traces(key);
    const found = C.chartOf(key);
    const layout = C.layout(C.titleOf(key), {
      uirevision: "compare-" + state.x, hovermode: "x unified", showlegend: false, height: 250,
      margin: { l: 56, r: 12, t: 32, b: 44 },
      xaxis: { title: { text: X_TITLES[state.x], font: { size: 11 }, standoff: 4 }, automargin: true },
      yaxis: C.yaxis(data, { type: state.logY ? "log" : "linear",
        title: { text: found ? found.chart.unit : "", font: { size: 11 } } }),
    });
    if (div.dataset.zoomed) { delete layout.yaxis.range; delete layout.yaxis.autorange; }
    Plotly.react(div, data, layout, C.config);
    div.title = key;
    C.watchZoom(div);
  }

  function visibleKey(key) {
    return !state.filter || key.toLowerCase().includes(state.filter) ||
      C.titleOf(key).toLowerCase().includes(state.filter);
  }

  function render() {
    if (!state.data) return;
    const keys = C.compareOrder(new Set(Object.values(state.data.series).flatMap((s) => Object.keys(s))));
    for (const key of keys) draw(key, keys);
    applyFilter();
    const legend = document.querySelectorAll(".legend-item");
    legend.forEach((b) => b.setAttribute("aria-pressed", String(!state.hidden.has(b.dataset.runId))));
    const missing = RUNS.filter((r) => !state.data.series[String(r.id)] || !Object.keys(state.data.series[String(r.id)]).length);
    const note = $("#x-note");
    note.hidden = !missing.length || state.x === "step";
    note.textContent = missing.length ? missing.map((r) => r.name).join(", ") +
      " recorded no " + X_TITLES[state.x] + " and are left out on this axis." : "";
  }

  function applyFilter() {
    for (const [key, div] of charts) {
      const show = visibleKey(key);
      if (show && div.hidden) { div.hidden = false; if (div.data) Plotly.Plots.resize(div); }
      div.hidden = !show;
    }
    document.querySelectorAll(".chart-group").forEach((g) => {
      const shown = [...g.querySelectorAll(".chart")].filter((d) => !d.hidden).length;
      g.hidden = !shown;
      $(".count", g).textContent = shown + " chart" + (shown === 1 ? "" : "s");
      if (state.filter && shown && !g.open) g.open = true;
    });
  }

  function toggleRun(runId) {
    if (state.hidden.has(runId)) state.hidden.delete(runId); else state.hidden.add(runId);
    render();
  }

  // --- summary (kept current while runs train) ---

  function fmt(value, digits, unit) {
    return value === null || value === undefined ? "–" : value.toFixed(digits) + (unit || "");
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
  }

  function showSummary() {
    for (const run of state.data.runs) {
      const row = document.querySelector(`#summary-table tr[data-run-id="${run.id}"]`);
      if (!row) continue;
      const set = (field, text) => { const el = $(`[data-field="${field}"]`, row); if (el) el.textContent = text; };
      const s = run.summary;
      set("status", run.status);
      $('[data-field="status"]', row).className = "badge " + run.status;
      set("step", run.step + " / " + run.max_steps);
      set("reward_final", fmt(s.reward_final, 3) + (byId.get(String(run.id)).reward_model ? " acc" : ""));
      set("reward_best", fmt(s.reward_best, 3));
      set("kl_final", fmt(s.kl_final, 4));
      set("tokens_per_s", fmt(s.tokens_per_s, 1));
      set("peak_mem_mb", fmt(s.peak_mem_mb, 0, " MB"));
      set("wall_s", duration(s.wall_s));
      byId.get(String(run.id)).status = run.status;
    }
  }

  // --- loading ---

  let timer = null;
  async function load() {
    const url = `${page.dataset.compareUrl}?ids=${page.dataset.ids}&points=1000&x=${state.x}`;
    const status = $("#compare-status");
    try {
      state.data = await getJSON(url);
    } catch (err) {
      status.textContent = "Could not load the metrics: " + err.message;
      return;
    }
    render();
    showSummary();
    const live = state.data.runs.some((r) => !ENDED.includes(r.status));
    status.textContent = live ? "live: updating every " + POLL_MS / 1000 + " s" : "";
    clearTimeout(timer);
    if (live) timer = setTimeout(load, POLL_MS);
  }

  function bindControls() {
    const smoothing = $("#smoothing");
    smoothing.addEventListener("input", () => {
      state.smoothing = Number(smoothing.value);
      $("#smoothing-value").textContent = state.smoothing.toFixed(2);
      render();
    });
    $("#x-axis").addEventListener("change", (ev) => { state.x = ev.target.value; load(); });
    $("#log-y").addEventListener("change", (ev) => { state.logY = ev.target.checked; render(); });
    $("#metric-filter").addEventListener("input", (ev) => { state.filter = ev.target.value.trim().toLowerCase(); applyFilter(); });
    document.querySelectorAll(".legend-item").forEach((b) => b.addEventListener("click", () => toggleRun(b.dataset.runId)));
    $("#only-differences").addEventListener("change", (ev) => $("#diff-table").classList.toggle("only-differences", ev.target.checked));
  }

  document.addEventListener("DOMContentLoaded", () => {
    bindControls();
    load();
    if (window.RLHFSideBySide) window.RLHFSideBySide.start({ page, runs: RUNS, getJSON, csrf });
  });
})();
