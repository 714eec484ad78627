// On every page: the navigation behind a "Menu" button on narrow screens, a question
// before forms that delete or revoke something (<form data-confirm="...">), and "... is
// queued" news dropped once the job's status card says it has started.
// Without this script the links simply wrap and the forms submit at once.
(function () {
  "use strict";
  const bar = document.getElementById("topbar");
  const button = document.getElementById("menu-toggle");
  if (bar && button) {
    bar.classList.add("collapsible");
    button.addEventListener("click", () => {
      const open = !bar.classList.contains("open");
      bar.classList.toggle("open", open);
      button.setAttribute("aria-expanded", String(open));
    });
  }
  document.addEventListener("submit", (event) => {
    const question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
  function dropStaleLaunchNews() {
    const card = document.getElementById("status-card");
    if (card && card.dataset.status && card.dataset.status !== "queued") {
      document.querySelectorAll(".messages li.launch").forEach((li) => li.remove());
    }
  }
  document.addEventListener("DOMContentLoaded", dropStaleLaunchNews);
  document.body && document.body.addEventListener("htmx:afterSettle", dropStaleLaunchNews);
})();
