"""The offline demo model: used only when no provider key is configured, so a fresh checkout
can chat. It streams a short deterministic reply that says what it is and how to configure a
real model. No network."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

from app.providers.base import (
    ChatRequest,
    ProviderSettings,
    Reply,
    ReplyMeta,
    StreamEnd,
    StreamEvent,
    TextDelta,
)

NAME = "offline"
MODEL = "offline-demo"
ECHO_MAX = 120


def demo_reply(req: ChatRequest) -> str:
    said = " ".join(req.message.split())
    if len(said) > ECHO_MAX:
        said = said[: ECHO_MAX - 1] + "…"
    turns = len(req.history) // 2 + 1
    return (
        "**Offline demo model.** No language model is configured, so this is a canned reply.\n\n"
        f"You said: “{said}” (turn {turns} of this conversation).\n\n"
        "To chat with a real model, set `OPENAI_API_KEY` (OpenAI Responses API) and/or "
        "`OPENROUTER_API_KEY` (fallback) in `.env`, then restart the server."
    )


class OfflineProvider:
    name = NAME
    model = MODEL

    def __init__(self, settings: ProviderSettings, client=None) -> None:
        self.delay = max(0, settings.offline_delay_ms) / 1000

    def _meta(self, req: ChatRequest, text: str) -> ReplyMeta:
        tokens_in = len(req.message.split()) + sum(len(t.content.split()) for t in req.history)
        return ReplyMeta(NAME, MODEL, None, tokens_in, len(text.split()), "stop")

    def complete(self, req: ChatRequest) -> Reply:
        text = demo_reply(req)
        return Reply(text, self._meta(req, text))

    def stream(self, req: ChatRequest) -> Iterator[StreamEvent]:
        text = demo_reply(req)
        for piece in re.findall(r"\S+\s*|\s+", text):
            if self.delay:
                time.sleep(self.delay)
            yield TextDelta(piece)
        yield StreamEnd(self._meta(req, text))
