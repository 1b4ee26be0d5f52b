"""File types PromptHub knows, and what ``UPLOAD_ALLOWED_EXTENSIONS`` may hold. Pure data and
parsing, no Flask: read by the configuration (at start) and by the files feature (on upload),
so it sits below both.

Types come in two families. **Built-in** types (``TEXT_TYPES``, ``BINARY_TYPES``) are checked
against their bytes (``app/files/storage.py``) and may give text for chat. **Added** types are
extensions an operator lists that PromptHub does not know (``.docx``, ``.zip``): kept as opaque
bytes (``OPAQUE_TYPE``), never sniffed, never read for text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Extension → kind. Text kinds must decode as UTF-8; binary kinds must carry their magic bytes.
TEXT_TYPES = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".xml": "application/xml",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".toml": "application/toml",
    ".ini": "text/plain",
    ".cfg": "text/plain",
    ".log": "text/plain",
    ".rst": "text/x-rst",
    ".html": "text/html",
    ".htm": "text/html",
    ".svg": "image/svg+xml",
    ".css": "text/css",
    ".sql": "application/sql",
    ".sh": "text/x-shellscript",
    ".py": "text/x-python",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".ts": "text/x-typescript",
    ".tsx": "text/x-typescript",
    ".jsx": "text/javascript",
    ".java": "text/x-java",
    ".kt": "text/x-kotlin",
    ".c": "text/x-c",
    ".h": "text/x-c",
    ".cpp": "text/x-c++",
    ".hpp": "text/x-c++",
    ".cs": "text/x-csharp",
    ".go": "text/x-go",
    ".rs": "text/x-rust",
    ".rb": "text/x-ruby",
    ".php": "text/x-php",
    ".swift": "text/x-swift",
    ".r": "text/x-r",
    ".lua": "text/x-lua",
    ".pl": "text/x-perl",
}
BINARY_TYPES = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
BUILTIN_TYPES = {**TEXT_TYPES, **BINARY_TYPES}
DEFAULT_ALLOWED = tuple(sorted(BUILTIN_TYPES))
# What an added type is stored, served and mirrored as: bytes nobody should interpret.
OPAQUE_TYPE = "application/octet-stream"
OPAQUE = "opaque"  # the kind of an added type
BUILTIN_KEYWORD = "builtin"  # in UPLOAD_ALLOWED_EXTENSIONS: every built-in type
EXT_MAX = 16  # with the dot; a longer "extension" is part of the name (see clean_name)
_ADDED_EXT = re.compile(r"\.[a-z0-9][a-z0-9_-]*")


def parse_extensions(raw: str | None) -> tuple[str, ...]:
    """The allowed extensions from ``UPLOAD_ALLOWED_EXTENSIONS``; ``ValueError`` says what is
    wrong with every bad entry.

    Empty: every built-in type. Otherwise a comma list that is exactly the allowed set (case
    does not matter): built-in types by extension, with or without the dot (``md`` or ``.md``);
    the word ``builtin`` for all of them; and added types, written with their dot (``.docx``),
    one extension each (the last part of a name: ``.gz``, never ``.tar.gz``), letters, digits,
    ``_`` and ``-``, at most ``EXT_MAX`` characters. A dotless word that is no built-in type
    (``exe``, ``pdff``) is refused rather than guessed: adding a type is written on purpose."""
    if raw is None or not raw.strip():
        return DEFAULT_ALLOWED
    chosen: set[str] = set()
    problems: list[str] = []
    entries = [part.strip() for part in raw.split(",") if part.strip()]
    if not entries:
        raise ValueError("it lists no type (leave it empty for the built-in types)")
    for entry in entries:
        lowered = entry.lower()
        dotted = lowered if lowered.startswith(".") else "." + lowered
        if lowered == BUILTIN_KEYWORD:
            chosen.update(DEFAULT_ALLOWED)
        elif "/" in lowered or "\\" in lowered:
            problems.append(f"{entry!r} looks like a path, not an extension")
        elif len(lowered.split()) > 1:
            problems.append(f"{entry!r}: separate the types with commas")
        elif dotted in BUILTIN_TYPES:
            chosen.add(dotted)
        elif not lowered.startswith("."):
            problems.append(
                f"{entry!r} is not a built-in type; to keep such files as they are, write "
                f"the extension with its dot ({dotted})"
                if _addable(dotted)
                else f"{entry!r} is not an extension"
            )
        elif lowered.count(".") > 1 and _addable("." + lowered.rsplit(".", 1)[1]):
            last = "." + lowered.rsplit(".", 1)[1]
            problems.append(f"{entry!r}: only the last part of a name is its type (write {last})")
        elif not _addable(lowered):
            problems.append(
                f"{entry!r} is not an extension (a dot, then up to {EXT_MAX - 1} letters, "
                "digits, _ or -)"
            )
        else:
            chosen.add(lowered)
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(sorted(chosen))


def _addable(ext: str) -> bool:
    return len(ext) <= EXT_MAX and _ADDED_EXT.fullmatch(ext) is not None


def added_types(allowed: Iterable[str]) -> list[str]:
    """The allowed extensions that are not built-in: kept as opaque files."""
    return sorted(ext for ext in allowed if ext not in BUILTIN_TYPES)
