"""Text for chat, extracted once per file: UTF-8 text files at upload time, as they are; PDFs
later, in the extraction sandbox (``sandbox.py``, run by ``extraction.py``), because a parser can
be made to burn minutes of CPU on a small file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from app.files.storage import NO_TEXT_TYPES, OPAQUE
from app.models import TextStatus

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2_000_000  # what we keep of one file; the chat budget is far smaller
NO_TEXT_NOTE = "No text to extract from this type."
OPAQUE_NOTE = "No text is read from this type; the file is kept as it is."


@dataclass(frozen=True)
class Extracted:
    status: TextStatus
    text: str | None = None
    pages: int | None = None
    note: str | None = None

    @property
    def chars(self) -> int:
        return len(self.text or "")


def needs_sandbox(kind: str) -> bool:
    """Types whose text needs a parser: never run inside a web request."""
    return kind == "pdf"


def extract(path: Path, kind: str, content_type: str) -> Extracted:
    """Text that is safe to read inline (bounded and linear in the file's size)."""
    if kind == "text" and content_type not in NO_TEXT_TYPES:
        return _text(path)
    return Extracted(TextStatus.NONE, note=OPAQUE_NOTE if kind == OPAQUE else NO_TEXT_NOTE)


def _text(path: Path) -> Extracted:
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read(MAX_TEXT_CHARS + 1).replace("\x00", "")  # PostgreSQL text has no NUL
    note = None
    if len(text) > MAX_TEXT_CHARS:
        text, note = text[:MAX_TEXT_CHARS], f"Only the first {MAX_TEXT_CHARS:,} characters kept."
    if not text.strip():
        return Extracted(TextStatus.EMPTY, note="The file holds no text.")
    return Extracted(TextStatus.OK, text=text, note=note)
