// The ranking page: order one item's responses best first by dragging or with the keyboard
// alone, tie neighbours, submit to the JSON API, skip, undo. After each action the page loads
// the next item (a plain navigation, so an item you ranked is never shown again).
//
// Keys: 1..K pick a response; the arrows move it the way they point in the layout on screen
// (the cards read left to right, top to bottom, best first: Left/Right step one place,
// Up/Down one row, which is one place in a single column); "t" ties it with the response
// before it; Enter submits (an order left as it was shown asks first); "s" skips; "u" undoes.
(function () {
  "use strict";
  const page = document.getElementById("rank-page");
  if (!page) return;
  const list = document.getElementById("rank-list");
  const message = document.getElementById("rank-message");
  const live = document.getElementById("rank-live");
  let picked = null;
  let busy = false;
  let dragging = null;
  let touched = false; // the order or a tie was changed since the page was shown
  let confirming = false; // Enter was pressed once on the untouched order

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return page.dataset.csrfToken || (match ? decodeURIComponent(match[1]) : "");
  }

  function say(text, isError) {
    if (message) {
      message.textContent = text;
      message.classList.toggle("error", Boolean(isError));
    }
    if (live) live.textContent = text;
  }

  function cards() {
    return list ? Array.from(list.querySelectorAll(".rank-card")) : [];
  }

  // [[ids tied for best], [next], ...] from the order on screen and the tie marks.
  function groups() {
    const out = [];
    cards().forEach((card, i) => {
      const id = Number(card.dataset.responseId);
      if (i > 0 && card.dataset.tied === "true") out[out.length - 1].push(id);
      else out.push([id]);
    });
    return out;
  }

  function render() {
    let rank = 0;
    cards().forEach((card, i) => {
      if (i === 0) card.dataset.tied = "false";
      const tied = card.dataset.tied === "true";
      if (!tied) rank += 1;
      card.dataset.rank = String(rank);
      card.classList.toggle("tied", tied);
      card.classList.toggle("picked", card === picked);
      card.setAttribute("aria-current", card === picked ? "true" : "false");
      card.querySelector(".rank-badge").textContent = "#" + rank + (tied ? " =" : "");
      const button = card.querySelector(".tie-toggle");
      button.setAttribute("aria-pressed", tied ? "true" : "false");
      button.disabled = i === 0;
      card.setAttribute("aria-label", describe(card));
    });
  }

  function describe(card) {
    const tied = card.dataset.tied === "true" ? ", tied with the response before it" : "";
    const state = card === picked ? ", picked" : "";
    return "Response " + card.dataset.key + ", rank " + card.dataset.rank + tied + state;
  }

  function pick(card, quiet) {
    if (!card) return;
    picked = card;
    render();
    if (document.activeElement !== card) card.focus({ preventScroll: false });
    if (!quiet) say(describe(card));
  }

  function requirePicked() {
    if (!picked) say("Pick a response first: press its number (1–" + cards().length + ").", true);
    return picked;
  }

  // How many cards one row of the grid holds as laid out now (1 on a phone).
  function columns() {
    const template = getComputedStyle(list).gridTemplateColumns;
    return template && template !== "none" ? template.split(" ").length : 1;
  }

  function changed() {
    touched = true;
    confirming = false;
  }

  function move(delta) {
    if (!requirePicked()) return;
    const all = cards();
    const i = all.indexOf(picked);
    const j = i + delta;
    if (j < 0 || j >= all.length) {
      const where = Math.abs(delta) > 1 ? (j < 0 ? "in the first row" : "in the last row")
        : (j < 0 ? "first" : "last");
      say("Response " + picked.dataset.key + " is already " + where + ".");
      return;
    }
    const other = all[j];
    if (delta < 0) list.insertBefore(picked, other);
    else list.insertBefore(picked, other.nextSibling);
    // Moving changes rank: the moved card and the one it passed keep no tie.
    picked.dataset.tied = "false";
    other.dataset.tied = "false";
    changed();
    pick(picked);
  }

  function toggleTie(card) {
    if (!card) return;
    if (cards().indexOf(card) === 0) {
      say("Response " + card.dataset.key + " is first: there is no response before it to tie with.", true);
      return;
    }
    card.dataset.tied = card.dataset.tied === "true" ? "false" : "true";
    changed();
    pick(card);
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? "{}" : JSON.stringify(body),
    });
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (e) { data = null; }
    }
    return { status: response.status, data };
  }

  async function act(label, run) {
    if (busy) return;
    busy = true;
    say(label + "…");
    try {
      await run();
    } catch (e) {
      say("The server could not be reached: " + e.message, true);
    } finally {
      busy = false;
    }
  }

  function failed(result) {
    say((result.data && result.data.detail) || "The server answered " + result.status + ".", true);
  }

  function submit() {
    if (!list) return;
    if (!touched && !confirming) {
      confirming = true;
      say("You have not changed the order shown. Press Enter (or Submit) again to submit it " +
          "as it is, response 1 best; Esc to keep ranking.", true);
      return;
    }
    act("Saving your ranking", async () => {
      const result = await post(page.dataset.rankingUrl, { ranking: groups() });
      if (result.status === 201) window.location.assign(page.dataset.rankUrl);
      else failed(result);
    });
  }

  function skip() {
    if (!list) return;
    act("Skipping", async () => {
      const result = await post(page.dataset.skipUrl);
      if (result.status === 204) window.location.assign(page.dataset.rankUrl);
      else failed(result);
    });
  }

  function undo() {
    act("Undoing your last ranking", async () => {
      const result = await post(page.dataset.undoUrl);
      if (result.status === 200) {
        window.location.assign(page.dataset.rankUrl + "?item=" + encodeURIComponent(result.data.item));
      } else failed(result);
    });
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest && event.target.closest("input, textarea, select, [contenteditable]")) return;
    const key = event.key;
    if (/^[1-9]$/.test(key) && list) {
      const card = list.querySelector('.rank-card[data-key="' + key + '"]');
      if (card) { event.preventDefault(); pick(card); }
      return;
    }
    if (key === "Escape" && confirming) {
      confirming = false;
      say("Keep ranking: move the responses into your order.");
      return;
    }
    const actions = {
      ArrowUp: () => move(-columns()), ArrowLeft: () => move(-1),
      ArrowDown: () => move(columns()), ArrowRight: () => move(1),
      t: () => toggleTie(requirePicked()), T: () => toggleTie(requirePicked()),
      Enter: submit, s: skip, S: skip, u: undo, U: undo,
    };
    if (!actions[key]) return;
    if (!list && key !== "u" && key !== "U") return;
    event.preventDefault();
    actions[key]();
  }

  function setUpPointer() {
    list.addEventListener("click", (event) => {
      const card = event.target.closest(".rank-card");
      if (!card) return;
      if (event.target.closest(".tie-toggle")) toggleTie(card);
      else pick(card);
    });
    list.addEventListener("focusin", (event) => {
      const card = event.target.closest(".rank-card");
      if (card && card !== picked) pick(card, true);
    });
    list.addEventListener("dragstart", (event) => {
      dragging = event.target.closest(".rank-card");
      if (!dragging) return;
      dragging.classList.add("dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", dragging.dataset.responseId);
    });
    list.addEventListener("dragover", (event) => {
      if (!dragging) return;
      event.preventDefault();
      const over = event.target.closest(".rank-card");
      if (!over || over === dragging) return;
      const box = over.getBoundingClientRect();
      // across a row the pointer's x decides, down a single column its y
      const before = columns() > 1 ? event.clientX - box.left < box.width / 2
        : event.clientY - box.top < box.height / 2;
      list.insertBefore(dragging, before ? over : over.nextSibling);
    });
    list.addEventListener("drop", (event) => event.preventDefault());
    list.addEventListener("dragend", () => {
      if (!dragging) return;
      dragging.classList.remove("dragging");
      dragging.dataset.tied = "false";
      changed();
      const card = dragging;
      dragging = null;
      pick(card);
    });
  }

  document.addEventListener("keydown", onKey);
  const buttons = { "submit-ranking": submit, "skip-item": skip, "undo-ranking": undo };
  for (const [id, handler] of Object.entries(buttons)) {
    const button = document.getElementById(id);
    if (button) button.addEventListener("click", handler);
  }
  if (list) {
    setUpPointer();
    render();
  }
  if (page.dataset.waiting === "true") setTimeout(() => window.location.reload(), 3000);
})();
