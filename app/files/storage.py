"""An upload's bytes and what they are. No Flask, no database: the service decides, this module
does. Where the bytes are kept afterwards is the store's business (``app/storage/``).

Types come in two families. **Built-in** types (``TEXT_TYPES``, ``BINARY_TYPES``) are checked
against their bytes (text must be UTF-8 without NULs, a ``.png`` must start like a PNG) and may
give text for chat. **Added** types are extensions an operator lists in
``UPLOAD_ALLOWED_EXTENSIONS`` that PromptHub does not know (``.docx``, ``.zip``): they are kept
as opaque bytes (``application/octet-stream``), never sniffed, never read for text
(``app/filetypes.py`` lists the types and says what the setting may hold).

Writing is safe: an upload is copied into a temporary local file (in the store's staging
folder: the project's own folder for the local store) while it is hashed and counted, and only
handed to the store once it is whole and accepted. Anything that goes wrong removes the
temporary file, so a failed upload leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.filetypes import BINARY_TYPES, BUILTIN_TYPES, OPAQUE, OPAQUE_TYPE, TEXT_TYPES

CHUNK = 64 * 1024
HEAD = 64 * 1024  # bytes kept for type detection
NAME_MAX = 200

# Markup types we never extract text from for chat: it is code a browser would run, not prose.
NO_TEXT_TYPES = {"image/svg+xml"}

_MAGIC = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FORBIDDEN = re.compile(r'[<>:"|?*]')


class TooLarge(Exception):
    pass


class TypeRejected(Exception):
    pass


def clean_name(raw: str | None) -> str:
    """A display name: the last path segment, NFC, no control or path characters, no invisible
    format characters, no leading dots, at most ``NAME_MAX`` characters with the extension
    kept. Unicode is kept (it is escaped where it is shown); the name is never used as a path.

    Format characters (category Cf: bidi embeddings, overrides and isolates, LRM/RLM,
    zero-width space and joiners, word joiner, BOM, …) are removed before anything else looks
    at the name: ``\\u202egnp.txt`` would show as "txt.png", and ``notes.t\\u200bxt`` would hide
    its real extension from the type check."""
    visible = "".join(char for char in raw or "" if unicodedata.category(char) != "Cf")
    text = unicodedata.normalize("NFC", visible)  # after: a removal can leave marks to combine
    text = re.split(r"[/\\]", text)[-1]
    text = _FORBIDDEN.sub("", _CONTROL.sub(" ", text))
    text = " ".join(text.split()).lstrip(". ")
    if not text:
        return "upload"
    stem, ext = os.path.splitext(text)
    if len(ext) > 16:  # not an extension, just a dot in a long name
        stem, ext = text, ""
    return stem[: NAME_MAX - len(ext)].rstrip() + ext.lower() if stem else "upload" + ext.lower()


def numbered(name: str, n: int) -> str:
    """``notes.txt`` → ``notes (2).txt``."""
    stem, ext = os.path.splitext(name)
    suffix = f" ({n})"
    return stem[: NAME_MAX - len(ext) - len(suffix)] + suffix + ext


def extension(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def check_extension(name: str, allowed: Iterable[str]) -> str:
    ext = extension(name)
    if ext not in allowed:
        shown = ext or "files without an extension"
        raise TypeRejected(f"{shown} is not an allowed file type.")
    return ext


def detect(name: str, head: bytes, *, allowed: Iterable[str]) -> tuple[str, str]:
    """``(content_type, kind)`` from the bytes, checked against the name's extension.

    ``kind`` is ``text``, ``pdf``, ``image`` or ``opaque``. A built-in type whose bytes do not
    match its extension is refused, so a renamed executable or an HTML page called ``.png``
    never gets in. An added type (allowed, not built-in) is not looked at: it is kept as
    ``application/octet-stream`` and only ever downloaded as an attachment."""
    ext = check_extension(name, allowed)
    if ext not in BUILTIN_TYPES:
        return OPAQUE_TYPE, OPAQUE
    magic = _sniff(head)
    if ext in BINARY_TYPES:
        expected = BINARY_TYPES[ext]
        if magic != expected:
            raise TypeRejected(f"The content is not a {ext} file.")
        return expected, "pdf" if expected == "application/pdf" else "image"
    if magic is not None or not _is_utf8_text(head):
        raise TypeRejected(f"A {ext} file must be UTF-8 text; this one is binary.")
    return TEXT_TYPES[ext], "text"  # UTF-8; Werkzeug adds the charset to text/* answers


def _sniff(head: bytes) -> str | None:
    for prefix, content_type in _MAGIC:
        if head.startswith(prefix):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _is_utf8_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


@dataclass
class Staged:
    """A whole upload in a temporary file, hashed and measured, not yet given its final name."""

    path: Path
    size: int
    sha256: str
    head: bytes

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def stage(source: BinaryIO, folder: Path, *, max_bytes: int) -> Staged:
    """Copy ``source`` into a temporary file in ``folder``; ``TooLarge`` past ``max_bytes``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".upload-{secrets.token_hex(8)}.part"
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        with open(path, "xb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge()
                if len(head) < HEAD:
                    head += chunk[: HEAD - len(head)]
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Staged(path=path, size=size, sha256=digest.hexdigest(), head=head)
