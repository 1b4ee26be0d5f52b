// The chat page's template variables panel (templates/chat/_variables.html, docs/templates.md):
// the values a new conversation's first message carries (`variables` on POST
// /api/projects/<id>/chat), and Save for a conversation that exists (PATCH
// /api/conversations/<id> {variables}). A 422 `variables_invalid` puts each message by its field.
import { jsonHeaders } from "./csrf.js";

/** Wire the panel; returns {values(), showErrors(error), setConversation(id)} (no-ops without one). */
export function initVariables(getConversationId) {
  const panel = document.getElementById("vars-panel");
  if (!panel) return { values: () => null, showErrors: () => false, setConversation() {} };
  const form = document.getElementById("vars-form");
  const save = document.getElementById("vars-save");
  const status = document.getElementById("vars-status");
  const errorBox = document.getElementById("vars-error");
  const when = document.getElementById("vars-when");

  // Empty fields are left out, so the conversation's value or the version's default applies.
  function values() {
    const found = {};
    for (const box of form.querySelectorAll("[data-variable]")) {
      const name = box.dataset.variable;
      const input = box.querySelector("input, textarea");
      const type = box.dataset.type;
      if (type === "boolean") {
        found[name] = input.checked;
      } else if (type === "list") {
        const items = input.value.split("\n").map((s) => s.trim()).filter(Boolean);
        if (items.length) found[name] = items;
      } else if (input.value.trim() !== "") {
        found[name] = type === "number" ? Number(input.value) : input.value;
      }
    }
    return found;
  }

  function clearErrors() {
    errorBox.hidden = true;
    for (const p of form.querySelectorAll(".field .error")) { p.hidden = true; p.textContent = ""; }
    for (const i of form.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
  }

  // Put a `variables_invalid` error by the fields it names; true when it was one.
  function showErrors(error) {
    clearErrors();
    if (!error || error.code !== "variables_invalid") return false;
    let placed = false;
    for (const [key, message] of Object.entries(error.fields || {})) {
      const name = key.replace(/^variables\./, "");
      const box = form.querySelector(`[data-variable="${CSS.escape(name)}"]`);
      if (!box) continue;
      const p = box.querySelector(".error");
      p.textContent = message;
      p.hidden = false;
      box.querySelector("input, textarea")?.setAttribute("aria-invalid", "true");
      placed = true;
    }
    if (!placed) {
      errorBox.textContent = error.message;
      errorBox.hidden = false;
    }
    return true;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = getConversationId();
    if (!id) return;
    clearErrors();
    status.textContent = "Saving…";
    const r = await fetch(`/api/conversations/${id}`, {
      method: "PATCH",
      headers: jsonHeaders(),
      body: JSON.stringify({ variables: values() }),
    }).catch(() => null);
    if (r?.ok) {
      status.textContent = "Saved. The next reply uses these values.";
      return;
    }
    status.textContent = "";
    const problem = await r?.json().catch(() => null);
    if (!showErrors(problem?.error)) {
      errorBox.textContent = problem?.error?.message || "Could not save the values. Try again.";
      errorBox.hidden = false;
    }
  });

  return {
    values,
    showErrors,
    setConversation() {
      save.hidden = false;
      when.textContent = "Saved with this conversation.";
    },
  };
}
