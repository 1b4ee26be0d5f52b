// The prompt editor's variables (templates/prompts/_variables.html, docs/templates.md): names
// used in the text as {{ name }}, {% if name %} or {% for x in name %} get a row of their own
// as they are typed. The server does the same when saving (as required strings), and parses
// the text for real; this only saves typing.
const text = document.getElementById("content");
const rows = document.getElementById("vars-rows");
const status = document.getElementById("vars-detected");

const USES = [
  /{{-?\s*([A-Za-z][A-Za-z0-9_]*)/g, // {{ name ... }}
  /{%-?\s*(?:if|elif)\s+(?:not\s+)?([A-Za-z][A-Za-z0-9_]*)/g, // {% if name %}
  /{%-?\s*for\s+[A-Za-z_][A-Za-z0-9_]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)?\s+in\s+([A-Za-z][A-Za-z0-9_]*)/g,
];
const NOT_VARIABLES = new Set(["loop", "range", "namespace", "true", "false", "none", "True", "False", "None"]);

function used(source) {
  // Text inside {% raw %}…{% endraw %} is not template syntax.
  const plain = source.replace(/{%-?\s*raw\s*-?%}[\s\S]*?{%-?\s*endraw\s*-?%}/g, "");
  const names = new Set();
  for (const pattern of USES) {
    for (const m of plain.matchAll(pattern)) if (!NOT_VARIABLES.has(m[1])) names.add(m[1]);
  }
  // Names a loop or {% set %} binds are the template's own.
  for (const m of plain.matchAll(/{%-?\s*(?:for|set)\s+([A-Za-z_][A-Za-z0-9_]*)(?:\s*,\s*([A-Za-z_][A-Za-z0-9_]*))?/g)) {
    names.delete(m[1]);
    if (m[2]) names.delete(m[2]);
  }
  return names;
}

function nameInputs() {
  return [...rows.querySelectorAll("input[name$='-name']")];
}

function addRow() {
  const last = rows.querySelector(".vars-row:last-child");
  if (!last) return null; // the page always renders one row; nothing to copy without it
  const index = Number(rows.dataset.next);
  rows.dataset.next = String(index + 1);
  const row = last.cloneNode(true);
  for (const el of row.querySelectorAll("input, select")) {
    el.name = el.name.replace(/^variables-\d+-/, `variables-${index}-`);
    el.id = el.name;
    el.removeAttribute("aria-invalid");
    el.setAttribute("aria-label", el.getAttribute("aria-label").replace(/\d+\)?$/, (d) => d.replace(/\d+/, index + 1)));
    if (el.type === "checkbox") el.checked = true;
    else if (el.tagName === "SELECT") el.value = "string";
    else el.value = "";
  }
  row.querySelectorAll(".error").forEach((p) => p.remove());
  rows.append(row);
  return row;
}

function detect() {
  const declared = new Set(nameInputs().map((i) => i.value.trim()).filter(Boolean));
  const added = [];
  for (const name of used(text.value)) {
    if (declared.has(name)) continue;
    let blank = nameInputs().find((i) => !i.value.trim());
    if (!blank) blank = addRow()?.querySelector("input[name$='-name']");
    if (!blank) return;
    blank.value = name;
    declared.add(name);
    added.push(name);
  }
  if (!nameInputs().some((i) => !i.value.trim())) addRow(); // always one blank row
  if (added.length) status.textContent = `Found in the text: ${added.join(", ")}.`;
}

if (text && rows) {
  let timer = null;
  text.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(detect, 250);
  });
  detect();
}
