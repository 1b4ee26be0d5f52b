"""The project API's shapes: a project, with its active prompt in the detailed form, and the
bodies that create and update one."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.apimodels import Body, Out, Time
from app.prompts.schemas import PromptVersion
from app.prompts.versions import DEFAULT_SYSTEM_PROMPT, active_version


class Project(Out):
    id: int
    name: str
    slug: str = Field(
        description="The project's model name on the OpenAI-compatible endpoints (`/v1`)."
    )
    description: str
    active_prompt_id: int | None
    created_at: Time
    updated_at: Time


class ProjectList(Out):
    data: list[Project]


class ProjectDetail(Project):
    active_prompt: PromptVersion | None
    default_prompt: str | None = Field(
        description="The built-in prompt chat uses while the project has no version; null once "
        "it has one."
    )

    @classmethod
    def read(cls, row: Any, **more: Any) -> ProjectDetail:
        version = active_version(row)
        return super().read(
            row,
            active_prompt=PromptVersion.read(version) if version else None,
            default_prompt=DEFAULT_SYSTEM_PROMPT if version is None else None,
        )


class ProjectCreate(Body):
    name: str
    description: str | None = None
    system_prompt: str | None = None


class ProjectUpdate(Body):
    name: str | None = None
    description: str | None = None
    system_prompt: str | None = Field(
        None, description="The new active prompt text (at most `PROMPT_MAX_CHARS`)."
    )
