// What the run page and the compare page share: the chart catalogue (sent by the server from
// training/charts.py as JSON, so no metric key is listed here), run colours, TensorBoard's
// smoothing, and the axis and legend rules of every chart: y follows the data as points
// arrive unless the person zoomed, tick labels carry as many digits as the span needs, and a
// line that coincides with another is drawn once with both names in its legend entry.
(function () {
  "use strict";
  const source = document.getElementById("chart-catalog");
  const CATALOG = source ? JSON.parse(source.textContent) : { sections: [], charts: [], hidden: [] };
  const CHARTS = CATALOG.charts.map((c) => Object.assign({}, c, {
    regex: c.pattern ? new RegExp("^(?:" + c.pattern + ")$") : null }));
  const SECTION_ORDER = CATALOG.sections.map((s) => s[0]);
  const SECTION_TITLES = Object.fromEntries(CATALOG.sections);
  const HIDDEN = new Set(CATALOG.hidden);
  // Line colours of the keys inside one run-page chart (Plotly's own), by the key's place.
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  // {index, chart, label, order} of the chart that draws ``key``, or null (hidden or unknown).
  function chartOf(key) {
    if (HIDDEN.has(key)) return null;
    for (let index = 0; index < CHARTS.length; index++) {
      const chart = CHARTS[index];
      const at = chart.series.findIndex((s) => s[0] === key);
      if (at >= 0) return { index, chart, label: chart.series[at][1], order: at };
      const match = chart.regex && chart.regex.exec(key);
      if (match) return { index, chart, label: match[1], order: chart.series.length };
    }
    return null;
  }

  // A key as a person reads it on its own chart (the compare page): "Reward: length".
  function titleOf(key) {
    const found = chartOf(key);
    if (!found) return key;
    const single = found.chart.series.length === 1 && !found.chart.pattern;
    return single ? found.chart.title : found.chart.title + ": " + found.label;
  }

  function sectionOf(key) {
    const found = chartOf(key);
    return found ? found.chart.section : "other";
  }

  // Keys in the order the pages show them: by section, chart, place in the chart, name.
  function compareOrder(keys) {
    const rank = (k) => {
      const found = chartOf(k);
      return found ? [SECTION_ORDER.indexOf(found.chart.section), found.index, found.order]
        : [SECTION_ORDER.length, CHARTS.length, 0];
    };
    return [...keys].filter((k) => !HIDDEN.has(k)).sort((a, b) => {
      const ra = rank(a), rb = rank(b);
      return ra[0] - rb[0] || ra[1] - rb[1] || ra[2] - rb[2] || a.localeCompare(b);
    });
  }

  // TensorBoard's smoothing: an exponential moving average, debiased so the first points are
  // not pulled towards 0. weight 0 gives the raw series.
  function smooth(ys, weight) {
    if (!weight) return ys.slice();
    let last = 0, count = 0;
    return ys.map((y) => {
      if (!Number.isFinite(y)) return y;
      last = last * weight + (1 - weight) * y;
      count += 1;
      return last / (1 - Math.pow(weight, count));
    });
  }

  // Run colours live in app.css (--run-0 ... --run-9) so tables and charts agree.
  function runColour(index) {
    const style = getComputedStyle(document.documentElement);
    return style.getPropertyValue("--run-" + (index % 10)).trim() || "#3559e0";
  }

  // Significant digits that tell ticks about a sixth of [lo, hi] apart from each other, and
  // never fewer than the integer part has (d3's "g" would write 300 as 3e+2).
  function tickFormat(lo, hi) {
    const big = Math.max(Math.abs(lo), Math.abs(hi));
    if (!(big > 0)) return ".3~g";
    const lead = Math.floor(Math.log10(big));
    const span = hi - lo;
    const step = span > 0 ? Math.floor(Math.log10(span / 8)) : lead - 2;
    const digits = Math.max(3, lead + 1, lead - step + 1);
    return "." + Math.min(15, digits) + "~g";
  }

  function shownTraces(traces) {
    return traces.filter((t) => t.visible === undefined || t.visible === true);
  }

  // The y-axis for ``traces``: autoscaled with short tick labels, except that a series that
  // does not change (a constant learning rate, or smoothing noise of 1e-17 around it) is
  // drawn around its value instead of zoomed into rounding noise or squashed onto 0.
  function yaxis(traces, extra) {
    const axis = Object.assign({ exponentformat: "e", automargin: true, autorange: true },
      extra || {});
    const ys = shownTraces(traces).flatMap((t) => t.y).filter(Number.isFinite);
    if (!ys.length || axis.type === "log") return axis;
    let lo = Math.min(...ys), hi = Math.max(...ys);
    const scale = Math.max(Math.abs(lo), Math.abs(hi));
    if (hi - lo <= 1e-9 * scale || hi === lo) {
      const mid = (lo + hi) / 2, half = Math.abs(mid) * 0.5 || 1;
      lo = mid - half;
      hi = mid + half;
      axis.range = [lo, hi];
      axis.autorange = false;
    }
    axis.tickformat = tickFormat(lo, hi);
    return axis;
  }

  function sameLine(a, b) {
    if (a.x.length !== b.x.length) return false;
    for (let i = 0; i < a.x.length; i++) {
      if (a.x[i] !== b.x[i] || a.y[i] !== b.y[i]) return false;
    }
    return true;
  }

  // Lines that coincide point for point (a reward's only source and the mean; min, mean and
  // max of a forced length) are drawn once: the first keeps a legend entry naming them all,
  // the others are hidden. ``labels[i]`` is trace i's own name. Returns restyle arrays.
  function mergeEqual(traces, labels) {
    const owner = traces.map((t, i) => i);
    for (let i = 0; i < traces.length; i++) {
      for (let j = 0; j < i; j++) {
        if (owner[j] === j && sameLine(traces[i], traces[j])) { owner[i] = j; break; }
      }
    }
    return {
      name: labels.map((label, i) => owner[i] !== i ? label
        : labels.filter((_, j) => owner[j] === i).join(" = ")),
      visible: owner.map((o, i) => o === i),
    };
  }

  // Whether the person zoomed or panned the chart: then it keeps their view until they
  // double-click (autorange), and only the tick labels follow their range.
  function watchZoom(div) {
    if (div.dataset.zoomWatched) return;
    div.dataset.zoomWatched = "1";
    div.on("plotly_relayout", (ev) => {
      if (div.__fitting) return;
      const keys = Object.keys(ev || {});
      if (keys.some((k) => /^[xy]axis\.autorange$/.test(k))) { delete div.dataset.zoomed; return; }
      if (!keys.some((k) => /^[xy]axis\.range/.test(k))) return;
      div.dataset.zoomed = "1";
      const range = div._fullLayout.yaxis.range;
      relayout(div, { "yaxis.tickformat": tickFormat(range[0], range[1]) });
    });
  }

  // Our own relayouts, told apart from the person's zoom by a counter the event handler sees.
  function relayout(div, update) {
    div.__fitting = (div.__fitting || 0) + 1;
    return Plotly.relayout(div, update).finally(() => { div.__fitting -= 1; });
  }

  // After new points: the y-axis follows them (unless zoomed), and the legend shows what is
  // drawn. ``labels``: each trace's own name (null: leave names and visibility alone);
  // ``legend``: whether the chart can hold several lines (then its legend says which it
  // shows, one line included; a chart of one quantity is named by its title).
  function fit(div, labels, legend) {
    const update = {};
    if (labels) {
      const merged = mergeEqual(div.data, labels);
      const changed = merged.visible.some((v, i) => (div.data[i].visible !== false) !== v ||
        div.data[i].name !== merged.name[i]);
      if (changed) Plotly.restyle(div, { name: merged.name, visible: merged.visible });
      update.showlegend = Boolean(legend) || merged.visible.filter(Boolean).length > 1;
    }
    if (!div.dataset.zoomed) {
      const axis = yaxis(div.data, { type: (div.layout.yaxis || {}).type });
      update["yaxis.autorange"] = axis.autorange;
      update["yaxis.tickformat"] = axis.tickformat;
      if (axis.range) update["yaxis.range"] = axis.range;
    }
    return relayout(div, update);
  }

  function layout(title, extra) {
    return Object.assign({
      title: { text: title, font: { size: 13 } },
      margin: { l: 56, r: 12, t: 32, b: 40 }, height: 258,
      legend: { orientation: "h", y: -0.25, font: { size: 10 } }, xaxis: { title: "", automargin: true },
    }, extra || {});
  }

  window.RLHFCharts = { CHARTS, SECTION_TITLES, SECTION_ORDER, PALETTE, chartOf, titleOf,
    sectionOf, compareOrder, smooth, runColour, layout, yaxis, tickFormat, mergeEqual, fit,
    watchZoom, config: { displaylogo: false, responsive: true } };
})();
