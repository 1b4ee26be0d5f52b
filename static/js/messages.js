// Chat bubbles: build them, finish them with the server's stored message, copy buttons, the
// feedback bar (👍/👎 and a comment; feedback.js sends it), and the ‹ 2/3 › switch of a message
// with other versions.
// Pure DOM helpers with no network; chat.js decides when.
//
// Safety: user text is only ever set with textContent. innerHTML takes only sanitised HTML: the
// server's rendered Markdown (markdown-it without raw HTML, then nh3) in finish(), and, while a
// reply streams, the page's render of it by the same rules (markdown-it, then DOMPurify) in
// showStreamed().
import { renderMarkdown } from "./markdown.js";

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
  info(a).textContent = "replying…"; // the footer's place is kept while it streams
  return a;
}

/** The text so far of a reply being written, as Markdown (as the server will render it) or, if
 * the renderer did not load, as plain text. */
export function showStreamed(bubble, text) {
  const body = bubble.querySelector(".msg-body");
  const html = renderMarkdown(text ?? "");
  if (html === null) {
    body.classList.add("plain");
    body.textContent = text ?? "";
  } else {
    body.innerHTML = html; // sanitised by DOMPurify with the server's rules (markdown.js)
  }
}

/** A message from the API (``?html=1``) as a bubble. */
export function bubbleFor(m) {
  const b = m.role === "assistant" ? assistantBubble() : userBubble(m.content);
  if (m.role === "assistant") finish(b, m);
  b.dataset.id = m.id;
  if (m.siblings) b.dataset.siblings = m.siblings.join(",");
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

/**
 * How a reply ended, under its text (the template's ``ending_note`` macro): "Stopped." as a note,
 * or a failure's reason for the person with the technical detail folded under "Details".
 * ``kind`` is "stopped" or "failed"; null removes it.
 */
export function setEnding(bubble, kind, reason, detail = null) {
  bubble.querySelector(":scope > .msg-ending")?.remove();
  bubble.classList.remove("is-stopped", "is-failed");
  if (!kind) return null;
  bubble.classList.add(`is-${kind}`);
  let box;
  if (kind === "stopped") {
    box = document.createElement("p");
    box.className = "msg-notice msg-ending";
    box.textContent = reason;
  } else {
    box = document.createElement("div");
    box.className = "msg-error msg-ending";
    const p = document.createElement("p");
    p.textContent = reason;
    box.append(p);
    if (detail) {
      const details = document.createElement("details");
      details.className = "msg-details";
      const summary = document.createElement("summary");
      summary.textContent = "Details";
      const text = document.createElement("p");
      text.textContent = detail;
      details.append(summary, text);
      box.append(details);
    }
  }
  bubble.querySelector(".msg-body").after(box);
  return box;
}

/**
 * The template variable values a reply was rendered with, folded under "Variables" above its
 * footer (the template's ``variables_note`` macro); null or {} removes it.
 */
export function setVariables(bubble, values) {
  bubble.querySelector(":scope > .msg-vars")?.remove();
  if (!values || !Object.keys(values).length) return;
  const details = document.createElement("details");
  details.className = "msg-details msg-vars";
  const summary = document.createElement("summary");
  summary.textContent = "Variables";
  const dl = document.createElement("dl");
  for (const name of Object.keys(values).sort()) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = JSON.stringify(values[name]);
    dl.append(dt, dd);
  }
  details.append(summary, dl);
  footer(bubble).before(details);
}

function endingOf(m) {
  if (!m.error_reason) return [null, null, null];
  return [m.error_kind === "stopped" ? "stopped" : "failed", m.error_reason, m.error];
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
  if (m.role === "assistant") bubble.dataset.source = m.content ?? ""; // for Copy (Markdown)
  const body = bubble.querySelector(".msg-body");
  body.classList.remove("plain");
  body.innerHTML = m.html ?? ""; // sanitised by nh3 on the server
  info(bubble).textContent = m.meta ?? ""; // built by the server (render.py meta_line)
  setEnding(bubble, ...endingOf(m));
  setVariables(bubble, m.role === "assistant" ? m.variables : null);
  bubble.querySelector(":scope > .msg-meta > .feedback")?.remove();
  if (m.role === "assistant" && !LIVE.includes(m.status)) {
    info(bubble).after(feedbackBar(m));
  }
  decorate(bubble);
}

const LIVE = ["streaming", "stopping"]; // a reply still being written cannot be rated yet

const SVG = "http://www.w3.org/2000/svg";

// The template's ``thumb`` macro: 👍 drawn as an icon (no emoji font needed); 👎 is it turned.
function thumb() {
  const svg = document.createElementNS(SVG, "svg");
  const attrs = {
    class: "thumb", viewBox: "0 0 24 24", width: "16", height: "16", "aria-hidden": "true",
    focusable: "false", fill: "none", stroke: "currentColor", "stroke-width": "1.8",
    "stroke-linejoin": "round",
  };
  Object.entries(attrs).forEach(([k, v]) => svg.setAttribute(k, v));
  for (const d of ["M2 10h4v11H2z", "M6 10l4.5-8A2.5 2.5 0 0 1 13 4.5V9h5.6a2 2 0 0 1 2 2.3l-1.3 8A2 2 0 0 1 17.3 21H6z"]) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

function voteButton(vote, label) {
  const b = button("feedback-vote", label, "");
  b.append(thumb());
  b.dataset.vote = vote;
  b.setAttribute("aria-pressed", "false");
  b.title = label;
  return b;
}

/** The footer's feedback bar for a finished reply: the same markup as the template's
 * ``feedback_bar`` macro (templates/chat/_message.html). */
export function feedbackBar(m) {
  const bar = document.createElement("div");
  bar.className = "feedback";
  const quote = document.createElement("q");
  quote.className = "feedback-comment";
  const note = document.createElement("details");
  note.className = "feedback-note";
  const summary = document.createElement("summary");
  const form = document.createElement("form");
  form.className = "feedback-form";
  form.noValidate = true;
  const label = document.createElement("label");
  label.className = "visually-hidden";
  label.htmlFor = `feedback-${m.id}`;
  label.textContent = "Comment on this reply";
  const text = document.createElement("textarea");
  text.id = `feedback-${m.id}`;
  text.name = "comment";
  text.rows = 2;
  text.maxLength = 2000;
  text.placeholder = "What was good or bad? (optional)";
  const save = button("button small", null, "Save");
  save.type = "submit";
  form.append(label, text, save);
  note.append(summary, form);
  const error = document.createElement("p");
  error.className = "error feedback-error";
  error.setAttribute("role", "alert");
  error.hidden = true;
  bar.append(
    voteButton("up", "Good reply"), voteButton("down", "Bad reply"), quote, note, error,
  );
  showFeedback(bar, m.feedback);
  return bar;
}

/** Show a reply's feedback (``{rating, comment}`` or null) in its bar. */
export function showFeedback(bar, feedback) {
  const rating = feedback?.rating ?? "";
  const comment = feedback?.comment ?? "";
  bar.dataset.rating = rating;
  bar.querySelectorAll(".feedback-vote").forEach((b) => {
    b.setAttribute("aria-pressed", String(b.dataset.vote === rating));
  });
  const quote = bar.querySelector(".feedback-comment");
  quote.textContent = comment;
  quote.hidden = !comment;
  const note = bar.querySelector(".feedback-note");
  note.hidden = !rating; // a comment goes with a rating
  if (!rating) note.open = false;
  note.querySelector("summary").textContent = comment ? "Edit comment" : "Add a comment";
  note.querySelector("textarea").value = comment;
}

/** The reply reached the browser but not yet the database: the server keeps it and writes it
 * when the database is back. Say so, quietly. */
export function markNotStored(bubble) {
  bubble.querySelector(".feedback")?.remove(); // not rateable until it is stored
  const note = document.createElement("p");
  note.className = "msg-notice";
  note.setAttribute("role", "status");
  note.textContent = "Not saved yet: the server keeps this reply and saves it when its database is back.";
  bubble.querySelector(".msg-body").after(note);
}

/** The provider failed: say why, in the bubble, as an alert. */
/** A reply that failed on this side (the connection lost), or whose failure is announced now. */
export function showFailure(bubble, reason, detail = null) {
  bubble.classList.remove("streaming");
  setEnding(bubble, "failed", reason, detail).setAttribute("role", "alert");
}

/** The reply as shown, as plain text: without the code blocks' Copy buttons. (innerText needs a
 * rendered element, so the copy is measured off screen inside the bubble, then removed.) */
export function plainText(bubble) {
  const body = bubble.querySelector(".msg-body");
  if (!body.querySelector(".copy-code")) return body.innerText.trim();
  const clone = body.cloneNode(true);
  clone.querySelectorAll(".copy-code").forEach((b) => b.remove());
  clone.style.cssText = "position: fixed; left: -10000px; top: 0;";
  clone.setAttribute("aria-hidden", "true");
  bubble.append(clone);
  const text = clone.innerText.trim();
  clone.remove();
  return text;
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
    if (!bubble.dataset.source && !plainText(bubble)) continue; // nothing to copy (a failure)
    // Copy: the reply's Markdown as the model wrote it (fences, tables and links intact);
    // Copy text: what the page shows, as plain text.
    let copy = bubble.querySelector(".copy-reply");
    if (!copy) {
      copy = button("link copy-reply", "Copy reply as Markdown", "Copy");
      const plain = button("link copy-text", "Copy text of the reply", "Copy text");
      footer(bubble).append(copy, plain);
    }
    if (!copy.dataset.bound) {
      copy.dataset.bound = "1";
      copy.addEventListener("click", () => copyText(bubble.dataset.source ?? plainText(bubble), copy, "Copy"));
      const plain = bubble.querySelector(".copy-text");
      plain?.addEventListener("click", () => copyText(plainText(bubble), plain, "Copy text"));
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
 * The ‹ 2/3 › switch of a message with other versions (``data-siblings``: their ids, oldest
 * first): ‹ and › show the branch through the previous or next version (``onSelect(id)``).
 */
export function branchSwitch(bubble, onSelect) {
  footer(bubble).querySelector(".branch-switch")?.remove();
  const ids = (bubble.dataset.siblings || "").split(",").filter(Boolean).map(Number);
  const at = ids.indexOf(Number(bubble.dataset.id));
  if (ids.length < 2 || at < 0) return;
  const box = document.createElement("span");
  box.className = "branch-switch";
  const prev = button("branch-prev", `Previous version (${at} of ${ids.length})`, "‹");
  const next = button("branch-next", `Next version (${at + 2} of ${ids.length})`, "›");
  const count = document.createElement("span");
  count.className = "branch-count";
  count.textContent = `${at + 1}/${ids.length}`;
  prev.disabled = at === 0;
  next.disabled = at === ids.length - 1;
  prev.addEventListener("click", () => onSelect(ids[at - 1]));
  next.addEventListener("click", () => onSelect(ids[at + 1]));
  box.append(prev, count, next);
  footer(bubble).prepend(box);
}
