// Chat bubbles: build them, finish them with the server's stored message, copy buttons, and the
// folding of earlier answers. Pure DOM helpers with no network; chat.js decides when.
//
// Safety: user text and streamed text are only ever set with textContent. The one innerHTML is
// the server's rendered Markdown (markdown-it without raw HTML, then nh3), in finish().

export function userBubble(text) {
  const a = document.createElement("article");
  a.className = "msg msg-user status-complete";
  a.dataset.role = "user";
  const body = document.createElement("div");
  body.className = "msg-body";
  body.textContent = text;
  a.append(body);
  return a;
}

export function assistantBubble() {
  const a = document.createElement("article");
  a.className = "msg msg-assistant streaming";
  a.dataset.role = "assistant";
  const body = document.createElement("div");
  body.className = "msg-body md";
  a.append(body);
  return a;
}

/** A message from the API (``?html=1``) as a bubble. */
export function bubbleFor(m) {
  const b = m.role === "assistant" ? assistantBubble() : userBubble(m.content);
  if (m.role === "assistant") finish(b, m);
  b.dataset.id = m.id;
  return b;
}

export function footer(bubble) {
  let f = bubble.querySelector(":scope > .msg-meta");
  if (!f) {
    f = document.createElement("footer");
    f.className = "msg-meta";
    const info = document.createElement("span");
    info.className = "msg-info";
    f.append(info);
    bubble.append(f);
  }
  return f;
}

function info(bubble) {
  return footer(bubble).querySelector(".msg-info");
}

// A file that went into the turn's instructions, and whether the budget cut it.
function fileLabel(f) {
  if (!f.included) return `${f.name} (left out)`;
  return f.truncated ? `${f.name} (cut)` : f.name;
}

export function metaText(m) {
  const parts = [];
  if (m.provider) parts.push(`${m.model} · ${m.provider}${m.fallback ? " (fallback)" : ""}`);
  if (m.prompt_version) parts.push(`prompt v${m.prompt_version}`);
  if (m.tokens_out != null) parts.push(`${m.tokens_in ?? 0}→${m.tokens_out} tokens`);
  if (m.total_ms != null) parts.push(`${(m.total_ms / 1000).toFixed(1)} s`);
  if (m.context_files && m.context_files.length) {
    parts.push(`files: ${m.context_files.map(fileLabel).join(", ")}`);
  }
  if (m.status === "streaming" || m.status === "stopping") parts.push("replying…");
  else if (m.status !== "complete") parts.push(m.status);
  return parts.join(" · ");
}

function setError(bubble, text) {
  let box = bubble.querySelector(":scope > .msg-error");
  if (!box) {
    box = document.createElement("p");
    box.className = "msg-error";
    bubble.querySelector(".msg-body").after(box);
  }
  box.textContent = text;
}

/** Replace the streamed text with the stored message: sanitised HTML, metadata, status. */
export function finish(bubble, m) {
  bubble.classList.remove(
    "streaming", "status-complete", "status-incomplete", "status-error", "status-streaming",
    "status-stopping", "status-interrupted",
  );
  bubble.classList.add(`status-${m.status}`);
  bubble.dataset.id = m.id;
  bubble.dataset.status = m.status;
  bubble.querySelector(".msg-body").innerHTML = m.html ?? ""; // sanitised by nh3 on the server
  info(bubble).textContent = metaText(m);
  if (m.error) setError(bubble, m.error);
  decorate(bubble);
}

/** The reply reached the browser but not yet the database: the server keeps it and writes it
 * when the database is back. Say so, quietly. */
export function markNotStored(bubble) {
  const note = document.createElement("p");
  note.className = "msg-notice";
  note.setAttribute("role", "status");
  note.textContent = "Not saved yet: the server keeps this reply and saves it when its database is back.";
  bubble.querySelector(".msg-body").after(note);
}

/** The provider failed: say why, in the bubble, as an alert. */
export function showFailure(bubble, text) {
  bubble.classList.remove("streaming");
  bubble.classList.add("status-error");
  setError(bubble, text);
  bubble.querySelector(":scope > .msg-error").setAttribute("role", "alert");
}

export function plainText(bubble) {
  return bubble.querySelector(".msg-body").innerText.trim();
}

function button(className, label, text) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  if (label) b.setAttribute("aria-label", label);
  return b;
}

/** Copy buttons on every code block and on every reply in ``scope``. */
export function decorate(scope) {
  const bubbles = scope.matches?.(".msg-assistant")
    ? [scope]
    : [...scope.querySelectorAll(".msg-assistant")];
  for (const bubble of bubbles) {
    bubble.querySelectorAll(".msg-body pre").forEach((pre) => {
      if (pre.querySelector(".copy-code")) return;
      const b = button("copy-code", "Copy code", "Copy");
      b.addEventListener("click", () => {
        const code = pre.querySelector("code") ?? pre;
        copyText(code.innerText.replace(/\n$/, ""), b, "Copy");
      });
      pre.append(b);
    });
    if (bubble.classList.contains("streaming")) continue;
    let copy = bubble.querySelector(".copy-reply");
    if (!copy) {
      copy = button("link copy-reply", "Copy reply", "Copy");
      footer(bubble).append(copy);
    }
    if (!copy.dataset.bound) {
      copy.dataset.bound = "1";
      copy.addEventListener("click", () => copyText(plainText(bubble), copy, "Copy"));
    }
  }
}

export async function copyText(text, b, label) {
  try {
    await navigator.clipboard.writeText(text);
    b.textContent = "Copied";
  } catch {
    b.textContent = "Copy failed";
  }
  setTimeout(() => { b.textContent = label; }, 1500);
}

/**
 * Fold earlier answers: an assistant reply followed by another one (Regenerate, or Retry after a
 * failure) is kept, collapsed to one line that can be opened again.
 */
export function foldEarlierAnswers(list) {
  const bubbles = [...list.querySelectorAll(":scope > .msg")];
  bubbles.forEach((bubble, i) => {
    const next = bubbles[i + 1];
    const earlier = bubble.dataset.role === "assistant" && next?.dataset.role === "assistant";
    if (!earlier || bubble.classList.contains("superseded")) return;
    bubble.classList.add("superseded");
    bubble.querySelectorAll(".retry, .regenerate").forEach((b) => b.remove());
    const f = footer(bubble);
    const label = document.createElement("span");
    label.className = "superseded-label";
    label.textContent = "Earlier answer";
    const toggle = button("link toggle-earlier", null, "Show");
    toggle.setAttribute("aria-expanded", "false");
    toggle.addEventListener("click", () => {
      const open = bubble.classList.toggle("expanded");
      toggle.textContent = open ? "Hide" : "Show";
      toggle.setAttribute("aria-expanded", String(open));
    });
    f.prepend(label, toggle);
  });
}
