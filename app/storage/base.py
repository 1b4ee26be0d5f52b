"""The storage interface: what the files feature may ask of a store, and how a store fails.

A store keeps opaque bytes under ``(project_id, stored_name)``. ``stored_name`` is always a name
PromptHub generated (``new_name``: 32 hex characters), never a user's file name, and every
backend refuses anything else (``check_name``), so no path or key is ever built from user input.

Failures are of two kinds, and the caller treats them differently: ``ObjectMissing`` (the store
answered, and the bytes are not there: a 404 for the user, logged) and ``StoreUnavailable`` (the
store could not be reached or refused to work, a missing bucket or rejected credentials included:
a 503, nothing changed). ``StorageConfigError`` is what ``check`` raises at start for a store that
can be reached but will never work as configured (no such bucket, credentials refused).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

CHUNK = 256 * 1024  # bytes per read when streaming a stored object
_NAME = re.compile(r"[0-9a-f]{32}")
# What an S3 bucket name may be (AWS's rules, simplified: 3-63 of a-z 0-9 . -).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._-]+")


class StorageError(Exception):
    """Something about stored bytes; ``str()`` is a sentence for the log."""


class ObjectMissing(StorageError):
    """The store answered: there are no bytes under this name."""


class StoreUnavailable(StorageError):
    """The store cannot be reached, or refused the request; nothing was changed by us."""


class StorageConfigError(StoreUnavailable):
    """The store answers but cannot work as configured (no such bucket, credentials refused)."""


def new_name() -> str:
    """A fresh stored name: 128 random bits as 32 hex characters."""
    return secrets.token_hex(16)


def check_name(project_id: int, name: str) -> tuple[int, str]:
    """``(project_id, name)`` when both are what PromptHub generates; ``ValueError`` otherwise.
    Every backend calls this before building a path or a key."""
    if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id < 1:
        raise ValueError(f"not a project id: {project_id!r}")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"not a generated stored name: {name!r}")
    return project_id, name


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    sha256: str | None  # what the store recorded at ``put``; None where it keeps none (local)


@dataclass
class Opened:
    """Stored bytes opened for reading: ``file`` is readable and seekable (close it)."""

    file: BinaryIO
    size: int

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        while chunk := self.file.read(size):
            yield chunk


class Store(Protocol):
    kind: str  # the registry's name for the backend: "local" | "s3"

    def describe(self) -> str:
        """Where the bytes go, for logs and ``flask files check-storage`` (no secrets)."""

    def staging_dir(self, project_id: int) -> Path:
        """A local folder for an upload in progress, before ``put`` (see each backend)."""

    def put(self, project_id: int, name: str, staged: Path, *, sha256: str) -> None:
        """Store the staged file under ``name``; the object appears whole or not at all."""

    def open(self, project_id: int, name: str) -> Opened:
        """The bytes, streamed (never read whole into memory). ``ObjectMissing``."""

    def head(self, project_id: int, name: str) -> ObjectInfo | None:
        """Size (and recorded checksum) of the object, None when there is none."""

    def local_copy(self, project_id: int, name: str) -> AbstractContextManager[Path]:
        """A local file with the bytes for the block (a process that needs a path: the PDF
        sandbox). Local: the stored file itself; S3: a temporary copy removed afterwards."""

    def delete(self, project_id: int, name: str) -> None:
        """Remove the object; removing one that is not there is not an error."""

    def delete_project(self, project_id: int) -> int:
        """Remove every object of the project; returns how many were removed (when known)."""

    def check(self) -> None:
        """Prove the store works as configured: ``StorageConfigError`` / ``StoreUnavailable``."""


@dataclass(frozen=True)
class StorageSpec:
    """``STORAGE_URL`` read: ``local`` (empty) or ``s3://bucket/prefix``."""

    scheme: str
    bucket: str | None = None
    prefix: str = ""


def parse_storage_url(raw: str | None) -> StorageSpec:
    """``STORAGE_URL``: empty for the local directory, ``s3://bucket`` or ``s3://bucket/prefix``
    for an S3-compatible store. ``ValueError`` with the reason for anything else."""
    text = (raw or "").strip()
    if not text:
        return StorageSpec("local")
    parts = urlsplit(text)
    if parts.scheme != "s3":
        shown = f"{parts.scheme}://" if parts.scheme else repr(text)
        raise ValueError(
            f"{shown} is not a storage PromptHub knows: leave it empty for the local "
            "directory (UPLOAD_DIR) or write s3://bucket/prefix"
        )
    if parts.query or parts.fragment or parts.username or parts.password or parts.port:
        raise ValueError("write s3://bucket/prefix: no credentials, port, query or fragment")
    bucket = parts.hostname or ""
    if not _BUCKET.fullmatch(parts.netloc) or ".." in bucket:
        raise ValueError(f"{parts.netloc!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
    segments = [s for s in parts.path.split("/") if s]
    for segment in segments:
        if segment in (".", "..") or not _PREFIX_PART.fullmatch(segment):
            raise ValueError(
                f"the prefix may hold letters, digits, '.', '_', '-' and '/', got {parts.path!r}"
            )
    return StorageSpec("s3", bucket=bucket, prefix="/".join(segments))
