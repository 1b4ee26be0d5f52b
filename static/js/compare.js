// The Compare tab: one message answered by two sides (a prompt version, optionally under another
// model) at once, two columns streaming together, then "Left is better / Tie / Right is better".
//
// Endpoints: POST /api/projects/<id>/comparisons (stores both conversations and starts both
// replies on the server), GET /api/turns/<turn_id>/events (each column reads its reply; a lost
// connection resumes from its last event id), POST /api/turns/<turn_id>/stop (Stop both),
// PUT /api/comparisons/<id>/preference. A page opened on ?c=<id> whose replies are still being
// written attaches to them the same way. Each answer has the chat's feedback bar (feedback.js).
import { jsonHeaders } from "./csrf.js";
import { initFeedback } from "./feedback.js";
import { readEvents } from "./sse.js";
import { assistantBubble, decorate, finish, markNotStored, plainText, showFailure } from "./messages.js";
import { relativeTime } from "./ui.js";

const SIDES = ["left", "right"];
const LABELS = { left: "Left better", right: "Right better", tie: "Tie", "": "Not judged" };
const LIVE = ["streaming", "stopping"];
const RESUME_TRIES = 5; // attempts to attach again after a lost connection

const result = document.getElementById("compare-result");
if (result) init();

function init() {
  const $ = (id) => document.getElementById(id);
  const form = $("compare-form");
  const input = $("compare-message");
  const send = $("compare-send");
  const stop = $("compare-stop");
  const errorBox = $("compare-error");
  const judge = $("compare-judge");
  const live = $("compare-live");
  const recent = $("compare-recent");
  const chatUrl = form?.dataset.chatUrl ?? "";
  let comparisonId = result.dataset.comparisonId || null;
  let following = null; // {controller, turns: [turn ids], stopAsked} while replies stream

  if (form) {
    for (const side of SIDES) {
      const version = $(`${side}-version`);
      version.addEventListener("change", () => ownModelLabel(side));
      ownModelLabel(side);
    }
    form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
    });
    stop.addEventListener("click", requestStop);
  }
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && following) { e.preventDefault(); requestStop(); }
  });
  judge.querySelectorAll("button[data-choice]").forEach((b) => {
    b.addEventListener("click", () => choose(b.dataset.choice));
  });
  decorate(result);
  initFeedback(result, announce); // 👍/👎 on each answer, as in the chat
  result.dataset.ready = "true"; // handlers are bound (the browser tests wait for this)
  attachToRunning();

  function announce(text) {
    live.textContent = "";
    requestAnimationFrame(() => { live.textContent = text; });
  }

  // "Version's: gpt-4o" (the chosen version's own model) follows the version chosen on that side.
  function ownModelLabel(side) {
    const chosen = $(`${side}-version`).selectedOptions[0];
    const own = $(`${side}-model`).querySelector("option.own-model");
    own.textContent = `Version's: ${chosen?.dataset.model ?? ""}`;
  }

  // --- errors -----------------------------------------------------------------------------------

  function clearErrors() {
    for (const box of [errorBox, $("left-error"), $("right-error")]) {
      if (!box) continue;
      box.textContent = "";
      box.hidden = true;
    }
    form?.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  }

  // Field errors from the API (message, left, left.version, left.model, right…) next to their side.
  function showErrors(fields, fallback) {
    const bySide = { left: [], right: [] };
    const general = [];
    for (const [name, text] of Object.entries(fields || {})) {
      const [side, part] = name.split(".");
      if (side in bySide) {
        bySide[side].push(text);
        $(`${side}-${part || "version"}`)?.setAttribute("aria-invalid", "true");
      } else {
        general.push(text);
        if (name === "message") input.setAttribute("aria-invalid", "true");
      }
    }
    for (const side of SIDES) {
      const box = $(`${side}-error`);
      box.textContent = bySide[side].join(" ");
      box.hidden = !bySide[side].length;
    }
    if (!general.length && !bySide.left.length && !bySide.right.length) general.push(fallback);
    errorBox.textContent = general.join(" ");
    errorBox.hidden = !general.length;
  }

  // --- sending ----------------------------------------------------------------------------------

  function busy(on) {
    if (!form) return;
    send.disabled = on;
    input.disabled = on;
    stop.hidden = !on;
    stop.disabled = false;
    if (!on && (!document.activeElement || document.activeElement === document.body)) input.focus();
  }

  async function submit() {
    if (following) return;
    clearErrors();
    const text = input.value.trim();
    if (!text) {
      showErrors({ message: "Type a message first." });
      input.focus();
      return;
    }
    const body = { message: text };
    for (const side of SIDES) {
      body[side] = {
        version: Number($(`${side}-version`).value),
        model: $(`${side}-model`).value || null,
      };
    }
    send.disabled = true;
    let response;
    let data = null;
    try {
      response = await fetch(`/api/projects/${form.dataset.projectId}/comparisons`, {
        method: "POST",
        headers: jsonHeaders(),
        body: JSON.stringify(body),
      });
      data = await response.json().catch(() => null);
    } catch {
      send.disabled = false;
      showErrors(null, "The connection failed before the comparison started. Try again.");
      return;
    }
    if (response.status !== 201) {
      send.disabled = false;
      showErrors(data?.error?.fields, data?.error?.message || `Error ${response.status}`);
      return;
    }
    input.value = "";
    show(data);
    addRecent(data);
    const url = new URL(window.location.href);
    url.searchParams.delete("left");
    url.searchParams.delete("right");
    url.searchParams.set("c", data.id);
    history.replaceState(null, "", url);
    await followBoth();
  }

  // Fill the result with a comparison just started: the message, each side's configuration,
  // its conversation link and a bubble for its reply.
  function show(c) {
    comparisonId = String(c.id);
    result.dataset.comparisonId = comparisonId;
    $("compare-asked").textContent = c.message;
    for (const side of SIDES) {
      const s = c[side];
      $(`cmp-${side}-config`).textContent = sideText(s);
      const open = $(`cmp-${side}-open`);
      open.href = `${chatUrl}?c=${s.conversation_id}`;
      open.hidden = !s.conversation_id;
      const column = $(`cmp-${side}`);
      column.dataset.turnId = s.turn_id ?? "";
      const bubble = assistantBubble();
      bubble.dataset.id = s.turn_id;
      bubble.dataset.status = s.reply?.status ?? "streaming";
      if (s.reply && !LIVE.includes(s.reply.status)) finish(bubble, s.reply);
      $(`cmp-${side}-reply`).replaceChildren(bubble);
    }
    setPressed(c.choice);
    judge.hidden = true;
    result.hidden = false;
  }

  // --- reading both replies ---------------------------------------------------------------------

  function attachToRunning() {
    if (!comparisonId) return;
    const streaming = SIDES.some((side) => LIVE.includes(bubbleOf(side)?.dataset.status));
    if (streaming) followBoth();
  }

  function bubbleOf(side) {
    return $(`cmp-${side}-reply`).querySelector(".msg-assistant");
  }

  async function followBoth() {
    following = { controller: new AbortController(), stopAsked: false };
    busy(true);
    announce("Both sides are answering…");
    try {
      const outcomes = await Promise.all(SIDES.map((side) => followSide(side)));
      if (outcomes.every(Boolean)) {
        judge.hidden = false;
        announce(`Left: ${plainText(bubbleOf("left"))} Right: ${plainText(bubbleOf("right"))}`);
      }
    } finally {
      following = null;
      busy(false);
    }
  }

  // Read one side's reply to its end; true once its last event has come.
  async function followSide(side) {
    const bubble = bubbleOf(side);
    const turnId = $(`cmp-${side}`).dataset.turnId;
    if (!bubble || !turnId) return true; // deleted with its conversation
    if (!LIVE.includes(bubble.dataset.status)) return true; // already finished
    bubble.classList.add("streaming");
    const body = bubble.querySelector(".msg-body");
    let text = null;
    let lastEventId = null;
    const { signal } = following.controller;
    for (let attempt = 0; attempt < RESUME_TRIES; attempt += 1) {
      if (attempt) await new Promise((r) => { setTimeout(r, 1000 * attempt); });
      try {
        const headers = { Accept: "text/event-stream" };
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        const response = await fetch(`/api/turns/${turnId}/events`, { headers, signal });
        if (!response.ok) break;
        for await (const { event, data, id } of readEvents(response, signal)) {
          if (id) lastEventId = id;
          if (event === "delta" || event === "snapshot") {
            text = event === "delta" ? (text ?? "") + data.text : data.text;
            body.textContent = text;
          } else if (event === "done" || event === "error") {
            finish(bubble, data.message);
            if (data.stored === false) markNotStored(bubble);
            if (event === "error") showFailure(bubble, data.error.message);
            return true;
          }
        }
      } catch (err) {
        if (err.name === "AbortError") return false;
      }
    }
    showFailure(bubble, "The connection was lost. The answer goes on on the server: reload to see it.");
    return false;
  }

  // Stop both: the server ends each reply wherever it runs; the last events still arrive here.
  function requestStop() {
    if (!following || following.stopAsked) return;
    following.stopAsked = true;
    stop.disabled = true;
    for (const side of SIDES) {
      const turnId = $(`cmp-${side}`).dataset.turnId;
      if (!turnId) continue;
      fetch(`/api/turns/${turnId}/stop`, { method: "POST", headers: jsonHeaders() }).catch(() => {});
    }
    announce("Stopping…");
  }

  // --- the preference ---------------------------------------------------------------------------

  function setPressed(choice) {
    judge.querySelectorAll("button[data-choice]").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.choice === choice));
    });
  }

  // Pressing the chosen button again clears the choice.
  async function choose(choice) {
    if (!comparisonId) return;
    const pressed = judge.querySelector('button[aria-pressed="true"]')?.dataset.choice ?? null;
    const next = pressed === choice ? null : choice;
    const buttons = [...judge.querySelectorAll("button")];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch(`/api/comparisons/${comparisonId}/preference`, {
        method: "PUT",
        headers: jsonHeaders(),
        body: JSON.stringify({ choice: next }),
      });
      if (!response.ok) throw new Error(String(response.status));
      const c = await response.json();
      setPressed(c.choice);
      updateRecent(c);
      announce(c.choice ? `Saved: ${LABELS[c.choice]}.` : "Preference cleared.");
    } catch {
      announce("The preference could not be saved. Try again.");
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // --- recent comparisons -----------------------------------------------------------------------

  function sideText(s) {
    return `${s.version == null ? "a deleted version" : `v${s.version}`} · ${s.model}`;
  }

  function addRecent(c) {
    recent.querySelectorAll(".cmp-item").forEach((li) => {
      li.classList.remove("is-current");
      li.querySelector("a")?.removeAttribute("aria-current");
    });
    const li = document.createElement("li");
    li.className = "cmp-item is-current";
    li.dataset.id = c.id;
    const link = document.createElement("a");
    link.className = "cmp-item-message";
    link.href = `${window.location.pathname}?c=${c.id}`;
    link.setAttribute("aria-current", "page");
    link.textContent = c.message.length > 90 ? `${c.message.slice(0, 87)}...` : c.message;
    const sides = document.createElement("span");
    sides.className = "cmp-item-sides";
    const vs = document.createElement("span");
    vs.className = "muted";
    vs.textContent = "vs";
    sides.append(`${sideText(c.left)} `, vs, ` ${sideText(c.right)}`);
    const choice = document.createElement("span");
    choice.className = "cmp-choice";
    const time = document.createElement("time");
    time.className = "muted";
    time.dateTime = c.created_at;
    time.title = new Date(c.created_at).toLocaleString();
    time.textContent = relativeTime(new Date(c.created_at));
    li.append(link, sides, choice, time);
    recent.prepend(li);
    $("compare-recent-empty").hidden = true;
    updateRecent(c);
  }

  function updateRecent(c) {
    const badge = recent.querySelector(`.cmp-item[data-id="${c.id}"] .cmp-choice`);
    if (!badge) return;
    badge.dataset.choice = c.choice ?? "";
    badge.textContent = LABELS[c.choice ?? ""];
  }
}
