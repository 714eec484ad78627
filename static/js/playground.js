// A playground session: count the ticked completions (2 to 8 can go to a ranking batch).
(function () {
  "use strict";
  const form = document.getElementById("send-form");
  const note = document.getElementById("ticked");
  const button = document.getElementById("send-to-ranking");
  if (!form || !note || !button) return;

  function update() {
    const n = form.querySelectorAll('input[name="response"]:checked').length;
    button.disabled = n < 2 || n > 8;
    note.textContent = n === 0 ? "Tick 2 to 8." : n + " ticked" + (n < 2 ? ": tick at least 2." : n > 8 ? ": at most 8." : ".");
    form.querySelectorAll(".completion").forEach((label) => {
      label.classList.toggle("picked", label.querySelector("input").checked);
    });
  }
  form.addEventListener("change", update);
  document.body.addEventListener("htmx:afterSwap", update); // the columns filled in
  update();
})();
