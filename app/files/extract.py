"""Text for chat, extracted once at upload time: UTF-8 text files as they are, PDFs with pypdf."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from app.files.storage import NO_TEXT_TYPES
from app.models import TextStatus

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2_000_000  # what we keep of one file; the chat budget is far smaller


@dataclass(frozen=True)
class Extracted:
    status: TextStatus
    text: str | None = None
    pages: int | None = None
    note: str | None = None

    @property
    def chars(self) -> int:
        return len(self.text or "")


def extract(path: Path, kind: str, content_type: str) -> Extracted:
    if kind == "text" and content_type not in NO_TEXT_TYPES:
        return _text(path)
    if kind == "pdf":
        return _pdf(path)
    return Extracted(TextStatus.NONE, note="No text to extract from this type.")


def _text(path: Path) -> Extracted:
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read(MAX_TEXT_CHARS + 1).replace("\x00", "")  # PostgreSQL text has no NUL
    note = None
    if len(text) > MAX_TEXT_CHARS:
        text, note = text[:MAX_TEXT_CHARS], f"Only the first {MAX_TEXT_CHARS:,} characters kept."
    if not text.strip():
        return Extracted(TextStatus.EMPTY, note="The file holds no text.")
    return Extracted(TextStatus.OK, text=text, note=note)


def _pdf(path: Path) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            return Extracted(TextStatus.FAILED, note="The PDF is encrypted; no text extracted.")
        pages = len(reader.pages)
        parts: list[str] = []
        size = 0
        for page in reader.pages:
            part = page.extract_text() or ""
            parts.append(part)
            size += len(part)
            if size > MAX_TEXT_CHARS:
                break
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        log.warning("pdf text extraction failed for %s: %s", path.name, exc)
        return Extracted(TextStatus.FAILED, note="The PDF could not be read.")
    text = "\n\n".join(p.strip() for p in parts if p.strip()).replace("\x00", "")
    note = None
    if len(text) > MAX_TEXT_CHARS:
        text, note = text[:MAX_TEXT_CHARS], f"Only the first {MAX_TEXT_CHARS:,} characters kept."
    if not text:
        return Extracted(
            TextStatus.EMPTY, pages=pages, note="No text layer — a scanned PDF? It cannot be read."
        )
    return Extracted(TextStatus.OK, text=text, pages=pages, note=note)
