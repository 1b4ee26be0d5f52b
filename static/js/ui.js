// Small page-wide behaviours, on every page: the account menu (a <details>, so it works without
// JavaScript) closes on Escape, on a click outside and when the focus leaves it; a refused form
// focuses the field to fix; <time data-relative> shows "5 min ago" with the exact time kept as
// its title.
const menu = document.getElementById("user-menu");
if (menu) {
  const close = ({ focus }) => {
    menu.open = false;
    if (focus) menu.querySelector("summary").focus();
  };
  document.addEventListener("click", (e) => {
    if (menu.open && !menu.contains(e.target)) close({ focus: false });
  });
  // Escape closes it wherever the focus is (the summary, an item, or nowhere after a click).
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && menu.open) {
      e.preventDefault();
      close({ focus: menu.contains(document.activeElement) || document.activeElement === document.body });
    }
  });
  // Tabbing out of it closes it too.
  menu.addEventListener("focusout", (e) => {
    if (menu.open && e.relatedTarget && !menu.contains(e.relatedTarget)) close({ focus: false });
  });
}

// A refused form puts the focus where the person has to act: the first invalid field (its error
// is read with it, through aria-describedby); after a form-level error (wrong password) the first
// empty field, so the email that was kept is not typed again. Without JavaScript, autofocus holds.
function focusRefusedForm() {
  const invalid = document.querySelector("main form [aria-invalid=true]");
  if (invalid) {
    invalid.focus();
    return;
  }
  const refused = document.querySelector("main .alert-error[role=alert] ~ form");
  const empty = refused && [...refused.querySelectorAll("input:not([type=hidden]):not([type=checkbox])")]
    .find((el) => !el.value);
  empty?.focus();
}

focusRefusedForm();

const UNITS = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
];

export function relativeTime(date, now = Date.now()) {
  const seconds = Math.round((date.getTime() - now) / 1000);
  if (Math.abs(seconds) < 45) return "just now";
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
  }
  return format.format(Math.round(seconds / 60), "minute");
}

export function showRelativeTimes(scope = document) {
  scope.querySelectorAll("time[data-relative]").forEach((el) => {
    const date = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) return;
    if (!el.title) el.title = el.textContent.trim();
    el.textContent = relativeTime(date);
  });
}

showRelativeTimes();
