// Completions side by side on the compare page: pick a prompt that occurs in the runs'
// samples, a run and a step per side, tick completions, and send them to ranking (a new
// labeling batch made of them).
(function () {
  "use strict";
  const picked = new Map(); // "run:step:index" -> {run, step, index}
  let prompts = [];
  let ctx = null;
  const $ = (sel, root) => (root || document).querySelector(sel);

  function escapeHtml(text) {
    const div = document.createElement("div");
    div.textContent = text;
    return div.innerHTML;
  }

  function prompt() {
    const i = $("#prompt-pick").value;
    return i === "" ? null : prompts[Number(i)].prompt;
  }

  function sideRun(side) { return $(".side-run", side).value; }

  async function loadSteps(side) {
    const text = prompt();
    const select = $(".side-step", side);
    if (text === null) return [];
    const url = `/api/runs/${sideRun(side)}/samples/steps?prompt=${encodeURIComponent(text)}`;
    const { steps } = await ctx.getJSON(url);
    select.innerHTML = steps.map((s) => `<option value="${s}">${s}</option>`).join("");
    return steps;
  }

  function sampleRow(s, runId) {
    const key = `${runId}:${s.step}:${s.index}`;
    const rewards = Object.entries(s.rewards).map(([k, v]) => `${escapeHtml(k)} ${v.toFixed(3)}`).join(" · ");
    return `<label class="sample${picked.has(key) ? " picked" : ""}">
      <input type="checkbox" data-key="${key}" ${picked.has(key) ? "checked" : ""}>
      <pre class="wrap">${escapeHtml(s.completion)}</pre>
      <span class="small muted">reward <strong>${s.reward.toFixed(3)}</strong>${rewards ? " (" + rewards + ")" : ""}
        · advantage <strong>${s.advantage.toFixed(3)}</strong></span></label>`;
  }

  async function loadSamples(side) {
    const text = prompt();
    const box = $(".side-samples", side);
    const step = $(".side-step", side).value;
    if (text === null || step === "") { box.innerHTML = '<p class="muted">No samples of this prompt in this run.</p>'; return; }
    const runId = sideRun(side);
    const samples = await ctx.getJSON(`/api/runs/${runId}/samples?step=${step}&prompt=${encodeURIComponent(text)}`);
    box.innerHTML = samples.map((s) => sampleRow(s, runId)).join("") || '<p class="muted">None.</p>';
    box.querySelectorAll("input[type=checkbox]").forEach((cb) => cb.addEventListener("change", () => {
      const [run, st, index] = cb.dataset.key.split(":").map(Number);
      if (cb.checked) picked.set(cb.dataset.key, { run, step: st, index }); else picked.delete(cb.dataset.key);
      cb.closest(".sample").classList.toggle("picked", cb.checked);
      showPicked();
    }));
  }

  // Defaults: two runs at the last step both have; one run at its first and its last step.
  async function loadSides() {
    const [a, b] = [$("#side-a"), $("#side-b")];
    const [stepsA, stepsB] = [await loadSteps(a), await loadSteps(b)];
    if (sideRun(a) === sideRun(b)) {
      if (stepsA.length) { $(".side-step", a).value = stepsA[0]; $(".side-step", b).value = stepsB[stepsB.length - 1]; }
    } else {
      const common = stepsA.filter((s) => stepsB.includes(s));
      if (common.length) { $(".side-step", a).value = $(".side-step", b).value = common[common.length - 1]; }
      else { $(".side-step", a).value = stepsA[stepsA.length - 1]; $(".side-step", b).value = stepsB[stepsB.length - 1]; }
    }
    await Promise.all([loadSamples(a), loadSamples(b)]);
  }

  function showPicked() {
    $("#picked-count").textContent = `${picked.size} completion${picked.size === 1 ? "" : "s"} picked`;
    $("#send-ranking").disabled = picked.size < 2;
  }

  async function send(ev) {
    ev.preventDefault();
    const result = $("#send-result");
    const body = { name: $("#batch-name").value, shared: $("#batch-shared").checked, samples: [...picked.values()] };
    const response = await fetch(ctx.page.dataset.batchUrl, {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRFToken": ctx.csrf() } });
    const data = await response.json();
    if (response.status === 201) {
      result.innerHTML = `Batch <a id="sent-batch" href="${ctx.page.dataset.batchPage}${data.id}/">${escapeHtml(data.name)}</a> is ready to rank (${data.items_total} prompt${data.items_total === 1 ? "" : "s"}).`;
      result.className = "";
    } else {
      result.textContent = data.detail || "Could not make the batch.";
      result.className = "error";
    }
  }

  async function start(context) {
    ctx = context;
    const ids = context.page.dataset.ids;
    prompts = await ctx.getJSON(`${context.page.dataset.promptsUrl}?ids=${ids}`);
    const pick = $("#prompt-pick");
    pick.innerHTML = prompts.length ? prompts.map((p, i) => {
      const short = p.prompt.length > 110 ? p.prompt.slice(0, 110) + "…" : p.prompt;
      return `<option value="${i}">${escapeHtml(short)} (${p.runs} run${p.runs === 1 ? "" : "s"}, ${p.samples} samples)</option>`;
    }).join("") : '<option value="">no samples yet</option>';
    pick.addEventListener("change", loadSides);
    for (const side of [$("#side-a"), $("#side-b")]) {
      $(".side-run", side).addEventListener("change", async () => { await loadSteps(side); const s = $(".side-step", side); s.value = s.options.length ? s.options[s.options.length - 1].value : ""; loadSamples(side); });
      $(".side-step", side).addEventListener("change", () => loadSamples(side));
    }
    $("#send-to-ranking").addEventListener("submit", send);
    if (prompts.length) loadSides();
  }

  window.RLHFSideBySide = { start };
})();
