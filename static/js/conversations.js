// The conversation list beside the chat: rename and delete in place (PATCH / DELETE
// /api/conversations/<id>), and live updates when a message creates or moves a conversation.
// Confirmation is inline (no window.confirm), so it is keyboard-friendly and testable.
import { jsonHeaders } from "./csrf.js";

export function initConversations({ onRenamed, onDeleted, announce }) {
  const aside = document.getElementById("conversations");
  const list = document.getElementById("conv-list");
  const empty = document.getElementById("conv-empty");
  if (!aside || !list) return { upsert() {} };
  const pageUrl = aside.dataset.projectUrl;
  const drawer = initDrawer(aside);
  initSearch(list, drawer);

  list.querySelectorAll(":scope > li").forEach(addTools);

  function link(li) {
    return li.querySelector(":scope > a");
  }

  function title(li) {
    return link(li).textContent;
  }

  function addTools(li) {
    if (li.querySelector(".conv-tools")) return;
    const tools = document.createElement("span");
    tools.className = "conv-tools";
    const rename = tool("✎", `Rename “${title(li)}”`, "rename");
    const remove = tool("×", `Delete “${title(li)}”`, "delete");
    rename.addEventListener("click", () => startRename(li));
    remove.addEventListener("click", () => confirmDelete(li));
    tools.append(rename, remove);
    li.append(tools);
  }

  function tool(symbol, label, name) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = `conv-${name}`;
    b.setAttribute("aria-label", label);
    b.title = label;
    const icon = document.createElement("span");
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = symbol;
    b.append(icon);
    return b;
  }

  function relabel(li) {
    const t = title(li);
    li.querySelector(".conv-rename")?.setAttribute("aria-label", `Rename “${t}”`);
    li.querySelector(".conv-delete")?.setAttribute("aria-label", `Delete “${t}”`);
  }

  // Swap the row for a small form; Escape or Cancel puts the row back.
  function inlineForm(li, build) {
    const form = document.createElement("form");
    form.className = "conv-form";
    const restore = () => {
      form.remove();
      li.querySelectorAll(":scope > a, :scope > .conv-tools").forEach((el) => { el.hidden = false; });
    };
    li.querySelectorAll(":scope > a, :scope > .conv-tools").forEach((el) => { el.hidden = true; });
    li.append(form);
    form.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        restore();
        li.querySelector(".conv-rename")?.focus();
      }
    });
    build(form, restore);
  }

  function buttons(form, primary, restore) {
    const row = document.createElement("div");
    row.className = "row";
    const ok = document.createElement("button");
    ok.type = "submit";
    ok.className = primary.className;
    ok.textContent = primary.text;
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "button small secondary";
    cancel.textContent = "Cancel";
    cancel.addEventListener("click", () => { restore(); });
    row.append(ok, cancel);
    form.append(row);
    return ok;
  }

  function errorLine(form) {
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.hidden = true;
    form.append(p);
    return (text) => { p.textContent = text; p.hidden = !text; };
  }

  function startRename(li) {
    inlineForm(li, (form, restore) => {
      const id = `rename-${li.dataset.id}`;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.className = "visually-hidden";
      label.textContent = "Conversation title";
      const input = document.createElement("input");
      input.type = "text";
      input.id = id;
      input.maxLength = 200;
      input.value = title(li);
      form.append(label, input);
      buttons(form, { className: "button small", text: "Save" }, restore);
      const fail = errorLine(form);
      input.focus();
      input.select();
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const r = await fetch(`/api/conversations/${li.dataset.id}`, {
          method: "PATCH",
          headers: jsonHeaders(),
          body: JSON.stringify({ title: input.value }),
        });
        const body = await r.json().catch(() => null);
        if (!r.ok) {
          fail(body?.error?.fields?.title || body?.error?.message || `Error ${r.status}`);
          return;
        }
        link(li).textContent = body.title;
        relabel(li);
        restore();
        li.querySelector(".conv-rename").focus();
        onRenamed?.(body);
        announce?.(`Renamed to ${body.title}`);
      });
    });
  }

  function confirmDelete(li) {
    inlineForm(li, (form, restore) => {
      const q = document.createElement("p");
      q.textContent = `Delete “${title(li)}” and its messages?`;
      form.append(q);
      const ok = buttons(form, { className: "button small danger", text: "Delete" }, restore);
      const fail = errorLine(form);
      ok.focus();
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const r = await fetch(`/api/conversations/${li.dataset.id}`, {
          method: "DELETE",
          headers: jsonHeaders(),
        });
        if (!r.ok && r.status !== 404) {
          fail(`Could not delete (error ${r.status}).`);
          return;
        }
        const wasCurrent = li.classList.contains("is-current");
        const next = li.nextElementSibling || li.previousElementSibling;
        const name = title(li);
        li.remove();
        empty.hidden = list.children.length > 0;
        announce?.(`Deleted ${name}`);
        if (wasCurrent) {
          onDeleted?.();
          window.location.assign(pageUrl);
        } else {
          (next?.querySelector("a") || document.getElementById("new-chat"))?.focus();
        }
      });
    });
  }

  /** A conversation was created or answered: put it first, marked current. */
  function upsert(conversation) {
    let li = list.querySelector(`:scope > li[data-id="${conversation.id}"]`);
    if (!li) {
      li = document.createElement("li");
      li.className = "conv-item";
      li.dataset.id = conversation.id;
      const a = document.createElement("a");
      a.href = `${pageUrl}?c=${conversation.id}`;
      a.textContent = conversation.title;
      li.append(a);
      if (conversation.pinned_version && ["pinned", "candidate"].includes(conversation.arm)) {
        const badge = document.createElement("span");
        badge.className = `badge pin pin-${conversation.arm === "candidate" ? "canary" : "pinned"}`;
        badge.textContent = `v${conversation.pinned_version}`;
        li.append(badge);
      }
      addTools(li);
    } else if (link(li).textContent !== conversation.title) {
      link(li).textContent = conversation.title; // e.g. the title the model wrote
      relabel(li);
    }
    list.querySelectorAll(":scope > li").forEach((other) => {
      other.classList.remove("is-current");
      link(other).removeAttribute("aria-current");
    });
    li.classList.add("is-current");
    link(li).setAttribute("aria-current", "page");
    list.prepend(li);
    empty.hidden = true;
  }

  return { upsert };
}

// On narrow screens the list is a drawer over the chat, opened by the ☰ button in the chat head;
// Escape, a click outside or leaving the narrow layout closes it, and focus comes back to the
// button. Wide screens never see the button, and the list stays beside the chat.
function initDrawer(aside) {
  const toggle = document.getElementById("conv-toggle");
  if (!toggle) return { open() {} };
  aside.classList.add("drawer");
  requestAnimationFrame(() => requestAnimationFrame(() => aside.classList.add("ready")));
  toggle.hidden = false;
  const isOpen = () => aside.classList.contains("open");
  const setOpen = (open, { focus = true } = {}) => {
    const hadFocus = aside.contains(document.activeElement);
    aside.classList.toggle("open", open);
    toggle.setAttribute("aria-expanded", String(open));
    if (open && focus) {
      (aside.querySelector("[aria-current=page]") || aside.querySelector("a, button"))?.focus();
    } else if (!open && (focus || hadFocus)) {
      toggle.focus();
    }
  };
  toggle.addEventListener("click", () => setOpen(!isOpen()));
  aside.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && isOpen()) {
      e.preventDefault();
      setOpen(false);
    }
  });
  document.addEventListener("click", (e) => {
    if (isOpen() && !aside.contains(e.target) && !toggle.contains(e.target)) {
      setOpen(false, { focus: false });
    }
  });
  window.matchMedia("(max-width: 760px)").addEventListener("change", () => {
    if (isOpen()) setOpen(false, { focus: false });
  });
  return { open: () => setOpen(true, { focus: false }) };
}

// The search box over the list (shown when there is more than one conversation) filters the
// titles on the page as you type, all words in any order; Escape clears it. Keyboard:
// Ctrl/⌘+K focuses it (opening the drawer on a phone), Ctrl/⌘+Shift+O starts a new chat.
function initSearch(list, drawer) {
  const search = document.getElementById("conv-search");
  const noMatch = document.getElementById("conv-no-match");
  if (search) {
    search.hidden = false;
    search.addEventListener("input", () => {
      const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      let shown = 0;
      list.querySelectorAll(":scope > li").forEach((li) => {
        const title = li.querySelector(":scope > a")?.textContent.toLowerCase() ?? "";
        li.hidden = !words.every((w) => title.includes(w));
        if (!li.hidden) shown += 1;
      });
      noMatch.hidden = shown > 0 || !words.length;
      noMatch.textContent = noMatch.hidden ? "" : `No conversation matches “${search.value.trim()}”.`;
    });
    search.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && search.value) {
        e.preventDefault();
        e.stopPropagation();
        search.value = "";
        search.dispatchEvent(new Event("input"));
      }
    });
  }
  document.addEventListener("keydown", (e) => {
    if (!(e.ctrlKey || e.metaKey) || e.altKey) return;
    const key = e.key.toLowerCase();
    if (key === "k" && !e.shiftKey && search) {
      e.preventDefault();
      drawer.open();
      search.focus();
      search.select();
    } else if (key === "o" && e.shiftKey) {
      e.preventDefault();
      window.location.assign(document.getElementById("new-chat").href);
    }
  });
}
