"""Assistant replies as the page shows them: their Markdown, and the metadata line under them.

How a reply ended, in words for the person reading (``ending``), is decided here too: the page
shows the reason (with the technical detail folded under "Details") and the message JSON carries
it as ``error_reason``.

The metadata line (``meta_line``) is built here only: the page's template renders it for stored
replies (the ``meta_line`` filter), and the message JSON carries it as ``meta`` with ``html=1``,
which the page's script sets as text on a reply that has just streamed (``messages.js``).

Markdown is rendered on the server, then sanitised.

markdown-it-py runs with raw HTML disabled (a model's or user's ``<script>`` becomes text), code
blocks are highlighted by Pygments into ``<span class>`` markup, and nh3 removes anything outside
a small allow-list, adding ``rel="noopener nofollow"`` to links. User messages are never rendered
as Markdown; the page shows them as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from html import escape

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from app.chat.replies import STOPPED, STOPPED_TEXT
from app.models import MessageStatus

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "span", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "div",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "span": {"class"},
    "code": {"class"},
    "div": {"class"},
    "pre": {"class"},
    "th": {"align"},
    "td": {"align"},
    "ol": {"start"},
}
_FORMATTER = HtmlFormatter(nowrap=True, classprefix="hl-")


def _highlight(code: str, lang: str, _attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(lang.strip().lower()) if lang.strip() else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return escape(code)
    return highlight(code, lexer, _FORMATTER)


@cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
    return md.enable(["table", "strikethrough"])


def render_markdown(text: str) -> str:
    html = _parser().render(text or "")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener nofollow",
    )


def render_reply(message) -> str:
    """An assistant reply's HTML: a reply checked as JSON (``format_valid`` set) that parses is
    shown formatted, as a highlighted ``json`` code block; anything else as Markdown."""
    if getattr(message, "format_valid", None) is not None:
        try:
            value = json.loads(message.content)
        except ValueError:
            value = _NOT_JSON
        if value is not _NOT_JSON:
            pretty = json.dumps(value, indent=2, ensure_ascii=False)
            return render_markdown(f"```json\n{pretty}\n```")
    return render_markdown(message.content)


_NOT_JSON = object()


def _file_label(f: dict) -> str:
    """A file that went into the turn's instructions, and whether the budget cut it."""
    if not f.get("included"):
        return f"{f['name']} (left out)"
    return f"{f['name']} (cut)" if f.get("truncated") else f["name"]


# Why a reply failed, by ``Message.error_kind`` (a provider error kind, or ``interrupted``): what
# happened and who can fix it, never the provider's own wording (that is the detail).
FAILURE_REASONS = {
    "auth": "The API key was refused — an admin must fix the key.",
    "model_not_found": "The model is not available — an admin must choose another model.",
    "quota": "The model account is out of credit — an admin must top it up.",
    "rate_limited": "The model service is busy. Wait a minute and retry.",
    "content_policy": "The model declined to answer this message.",
    "bad_request": "The model service refused this request.",
    "unavailable": "The model service is not answering. Retry in a moment.",
    "timeout": "The model service is not answering. Retry in a moment.",
    "connection": "The model service is not answering. Retry in a moment.",
    "malformed": "The model service sent an answer that could not be read. Retry.",
    "interrupted": "The server stopped while writing this reply. Retry for a full answer.",
}
GENERAL_FAILURE = "The reply failed. Retry in a moment."


@dataclass(frozen=True)
class Ending:
    """How an assistant reply that did not complete ended: ``stopped`` (Stop, or its reader
    left) or ``failed``; ``reason`` for the person, ``detail`` the technical text (or None)."""

    kind: str
    reason: str
    detail: str | None

    @property
    def stopped(self) -> bool:
        return self.kind == STOPPED


def ending(message) -> Ending | None:
    """None for a reply that completed, is still being written, or is a user's message."""
    if message.role != "assistant" or message.status in _NOT_ENDED:
        return None
    if _was_stopped(message):
        return Ending(STOPPED, "Stopped.", None)
    reason = FAILURE_REASONS.get(message.error_kind or "", GENERAL_FAILURE)
    return Ending("failed", reason, message.error)


_NOT_ENDED = (MessageStatus.COMPLETE, MessageStatus.STREAMING, MessageStatus.STOPPING)


def _was_stopped(message) -> bool:
    # Rows stored before error_kind existed say it only in their error text.
    return message.error_kind == STOPPED or (
        message.error_kind is None and message.error == STOPPED_TEXT
    )


def meta_line(message) -> str:
    """The line under an assistant reply: who answered (and whether as a fallback), the prompt
    version, tokens, total time, the project files it was given, and its status unless
    complete. Plain text (the template escapes it; the script sets it as ``textContent``)."""
    parts: list[str] = []
    if message.provider:
        fallback = " (fallback)" if message.fallback else ""
        parts.append(f"{message.model} · {message.provider}{fallback}")
    if message.prompt_version is not None:
        parts.append(f"prompt v{message.prompt_version.version}")
    if message.tokens_out is not None:
        parts.append(f"{message.tokens_in or 0}→{message.tokens_out} tokens")
    if message.total_ms is not None:
        parts.append(f"{message.total_ms / 1000:.1f} s")
    if message.context_files:
        parts.append("files: " + ", ".join(_file_label(f) for f in message.context_files))
    if message.status in (MessageStatus.STREAMING, MessageStatus.STOPPING):
        parts.append("replying…")
    elif message.status != MessageStatus.COMPLETE:
        parts.append("stopped" if _was_stopped(message) else str(message.status))
    valid = getattr(message, "format_valid", None)
    if valid is not None:
        parts.append("valid JSON" if valid else f"invalid JSON: {message.format_error}")
    return " · ".join(parts)
