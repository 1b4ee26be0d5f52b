"""The extraction sandbox: a separate, short-lived process that turns one PDF into text.

Run as ``python -I app/files/sandbox.py`` (isolated mode: no PYTHON* variables, no user site,
and neither the working directory nor this folder on ``sys.path``), so it imports the standard
library and pypdf only, never the app. Before touching the file it lowers its own limits:

- ``RLIMIT_CPU``: CPU seconds; past the soft limit the kernel sends SIGXCPU, which ends it.
- ``RLIMIT_AS``: address space; a parser that inflates a stream past it gets ``MemoryError``.
- ``RLIMIT_FSIZE`` 0 and ``RLIMIT_NOFILE``: it writes no file and opens few.
- ``nice``: ``EXTRACT_NICE`` (10) added to the web process's niceness, so the web workers win
  the CPU while it runs (docs/files.md, "File text extraction": the bounded share).

The parent adds the wall-clock limit (it kills the process). Input: one JSON object as the only
argument (``path``, ``cpu_seconds``, ``memory_mb``, ``max_pages``, ``max_chars``, ``nice``).
Output: one JSON object on stdout: ``status`` (``ok | empty | failed | too_complex``),
``text``, ``pages``, ``note``. Exit code 0 whenever it wrote that object.
"""

from __future__ import annotations

import json
import os
import resource
import sys


def limit_self(cpu_seconds: int, memory_mb: int, nice: int) -> None:
    os.nice(nice)  # first: only the interpreter's start ran at the web worker's priority
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))


def extract_pdf(path: str, max_pages: int, max_chars: int) -> dict:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            return {"status": "failed", "note": "The PDF is encrypted; no text extracted."}
        pages = len(reader.pages)
        parts: list[str] = []
        size = 0
        for number, page in enumerate(reader.pages):
            if number >= max_pages:
                break
            part = page.extract_text() or ""
            parts.append(part)
            size += len(part)
            if size > max_chars:
                break
    except MemoryError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError):
        return {"status": "failed", "note": "The PDF could not be read."}
    text = "\n\n".join(p.strip() for p in parts if p.strip()).replace("\x00", "")
    notes = []
    if pages > max_pages:
        notes.append(f"Only the first {max_pages:,} of {pages:,} pages read.")
    if len(text) > max_chars:
        text = text[:max_chars]
        notes.append(f"Only the first {max_chars:,} characters kept.")
    if not text:
        return {
            "status": "empty",
            "pages": pages,
            "note": "No text layer — a scanned PDF? It cannot be read.",
        }
    return {"status": "ok", "text": text, "pages": pages, "note": " ".join(notes) or None}


def main(argv: list[str]) -> int:
    job = json.loads(argv[1])
    limit_self(int(job["cpu_seconds"]), int(job["memory_mb"]), int(job["nice"]))
    try:
        result = extract_pdf(job["path"], int(job["max_pages"]), int(job["max_chars"]))
    except MemoryError:
        result = {
            "status": "too_complex",
            "note": "Too complex to extract: it needs too much memory.",
        }
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
