// Dashboard: filter the project cards as the user types (name and description, any order of
// words). Everything is already on the page; no request is made.
const bar = document.getElementById("project-filter");
const input = document.getElementById("project-search");
const cards = [...document.querySelectorAll("#project-cards > li")];
const count = document.getElementById("project-count");
const none = document.getElementById("no-match");
const noneQuery = document.getElementById("no-match-query");

function plural(n) {
  return `${n} project${n === 1 ? "" : "s"}`;
}

function filter() {
  const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const card of cards) {
    const hay = card.dataset.search || "";
    const match = words.every((w) => hay.includes(w));
    card.hidden = !match;
    if (match) shown += 1;
  }
  count.textContent = words.length ? `${shown} of ${plural(cards.length)}` : plural(cards.length);
  none.hidden = shown > 0;
  noneQuery.textContent = input.value.trim();  // text, never HTML
}

if (bar && input) {
  bar.hidden = false;
  input.addEventListener("input", filter);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && input.value) { input.value = ""; filter(); }
  });
}
