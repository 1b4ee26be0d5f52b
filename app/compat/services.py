"""Reading an OpenAI-style call: which project and version the model name means, the caller's
messages as our history, the parameters we honour and those we refuse by name.

Model names (``GET /v1/models``): a project's ``slug`` (its serving version: production, or the
canary's arm for the new conversation), ``slug@v7`` (version 7, pinned) or ``slug@label`` (the
version a label points at, pinned). A name the caller cannot use (another user's project, a
project key's other projects, a version that does not exist) is the same 404
``model_not_found``.

Parameters: ``model``, ``messages`` / ``input``, ``stream``, ``stream_options.include_usage``,
``user``, ``metadata``, ``store`` (true or absent: PromptHub keeps every conversation),
``n`` (1 only), ``temperature`` and ``max_tokens`` / ``max_completion_tokens`` /
``max_output_tokens`` (at most the version's own ceiling) are honoured, and ``variables`` (our
extension: template values, ``docs/templates.md``). Every other parameter is refused with a
400 naming it, never ignored: a caller asking for tools, logprobs or a response format must
not silently get a reply without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select

from app import models, usage
from app.chat.start import Instructions
from app.errors import AppError, BadRequest, NotFound
from app.extensions import db
from app.keys.services import KeyInUse
from app.models import Project, SystemPolicy, User
from app.models.base import utcnow
from app.prompts.labels import labelled_version
from app.prompts.versions import existing_version

MAX_MESSAGES = 500
_PIN = re.compile(r"v([1-9][0-9]{0,8})")


class KeyBudgetExceeded(AppError):
    status, code = 429, "key_budget_exceeded"
    message = "This API key's monthly token budget is used up."


@dataclass(frozen=True)
class Target:
    """What a model name means: the project (the columns a call reads), and the version pinned
    (or None: serving)."""

    project_id: int
    system_policy: str
    created_at: datetime
    version: int | None = None
    label: str | None = None


def not_found(name: object) -> NotFound:
    return NotFound(
        f"The model `{name}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def resolve(user: User, key: KeyInUse | None, name: object) -> Target:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(
            "Name the model: a project's slug (GET /v1/models).",
            code="invalid_model",
            fields={"model": "Required: a string."},
        )
    slug, _, pin = name.strip().partition("@")
    # Plain columns: the turn reads the project itself (with the budget, ``chat.start``).
    stmt = select(Project.id, Project.system_policy, Project.created_at).where(
        Project.owner_id == user.id, Project.slug == slug
    )
    if key is not None and key.project_id is not None:
        stmt = stmt.where(Project.id == key.project_id)
    row = db.session.execute(stmt).first()
    if row is None:
        raise not_found(name)
    found = Target(*row)
    if not pin:
        return found
    project = db.session.get(Project, found.project_id)
    if match := _PIN.fullmatch(pin):
        number = int(match.group(1))
        try:
            existing_version(project, number)
        except NotFound:
            raise not_found(name) from None
        return replace(found, version=number)
    try:
        labelled_version(project, pin)
    except NotFound:
        raise not_found(name) from None
    return replace(found, label=pin)


def check_budget(key: KeyInUse | None) -> None:
    """A key over its monthly token budget: 429 ``key_budget_exceeded`` until the month ends."""
    if key is None or key.monthly_tokens is None:
        return
    used = usage.tokens_this_month(models.Conversation.api_key_id == key.id)
    if used >= key.monthly_tokens:
        _, resets = usage.month_bounds()
        wait = max(1, int((resets - utcnow()).total_seconds()))
        raise KeyBudgetExceeded(
            f"This API key's monthly budget of {key.monthly_tokens:,} tokens is used up "
            f"({used:,} used); it renews on {resets:%Y-%m-%d} (UTC).",
            headers={"Retry-After": str(wait)},
        )


# --- parameters ---------------------------------------------------------------------------------

# Parameters of OpenAI's APIs we know and do not offer: refused by name, with why.
_REFUSED = {
    "tools": "tools and function calling are not offered",
    "tool_choice": "tools and function calling are not offered",
    "parallel_tool_calls": "tools and function calling are not offered",
    "functions": "tools and function calling are not offered",
    "function_call": "tools and function calling are not offered",
    "logprobs": "log probabilities are not offered",
    "top_logprobs": "log probabilities are not offered",
    "response_format": "the project version's output format decides the format",
    "text": "the project version's output format decides the format",
    "audio": "only text is offered",
    "modalities": "only text is offered",
    "prediction": "predicted outputs are not offered",
    "logit_bias": "not offered",
    "top_p": "set the sampling on the project's version",
    "presence_penalty": "set the sampling on the project's version",
    "frequency_penalty": "set the sampling on the project's version",
    "seed": "not offered",
    "stop": "stop sequences are not offered",
    "reasoning_effort": "not offered",
    "reasoning": "not offered",
    "web_search_options": "not offered",
    "service_tier": "not offered",
    "instructions": None,  # /v1/responses reads it; refused on chat completions
    "include": "not offered",
    "truncation": "not offered",
    "background": "not offered",
    "prompt": "the project is the prompt: name it as the model",
    "conversation": "use previous_response_id",
    "safety_identifier": "not offered",
    "prompt_cache_key": "not offered",
}
COMMON_PARAMETERS = {
    "model",
    "stream",
    "user",
    "metadata",
    "store",
    "temperature",
    "variables",
}


@dataclass(frozen=True)
class Options:
    stream: bool
    include_usage: bool
    temperature: float | None
    max_tokens: int | None
    variables: dict | None


def refuse_unknown(data: dict[str, Any], allowed: set[str]) -> None:
    for name, value in data.items():
        if name in allowed or value is None:
            continue
        why = _REFUSED.get(name)
        if name in _REFUSED:
            raise BadRequest(
                f"`{name}` is not supported by this endpoint ({why or 'not offered'}).",
                code="unsupported_parameter",
                fields={name: "Not supported."},
            )
        raise BadRequest(
            f"Unrecognized request argument supplied: {name}",
            code="unknown_parameter",
            fields={name: "Unknown parameter."},
        )


def options(data: dict[str, Any], *, max_names: tuple[str, ...]) -> Options:
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("`stream` must be true or false.", fields={"stream": "A boolean."})
    include_usage = False
    stream_options = data.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict) or set(stream_options) - {
            "include_usage",
            "include_obfuscation",
        }:
            raise BadRequest(
                "`stream_options` takes `include_usage` only.",
                fields={"stream_options": "Only include_usage."},
            )
        if not stream:
            raise BadRequest(
                "`stream_options` needs `stream: true`.",
                fields={"stream_options": "Only with stream."},
            )
        include_usage = stream_options.get("include_usage") is True
    if data.get("store") is False:
        raise BadRequest(
            "PromptHub stores every conversation in the project: leave out `store` or send true.",
            fields={"store": "Must be true or absent."},
        )
    n = data.get("n")
    if n is not None and n != 1:
        raise BadRequest("Only one choice per request: `n` must be 1.", fields={"n": "Must be 1."})
    temperature = data.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 2
    ):
        raise BadRequest(
            "`temperature` must be a number from 0 to 2.", fields={"temperature": "0 to 2."}
        )
    max_tokens = None
    for name in max_names:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(
                f"`{name}` must be a positive whole number.",
                fields={name: "A positive whole number."},
            )
        max_tokens = value
    variables = data.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest(
            "`variables` must be an object of template values.", fields={"variables": "An object."}
        )
    metadata = data.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise BadRequest("`metadata` must be an object.", fields={"metadata": "An object."})
    return Options(bool(stream), include_usage, temperature, max_tokens, variables)


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    """The caller's messages as ours: earlier turns, the message to answer, its system text."""

    history: list[tuple[str, str]]
    message: str
    instructions: Instructions | None


def _text_of(content: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts (``{"type": "text"|"input_text"|
    "output_text", "text": …}``). Images, audio and files are refused."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for i, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") not in ("text", "input_text", "output_text")
                or not isinstance(part.get("text"), str)
            ):
                raise BadRequest(
                    "Only text content is supported (parts of type `text`).",
                    code="unsupported_content",
                    fields={f"{where}.content.{i}": "Only text parts."},
                )
            pieces.append(part["text"])
        return "".join(pieces)
    raise BadRequest(
        "A message's `content` must be a string or a list of text parts.",
        fields={f"{where}.content": "A string or text parts."},
    )


def conversation(
    messages: Any, system_policy: str, *, field: str = "messages", extra_system: str | None = None
) -> Conversation:
    """The caller's messages (OpenAI's ``messages`` or the Responses API's ``input`` items),
    oldest first, ending with the user's message to answer. ``system``/``developer`` messages
    (and ``extra_system``, the Responses API's ``instructions``) go by the project's
    ``system_policy``."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest(
            f"`{field}` must be a non-empty list of messages.", fields={field: "A non-empty list."}
        )
    if len(messages) > MAX_MESSAGES:
        raise BadRequest(
            f"At most {MAX_MESSAGES} messages per request.",
            fields={field: f"At most {MAX_MESSAGES}."},
        )
    system: list[str] = [extra_system] if extra_system else []
    turns: list[tuple[str, str]] = []
    for i, item in enumerate(messages):
        where = f"{field}.{i}"
        if not isinstance(item, dict):
            raise BadRequest(
                "Each message is an object with `role` and `content`.", fields={where: "An object."}
            )
        if item.get("type") not in (None, "message"):
            raise BadRequest(
                f"Input items of type `{item.get('type')}` are not supported.",
                code="unsupported_content",
                fields={where: "Messages only."},
            )
        role = item.get("role")
        if role in ("tool", "function"):
            raise BadRequest(
                "Tool messages are not supported (no tools are offered).",
                code="unsupported_content",
                fields={f"{where}.role": "Not tool."},
            )
        if role not in ("system", "developer", "user", "assistant"):
            raise BadRequest(
                "A message's `role` is system, developer, user or assistant.",
                fields={f"{where}.role": "Not a known role."},
            )
        if role == "assistant" and item.get("tool_calls"):
            raise BadRequest(
                "Tool calls are not supported.",
                code="unsupported_content",
                fields={f"{where}.tool_calls": "Not supported."},
            )
        text = _text_of(item.get("content"), where)
        if role in ("system", "developer"):
            system.append(text)
        else:
            turns.append((role, text))
    if not turns or turns[-1][0] != "user":
        raise BadRequest(
            "The last message must be the user's message to answer.",
            fields={field: "End with a user message."},
        )
    instructions = None
    system_text = "\n\n".join(t for t in system if t.strip())
    if system_text:
        policy = system_policy
        if policy == SystemPolicy.REFUSE:
            raise BadRequest(
                "This project does not take system or developer messages: its own "
                "instructions apply. Leave them out.",
                code="system_message_refused",
                fields={field: "No system or developer messages."},
            )
        instructions = Instructions(system_text, replace=policy == SystemPolicy.REPLACE)
    *history, (_, message) = turns
    return Conversation(history=history, message=message, instructions=instructions)


def cap_tokens(requested: int | None, ceiling: int) -> int | None:
    """The caller's output cap, at most the version's own (``None``: the version's)."""
    if requested is None:
        return None
    return min(requested, ceiling, current_app.config["LLM_MAX_OUTPUT_TOKENS"])
