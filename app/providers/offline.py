"""The offline demo model: used only when no provider key is configured. No network at all.

It answers with a short, deterministic Markdown reply that says plainly what it is, how to
configure a real model, and echoes (part of) the user's message so the conversation feels alive.
Tokens are streamed word by word with ``offline_delay_ms`` between them, so the streaming UI can
be seen working. Token counts are word counts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

from app.providers.events import Done, Text
from app.providers.transport import Cancel
from app.providers.types import ChatRequest, ProviderSettings, Reply, ReplyMeta, StreamEvent

NAME = "offline"
MODEL = "offline-demo"
ECHO_CHARS = 120
TOKEN = re.compile(r"\s*\S+|\s+")


def echo(message: str, limit: int = ECHO_CHARS) -> str:
    """The user's message on one line, cut at ``limit`` characters, safe inside a quote."""
    text = " ".join(message.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text.replace("`", "'") or "(an empty message)"


def reply_text(req: ChatRequest) -> str:
    return (
        "**Offline demo model.** No AI provider is configured, so this reply is canned and "
        "nothing left the server.\n\n"
        f"You said:\n\n> {echo(req.message)}\n\n"
        "To chat with a real model, set `OPENAI_API_KEY` and/or `OPENROUTER_API_KEY` in `.env` "
        "and restart the app. OpenAI is tried first and OpenRouter is the fallback."
    )


def word_count(*texts: str) -> int:
    return sum(len(text.split()) for text in texts)


class OfflineProvider:
    name = NAME
    model = MODEL

    def __init__(
        self, settings: ProviderSettings, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.delay = max(0, settings.offline_delay_ms) / 1000
        self.sleep = sleep

    def model_for(self, req: ChatRequest) -> str:
        return MODEL  # one demo model, whatever was asked for

    def _meta(self, req: ChatRequest, text: str) -> ReplyMeta:
        tokens_in = word_count(req.system, req.message, *(turn.content for turn in req.history))
        return ReplyMeta(
            provider=NAME,
            model=MODEL,
            response_id=None,
            tokens_in=tokens_in,
            tokens_out=word_count(text),
            finish_reason="stop",
        )

    def complete(self, req: ChatRequest) -> Reply:
        text = reply_text(req)
        return Reply(text, self._meta(req, text))

    def stream(self, req: ChatRequest, cancel: Cancel | None = None) -> Iterator[StreamEvent]:
        text = reply_text(req)
        for index, token in enumerate(TOKEN.findall(text)):
            if index and self.delay:
                self.sleep(self.delay)
            if cancel is not None and cancel.cancelled:
                return
            yield Text(token)
        yield Done(self._meta(req, text))
