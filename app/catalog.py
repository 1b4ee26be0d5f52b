"""The model allowlist (``MODELS`` in config): what a prompt version may choose, the id each
provider knows it by, and its price for cost estimates.

A version stores the model's *name*; the provider ids are looked up when a request is built, so
changing ``MODELS`` (say, a new OpenRouter id) needs no data migration. A stored name that the
list no longer has keeps working: it is sent as the OpenAI id and mapped for OpenRouter, as a
plain model setting was before versions chose models.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from app.providers.types import to_openrouter_model


@dataclass(frozen=True)
class ModelChoice:
    name: str
    openai: str | None
    openrouter: str | None
    input_per_million: float | None = None  # USD per million input tokens
    output_per_million: float | None = None

    @property
    def provider_ids(self) -> dict[str, str | None]:
        """What ``ChatRequest.models`` carries: provider name → wire id (None: skip it)."""
        return {"openai": self.openai, "openrouter": self.openrouter}

    def cost(self, tokens_in: float | None, tokens_out: float | None) -> float | None:
        """Estimated USD for these token counts; None when the model has no price."""
        if self.input_per_million is None or self.output_per_million is None:
            return None
        return (
            (tokens_in or 0) * self.input_per_million + (tokens_out or 0) * self.output_per_million
        ) / 1_000_000


def choices() -> list[ModelChoice]:
    return [ModelChoice(**entry) for entry in current_app.config["MODELS"]]


def names() -> list[str]:
    return [entry["name"] for entry in current_app.config["MODELS"]]


def default_name() -> str:
    return current_app.config["MODELS"][0]["name"]


def is_listed(name: str) -> bool:
    return any(entry["name"] == name for entry in current_app.config["MODELS"])


def resolve(name: str | None) -> ModelChoice:
    """The allowlist entry for ``name`` (the default for None); an unlisted stored name is
    served as before versions chose models: the OpenAI id, mapped for OpenRouter."""
    name = name or default_name()
    for entry in current_app.config["MODELS"]:
        if entry["name"] == name:
            return ModelChoice(**entry)
    return ModelChoice(name=name, openai=name, openrouter=to_openrouter_model(name))


def listed_name(value: object) -> str | None:
    """``value`` as a name the allowlist has (stripped), or None when it is not one."""
    if isinstance(value, str) and is_listed(value.strip()):
        return value.strip()
    return None


def not_offered() -> str:
    """What a request naming another model is told (a field error)."""
    return "Choose one of the models offered: " + ", ".join(names()) + "."
