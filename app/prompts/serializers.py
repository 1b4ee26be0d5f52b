"""A prompt version as JSON: the prompts API and the project API (its active prompt) share it."""

from __future__ import annotations


def version_json(version) -> dict:
    return {
        "id": version.id,
        "project_id": version.project_id,
        "version": version.version,
        "content": version.content,
        "note": version.note,
        "model": version.model,
        "temperature": version.temperature,
        "max_output_tokens": version.max_output_tokens,
        "is_active": version.is_active,
        "is_candidate": version.is_candidate,
        "author_id": version.author_id,
        "length": len(version.content),
        "created_at": version.created_at.isoformat(),
    }
