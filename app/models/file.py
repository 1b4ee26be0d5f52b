"""Files uploaded into a project.

The bytes live in the file store (``app/storage/``: ``UPLOAD_DIR/<project_id>/<stored_name>``,
or the S3 object ``<prefix>/<project_id>/<stored_name>``; a generated name, never the
client's); this row keeps the cleaned display name, what we detected and extracted, and the
state of the optional OpenAI Files mirror. Display names and contents are unique per project:
the same bytes are stored once, and a second ``notes.txt`` becomes ``notes (2).txt`` so a file
can be addressed by its name.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, deferred, mapped_column

from app.models.base import Base, CreatedAtMixin, UTCDateTime


class TextStatus(StrEnum):
    PENDING = "pending"  # queued for the extraction sandbox ("extracting…")
    OK = "ok"  # text extracted; may be used in chat
    EMPTY = "empty"  # a text-capable type that yielded nothing (a scanned PDF, a blank file)
    FAILED = "failed"  # extraction raised (encrypted or broken PDF)
    TOO_COMPLEX = "too_complex"  # the sandbox hit its CPU, memory or time limit
    NONE = "none"  # a type without text (images)


class SyncStatus(StrEnum):
    LOCAL = "local"  # no OpenAI key when it was uploaded: "Copy to OpenAI" is offered
    PENDING = "pending"  # a ``copy`` job is queued or running (app/files/copies.py)
    SYNCED = "synced"  # terminal: OpenAI holds a copy (openai_* describe it)
    FAILED = "failed"  # the copy failed (sync_error says why): "Retry the copy" is offered


class StoredFile(CreatedAtMixin, Base):
    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256", name="uq_files_project_sha256"),
        UniqueConstraint("project_id", "name", name="uq_files_project_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )  # indexed by the unique constraints, which lead with project_id
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    stored_name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    content_type: Mapped[str] = mapped_column(String(120), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)

    text_status: Mapped[str] = mapped_column(String(16), nullable=False)
    text_note: Mapped[str | None] = mapped_column(String(300))
    text_chars: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    text_pages: Mapped[int | None] = mapped_column(Integer)
    # Deferred: lists never load the text; the chat context reads it for marked files only.
    text: Mapped[str | None] = deferred(mapped_column(Text))
    # The extraction lease: set when a sandbox run claims a pending file, so a run lost with
    # its process is taken up again once the lease is over (app/files/extraction.py).
    text_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    use_in_chat: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)

    openai_file_id: Mapped[str | None] = mapped_column(String(120))
    sync_status: Mapped[str] = mapped_column(String(16), default=SyncStatus.LOCAL, nullable=False)
    sync_error: Mapped[str | None] = mapped_column(Text)
    # The copy job's lease: set when a run claims a pending copy, so a run lost with its
    # process is taken up again once the lease is over (app/files/copies.py).
    sync_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What OpenAI answered about its copy (its file object), as it sent it: sizes in bytes,
    # times in Unix seconds. Null when there is no copy, and for copies made before 0008.
    openai_bytes: Mapped[int | None] = mapped_column(BigInteger)
    openai_created_at: Mapped[int | None] = mapped_column(BigInteger)
    openai_expires_at: Mapped[int | None] = mapped_column(BigInteger)
    openai_purpose: Mapped[str | None] = mapped_column(String(32))
    openai_status: Mapped[str | None] = mapped_column(String(32))
