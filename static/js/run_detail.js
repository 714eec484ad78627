// The live run page: history from the metrics API, then new steps from server-sent events,
// appended to the charts with Plotly.extendTraces (no reload, zoom kept).
(function () {
  "use strict";
  const page = document.getElementById("run-page");
  if (!page) return;
  let maxSteps = Number(page.dataset.maxSteps);
  const C = window.RLHFCharts;
  // Past this many steps the history comes downsampled (min/max buckets) from the server.
  const DOWNSAMPLE_AFTER = 2000;
  const container = document.getElementById("charts");
  const charts = C.CHARTS.map((spec) => ({ spec, div: null, traces: {} }));

  function place(chart) {
    // Keep the order of CHARTS whatever order the charts appear in.
    const div = document.createElement("div");
    div.className = "chart";
    div.id = "chart-" + charts.indexOf(chart);
    div.dataset.title = chart.spec.title;
    const after = charts.slice(charts.indexOf(chart) + 1).find((c) => c.div);
    container.insertBefore(div, after ? after.div : null);
    chart.div = div;
  }
  const ENDED = ["succeeded", "failed", "cancelled"];
  let lastStep = 0;
  const stepSeconds = [];

  function chartFor(key) {
    const found = C.chartOf(key);
    return found ? charts[found.index] : undefined;
  }

  // A chart's keys in a fixed order (its list, then matched keys by name), so a key keeps its
  // colour and place live and after a reload.
  function keyOrder(keys) {
    const rank = (k) => C.chartOf(k).order;
    return [...keys].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  }

  // series: {key: {x: [...], y: [...]}} -> append to every chart that shows the key.
  function append(series) {
    const byChart = new Map();
    for (const [key, s] of Object.entries(series)) {
      const chart = chartFor(key);
      if (!chart || !s.x.length) continue;
      if (!byChart.has(chart)) byChart.set(chart, []);
      byChart.get(chart).push([key, s]);
    }
    for (const [chart, items] of byChart) {
      if (!chart.div) {
        place(chart);
        const order = keyOrder(items.map(([key]) => key));
        const data = order.map((key, i) => {
          chart.traces[key] = i;
          return trace(key, series[key], i);
        });
        Plotly.newPlot(chart.div, data, C.layout(chart.spec.title,
          { uirevision: "run", showlegend: several(chart), shapes: resumeShapes(),
            yaxis: C.yaxis(data, { title: { text: chart.spec.unit, font: { size: 11 } } }) }),
          C.config);
        C.watchZoom(chart.div);
        C.fit(chart.div, labels(chart), several(chart));
        continue;
      }
      const fresh = items.filter(([key]) => !(key in chart.traces));
      for (const [key, s] of fresh) {
        const i = Object.keys(chart.traces).length;
        chart.traces[key] = i;
        Plotly.addTraces(chart.div, trace(key, s, i));
      }
      const old = items.filter(([key]) => !fresh.some(([k]) => k === key));
      if (old.length) {
        Plotly.extendTraces(chart.div, { x: old.map(([, s]) => s.x), y: old.map(([, s]) => s.y) },
          old.map(([key]) => chart.traces[key]));
      }
      C.fit(chart.div, labels(chart), several(chart));
    }
  }

  function several(chart) {
    return chart.spec.series.length > 1 || Boolean(chart.spec.pattern);
  }

  // Each trace's own legend label, in trace order.
  function labels(chart) {
    const out = [];
    for (const [key, i] of Object.entries(chart.traces)) out[i] = C.chartOf(key).label;
    return out;
  }

  function trace(key, s, i) {
    const colour = C.PALETTE[i % C.PALETTE.length];
    return { x: s.x, y: s.y, name: C.chartOf(key).label, meta: { key }, mode: "lines+markers",
      line: { color: colour }, marker: { size: s.x.length > 1 ? 4 : 8, color: colour },
      hovertemplate: "%{y}<extra>" + key + "</extra>" };
  }

  // Where a later attempt resumed the run (its last checkpoint): a dotted line on every chart.
  const resumes = (page.dataset.resumes || "").trim().split(/\s+/).filter(Boolean).map(Number);
  let attempt = Number(page.dataset.attempt || 0);

  function resumeShapes() {
    return resumes.filter((s) => s > 0).map((s) => ({
      type: "line", x0: s, x1: s, yref: "paper", y0: 0, y1: 1,
      line: { dash: "dot", width: 1, color: "#b7791f" } }));
  }

  // A new attempt resumed from ``step``: what the dead attempt drew after it is dropped (the
  // server removed it too) and the new attempt's steps are drawn from there.
  function onResume(event) {
    const data = JSON.parse(event.data);
    if (data.attempt <= attempt) return; // already reflected in the history this page loaded
    attempt = data.attempt;
    resumes.push(data.step);
    for (const chart of charts) {
      if (!chart.div) continue;
      const keep = chart.div.data.map((t) => t.x.findIndex((x) => x > data.step)).map(
        (i, n) => (i < 0 ? chart.div.data[n].x.length : i));
      Plotly.restyle(chart.div, { x: chart.div.data.map((t, n) => t.x.slice(0, keep[n])),
        y: chart.div.data.map((t, n) => t.y.slice(0, keep[n])) });
      Plotly.relayout(chart.div, { shapes: resumeShapes() });
    }
    lastStep = Math.min(lastStep, data.step);
    setProgress(data.step);
  }

  function formatEta(seconds) {
    if (!isFinite(seconds) || seconds <= 0) return "";
    const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
    return "ETA " + (m ? m + "m " : "") + s + "s";
  }

  function setProgress(step) {
    const bar = document.getElementById("run-progress");
    if (bar) bar.style.width = Math.min(100, (100 * step) / maxSteps) + "%";
    const label = document.getElementById("run-step");
    if (label) label.textContent = "step " + step + " / " + maxSteps;
    const recent = stepSeconds.slice(-5);
    const mean = recent.reduce((a, b) => a + b, 0) / (recent.length || 1);
    const eta = document.getElementById("run-eta");
    const live = !ENDED.includes(page.dataset.status);
    if (eta) eta.textContent = live && recent.length ? formatEta(mean * (maxSteps - step)) : "";
  }

  let peakMem = 0;
  let bestReward = page.dataset.rewardBest ? Number(page.dataset.rewardBest) : -Infinity;
  const startedAt = Date.parse(page.dataset.startedAt || "");
  // The live figures of the status card, as the server stores them (summaries.py).
  function showSummary(m) {
    const set = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text; };
    if ("perf/peak_mem_mb" in m) {
      peakMem = Math.max(peakMem, m["perf/peak_mem_mb"]);
      set("run-peak-mem", Math.round(peakMem) + " MB");
    }
    if (m["perf/elapsed_s"] > 0 && "perf/tokens_total" in m) {
      set("run-throughput", (m["perf/tokens_total"] / m["perf/elapsed_s"]).toFixed(1) + " tokens/s");
    }
    if (Number.isFinite(startedAt)) set("run-elapsed", Math.round((Date.now() - startedAt) / 1000) + " s");
    const reward = m[page.dataset.rewardKey];
    if (reward !== undefined) {
      bestReward = Math.max(bestReward, reward);
      set("run-reward-final", reward.toFixed(3));
      set("run-reward-best", bestReward.toFixed(3));
    }
  }

  function onStep(event) {
    const data = JSON.parse(event.data);
    if (data.step <= lastStep) return; // already drawn from the history
    lastStep = data.step;
    const series = {};
    for (const [key, value] of Object.entries(data.metrics)) series[key] = { x: [data.step], y: [value] };
    if ("perf/step_s" in data.metrics) stepSeconds.push(data.metrics["perf/step_s"]);
    showSummary(data.metrics);
    append(series);
    setProgress(data.step);
    page.dataset.step = String(data.step);
    const pick = document.getElementById("sample-step");
    if (!pick || !pick.value) {
      refresh(page.dataset.samplesUrl, "#samples");
    }
  }

  // One request per card at a time; a refresh asked for meanwhile runs once the answer is in,
  // so each card ends with what the server had after the last event. (htmx.ajax without a
  // source queues every call on <body> and keeps only the newest one waiting, so a burst of
  // events, e.g. the last checkpoint and the end, silently dropped some cards' refreshes.)
  const cards = {};
  function refresh(url, target) {
    const card = cards[target] || (cards[target] = { busy: false, again: false, failures: 0 });
    if (card.busy) { card.again = true; return; }
    card.busy = true;
    fetch(url, { credentials: "same-origin" })
      .then((response) => (response.ok ? response.text() : null))
      .then((html) => {
        card.failures = 0;
        const element = document.querySelector(target);
        if (html !== null && element) htmx.swap(element, html, { swapStyle: "outerHTML" });
      })
      .catch(() => { card.failures += 1; card.again = card.again || card.failures < 3; })
      .finally(() => {
        card.busy = false;
        if (card.again) { card.again = false; setTimeout(() => refresh(url, target), 250); }
      });
  }

  function listen() {
    const source = new EventSource(page.dataset.eventsUrl);
    source.addEventListener("step", (event) => { dropLaunchMessage(); onStep(event); });
    source.addEventListener("status", (event) => {
      if (JSON.parse(event.data).status !== "queued") dropLaunchMessage();
      refresh(page.dataset.statusUrl, "#status-card");
    });
    source.addEventListener("resume", onResume);
    // The engine worked out the run's length (a reward model's epochs over its pairs).
    source.addEventListener("plan", (event) => {
      maxSteps = JSON.parse(event.data).max_steps;
      setProgress(lastStep);
    });
    source.addEventListener("checkpoint", () => refresh(page.dataset.checkpointsUrl, "#checkpoints"));
    source.addEventListener("end", (event) => {
      source.close();
      const data = JSON.parse(event.data);
      page.dataset.status = data.status;
      refresh(page.dataset.statusUrl, "#status-card");
      refresh(page.dataset.checkpointsUrl, "#checkpoints");
    });
  }

  // A slow answer to "cancel" can land after the run has ended and put back a stale status
  // card; once the end is known, any card that still shows a live status is fetched again.
  document.body.addEventListener("htmx:afterSettle", () => {
    const badge = document.getElementById("run-status");
    const ended = ENDED.includes(page.dataset.status);
    if (ended && badge && !ENDED.includes(badge.textContent.trim())) {
      refresh(page.dataset.statusUrl, "#status-card");
    }
  });

  // "Run 'x' is queued." is news only until the run starts.
  function dropLaunchMessage() {
    document.querySelectorAll(".messages li.launch").forEach((li) => li.remove());
  }

  async function start() {
    if (page.dataset.status !== "queued") dropLaunchMessage();
    const long = Number(page.dataset.step) > DOWNSAMPLE_AFTER;
    const query = long ? "?points=" + DOWNSAMPLE_AFTER : "?after=0";
    const response = await fetch(page.dataset.metricsUrl + query, { credentials: "same-origin" });
    if (response.ok) {
      const body = await response.json();
      append(body.series);
      lastStep = body.last_step;
      if (body.series["perf/step_s"]) stepSeconds.push(...body.series["perf/step_s"].y);
      setProgress(Math.max(lastStep, Number(page.dataset.step)));
    }
    if (!ENDED.includes(page.dataset.status)) listen();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
