"""The prompt API's shapes: a version with its model settings, the release (production,
candidate, canary), a diff, the model list, per-version metrics; and the bodies that save a
version and set the canary."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from app.apimodels import (
    Body,
    Checked,
    Count,
    DbInt,
    NonNegative,
    Out,
    Query,
    Rate,
    Time,
    checked,
    documented,
    required_str,
)


class PromptVersion(Out):
    id: int
    project_id: int
    version: int = documented(minimum=1)
    content: str
    note: str | None
    model: str = Field(description="A name from the server's model list (`GET /api/models`).")
    temperature: float | None = documented("null: the provider's default.", minimum=0, maximum=2)
    max_output_tokens: int = documented("The reply's token budget.", minimum=16)
    variables: list[Variable] = Field(
        description="Its template variables; empty when the text is not a template."
    )
    templated: bool = Field(
        description="The text is a template, rendered at each turn (docs/templates.md); false: "
        "sent as it is (text without template syntax, and versions saved before templates)."
    )
    output_format: Literal["text", "json_object", "json_schema"] = Field(
        description="What replies must be: text, a JSON object, or JSON matching "
        "`output_schema` (strict). Sent as OpenAI's `text.format` and OpenRouter's "
        "`response_format`; replies are checked against it (docs/formats.md)."
    )
    output_schema: dict[str, Any] | None = Field(
        description="The JSON Schema (Draft 2020-12) of `json_schema` replies; null otherwise."
    )
    is_active: bool = Field(description="Production: what the project serves.")
    is_candidate: bool = Field(description="The version being tried before promotion.")
    author_id: int | None
    length: int = documented("Characters in `content`.", minimum=0)
    created_at: Time

    @classmethod
    def read(cls, row: Any, **more: Any) -> PromptVersion:
        return super().read(row, length=len(row.content), **more)


class PromptVersionList(Out):
    data: list[PromptVersion]


class PromptVersionSaved(PromptVersion):
    created: bool = Field(
        description="false: the text equals the active version; nothing was stored and the "
        "active version is returned."
    )


class Release(Out):
    production: PromptVersion | None
    candidate: PromptVersion | None
    canary_percent: int = documented(
        "Share of new conversations sent to the candidate.", minimum=0, maximum=100
    )


class Variable(Out):
    """A template variable a version declares (docs/templates.md)."""

    name: str = Field(description="Letters, digits and `_`, starting with a letter (at most 64).")
    type: Literal["string", "number", "boolean", "list"]
    default: str | float | bool | list[str | float | bool] | None = Field(
        description="Used when neither the call nor the conversation gives a value; of `type`."
    )
    description: str | None = documented(maxLength=200)
    required: bool = Field(description="Without a value or default, a turn is a 422.")


class SettingChange(Out):
    name: str = Field(
        description="A field of a version's configuration: `model`, `temperature`, "
        "`max_output_tokens`, `variables`, `output_format`, `output_schema` (more as versions "
        "gain fields); or `labels`: the labels pointing at each version (`production`, "
        "`candidate` and named ones), when they differ."
    )
    label: str = Field(description="The field's name as the diff page shows it.")
    from_: Any = Field(alias="from", description="The older version's value (JSON).")
    to: Any = Field(description="The newer version's value (JSON).")


class PromptDiff(Out):
    from_: int = Field(alias="from")
    to: int
    diff: str = Field(description="Unified line diff; every line ends with a newline.")
    settings: list[SettingChange] = Field(
        description="Every configuration field that differs besides the text (model settings, "
        "variables, …)."
    )


class ModelChoice(Out):
    name: str = Field(description="What a version's `model` holds.")
    openai: str | None = Field(description="The OpenAI id; null: not sent there.")
    openrouter: str | None = Field(description="The OpenRouter id; null: not sent.")
    input_per_million: float | None = documented(
        "USD per million input tokens (for cost estimates).", minimum=0
    )
    output_per_million: float | None = documented(minimum=0)
    default: bool = Field(description="The model new versions start with.")


class ModelList(Out):
    data: list[ModelChoice]


class MetricSeries(Out):
    """Each metric per bucket (`buckets`); an empty bucket has 0 replies and null rates,
    medians and means."""

    replies: list[Count | None]
    up_rate: list[Rate | None]
    error_rate: list[Rate | None]
    fallback_rate: list[Rate | None]
    median_ttft_ms: list[NonNegative | None]
    median_total_ms: list[NonNegative | None]
    mean_tokens_in: list[NonNegative | None]
    mean_tokens_out: list[NonNegative | None]
    cost_usd: list[NonNegative | None]


class VersionMetrics(Out):
    """Replies that ended (not `streaming`/`stopping`), in the window, of conversations not
    overriding the version's model."""

    version: int = documented(minimum=1)
    is_active: bool = Field(description="Production.")
    is_candidate: bool
    model: str = Field(description="The version's model; it prices the replies.")
    replies: int = documented("Assistant replies counted.", minimum=0)
    thumbs_up: int = documented("Replies rated 👍.", minimum=0)
    thumbs_down: int = documented("Replies rated 👎.", minimum=0)
    up_rate: float | None = documented(
        "👍 / rated replies; null: none rated.", minimum=0, maximum=1
    )
    error_rate: float | None = documented(
        "`error` + `interrupted` / replies (`incomplete`, mostly a Stop, is not an error).",
        minimum=0,
        maximum=1,
    )
    fallback_rate: float | None = documented(
        "Answered by a fallback provider / replies.", minimum=0, maximum=1
    )
    median_ttft_ms: float | None = documented(
        "Median time to first token of `complete` replies; an even count gives the "
        "mean of the middle two.",
        minimum=0,
    )
    median_total_ms: float | None = documented(
        "Median total time of `complete` replies.", minimum=0
    )
    mean_tokens_in: float | None = documented("Over the replies that report usage.", minimum=0)
    mean_tokens_out: float | None = documented("Over the replies that report usage.", minimum=0)
    cost_usd: float | None = documented(
        "Estimated: tokens × the version's model price in the server's `MODELS`; "
        "null: that model has no price.",
        minimum=0,
    )
    format_checked: int = documented(
        "Complete replies checked against the version's JSON output format (the sample).",
        minimum=0,
    )
    format_invalid: int = documented(
        "Of those, replies that were not valid JSON of the format.", minimum=0
    )
    format_invalid_rate: float | None = documented(
        "`format_invalid` / `format_checked`; null: nothing checked (a text version).",
        minimum=0,
        maximum=1,
    )
    series: MetricSeries


class PromptMetrics(Out):
    window: Literal["24h", "7d", "all"]
    source: Literal["all", "chat", "api", "share"] = Field(
        description="The conversations counted: `all`; `chat`, the owner's own chats (page and "
        "JSON API); `api`, apps through the OpenAI-compatible endpoints (`/v1`); `share`, "
        "visitors of share links."
    )
    since: Time | None = Field(description="Start of the window; null: all time.")
    bucket_seconds: Literal[3600, 86400, 604800] = Field(
        description="Series buckets: hours (24h), days (7d; all), weeks (all, once traffic spans "
        "more than 60 days), UTC, weeks from Monday."
    )
    buckets: list[Time] = Field(
        description="Start of each bucket, oldest first; every series has a value per bucket."
    )
    data: list[VersionMetrics]


class DiffQuery(Query):
    __required__ = ("from", "to")

    # Both checked by the service, which names them in its messages.
    from_: Checked = checked(
        {"type": "integer", "minimum": 0, "maximum": 2147483647},
        description="The older version number.",
        alias="from",
    )
    to: Checked = checked(
        {"type": "integer", "minimum": 0, "maximum": 2147483647},
        description="The newer version number.",
    )


class MetricsQuery(Query):
    # Checked by the service.
    window: Checked = checked(
        {"enum": ["24h", "7d", "all"], "default": "7d"},
        description="The time window (default `7d`).",
    )
    source: Checked = checked(
        {"enum": ["all", "chat", "api", "share"], "default": "all"},
        description="Whose conversations (default `all`): `chat`, the owner's own; `api`, apps "
        "through `/v1`; `share`, visitors of share links.",
    )


class VersionCreate(Body):
    __required__ = ("content",)

    content: str | None = required_str()
    note: str | None = None
    activate: bool | None = None
    candidate: bool | None = None
    model: str | None = None
    # Absent: keep the base version's; null: the provider's default. Checked by the service.
    temperature: Checked = checked({"type": ["number", "null"], "minimum": 0, "maximum": 2})
    max_output_tokens: DbInt | None = Field(None, json_schema_extra={"minimum": 16})
    # Absent: keep the base version's declarations. Checked by the service (line and field).
    variables: Checked = checked(
        {"type": "array", "maxItems": 50, "items": {"type": "object"}},
        description="The template variables declared (`Variable`: `name`, `type`, `default`, "
        "`description`, `required`); names the text uses and this leaves out are added as "
        "required strings. Absent: those of the version saved over.",
    )
    # Absent or null: keep the base version's. Checked by the service (a valid JSON Schema,
    # at most 32 KB and 32 levels deep).
    output_format: Literal["text", "json_object", "json_schema"] | None = None
    output_schema: Checked = checked(
        {"type": ["object", "null"]},
        description="The JSON Schema replies must match, with `output_format: json_schema` "
        "(Draft 2020-12, at most 32 KB as compact JSON, 32 levels deep); null or absent keeps "
        "the base version's.",
    )


class Canary(Body):
    __required__ = ("percent",)

    # Checked by the service, after the ownership check (another user's project: 404).
    percent: Checked = checked({"type": "integer", "minimum": 0, "maximum": 100})


class Label(Out):
    name: str = Field(
        description="Lowercase letters, digits, - and _; `production` and `candidate` are the "
        "built-in pointers (what serves; what the canary tries)."
    )
    version: int | None = documented(
        "The version number it points at; null: a built-in pointer that points nowhere yet.",
        minimum=1,
    )
    built_in: bool = Field(description="`production` or `candidate`: moved by the release.")

    @classmethod
    def of_label(cls, label: Any) -> Label:
        return cls(
            name=label.name,
            version=label.version.version if label.version else None,
            built_in=label.built_in,
        )


class LabelList(Out):
    data: list[Label] = Field(description="`production`, `candidate`, then the rest by name.")


_LABEL_VERSION = checked(
    {"type": "integer", "minimum": 1, "maximum": 2147483647},
    description="The version number the label points at.",
)


class LabelCreate(Body):
    __required__ = ("name", "version")

    # Both checked by the service, after the ownership check.
    name: str | None = required_str(
        "Lowercase letters, digits, - and _, at most 40; not `production` or `candidate`."
    )
    version: Checked = _LABEL_VERSION


class LabelMove(Body):
    __required__ = ("version",)

    version: Checked = _LABEL_VERSION
