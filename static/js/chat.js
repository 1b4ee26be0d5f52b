// The chat tab: send with fetch, stream the reply over SSE, Stop (button or Esc), Retry and
// Regenerate, auto-scroll that pauses while the reader is scrolled up, "load earlier messages",
// a live region announcing replies, the conversation list kept in step, and feedback on replies.
//
// Endpoints: POST /api/projects/<id>/chat (a message), POST /api/conversations/<id>/regenerate
// (answer the last message again), GET /api/turns/<id>/events (attach again), POST
// /api/turns/<id>/stop, GET /api/conversations/<id>/messages?before=&html=1, GET
// /api/conversations/<id> (the title the server's job wrote), PUT/DELETE
// /api/messages/<id>/feedback (feedback.js), PATCH /api/conversations/<id> (the template
// variables panel, variables.js).
import { jsonHeaders } from "./csrf.js";
import { initFeedback } from "./feedback.js";
import { readEvents } from "./sse.js";
import { initConversations } from "./conversations.js";
import { initVariables } from "./variables.js";
import {
  assistantBubble, branchSwitch, bubbleFor, decorate, finish, footer, markNotStored,
  plainText, showFailure, showStreamed, userBubble,
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
  const RESUME_TRIES = 5; // attempts to attach again after a lost connection
  let controller = null;
  let turn = null; // the turn being read: {id, lastEventId, stopAsked}
  let follow = true; // keep the newest text in view; off while the reader is scrolled up
  // The server titles this conversation once a reply is complete (a job: app/chat/titles.py).
  let titlePending = root.dataset.titlePending === "1";

  const variables = initVariables(() => conversationId);
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
  let autoTop = null; // where the last automatic scroll left the pane
  function scroll() {
    // Scrolled up since then, even if its scroll event has not been handled yet: stay put.
    if (follow && autoTop !== null && list.scrollTop < autoTop - 1) follow = false;
    if (follow) {
      list.scrollTop = list.scrollHeight;
      autoTop = list.scrollTop;
    } else {
      jump.hidden = false;
    }
  }
  jump.addEventListener("click", () => {
    follow = true;
    list.scrollTop = list.scrollHeight;
    autoTop = list.scrollTop;
    jump.hidden = true;
    input.focus();
  });

  decorate(list);
  initFeedback(list, announce);
  addRegenerate();
  scroll();
  input.focus();
  attachToRunning();
  // Opened (a reload, another tab) after a complete reply, before the server's title came.
  if (titlePending && list.querySelector(":scope > .msg[data-role='assistant'][data-status='complete']")) {
    awaitTitle(conversationId);
  }

  // --- keyboard -------------------------------------------------------------------------------
  form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
    if (e.key === "ArrowUp" && !input.value && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
      const mine = list.querySelectorAll(":scope > .msg-user[data-id]:not(.queued)");
      if (mine.length && !controller) {
        e.preventDefault();
        startEdit(mine[mine.length - 1]); // ↑ in an empty box edits your last message
      }
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && turn && !e.defaultPrevented) { e.preventDefault(); requestStop(); }
  });
  stop.addEventListener("click", requestStop);
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

  // Signed out meanwhile (the session expired, or "Log out everywhere"): a way back that returns
  // here, with the message kept (the draft survives the trip in sessionStorage).
  function showSessionEnded() {
    const back = new URL(window.location.href);
    if (conversationId) back.searchParams.set("c", conversationId);
    const a = document.createElement("a");
    a.href = `/login?next=${encodeURIComponent(back.pathname + back.search)}`;
    a.textContent = "Log in again";
    errorBox.replaceChildren("Your session has ended. ", a, " — your message is kept.");
    errorBox.hidden = false;
  }

  // --- the draft ------------------------------------------------------------------------------
  // What is typed and not yet sent outlives a reload or a trip to the login page (this tab only).
  const draftKey = () => `prompthub:draft:${projectId}:${conversationId || "new"}`;
  function saveDraft() {
    try {
      if (input.value) sessionStorage.setItem(draftKey(), input.value);
      else sessionStorage.removeItem(draftKey());
    } catch { /* storage off: the draft lives in the box only */ }
  }
  function restoreDraft() {
    try {
      const kept = sessionStorage.getItem(draftKey());
      if (kept && !input.value) input.value = kept;
    } catch { /* storage off */ }
  }
  input.addEventListener("input", saveDraft);
  restoreDraft();

  // While a reply is written the message box stays open for the next message (a draft); Send
  // then queues it until the reply ends, with "Stop and send now" and "Cancel" beside it.
  function busy(on) {
    stop.hidden = !on;
    stop.disabled = false;
    list.setAttribute("aria-busy", on ? "true" : "false");
    // Give focus back to the message box, unless the reader has moved on to something else.
    const away = document.activeElement && document.activeElement !== document.body
      && !form.contains(document.activeElement) && !list.contains(document.activeElement);
    if (!on && !away) input.focus();
    if (!on) setTimeout(sendQueued); // once this turn's `finally` has run
  }

  function submit() {
    const text = input.value.trim();
    if (!text) return;
    if (controller) {
      queue(text);
      return;
    }
    sendMessage(text, userBubble(text));
  }

  function sendMessage(text, pending) {
    showError("");
    list.append(pending);
    document.getElementById("empty-chat")?.remove();
    follow = true;
    autoTop = null; // asked to follow again, from wherever the pane is
    scroll();
    if (input.value.trim() === text) input.value = "";
    saveDraft();
    const body = { message: text, conversation_id: conversationId ? Number(conversationId) : null };
    // "New chat with v5": the first message pins the new conversation to that version.
    if (!conversationId && root.dataset.pinVersion) body.version = Number(root.dataset.pinVersion);
    // A new conversation keeps the side panel's template variables (later: its Save).
    const values = conversationId ? null : variables.values();
    if (values && Object.keys(values).length) body.variables = values;
    run(`/api/projects/${projectId}/chat`, body, { pending, typed: text });
  }

  // --- a message queued while a reply is written ----------------------------------------------
  let queued = null; // {text, bubble}
  const queuedBox = document.getElementById("composer-queued");

  function queue(text) {
    if (queued) {
      queued.text = `${queued.text}\n\n${text}`;
      queued.bubble.querySelector(".msg-body").textContent = queued.text;
    } else {
      const bubble = userBubble(text);
      bubble.classList.add("queued");
      queued = { text, bubble };
    }
    list.append(queued.bubble); // stays after the reply being written
    input.value = "";
    saveDraft();
    queuedBox.hidden = false;
    announce("Queued: it is sent when this reply ends.");
    follow = true;
    autoTop = null; // asked to follow again, from wherever the pane is
    scroll();
  }

  function sendQueued() {
    if (!queued || controller) return;
    const { text, bubble } = queued;
    queued = null;
    queuedBox.hidden = true;
    bubble.classList.remove("queued");
    bubble.remove();
    sendMessage(text, bubble);
  }

  document.getElementById("queued-stop")?.addEventListener("click", () => {
    requestStop();
    input.focus();
  });
  document.getElementById("queued-cancel")?.addEventListener("click", () => {
    if (!queued) return;
    input.value = input.value ? `${queued.text}\n\n${input.value}` : queued.text;
    saveDraft();
    queued.bubble.remove();
    queued = null;
    queuedBox.hidden = true;
    input.focus();
  });

  // --- branches: regenerate any reply, edit any message of yours, switch versions ------------
  // The page shows one branch of the conversation. Regenerating a reply or sending an edited
  // message starts a new branch at that point: what followed it leaves the page (it stays on
  // its branch, one ‹ › away) and the new reply streams in its place.

  function detachFrom(bubble) {
    const gone = [];
    for (let b = bubble; b; ) {
      const next = b.nextElementSibling;
      if (b.classList.contains("msg")) gone.push(b);
      b = next;
    }
    gone.forEach((b) => b.remove());
    return () => { // put them back (the server refused the new version)
      list.querySelectorAll(":scope > .msg").forEach((b) => { if (!b.dataset.id) b.remove(); });
      list.append(...gone);
    };
  }

  function regenerate(reply) {
    if (controller || !conversationId) return;
    showError("");
    follow = true;
    autoTop = null; // asked to follow again, from wherever the pane is
    const restore = detachFrom(reply);
    run(`/api/conversations/${conversationId}/regenerate`, { message_id: Number(reply.dataset.id) },
      { restore, branched: true });
  }

  function startEdit(bubble) {
    if (controller || bubble.querySelector(".edit-form")) return;
    const body = bubble.querySelector(".msg-body");
    const meta = bubble.querySelector(":scope > .msg-meta");
    const form = document.createElement("form");
    form.className = "edit-form";
    const box = document.createElement("textarea");
    box.value = body.textContent;
    box.rows = Math.min(8, box.value.split("\n").length + 1);
    box.setAttribute("aria-label", "Edit your message");
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "button small";
    save.textContent = "Send";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "button small secondary";
    cancel.textContent = "Cancel";
    const row = document.createElement("div");
    row.className = "row";
    row.append(save, cancel);
    form.append(box, row);
    body.hidden = true;
    if (meta) meta.hidden = true;
    bubble.classList.add("editing");
    bubble.append(form);
    const close = () => {
      form.remove();
      body.hidden = false;
      if (meta) meta.hidden = false;
      bubble.classList.remove("editing");
    };
    cancel.addEventListener("click", () => { close(); bubble.querySelector(".edit-message")?.focus(); });
    form.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        close();
        bubble.querySelector(".edit-message")?.focus();
      } else if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = box.value.trim();
      if (!text || controller) return;
      close();
      showError("");
      follow = true;
      autoTop = null;
      const restore = detachFrom(bubble);
      const pending = userBubble(text);
      list.append(pending);
      scroll();
      run(`/api/messages/${bubble.dataset.id}/edit`, { message: text }, { pending, restore, branched: true });
    });
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  async function selectBranch(messageId) {
    if (controller) return;
    const r = await fetch(`/api/messages/${messageId}/select`, { method: "POST", headers: jsonHeaders() })
      .catch(() => null);
    if (r?.ok) window.location.reload(); // the page shows that branch
    else showError("Could not switch to that version. Try again.");
  }

  // After a new branch: which messages now have other versions (their ‹ n/n › switch).
  async function refreshSiblings() {
    const r = await fetch(`/api/conversations/${conversationId}/messages?limit=200`).catch(() => null);
    if (!r?.ok) return;
    for (const m of (await r.json()).data) {
      const bubble = list.querySelector(`:scope > .msg[data-id="${m.id}"]`);
      if (!bubble) continue;
      if (m.siblings) bubble.dataset.siblings = m.siblings.join(",");
      else delete bubble.dataset.siblings;
      branchSwitch(bubble, selectBranch);
    }
  }

  // A turn is generated on the server whatever happens to this page's connection: the stream is
  // only a reader. Stop asks the server (POST /api/turns/<id>/stop) and reads on to the end; a
  // lost connection is resumed from the last event id (GET /api/turns/<id>/events).

  async function run(url, body, { pending = null, typed = null, restore = null, branched = false }) {
    controller = new AbortController();
    turn = { id: null, lastEventId: null, stopAsked: false };
    busy(true);
    // A new conversation: the server titles it once a reply is complete.
    if (!conversationId && root.dataset.titles === "1") titlePending = true;
    const state = { reply: null, text: null, pending, attached: false };
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
        restore?.();
        if (typed !== null && !restore) input.value = typed; // give the text back
        saveDraft();
        if (response.status === 401) showSessionEnded();
        else showError(msg);
        variables.showErrors(problem?.error); // by the panel's fields, too
        return;
      }
      if (await consume(response, state)) {
        if (branched) refreshSiblings();
        return;
      }
      await resume(state);
    } catch (err) {
      if (state.reply && turn.id) {
        await resume(state);
      } else if (err.name !== "AbortError") {
        // Nothing says whether the message arrived: give the text back to send again.
        pending?.remove();
        if (typed !== null && !input.value) input.value = typed;
        showError("The connection was lost before the reply started. Try sending again.");
      }
    } finally {
      controller = null;
      turn = null;
      busy(false);
      addRegenerate();
      scroll();
    }
  }

  // Read one response's events into the bubble; true once the turn's last event has come.
  async function consume(response, state) {
    for await (const { event, data, id } of readEvents(response, controller.signal)) {
      if (id) turn.lastEventId = id;
      if (event === "start") {
        turn.id = data.turn_id;
        if (state.attached) continue; // the bubble is already on the page
        started(data, state.pending);
        state.reply = assistantBubble();
        state.reply.dataset.turn = String(data.turn_id);
        list.append(state.reply);
              announce("Replying…");
        if (turn.stopAsked) requestStop();
      } else if (event === "delta" || event === "snapshot") {
        state.text = event === "delta" ? (state.text ?? "") + data.text : data.text;
        paint(state);
      } else if (event === "done") {
        finish(state.reply, data.message);
        if (data.stored === false) markNotStored(state.reply);
        if (titlePending && data.message.status === "complete") awaitTitle(conversationId);
        if (data.message.error_kind === "stopped") {
          announce("Stopped.");
        } else {
          announce(`Reply: ${plainText(state.reply)}`);
        }
        return true;
      } else if (event === "error") {
        finish(state.reply, data.message);
        if (data.stored === false) markNotStored(state.reply);
        state.reply.querySelector(":scope > .msg-ending")?.setAttribute("role", "alert");
        announce(data.message.error_reason || "The reply failed.");
        return true;
      }
      scroll();
    }
    return false;
  }

  // The title the server's job writes once a reply is complete: read the conversation again a
  // few times, ever more slowly, until its title changes; the cut first message stays if the
  // job fails or takes longer than that (a reload shows it then).
  async function awaitTitle(id) {
    titlePending = false;
    const shown = title.textContent;
    for (const wait of [300, 500, 1000, 1500, 2500, 4000, 6000, 9000]) {
      await new Promise((r) => { setTimeout(r, wait); });
      if (id !== conversationId) return; // the page moved on meanwhile
      try {
        const r = await fetch(`/api/conversations/${id}`);
        if (!r.ok) return;
        const c = await r.json();
        if (c.title !== shown) {
          if (title.textContent === shown) title.textContent = c.title;
          conversations.upsert(c);
          return;
        }
      } catch { /* try again */ }
    }
  }

  // The text so far, rendered at most once per frame however fast the pieces come.
  function paint(state) {
    if (state.painting) return;
    state.painting = true;
    requestAnimationFrame(() => {
      state.painting = false;
      if (state.reply.classList.contains("streaming")) showStreamed(state.reply, state.text);
    });
  }

  // The connection ended before the turn did: attach again, from the last event received.
  async function resume(state) {
    for (let attempt = 0; attempt < RESUME_TRIES; attempt += 1) {
      if (attempt) await new Promise((r) => { setTimeout(r, 1000 * attempt); });
      try {
        const headers = { Accept: "text/event-stream" };
        if (turn.lastEventId) headers["Last-Event-ID"] = turn.lastEventId;
        const response = await fetch(`/api/turns/${turn.id}/events`, { headers });
        if (!response.ok) break;
        state.attached = true;
        if (await consume(response, state)) return;
      } catch {
        /* try again */
      }
    }
    showFailure(state.reply, "The connection was lost. The reply goes on on the server: reload to see it.");
  }

  // Stop: the server ends the turn wherever it runs; its last event arrives on this stream.
  function requestStop() {
    if (!turn) return;
    turn.stopAsked = true;
    if (!turn.id) return; // asked before the turn started: sent when `start` arrives
    stop.disabled = true;
    fetch(`/api/turns/${turn.id}/stop`, { method: "POST", headers: jsonHeaders() }).catch(() => {
      stop.disabled = false;
    });
  }

  // Opening a conversation whose last reply is still being written: follow it from its start.
  async function attachToRunning() {
    const bubbles = list.querySelectorAll(":scope > .msg");
    const last = bubbles[bubbles.length - 1];
    if (!last || last.dataset.role !== "assistant") return;
    if (!["streaming", "stopping"].includes(last.dataset.status)) return;
    controller = new AbortController();
    turn = { id: Number(last.dataset.id), lastEventId: null, stopAsked: false };
    last.classList.add("streaming");
    busy(true);
    announce("Replying…");
    const state = { reply: last, text: null, pending: null, attached: true };
    try {
      await resume(state);
    } finally {
      controller = null;
      turn = null;
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
    root.dataset.pinVersion = "";
    variables.setConversation(conversationId);
    title.textContent = c.title;
    conversations.upsert(c);
    const url = new URL(window.location.href);
    url.searchParams.set("c", conversationId);
    url.searchParams.delete("version");
    history.replaceState(null, "", url);
    if (pending) pending.dataset.id = data.user_message.id;
  }

  // Every reply that has ended gets Regenerate (Retry when it failed); every message of yours
  // that is stored gets Edit; a message with other versions gets its ‹ 2/3 › switch.
  function addRegenerate() {
    for (const bubble of list.querySelectorAll(":scope > .msg[data-id]")) {
      branchSwitch(bubble, selectBranch);
      if (bubble.dataset.role === "user") {
        if (bubble.querySelector(".edit-message") || bubble.classList.contains("queued")) continue;
        const b = document.createElement("button");
        b.type = "button";
        b.className = "link edit-message";
        b.textContent = "Edit";
        b.setAttribute("aria-label", "Edit this message");
        b.addEventListener("click", () => startEdit(bubble));
        footer(bubble).append(b);
        continue;
      }
      bubble.querySelector(":scope > .msg-meta .regenerate")?.remove();
      if (bubble.classList.contains("streaming")) continue; // not while it is being written
      const failed = bubble.classList.contains("is-failed");
      const b = document.createElement("button");
      b.type = "button";
      b.className = failed ? "button small secondary regenerate retry" : "link regenerate";
      b.textContent = failed ? "Retry" : "Regenerate";
      b.setAttribute("aria-label", failed ? "Retry this reply" : "Regenerate this reply");
      b.addEventListener("click", () => regenerate(bubble));
      footer(bubble).append(b);
    }
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
