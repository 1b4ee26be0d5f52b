"""The file API's shapes: a stored file (its extracted text, its OpenAI Files copy), the list
with the storage the files take against the quotas, and the body that updates one."""

from __future__ import annotations

from typing import Any, Literal

from flask import url_for
from pydantic import Field

from app.apimodels import Body, Out, Time, documented


class FileText(Out):
    status: Literal["pending", "ok", "empty", "failed", "too_complex", "none"] = Field(
        description="`pending`: queued for extraction (PDFs are extracted after the upload "
        "answers, in a sandboxed process); `ok`: text extracted (the file may be used in chat); "
        "`empty`: a text type that yielded nothing (a scanned PDF?); `failed`: extraction "
        "raised; `too_complex`: extraction passed its CPU, memory or time limit; `none`: a type "
        "without text (images, and types added with `UPLOAD_ALLOWED_EXTENSIONS`, kept as they "
        "are)."
    )
    chars: int = documented(minimum=0)
    pages: int | None
    note: str | None


class OpenAIFile(Out):
    """What OpenAI answered about its copy (its `OpenAIFile` object, the fields PromptHub
    keeps). Every field but `id` is null for a copy made before PromptHub kept OpenAI's answer,
    or when OpenAI left the field out."""

    id: str = Field(description="OpenAI's file id (`file-…`).")
    bytes: int | None = Field(description="Size OpenAI stored, in bytes.")
    created_at: int | None = Field(
        description="When OpenAI created the copy, in Unix seconds (as OpenAI sends it; not an "
        "ISO time like PromptHub's own `created_at`)."
    )
    expires_at: int | None = Field(
        description="When OpenAI deletes the copy by itself, in Unix seconds; null: kept until "
        "deleted (every purpose but `batch`)."
    )
    purpose: str | None = Field(
        description="The purpose OpenAI recorded (`OPENAI_FILE_PURPOSE`, `assistants` by default)."
    )
    status: str | None = Field(
        description="OpenAI's own (deprecated) status of the file: `uploaded`, `processed` or "
        "`error`."
    )


class FileSync(Out):
    status: Literal["local", "pending", "synced", "failed"] = Field(
        description="PromptHub's state of the OpenAI Files copy: `local` (no `OPENAI_API_KEY` "
        "when uploaded), `pending` (the copy is a background job, queued or running: read the "
        "file again for its outcome), `synced` (OpenAI holds a copy), `failed` (the copy "
        "failed, the upload itself did not; `error` says why and `POST …/sync` retries)."
    )
    file_id: str | None = Field(
        description="OpenAI's id of the copy (`file-…`, also `file.id`); null without a copy."
    )
    error: str | None = Field(
        description="Why the last copy failed, in words for a person, then the reason OpenAI "
        "(or the connection) gave; null unless `status` is `failed`."
    )
    file: OpenAIFile | None = Field(
        description="OpenAI's file object for the copy, as OpenAI answered the upload; null "
        "without a copy (`status` `local` or `failed`)."
    )


class File(Out):
    id: int
    project_id: int
    name: str = Field(description="Cleaned display name, unique in the project.")
    size: int = documented("Bytes.", minimum=1)
    content_type: str
    sha256: str = documented(pattern="^[0-9a-f]{64}$")
    created_at: Time
    text: FileText
    use_in_chat: bool
    openai: FileSync
    download_url: str = Field(description="The page route that downloads it by name.")

    @classmethod
    def read(cls, row: Any, **more: Any) -> File:
        copy = None
        if row.openai_file_id:  # OpenAI's file object, as OpenAI answered the upload
            copy = OpenAIFile(
                id=row.openai_file_id,
                bytes=row.openai_bytes,
                created_at=row.openai_created_at,
                expires_at=row.openai_expires_at,
                purpose=row.openai_purpose,
                status=row.openai_status,
            )
        return super().read(
            row,
            text=FileText(
                status=row.text_status,
                chars=row.text_chars,
                pages=row.text_pages,
                note=row.text_note,
            ),
            openai=FileSync(
                status=row.sync_status,
                file_id=row.openai_file_id,
                error=row.sync_error,
                file=copy,
            ),
            download_url=url_for("files.download", project_id=row.project_id, filename=row.name),
            **more,
        )


class FileUploaded(File):
    duplicate: bool = Field(
        description="true: these bytes were already in the project; that file is returned."
    )


class ProjectStorage(Out):
    bytes: int
    files: int
    max_bytes: int
    max_files: int


class UserStorage(Out):
    bytes: int
    files: int
    max_bytes: int


class Storage(Out):
    """What your files take against the storage quotas: this project, and all your projects
    (this one included)."""

    project: ProjectStorage
    user: UserStorage

    @classmethod
    def read(cls, row: Any, **more: Any) -> Storage:
        limits = row.quotas
        return cls(
            project=ProjectStorage(
                bytes=row.project.bytes,
                files=row.project.files,
                max_bytes=limits.project_bytes,
                max_files=limits.project_files,
            ),
            user=UserStorage(
                bytes=row.user.bytes, files=row.user.files, max_bytes=limits.user_bytes
            ),
        )


class FileList(Out):
    data: list[File]
    storage: Storage


class FileUpdate(Body):
    use_in_chat: bool
