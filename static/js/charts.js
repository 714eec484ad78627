// The chart definitions the run page and the compare page share: which metric keys each chart
// shows, their namespaces and order, run colours, the TensorBoard smoothing, common layout.
(function () {
  "use strict";
  // The run page draws one chart per entry with every key it lists (or matches); the compare
  // page draws one chart per key, in this order, titled by the entry the key belongs to.
  const CHARTS = [
    { title: "Reward", match: (k) => k === "reward/mean" || /^reward\/[^/]+\/mean$/.test(k) },
    { title: "Reward std", keys: ["reward/std"] },
    { title: "Groups whose rewards are all equal (share)", keys: ["reward/frac_zero_std"] },
    { title: "KL to reference", keys: ["kl/mean"] },
    { title: "Entropy", keys: ["entropy/mean"] },
    { title: "Loss", match: (k) => k.startsWith("loss/") && k !== "loss/value" && k !== "loss/train" },
    { title: "Value loss", keys: ["loss/value"] },
    { title: "Critic", keys: ["value/explained_var", "value/clip_frac"] },
    { title: "Approximate KL, old to new policy", keys: ["kl/approx"] },
    { title: "Policy clip fraction", keys: ["clip/policy_frac"] },
    { title: "KL coefficient", keys: ["kl/coef"] },
    { title: "Clip ratios", keys: ["clip/low", "clip/high", "clip/region"] },
    { title: "Training loss", keys: ["loss/train", "eval/loss"] },
    { title: "Pairwise accuracy", keys: ["eval/accuracy", "train/accuracy"] },
    { title: "Held-out margin", keys: ["eval/margin"] },
    { title: "Scores of chosen and rejected", keys: ["reward/chosen_mean", "reward/rejected_mean"] },
    { title: "Completion length (tokens)",
      keys: ["completion/length_mean", "completion/length_min", "completion/length_max"] },
    { title: "Completion length (characters)", keys: ["completion/chars_mean"] },
    { title: "Truncated share", keys: ["completion/truncated_frac"] },
    { title: "Gradient norm", keys: ["optim/grad_norm"] },
    { title: "Learning rate", keys: ["optim/lr"] },
    { title: "Tokens per second", keys: ["perf/tokens_per_s", "perf/pairs_per_s"] },
    { title: "Seconds per step", keys: ["perf/step_s", "perf/generate_s"] },
    { title: "Peak memory (MB)", keys: ["perf/peak_mem_mb"] },
  ];
  // Line colours of the keys inside one run-page chart (Plotly's own), by the key's place.
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  // Namespaces in the order the compare page groups them; others follow alphabetically.
  const NAMESPACES = ["reward", "kl", "loss", "clip", "completion", "optim", "perf", "eval"];

  function chartIndex(key) {
    return CHARTS.findIndex((c) => (c.keys ? c.keys.includes(key) : c.match(key)));
  }

  function namespaceOf(key) {
    return key.includes("/") ? key.slice(0, key.indexOf("/")) : "other";
  }

  function namespaceRank(ns) {
    const i = NAMESPACES.indexOf(ns);
    return i < 0 ? NAMESPACES.length : i;
  }

  // Keys sorted as the compare page shows them: by namespace, then by chart, then by name.
  function compareOrder(keys) {
    const rank = (k) => {
      const i = chartIndex(k);
      return i < 0 ? CHARTS.length : i;
    };
    return [...keys].sort((a, b) => {
      const na = namespaceOf(a), nb = namespaceOf(b);
      return namespaceRank(na) - namespaceRank(nb) || na.localeCompare(nb) ||
        rank(a) - rank(b) || a.localeCompare(b);
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

  // A y-axis for the traces: short tick labels (1e-05, not 10µ), and a series that does not
  // change (a constant learning rate, or smoothing noise of 1e-17 around it) drawn around its
  // value instead of zoomed into rounding noise or squashed onto 0.
  function yaxis(traces, extra) {
    const axis = Object.assign({ tickformat: ".4~g", exponentformat: "e", automargin: true }, extra || {});
    const ys = traces.filter((t) => t.visible === undefined || t.visible === true)
      .flatMap((t) => t.y).filter(Number.isFinite);
    if (!ys.length || axis.type === "log") return axis;
    const lo = Math.min(...ys), hi = Math.max(...ys);
    const scale = Math.max(Math.abs(lo), Math.abs(hi));
    if (hi - lo <= 1e-9 * scale || hi === lo) {
      const mid = (lo + hi) / 2, half = Math.abs(mid) * 0.5 || 1;
      axis.range = [mid - half, mid + half];
    }
    return axis;
  }

  function layout(title, extra) {
    return Object.assign({
      title: { text: title, font: { size: 13 } },
      margin: { l: 56, r: 12, t: 32, b: 40 }, height: 258,
      legend: { orientation: "h", y: -0.25, font: { size: 10 } }, xaxis: { title: "", automargin: true },
    }, extra || {});
  }

  // The keys of one run-page chart in a fixed order (its list, else reward/mean first then by
  // name), so a key keeps its colour and place live and after a reload.
  function keyOrder(spec, keys) {
    const rank = (k) => (spec.keys ? spec.keys.indexOf(k) : k === "reward/mean" ? -1 : 0);
    return [...keys].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  }

  window.RLHFCharts = { CHARTS, NAMESPACES, PALETTE, keyOrder, chartIndex, namespaceOf, compareOrder, smooth,
    runColour, layout, yaxis, config: { displaylogo: false, responsive: true } };
})();
