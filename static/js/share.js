// A share link's chat page (templates/share/page.html): a visitor without an account sends a
// message to POST /s/<token>/chat and reads the reply as server-sent events (start, delta, then
// done or error; app/share/routes.py). The visitor's conversation is theirs by the signed
// cookie the page set; "New conversation" starts another. No stop, regenerate or branches.
import { jsonHeaders } from "./csrf.js";
import { readEvents } from "./sse.js";
import { assistantBubble, showStreamed, userBubble } from "./messages.js";

function init(root) {
  const list = root.querySelector("#messages");
  const form = root.querySelector("#composer");
  const input = root.querySelector("#message");
  const send = root.querySelector("#send");
  const error = root.querySelector("#composer-error");
  const live = root.querySelector("#chat-live");
  const empty = root.querySelector("#empty-chat");
  let conversationId = root.dataset.conversationId || null;
  let busy = false;

  function scroll() {
    list.scrollTop = list.scrollHeight;
  }

  function showError(text) {
    error.textContent = text;
    error.hidden = !text;
  }

  function setBusy(on) {
    busy = on;
    send.disabled = on;
    list.setAttribute("aria-busy", on ? "true" : "false");
  }

  function finish(bubble, message) {
    bubble.classList.remove("streaming");
    bubble.classList.add(`status-${message.status}`);
    bubble.dataset.id = String(message.id);
    const body = bubble.querySelector(".msg-body");
    if (message.html) body.innerHTML = message.html; // sanitised by the server (nh3)
    bubble.querySelector(":scope > .msg-meta")?.remove();
  }

  async function submit() {
    const text = input.value.trim();
    if (!text || busy) return;
    showError("");
    setBusy(true);
    empty.hidden = true;
    const mine = userBubble(text);
    list.append(mine);
    input.value = "";
    scroll();
    let reply = null;
    let ended = false;
    try {
      const response = await fetch(root.dataset.chatUrl, {
        method: "POST",
        headers: jsonHeaders({ Accept: "text/event-stream" }),
        body: JSON.stringify({ message: text, conversation_id: conversationId ? Number(conversationId) : null, stream: true }),
      });
      if (!response.ok) {
        const problem = await response.json().catch(() => null);
        mine.remove();
        input.value = text;
        showError(problem?.error?.fields?.message || problem?.error?.message || `Error ${response.status}`);
        return;
      }
      let streamed = "";
      for await (const { event, data } of readEvents(response)) {
        if (event === "start") {
          conversationId = String(data.conversation_id);
          root.dataset.conversationId = conversationId;
          reply = assistantBubble();
          list.append(reply);
        } else if (event === "delta" && reply) {
          streamed += data.text;
          showStreamed(reply, streamed);
        } else if ((event === "done" || event === "error") && reply) {
          finish(reply, data.message);
          if (event === "error") {
            const note = document.createElement("p");
            note.className = "msg-error msg-ending";
            note.setAttribute("role", "alert");
            note.textContent = data.error.message;
            reply.append(note);
          } else {
            live.textContent = `Reply: ${reply.querySelector(".msg-body").textContent}`;
          }
          ended = true;
        }
        scroll();
      }
      if (!ended) showError("The connection was lost. Reload the page to see the reply.");
    } catch {
      if (!reply) {
        mine.remove();
        input.value = text;
      }
      showError("The connection was lost. Check your network and try again.");
    } finally {
      setBusy(false);
      scroll();
      input.focus(); // the visitor's own action: allowed in a frame too
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  root.querySelector("#new-chat").addEventListener("click", () => {
    if (busy) return;
    conversationId = null;
    root.dataset.conversationId = "";
    for (const m of list.querySelectorAll(".msg")) m.remove();
    empty.hidden = false;
    showError("");
    input.focus();
  });
  scroll();
  // Browsers refuse autofocus in a frame of another origin (an embedded chat): focus the box
  // only when the page is the whole tab.
  if (window.self === window.top) input.focus();
  root.dataset.ready = "1";
}

const root = document.getElementById("share-chat");
if (root) init(root);
