// The chat tab: send with fetch, stream the reply over SSE, Stop (button or Esc), Retry and
// Regenerate, auto-scroll that pauses while the reader is scrolled up, "load earlier messages",
// a live region announcing replies, and the conversation list kept in step.
//
// Endpoints: POST /api/projects/<id>/chat (a message), POST /api/conversations/<id>/regenerate
// (answer the last message again), GET /api/conversations/<id>/messages?before=&html=1.
import { jsonHeaders } from "./csrf.js";
import { readEvents } from "./sse.js";
import { initConversations } from "./conversations.js";
import {
  assistantBubble, bubbleFor, decorate, finish, foldEarlierAnswers, footer, markNotStored, markStopped,
  plainText, showFailure, userBubble,
} from "./messages.js";

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
  const live = document.getElementById("chat-live");
  const title = document.getElementById("chat-title");
  const jump = document.getElementById("jump-latest");
  let controller = null;
  let follow = true; // keep the newest text in view; off while the reader is scrolled up

  const conversations = initConversations({
    announce,
    onRenamed(c) { if (String(c.id) === conversationId) title.textContent = c.title; },
  });

  // --- scrolling ------------------------------------------------------------------------------
  const atBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < 48;
  list.addEventListener("scroll", () => {
    follow = atBottom();
    jump.hidden = follow;
  }, { passive: true });
  function scroll() {
    if (follow) list.scrollTop = list.scrollHeight;
    else jump.hidden = false;
  }
  jump.addEventListener("click", () => {
    follow = true;
    list.scrollTop = list.scrollHeight;
    jump.hidden = true;
    input.focus();
  });

  decorate(list);
  foldEarlierAnswers(list);
  addRegenerate();
  scroll();
  input.focus();

  // --- keyboard -------------------------------------------------------------------------------
  form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && controller) { e.preventDefault(); controller.abort(); }
  });
  stop.addEventListener("click", () => controller?.abort());
  document.getElementById("load-earlier")?.addEventListener("click", loadEarlier);
  root.dataset.ready = "true"; // handlers are bound (the browser tests wait for this)

  function announce(text) {
    live.textContent = "";
    // A fresh node each time, so the same words are announced twice if they repeat.
    requestAnimationFrame(() => { live.textContent = text; });
  }

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function busy(on) {
    input.disabled = on;
    send.disabled = on;
    stop.hidden = !on;
    list.setAttribute("aria-busy", on ? "true" : "false");
    // Give focus back to the message box, unless the reader has moved on to something else.
    const away = document.activeElement && document.activeElement !== document.body
      && !form.contains(document.activeElement) && !list.contains(document.activeElement);
    if (!on && !away) input.focus();
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
    const body = { message: text, conversation_id: conversationId ? Number(conversationId) : null };
    run(`/api/projects/${projectId}/chat`, body, { pending, typed: text });
  }

  function regenerate() {
    if (controller || !conversationId) return;
    showError("");
    follow = true;
    run(`/api/conversations/${conversationId}/regenerate`, {}, {});
  }

  async function run(url, body, { pending = null, typed = null }) {
    controller = new AbortController();
    busy(true);
    let reply = null;
    let text = "";
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: jsonHeaders({ Accept: "text/event-stream" }),
        body: JSON.stringify({ ...body, stream: true }),
        signal: controller.signal,
      });
      if (!response.ok) {
        // Refused before anything was stored (validation, size, a deleted conversation).
        const problem = await response.json().catch(() => null);
        const msg = problem?.error?.fields?.message || problem?.error?.fields?.conversation_id
          || problem?.error?.message || `Error ${response.status}`;
        pending?.remove();
        if (typed !== null) input.value = typed; // give the text back
        showError(msg);
        return;
      }
      for await (const { event, data } of readEvents(response, controller.signal)) {
        if (event === "start") {
          started(data, pending);
          reply = assistantBubble();
          list.append(reply);
          foldEarlierAnswers(list);
          announce("Replying…");
          scroll();
        } else if (event === "delta") {
          text += data.text;
          reply.querySelector(".msg-body").textContent = text;
          scroll();
        } else if (event === "done") {
          finish(reply, data.message);
          if (data.stored === false) markNotStored(reply);
          announce(`Reply: ${plainText(reply)}`);
        } else if (event === "error") {
          finish(reply, data.message);
          if (data.stored === false) markNotStored(reply);
          showFailure(reply, data.error.message);
          retryButton(reply);
        }
      }
    } catch (err) {
      if (err.name === "AbortError") {
        if (reply) {
          markStopped(reply);
          retryButton(reply);
        }
        announce("Stopped.");
      } else if (reply) {
        showFailure(reply, "The connection was lost. Your message is saved.");
        retryButton(reply);
      } else {
        // Nothing says whether the message arrived: give the text back to send again.
        pending?.remove();
        if (typed !== null && !input.value) input.value = typed;
        showError("The connection was lost before the reply started. Try sending again.");
      }
    } finally {
      controller = null;
      busy(false);
      addRegenerate();
      scroll();
    }
  }

  // The server stored the user's message (and created the conversation on the first one).
  function started(data, pending) {
    const c = data.conversation;
    conversationId = String(c.id);
    root.dataset.conversationId = conversationId;
    title.textContent = c.title;
    conversations.upsert(c);
    const url = new URL(window.location.href);
    url.searchParams.set("c", conversationId);
    history.replaceState(null, "", url);
    if (pending) pending.dataset.id = data.user_message.id;
  }

  function retryButton(bubble) {
    if (bubble.querySelector(".retry")) return;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "button small secondary retry";
    b.textContent = "Retry";
    b.addEventListener("click", () => { b.remove(); regenerate(); });
    footer(bubble).append(b);
  }

  // Regenerate belongs to the last reply only, and not while it already offers Retry.
  function addRegenerate() {
    list.querySelectorAll(".regenerate").forEach((b) => b.remove());
    const bubbles = list.querySelectorAll(":scope > .msg");
    const last = bubbles[bubbles.length - 1];
    if (!last || last.dataset.role !== "assistant" || last.querySelector(".retry")) return;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "link regenerate";
    b.textContent = "Regenerate";
    b.setAttribute("aria-label", "Regenerate this reply");
    b.addEventListener("click", regenerate);
    footer(last).append(b);
  }

  async function loadEarlier(e) {
    const button = e.currentTarget;
    const first = list.querySelector(":scope > .msg[data-id]");
    if (!first || !conversationId) return;
    button.disabled = true;
    const r = await fetch(
      `/api/conversations/${conversationId}/messages?before=${first.dataset.id}&limit=30&html=1`,
    );
    if (!r.ok) {
      button.disabled = false;
      showError("Could not load earlier messages.");
      return;
    }
    const page = await r.json();
    const height = list.scrollHeight;
    const top = list.scrollTop;
    const frag = document.createDocumentFragment();
    page.data.forEach((m) => frag.append(bubbleFor(m)));
    button.after(frag);
    foldEarlierAnswers(list);
    list.scrollTop = top + (list.scrollHeight - height); // keep the reader's place
    announce(`${page.data.length} earlier messages loaded.`);
    if (page.has_more) {
      button.disabled = false;
    } else {
      button.remove();
      list.focus(); // the button that had focus is gone
    }
  }
}
