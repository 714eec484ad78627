// The launch form: reward rows (add, remove, show the inputs of the chosen type) and presets.
(function () {
  "use strict";
  const form = document.getElementById("run-form");
  if (!form) return;

  function setUpRewards(rows) {
    const max = Number(rows.dataset.max);

    function showInputsFor(row) {
      const type = row.querySelector(".reward-type").value;
      row.querySelectorAll("label[data-for]").forEach((label) => {
        label.hidden = label.dataset.for !== type;
      });
    }

    function renumber() {
      rows.querySelectorAll(".reward-row").forEach((row, i) => {
        row.dataset.index = String(i);
        row.querySelectorAll("[name]").forEach((input) => {
          input.name = input.name.replace(/^reward-\d+-/, "reward-" + i + "-");
        });
      });
      document.getElementById("add-reward").disabled = rows.children.length >= max;
    }

    rows.addEventListener("change", (e) => {
      if (e.target.classList.contains("reward-type")) showInputsFor(e.target.closest(".reward-row"));
    });
    rows.addEventListener("click", (e) => {
      if (!e.target.classList.contains("remove-reward")) return;
      if (rows.children.length > 1) e.target.closest(".reward-row").remove();
      renumber();
    });
    document.getElementById("add-reward").addEventListener("click", () => {
      const copy = rows.lastElementChild.cloneNode(true);
      copy.querySelectorAll("input").forEach((input) => { input.value = input.dataset.default || ""; });
      rows.appendChild(copy);
      renumber();
      showInputsFor(copy);
    });
    rows.querySelectorAll(".reward-row").forEach(showInputsFor);
    renumber();
  }

  // What a field shows a person: the chosen option's text, a tick, or the value.
  function shown(input) {
    if (input.type === "checkbox") return input.checked ? "on" : "off";
    if (input.tagName === "SELECT") {
      const option = input.options[input.selectedIndex];
      return option ? option.value : "";
    }
    return input.value;
  }

  function setUpPresets() {
    // form.dataset would be the form control named "dataset", not the data-* attributes
    const presets = JSON.parse(form.getAttribute("data-presets"));
    const select = document.getElementById("preset");
    const report = document.getElementById("preset-changes");
    for (const name of Object.keys(presets)) select.add(new Option(name, name));
    form.addEventListener("input", (e) => e.target.classList.remove("changed"));
    select.addEventListener("change", () => {
      const values = presets[select.value] || {};
      const changes = [];
      const missing = [];
      for (const [key, value] of Object.entries(values)) {
        const input = form.elements["hp_" + key] || form.elements[key];
        if (!input) continue;
        const before = shown(input);
        if (input.type === "checkbox") input.checked = Boolean(value);
        else if (input.tagName === "SELECT" && !Array.from(input.options).some((o) => o.value === String(value))) {
          missing.push(key + " " + value);
          continue;
        } else input.value = value;
        const after = shown(input);
        if (after !== before) {
          changes.push(key + ": " + (before === "" ? "(empty)" : before) + " → " + after);
          input.classList.add("changed");
        }
      }
      if (!select.value) { report.hidden = true; return; }
      let text = changes.length ? "“" + select.value + "” changed " + changes.join(", ") + "."
        : "“" + select.value + "” changed nothing: the form already had its values.";
      if (missing.length) text += " Not available on this server: " + missing.join(", ") + " (run 'make models').";
      report.textContent = text;
      report.hidden = false;
    });
  }

  const rows = document.getElementById("reward-rows");
  if (rows) setUpRewards(rows);
  setUpPresets();
})();
