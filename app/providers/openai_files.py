"""OpenAI Files API (docs/providers.md, "OpenAI Files"): mirror a project file, delete the mirror.

``POST {base}/files`` is multipart with ``file`` (name and content type sent) and ``purpose``;
the answer is an ``OpenAIFile``, read into a ``RemoteFile``: its ``id`` (``file-…``) is required,
the other fields we keep (``bytes``, ``created_at``, ``expires_at``, ``purpose``, ``status``) are
taken when they have the documented type and are None otherwise, so a field OpenAI drops or
changes never costs the copy. ``DELETE {base}/files/{id}`` removes it; a 404 there means it is
already gone. Failures are our usual ``ProviderError``s with OpenAI's own reason, so the caller
can show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

import httpx

from app.providers.errors import ProviderMalformed, as_dict, as_int, transport_error
from app.providers.openai import NAME, status_error
from app.providers.types import ProviderSettings


@dataclass(frozen=True)
class RemoteFile:
    """What OpenAI said about the copy it made (its ``OpenAIFile``, the fields we keep)."""

    id: str
    bytes: int | None = None
    created_at: int | None = None  # Unix seconds, as OpenAI sent it
    expires_at: int | None = None  # Unix seconds; None: kept until deleted
    purpose: str | None = None
    status: str | None = None  # deprecated by OpenAI: uploaded | processed | error

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> RemoteFile:
        file_id = body.get("id")
        if not isinstance(file_id, str) or not file_id:
            raise ProviderMalformed(NAME, "the file upload answer has no id")
        return cls(
            id=file_id,
            bytes=as_int(body.get("bytes")),
            created_at=as_int(body.get("created_at")),
            expires_at=as_int(body.get("expires_at")),
            purpose=_text(body.get("purpose")),
            status=_text(body.get("status")),
        )


class OpenAIFiles:
    def __init__(self, settings: ProviderSettings, client: httpx.Client) -> None:
        self.settings = settings
        self.client = client
        self.url = settings.openai_base_url.rstrip("/") + "/files"

    @property
    def configured(self) -> bool:
        return bool(self.settings.openai_api_key)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.openai_api_key}"}

    def upload(
        self, content: BinaryIO, *, filename: str, content_type: str, purpose: str
    ) -> RemoteFile:
        """Send the file (``content``: readable and seekable, read in chunks as the body is
        sent, so any store's reader will do); returns what OpenAI answered about its copy."""
        try:
            response = self.client.post(
                self.url,
                headers=self._headers(),
                data={"purpose": purpose},
                files={"file": (filename, content, content_type)},
            )
        except httpx.HTTPError as exc:
            raise transport_error(NAME, exc) from exc
        if response.status_code >= 400:
            raise status_error(response)
        return RemoteFile.from_body(_json(response))

    def delete(self, file_id: str) -> bool:
        """Delete the remote copy; False when OpenAI no longer has it."""
        try:
            response = self.client.delete(f"{self.url}/{file_id}", headers=self._headers())
        except httpx.HTTPError as exc:
            raise transport_error(NAME, exc) from exc
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise status_error(response)
        return bool(_json(response).get("deleted", True))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        return as_dict(response.json())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProviderMalformed(NAME, f"not JSON: {response.text[:200]!r}") from exc


def _text(value: Any, limit: int = 32) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None
