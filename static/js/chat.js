// Chat bubbles: send with fetch, stream the reply over SSE, Stop / Retry / Regenerate,
// auto-scroll (paused when the reader scrolls up), load earlier messages, copy buttons.
import { jsonHeaders } from "./csrf.js";
import { readEvents } from "./sse.js";

const root = document.getElementById("chat");
if (root) init(root);

function init(root) {
  const projectId = root.dataset.projectId;
  let conversationId = root.dataset.conversationId || null;
  const list = document.getElementById("messages");
  const form = document.getElementById("composer");
  const input = document.getElementById("message");
  const send = document.getElementById("send");
  const stop = document.getElementById("stop");
  const errorBox = document.getElementById("composer-error");
  let controller = null;
  let follow = true;

  list.addEventListener("scroll", () => {
    follow = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  });
  const scroll = () => { if (follow) list.scrollTop = list.scrollHeight; };
  scroll();
  decorate(list);
  addRegenerate();
  input.focus();

  form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && controller) { e.preventDefault(); controller.abort(); }
  });
  stop.addEventListener("click", () => controller && controller.abort());
  const earlier = document.getElementById("load-earlier");
  if (earlier) earlier.addEventListener("click", loadEarlier);

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function busy(on) {
    input.disabled = on;
    send.disabled = on;
    stop.hidden = !on;
    list.setAttribute("aria-busy", on ? "true" : "false");
    if (!on) input.focus();
  }

  function submit() {
    const text = input.value.trim();
    if (!text || controller) return;
    showError("");
    const pending = userBubble(text);
    list.append(pending);
    document.getElementById("empty-chat")?.remove();
    follow = true;
    scroll();
    input.value = "";
    run({ message: text, conversation_id: conversationId ? Number(conversationId) : null }, pending, text);
  }

  function regenerate() {
    if (controller || !conversationId) return;
    showError("");
    run({ regenerate: true, conversation_id: Number(conversationId) }, null, null);
  }

  async function run(body, pendingBubble, typed) {
    controller = new AbortController();
    busy(true);
    let reply = null;
    let text = "";
    try {
      const response = await fetch(`/api/projects/${projectId}/chat`, {
        method: "POST",
        headers: jsonHeaders({ Accept: "text/event-stream" }),
        body: JSON.stringify({ ...body, stream: true }),
        signal: controller.signal,
      });
      if (!response.ok) {
        const problem = await response.json().catch(() => null);
        const msg = problem?.error?.fields?.message || problem?.error?.message || `Error ${response.status}`;
        pendingBubble?.remove();
        if (typed !== null) input.value = typed;  // nothing was stored: give the text back
        showError(msg);
        return;
      }
      for await (const { event, data } of readEvents(response, controller.signal)) {
        if (event === "start") {
          conversationId = String(data.conversation.id);
          root.dataset.conversationId = conversationId;
          const url = new URL(window.location.href);
          url.searchParams.set("c", conversationId);
          history.replaceState(null, "", url);
          if (pendingBubble) pendingBubble.dataset.id = data.user_message.id;
          reply = assistantBubble();
          list.append(reply);
          scroll();
        } else if (event === "delta") {
          text += data.text;
          reply.querySelector(".msg-body").textContent = text;
          scroll();
        } else if (event === "done") {
          finish(reply, data.message);
        } else if (event === "error") {
          finish(reply, data.message);
          failed(reply, data.error.message);
        }
      }
    } catch (err) {
      if (err.name === "AbortError") {
        if (reply) {
          reply.classList.add("status-incomplete");
          meta(reply).prepend(textSpan("stopped · "));
          retryButton(reply);
        }
      } else {
        if (reply) failed(reply, "The connection was lost. Your message is saved.");
        else showError("The connection was lost before the reply started. Try again.");
      }
    } finally {
      controller = null;
      busy(false);
      addRegenerate();
      scroll();
    }
  }

  function failed(bubble, message) {
    bubble.classList.add("status-error");
    let box = bubble.querySelector(".msg-error");
    if (!box) {
      box = document.createElement("p");
      box.className = "msg-error";
      box.setAttribute("role", "alert");
      bubble.querySelector(".msg-body").after(box);
    }
    box.textContent = message;
    retryButton(bubble);
  }

  function retryButton(bubble) {
    if (bubble.querySelector(".retry")) return;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "button small secondary retry";
    b.textContent = "Retry";
    b.addEventListener("click", () => { b.remove(); regenerate(); });
    meta(bubble).append(b);
  }

  function addRegenerate() {
    list.querySelectorAll(".regenerate").forEach((b) => b.remove());
    const last = list.querySelector(".msg:last-of-type");
    if (!last || last.dataset.role !== "assistant" || last.querySelector(".retry")) return;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "link regenerate";
    b.textContent = "Regenerate";
    b.addEventListener("click", regenerate);
    meta(last).append(b);
  }

  async function loadEarlier(e) {
    const button = e.currentTarget;
    const first = list.querySelector(".msg[data-id]");
    if (!first || !conversationId) return;
    button.disabled = true;
    const r = await fetch(`/api/conversations/${conversationId}/messages?before=${first.dataset.id}&limit=30&html=1`);
    if (!r.ok) { button.disabled = false; return; }
    const page = await r.json();
    const height = list.scrollHeight;
    const frag = document.createDocumentFragment();
    for (const m of page.data) {
      const b = m.role === "assistant" ? assistantBubble() : userBubble(m.content);
      if (m.role === "assistant") finish(b, m);
      b.dataset.id = m.id;
      frag.append(b);
    }
    button.after(frag);
    list.scrollTop += list.scrollHeight - height;  // keep the reader's place
    if (page.has_more) button.disabled = false; else button.remove();
  }
}

function textSpan(text) {
  const s = document.createElement("span");
  s.textContent = text;
  return s;
}

function meta(bubble) {
  let footer = bubble.querySelector(".msg-meta");
  if (!footer) {
    footer = document.createElement("footer");
    footer.className = "msg-meta";
    bubble.append(footer);
  }
  return footer;
}

function userBubble(text) {
  const a = document.createElement("article");
  a.className = "msg msg-user status-complete";
  a.dataset.role = "user";
  const body = document.createElement("div");
  body.className = "msg-body";
  body.textContent = text;  // user text is never parsed as HTML
  a.append(body);
  return a;
}

function assistantBubble() {
  const a = document.createElement("article");
  a.className = "msg msg-assistant streaming";
  a.dataset.role = "assistant";
  const body = document.createElement("div");
  body.className = "msg-body md";
  a.append(body);
  return a;
}

// A file that went into the turn's instructions, and whether the budget cut it.
function fileLabel(f) {
  if (!f.included) return `${f.name} (left out)`;
  return f.truncated ? `${f.name} (cut)` : f.name;
}

// Replace the streamed text with the server's sanitised Markdown and add the metadata footer.
function finish(bubble, m) {
  if (!bubble) return;
  bubble.classList.remove("streaming");
  bubble.classList.add(`status-${m.status}`);
  bubble.dataset.id = m.id;
  bubble.querySelector(".msg-body").innerHTML = m.html ?? "";  // sanitised by nh3 on the server
  const footer = meta(bubble);
  footer.textContent = "";
  const parts = [];
  if (m.provider) parts.push(`${m.model} · ${m.provider}${m.fallback ? " (fallback)" : ""}`);
  if (m.prompt_version) parts.push(`prompt v${m.prompt_version}`);
  if (m.tokens_out !== null && m.tokens_out !== undefined) parts.push(`${m.tokens_in ?? 0}→${m.tokens_out} tokens`);
  if (m.total_ms !== null && m.total_ms !== undefined) parts.push(`${(m.total_ms / 1000).toFixed(1)} s`);
  if (m.context_files && m.context_files.length) parts.push(`files: ${m.context_files.map(fileLabel).join(", ")}`);
  if (m.status !== "complete") parts.push(m.status);
  footer.append(textSpan(parts.join(" · ") + " "));
  if (m.error && !bubble.querySelector(".msg-error")) {
    const box = document.createElement("p");
    box.className = "msg-error";
    box.setAttribute("role", "alert");
    box.textContent = m.error;
    bubble.querySelector(".msg-body").after(box);
  }
  decorate(bubble);
}

// Copy buttons on every code block and on every reply.
function decorate(scope) {
  scope.querySelectorAll(".msg-assistant pre").forEach((pre) => {
    if (pre.querySelector(".copy-code")) return;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "copy-code";
    b.textContent = "Copy";
    b.setAttribute("aria-label", "Copy code");
    b.addEventListener("click", () => copy(pre.querySelector("code")?.innerText ?? pre.innerText, b));
    pre.append(b);
  });
  const bubbles = scope.classList?.contains("msg") ? [scope] : scope.querySelectorAll(".msg-assistant");
  bubbles.forEach((bubble) => {
    if (bubble.dataset.role !== "assistant") return;
    let b = bubble.querySelector(".copy-reply");
    if (!b) {
      b = document.createElement("button");
      b.type = "button";
      b.className = "link copy-reply";
      b.textContent = "Copy";
      meta(bubble).append(b);
    }
    if (b.dataset.bound) return;
    b.dataset.bound = "1";
    b.addEventListener("click", () => copy(bubble.querySelector(".msg-body").innerText, b));
  });
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}
