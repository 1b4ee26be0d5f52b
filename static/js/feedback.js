// Feedback on replies: the 👍/👎 toggles and the comment form in each reply's footer.
//
// One listener on the message list handles every bar, whether the server rendered it or
// messages.js built it when a streamed reply finished. A vote that is already pressed removes
// the feedback (DELETE /api/messages/<id>/feedback); another vote sets it (PUT, the stored
// comment is kept); Save sends the pressed vote with the comment (blank removes it). The bar is
// redrawn from what the server answers, so it always shows what is stored.
import { jsonHeaders } from "./csrf.js";
import { showFeedback } from "./messages.js";

export function initFeedback(list, announce) {
  list.addEventListener("click", (e) => {
    const vote = e.target.closest(".feedback-vote");
    if (vote && list.contains(vote)) toggle(vote);
  });
  list.addEventListener("submit", (e) => {
    const form = e.target.closest(".feedback-form");
    if (!form) return;
    e.preventDefault();
    save(form);
  });
  list.addEventListener("keydown", (e) => {
    // Escape in the comment box closes it (and is not the chat's Stop).
    const note = e.target.closest?.(".feedback-note");
    if (e.key !== "Escape" || !note?.open) return;
    e.preventDefault();
    e.stopPropagation();
    note.open = false;
    note.querySelector("summary").focus();
  });

  function toggle(b) {
    const bar = b.closest(".feedback");
    const again = b.getAttribute("aria-pressed") === "true";
    send(bar, again ? null : { rating: b.dataset.vote }).then((ok) => {
      if (ok) announce(again ? "Feedback removed." : `Rated ${b.getAttribute("aria-label").toLowerCase()}.`);
    });
  }

  function save(form) {
    const bar = form.closest(".feedback");
    const comment = form.elements.comment.value;
    send(bar, { rating: bar.dataset.rating, comment }).then((ok) => {
      if (!ok) return;
      const note = bar.querySelector(".feedback-note");
      note.open = false;
      note.querySelector("summary").focus();
      announce(comment.trim() ? "Comment saved." : "Comment removed.");
    });
  }

  // PUT ``body`` (or DELETE when null); true once the bar shows the stored feedback.
  async function send(bar, body) {
    const id = bar.closest(".msg")?.dataset.id;
    const error = bar.querySelector(".feedback-error");
    if (!id || bar.dataset.busy) return false; // one request at a time; focus stays put
    bar.dataset.busy = "1";
    try {
      const response = await fetch(`/api/messages/${id}/feedback`, {
        method: body ? "PUT" : "DELETE",
        headers: jsonHeaders(),
        body: body ? JSON.stringify(body) : undefined,
      });
      if (!response.ok) {
        const problem = await response.json().catch(() => null);
        const fields = problem?.error?.fields;
        error.textContent = fields?.comment || fields?.rating || problem?.error?.message
          || `Could not save the feedback (error ${response.status}).`;
        error.hidden = false;
        return false;
      }
      error.hidden = true;
      showFeedback(bar, body ? (await response.json()).feedback : null);
      return true;
    } catch {
      error.textContent = "Could not reach the server; the feedback is not saved.";
      error.hidden = false;
      return false;
    } finally {
      delete bar.dataset.busy;
    }
  }
}
