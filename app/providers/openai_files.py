"""OpenAI Files API (docs/providers.md, "OpenAI Files"): mirror a project file, delete the mirror.

``POST {base}/files`` is multipart with ``file`` (name and content type sent) and ``purpose``;
the answer is an ``OpenAIFile`` whose ``id`` (``file-…``) we keep. ``DELETE {base}/files/{id}``
removes it; a 404 there means it is already gone. Failures are our usual ``ProviderError``s with
OpenAI's own reason, so the caller can show it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from app.providers.base import ProviderMalformed, ProviderSettings, as_dict, transport_error
from app.providers.openai import NAME, status_error


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

    def upload(self, path: Path, *, filename: str, content_type: str, purpose: str) -> dict:
        """Send the file; returns the ``OpenAIFile`` object (``id`` guaranteed)."""
        try:
            with open(path, "rb") as fh:
                response = self.client.post(
                    self.url,
                    headers=self._headers(),
                    data={"purpose": purpose},
                    files={"file": (filename, fh, content_type)},
                )
        except httpx.HTTPError as exc:
            raise transport_error(NAME, exc) from exc
        if response.status_code >= 400:
            raise status_error(response)
        body = _json(response)
        if not isinstance(body.get("id"), str) or not body["id"]:
            raise ProviderMalformed(NAME, "the file upload answer has no id")
        return body

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
