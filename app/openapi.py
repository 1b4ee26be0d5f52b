"""The OpenAPI 3.1 document of the JSON API, served at ``GET /api/openapi.json``.

Built once, as plain Python data, from a few helpers: ``obj`` (a closed object: every listed
property required unless marked optional), ``nullable``, and ``op`` (one operation; it adds the
errors every operation of its kind can answer, so no operation can forget them). Response
schemas are exact (``additionalProperties: false``, nullability as type arrays), and so are
request bodies: ``app.api.json_body`` refuses a field the operation's body does not list (422
naming it), reading the list from this document (``body_schema``), so the two cannot drift.

What keeps it true: ``tests/test_openapi.py`` checks that every ``/api`` rule and method in
``app.url_map`` is documented and every documented operation is routed, that the document is
valid OpenAPI 3.1, and that real responses validate against it; ``tests/test_openapi_fuzz.py``
runs schemathesis over it against the app. No Flask imports: the document does not depend on
an app or its configuration (limits that are configurable are described, not encoded).
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from app.models.base import MAX_DB_INT

Schema = dict[str, Any]

# --- schema helpers ----------------------------------------------------------------------------

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_DB_INT}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or JSON ``null`` (3.1 style: a type array, or ``anyOf`` for a reference)."""
    if "type" in schema and isinstance(schema["type"], str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None, **extra) -> Schema:
    """A closed object: the ``required`` properties always present, ``optional`` ones maybe."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
        **extra,
    }


def body_of(required: dict[str, Schema], optional: dict[str, Schema] | None = None, **extra):
    """A request body object: closed like every object (an unknown field is a 422), and
    ``null`` means "not given" for every optional field."""
    optional = {name: nullable(s) for name, s in (optional or {}).items()}
    return obj(required, optional, **extra)


def list_of(name: str) -> Schema:
    return obj({"data": {"type": "array", "items": ref(name)}})


# --- components --------------------------------------------------------------------------------

_USER = obj({"id": INT, "email": STR, "name": nullable(STR), "created_at": TIME})

_PROJECT_FIELDS = {
    "id": INT,
    "name": STR,
    "description": STR,
    "active_prompt_id": nullable(INT),
    "created_at": TIME,
    "updated_at": TIME,
}
_PROJECT_DETAIL_FIELDS = {
    **_PROJECT_FIELDS,
    "active_prompt": nullable(ref("PromptVersion")),
    "default_prompt": {
        **nullable(STR),
        "description": "The built-in prompt chat uses while the project has no version; "
        "null once it has one.",
    },
}

_VERSION_FIELDS = {
    "id": INT,
    "project_id": INT,
    "version": {**INT, "minimum": 1},
    "content": STR,
    "note": nullable(STR),
    "model": {**STR, "description": "A name from the server's model list (`GET /api/models`)."},
    "temperature": {
        **nullable({"type": "number", "minimum": 0, "maximum": 2}),
        "description": "null: the provider's default.",
    },
    "max_output_tokens": {**INT, "minimum": 16, "description": "The reply's token budget."},
    "is_active": {**BOOL, "description": "Production: what the project serves."},
    "is_candidate": {**BOOL, "description": "The version being tried before promotion."},
    "author_id": nullable(INT),
    "length": {**INT, "minimum": 0, "description": "Characters in `content`."},
    "created_at": TIME,
}

_MESSAGE_FIELDS = {
    "id": INT,
    "conversation_id": INT,
    "parent_id": {
        **nullable(INT),
        "description": "The message before this one on its branch; null for a first message.",
    },
    "siblings": {
        **nullable({"type": "array", "items": INT}),
        "description": "In a message list: the ids of this message's versions (itself "
        "included, oldest first) when it was edited or regenerated, for a ‹ 2/3 › switch; "
        "null when it has no other version, and in a turn's events.",
    },
    "role": {"enum": ["user", "assistant"]},
    "content": STR,
    "status": {
        "enum": ["streaming", "stopping", "complete", "incomplete", "error", "interrupted"],
        "description": "`streaming`: the reply is being written (its text so far, checkpointed "
        "every few seconds); `stopping`: Stop was asked for and the server is ending it; "
        "`incomplete`: text arrived, then the reply stopped (Stop, a "
        "dropped stream, a provider failure); `error`: nothing arrived; `interrupted`: the "
        "server process writing it stopped (its last checkpoint is kept).",
    },
    "provider": {**nullable(STR), "description": "`openai`, `openrouter` or `offline`."},
    "model": nullable(STR),
    "fallback": {**BOOL, "description": "Answered by a fallback provider."},
    "prompt_version": {**nullable(INT), "description": "Number of the prompt version used."},
    "tokens_in": nullable(INT),
    "tokens_out": nullable(INT),
    "ttft_ms": nullable(INT),
    "total_ms": nullable(INT),
    "error": {
        **nullable(STR),
        "description": "The technical reason a reply did not complete (the provider's own words, "
        'after its name), for logs and the page\'s folded "Details"; null when it completed.',
    },
    "error_kind": {
        **nullable(STR),
        "description": "Why a reply did not complete: `stopped` (Stop), `interrupted` (the "
        "server writing it stopped), or the provider failure's kind (`auth`, "
        "`model_not_found`, `quota`, `rate_limited`, `content_policy`, `bad_request`, "
        "`unavailable`, `timeout`, `connection`, `malformed`); null when it completed and for "
        "replies stored before this field existed.",
    },
    "error_reason": {
        **nullable(STR),
        "description": "What the page says about a reply that did not complete, in words for a "
        'person (e.g. "The API key was refused — an admin must fix the key.", "Stopped."); '
        "null when it completed, is still being written, or for a user's message.",
    },
    "context_files": {"type": "array", "items": ref("ContextFile")},
    "created_at": TIME,
    "feedback": {
        **nullable(ref("Feedback")),
        "description": "The owner's 👍/👎 on an assistant reply; null when not rated (always "
        "null for a user's message).",
    },
}

_STORED = {
    **BOOL,
    "description": "false: the database was unreachable when the reply ended; the server keeps "
    "it and writes it when the database is back (the message id stays the same).",
}

_FILE_FIELDS = {
    "id": INT,
    "project_id": INT,
    "name": {**STR, "description": "Cleaned display name, unique in the project."},
    "size": {**INT, "minimum": 1, "description": "Bytes."},
    "content_type": STR,
    "sha256": {**STR, "pattern": "^[0-9a-f]{64}$"},
    "created_at": TIME,
    "text": obj(
        {
            "status": {
                "enum": ["pending", "ok", "empty", "failed", "too_complex", "none"],
                "description": "`pending`: queued for extraction (PDFs are extracted after the "
                "upload answers, in a sandboxed process); `ok`: text extracted (the file may be "
                "used in chat); `empty`: a text type that yielded nothing (a scanned PDF?); "
                "`failed`: extraction raised; `too_complex`: extraction passed its CPU, memory "
                "or time limit; `none`: a type without text (images, and types added with "
                "`UPLOAD_ALLOWED_EXTENSIONS`, kept as they are).",
            },
            "chars": {**INT, "minimum": 0},
            "pages": nullable(INT),
            "note": nullable(STR),
        }
    ),
    "use_in_chat": BOOL,
    "openai": obj(
        {
            "status": {
                "enum": ["local", "synced", "failed"],
                "description": "PromptHub's state of the OpenAI Files copy: `local` (no "
                "`OPENAI_API_KEY` when uploaded), `synced` (OpenAI holds a copy), `failed` "
                "(the copy failed, the upload itself did not; `error` says why and "
                "`POST …/sync` retries).",
            },
            "file_id": {
                **nullable(STR),
                "description": "OpenAI's id of the copy (`file-…`, also `file.id`); null "
                "without a copy.",
            },
            "error": {
                **nullable(STR),
                "description": "Why the last copy failed, in words for a person, then the "
                "reason OpenAI (or the connection) gave; null unless `status` is `failed`.",
            },
            "file": {
                **nullable(ref("OpenAIFile")),
                "description": "OpenAI's file object for the copy, as OpenAI answered the "
                "upload; null without a copy (`status` `local` or `failed`).",
            },
        }
    ),
    "download_url": {**STR, "description": "The page route that downloads it by name."},
}

_RATE: Schema = {"type": "number", "minimum": 0, "maximum": 1}
_COUNT: Schema = {**INT, "minimum": 0}
_AMOUNT: Schema = {"type": "number", "minimum": 0}
# (name, schema, description) of each per-version metric; the series repeat all but the counts.
_METRIC_FIGURES: list[tuple[str, Schema, str]] = [
    ("replies", _COUNT, "Assistant replies counted."),
    ("thumbs_up", _COUNT, "Replies rated 👍."),
    ("thumbs_down", _COUNT, "Replies rated 👎."),
    ("up_rate", nullable(_RATE), "👍 / rated replies; null: none rated."),
    ("error_rate", nullable(_RATE), "`error` + `interrupted` / replies (`incomplete`, mostly "
     "a Stop, is not an error)."),
    ("fallback_rate", nullable(_RATE), "Answered by a fallback provider / replies."),
    ("median_ttft_ms", nullable(_AMOUNT), "Median time to first token of `complete` replies; "
     "an even count gives the mean of the middle two."),
    ("median_total_ms", nullable(_AMOUNT), "Median total time of `complete` replies."),
    ("mean_tokens_in", nullable(_AMOUNT), "Over the replies that report usage."),
    ("mean_tokens_out", nullable(_AMOUNT), "Over the replies that report usage."),
    ("cost_usd", nullable(_AMOUNT), "Estimated: tokens × the version's model price in the "
     "server's `MODELS`; null: that model has no price."),
]  # fmt: skip

SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {
            "error": obj(
                {
                    "code": {
                        **STR,
                        "description": "Stable, machine-readable: `validation_failed`, "
                        "`not_found`, `invalid_json`, `token_expired`, `email_taken`, …",
                    },
                    "message": STR,
                },
                {
                    "fields": {
                        "type": "object",
                        "minProperties": 1,
                        "additionalProperties": STR,
                        "description": "Field name → what is wrong with it.",
                    },
                    "quota": obj(
                        {
                            "name": {
                                **STR,
                                "enum": ["user_bytes", "project_bytes", "project_files"],
                                "description": "`STORAGE_QUOTA_USER_MB`, `…_PROJECT_MB`, "
                                "`…_PROJECT_FILES`.",
                            },
                            "limit": INT,
                            "used": INT,
                            "adding": {**INT, "description": "The refused file's bytes (1 file)."},
                        },
                        description="With `storage_quota_exceeded`: the quota the file would "
                        "cross, in bytes (files for `project_files`).",
                    ),
                    "budget": obj(
                        {
                            "period": {"enum": ["day", "month"]},
                            "limit_usd": _AMOUNT,
                            "spent_usd": _AMOUNT,
                            "resets_at": TIME,
                        },
                        description="With `budget_exceeded`: the budget used up.",
                    ),
                },
            )
        }
    ),
    "FileList": obj(
        {
            "data": {"type": "array", "items": ref("File")},
            "storage": obj(
                {
                    "project": obj(
                        {"bytes": INT, "files": INT, "max_bytes": INT, "max_files": INT}
                    ),
                    "user": obj({"bytes": INT, "files": INT, "max_bytes": INT}),
                },
                description="What your files take against the storage quotas: this project, "
                "and all your projects (this one included).",
            ),
        }
    ),
    "UsagePeriod": obj(
        {
            "spent_usd": {**_AMOUNT, "description": "Estimated: tokens × `MODELS` prices."},
            "limit_usd": nullable({**_AMOUNT, "description": "The cap; null: none."}),
            "remaining_usd": nullable(_AMOUNT),
            "resets_at": {**TIME, "description": "When the next period starts (UTC)."},
        }
    ),
    "Usage": obj(
        {
            "day": ref("UsagePeriod"),
            "month": ref("UsagePeriod"),
            "input_max_chars": nullable(
                {
                    **INT,
                    "description": "The most characters one turn may send the model (system "
                    "prompt, files, earlier messages and message); null: no cap.",
                }
            ),
        }
    ),
    "User": _USER,
    "Session": obj({"user": ref("User"), "token": {**STR, "description": "A bearer JWT."}}),
    "Project": obj(_PROJECT_FIELDS),
    "ProjectDetail": obj(_PROJECT_DETAIL_FIELDS),
    "PromptVersion": obj(_VERSION_FIELDS),
    "PromptVersionSaved": obj(
        {
            **_VERSION_FIELDS,
            "created": {
                **BOOL,
                "description": "false: the text equals the active version; nothing was stored "
                "and the active version is returned.",
            },
        }
    ),
    "PromptDiff": obj(
        {
            "from": INT,
            "to": INT,
            "diff": {**STR, "description": "Unified line diff; every line ends with a newline."},
            "settings": {
                "type": "array",
                "description": "The model settings that differ.",
                "items": obj(
                    {
                        "name": {"enum": ["model", "temperature", "max_output_tokens"]},
                        "from": {"type": ["string", "number", "null"]},
                        "to": {"type": ["string", "number", "null"]},
                    }
                ),
            },
        }
    ),
    "ModelChoice": obj(
        {
            "name": {**STR, "description": "What a version's `model` holds."},
            "openai": {**nullable(STR), "description": "The OpenAI id; null: not sent there."},
            "openrouter": {**nullable(STR), "description": "The OpenRouter id; null: not sent."},
            "input_per_million": {
                **nullable({"type": "number", "minimum": 0}),
                "description": "USD per million input tokens (for cost estimates).",
            },
            "output_per_million": nullable({"type": "number", "minimum": 0}),
            "default": {**BOOL, "description": "The model new versions start with."},
        }
    ),
    "PromptMetrics": obj(
        {
            "window": {"enum": ["24h", "7d", "all"]},
            "since": {**nullable(TIME), "description": "Start of the window; null: all time."},
            "bucket_seconds": {
                "enum": [3600, 86400, 604800],
                "description": "Series buckets: hours (24h), days (7d; all), weeks (all, once "
                "traffic spans more than 60 days), UTC, weeks from Monday.",
            },
            "buckets": {
                "type": "array",
                "items": TIME,
                "description": "Start of each bucket, oldest first; every series has a value "
                "per bucket.",
            },
            "data": {"type": "array", "items": ref("VersionMetrics")},
        }
    ),
    "VersionMetrics": obj(
        {
            "version": {**INT, "minimum": 1},
            "is_active": {**BOOL, "description": "Production."},
            "is_candidate": BOOL,
            "model": {**STR, "description": "The version's model; it prices the replies."},
            **{name: {**schema, "description": text} for name, schema, text in _METRIC_FIGURES},
            "series": obj(
                {
                    name: {"type": "array", "items": nullable(schema)}
                    for name, schema, _ in _METRIC_FIGURES
                    if name not in ("thumbs_up", "thumbs_down")
                },
                description="Each metric per bucket (`buckets`); an empty bucket has 0 "
                "replies and null rates, medians and means.",
            ),
        },
        description="Replies that ended (not `streaming`/`stopping`), in the window, of "
        "conversations not overriding the version's model.",
    ),
    "Release": obj(
        {
            "production": nullable(ref("PromptVersion")),
            "candidate": nullable(ref("PromptVersion")),
            "canary_percent": {
                **INT,
                "minimum": 0,
                "maximum": 100,
                "description": "Share of new conversations sent to the candidate.",
            },
        }
    ),
    "Conversation": obj(
        {
            "id": INT,
            "project_id": INT,
            "title": STR,
            "pinned_version": {
                **nullable(INT),
                "description": "The version number every reply uses (pinned at the start, or "
                "by the canary); null: the project's production version.",
            },
            "model": {
                **nullable(STR),
                "description": "A model overriding the pinned version's (Compare).",
            },
            "arm": {
                "enum": ["pinned", "candidate", "production", None],
                "description": "Why it is served as it is: `pinned` by the user, sent to the "
                "`candidate` or kept on `production` by a canary; null: no canary was running.",
            },
            "created_at": TIME,
            "updated_at": TIME,
        }
    ),
    "Message": obj(
        _MESSAGE_FIELDS,
        {
            "html": {**STR, "description": "Sanitised HTML of an assistant reply (`html=1`)."},
            "meta": {
                **STR,
                "description": "The line the page shows under an assistant reply (`html=1`): "
                "model · provider (fallback), prompt version, tokens, seconds, files, status "
                "unless complete, joined by ` · `.",
            },
        },
    ),
    "Feedback": obj(
        {
            "rating": {"enum": ["up", "down"], "description": "👍 `up` or 👎 `down`."},
            "comment": {**nullable(STR), "description": "At most 2000 characters."},
            "rated_at": {**TIME, "description": "When the feedback was last changed."},
        }
    ),
    "ContextFile": obj(
        {
            "id": INT,
            "name": STR,
            "chars": {**INT, "description": "Characters included in the turn."},
            "total_chars": INT,
            "truncated": BOOL,
            "included": BOOL,
        },
        description="A project file whose text went into this turn's instructions.",
    ),
    "MessagePage": obj(
        {
            "data": {"type": "array", "items": ref("Message")},
            "has_more": {**BOOL, "description": "Older messages exist (pass `before`)."},
        }
    ),
    "ChatReply": obj(
        {
            "conversation_id": INT,
            "message": ref("Message"),
            "reply": {**STR, "description": "The reply's text (`message.content`)."},
        }
    ),
    # The data of each server-sent event (see the chat operations).
    "ChatStreamStart": obj(
        {
            "turn_id": {**INT, "description": "Attach to it again, or stop it: `/api/turns/…`."},
            "conversation": ref("Conversation"),
            "user_message": ref("Message"),
        }
    ),
    "ChatStreamDelta": obj({"text": STR}),
    "ChatStreamSnapshot": obj(
        {"text": {**STR, "description": "The reply so far: replaces what the reader has."}}
    ),
    "ChatStreamDone": obj({"message": ref("Message"), "stored": _STORED}),
    "ChatStreamError": obj(
        {
            "error": obj(
                {
                    "code": {
                        "enum": [
                            "provider_unavailable",
                            "provider_rejected",
                            "content_policy",
                            "interrupted",
                            "internal_error",
                        ],
                        "description": "`interrupted`: the server process writing the reply "
                        "stopped; the text it had is kept.",
                    },
                    "message": STR,
                }
            ),
            "partial": {**BOOL, "description": "Some text arrived before the failure."},
            "message": ref("Message"),
            "stored": _STORED,
        }
    ),
    "TurnState": obj(
        {
            "id": INT,
            "conversation_id": INT,
            "status": {
                **_MESSAGE_FIELDS["status"],
                "description": "`stopping` until the generating process has ended it; the "
                "final status if it had already ended.",
            },
        }
    ),
    "ComparisonSide": obj(
        {
            "version": {
                **nullable(INT),
                "description": "The prompt version number that answers (null: since deleted).",
            },
            "model": {
                **STR,
                "description": "The model that answers: the one asked for, else the version's.",
            },
            "conversation_id": {
                **nullable(INT),
                "description": "The conversation pinned to this side, where the answer is a "
                "normal reply (null once that conversation was deleted).",
            },
            "turn_id": {
                **nullable(INT),
                "description": "Read the answer as it is written: `GET /api/turns/{turn_id}/"
                "events`; stop it: `POST /api/turns/{turn_id}/stop`. The reply's id.",
            },
            "reply": {
                **nullable(ref("Message")),
                "description": "The answer as stored now, with its rendered `html` and `meta` "
                "(`status` `streaming` while it is written); null once deleted.",
            },
        }
    ),
    "Comparison": obj(
        {
            "id": INT,
            "project_id": INT,
            "message": {**STR, "description": "The one message both sides answered."},
            "left": ref("ComparisonSide"),
            "right": ref("ComparisonSide"),
            "choice": {
                "enum": ["left", "right", "tie", None],
                "description": "Which answer is better; null: not judged yet.",
            },
            "chosen_at": nullable(TIME),
            "created_at": TIME,
        }
    ),
    "ComparisonPage": obj(
        {
            "data": {"type": "array", "items": ref("Comparison")},
            "has_more": {**BOOL, "description": "Older comparisons exist (pass `before`)."},
        }
    ),
    "File": obj(_FILE_FIELDS),
    "OpenAIFile": obj(
        {
            "id": {**STR, "description": "OpenAI's file id (`file-…`)."},
            "bytes": {**nullable(INT), "description": "Size OpenAI stored, in bytes."},
            "created_at": {
                **nullable(INT),
                "description": "When OpenAI created the copy, in Unix seconds (as OpenAI "
                "sends it; not an ISO time like PromptHub's own `created_at`).",
            },
            "expires_at": {
                **nullable(INT),
                "description": "When OpenAI deletes the copy by itself, in Unix seconds; null: "
                "kept until deleted (every purpose but `batch`).",
            },
            "purpose": {
                **nullable(STR),
                "description": "The purpose OpenAI recorded (`OPENAI_FILE_PURPOSE`, "
                "`assistants` by default).",
            },
            "status": {
                **nullable(STR),
                "description": "OpenAI's own (deprecated) status of the file: `uploaded`, "
                "`processed` or `error`.",
            },
        },
        description="What OpenAI answered about its copy (its `OpenAIFile` object, the fields "
        "PromptHub keeps). Every field but `id` is null for a copy made before PromptHub kept "
        "OpenAI's answer, or when OpenAI left the field out.",
    ),
    "FileUploaded": obj(
        {
            **_FILE_FIELDS,
            "duplicate": {
                **BOOL,
                "description": "true: these bytes were already in the project; that file is "
                "returned.",
            },
        }
    ),
}

SSE_EVENTS = {
    "start": "ChatStreamStart",
    "delta": "ChatStreamDelta",
    "snapshot": "ChatStreamSnapshot",
    "done": "ChatStreamDone",
    "error": "ChatStreamError",
}
SCHEMAS["ChatStreamEvent"] = {
    **obj(
        {"event": {"enum": list(SSE_EVENTS)}, "data": STR},
        {"id": STR, "retry": INT},
        description="One server-sent event: its name and one line of JSON data.",
    ),
    "oneOf": [
        {
            "properties": {
                "event": {"const": name},
                "data": {"contentMediaType": "application/json", "contentSchema": ref(schema)},
            }
        }
        for name, schema in SSE_EVENTS.items()
    ],
}

# --- errors ------------------------------------------------------------------------------------

ERRORS = {
    400: ("BadRequest", "Malformed request: `invalid_json` (not JSON, or not an object), "
          "`json_too_deep` (arrays and objects nested more than 64 levels), `invalid_input` (a "
          "NUL character in the path or the query string), `csrf_failed` (a "
          "cookie-authenticated write without `X-CSRFToken`)."),
    401: ("Unauthorized", "No or a bad credential: `unauthorized`, `token_invalid`, "
          "`token_expired`, `token_revoked`. Also answered to any request that sends a bad "
          "bearer token, public operations included."),
    403: ("Forbidden", "`cross_origin`: a write authenticated by the session cookie whose "
          "`Origin` (or, without one, `Referer`) names another site. Never answered to bearer "
          "requests."),
    404: ("NotFound", "`not_found`: missing, or another user's (indistinguishable)."),
    409: ("Conflict", "`conflict`: the request conflicts with stored data."),
    413: ("PayloadTooLarge", "`payload_too_large`: a JSON body over `MAX_JSON_KB` (256 KiB), "
          "or a request over the upload limit, with or without a `Content-Length` (a chunked "
          "body is refused at the first byte past the limit)."),
    415: ("UnsupportedMediaType", "`unsupported_media_type`: send `application/json`."),
    422: ("ValidationFailed", "`validation_failed`: see `fields` for what is wrong. Operations "
          "that call a model also answer `input_too_long`: the system prompt, files, earlier "
          "messages and message together are over the server's `CHAT_INPUT_MAX_CHARS`."),
    429: ("RateLimited", "`rate_limited`: too many requests from this address, account or "
          "user (`RATELIMIT_*`); nothing was done. Wait `Retry-After` seconds. Operations that "
          "call a model also answer `budget_exceeded`: the account's model spending for the "
          "day or month reached its cap (`budget`; `GET /api/usage`), nothing was stored or "
          "sent, and `Retry-After` is the time until it resets."),
    502: ("ProviderFailed", "Every language model provider failed: "
          "`provider_unavailable`, `provider_rejected` (400-class refusal), `content_policy`."),
    503: ("DatabaseUnavailable", "`database_unavailable`: the database cannot be reached for "
          "a moment; nothing was done. Try again after `Retry-After` seconds."),
}  # fmt: skip


def error(status: int, description: str | None = None) -> Schema:
    """An error response: the shared one, or with a description saying when it happens."""
    name, _ = ERRORS[status]
    if description is None:
        return {"$ref": f"#/components/responses/{name}"}
    return {"description": description, "content": _json(ref("Error"))}


def _retry_after(description: str) -> dict:
    return {
        "Retry-After": {
            "required": True,
            "description": description,
            "schema": {"type": "integer", "minimum": 0},
        }
    }


_RETRY_AFTER = {
    429: _retry_after("Seconds until the limit lets a request through again."),
    503: _retry_after("Seconds to wait before trying again."),
}


def _json(schema: Schema) -> dict:
    return {"application/json": {"schema": schema}}


def ok(description: str, schema: Schema | None = None) -> Schema:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": _json(schema)}


# --- operations --------------------------------------------------------------------------------

PATH_PARAMS = {
    "project_id": "A project of yours.",
    "conversation_id": "A conversation in one of your projects.",
    "turn_id": "A turn: the id of its assistant message (`turn_id` of the `start` event).",
    "file_id": "A file in the project.",
    "message_id": "A message in one of your conversations.",
    "version": "A prompt version number of the project (1, 2, 3 …).",
    "comparison_id": "A comparison in one of your projects.",
}


def op(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    responses: dict[int, Schema],
    description: str | None = None,
    body: Schema | None = None,
    body_content: dict | None = None,
    query: dict[str, tuple[Schema, bool, str]] | None = None,
    public: bool = False,
    rate_limited: bool = False,
) -> dict:
    """One operation. The errors every operation of its kind can answer are added here (400,
    401 and 503 always: the path and query-string guard, a bad token, the database out of
    reach; 413, 415 and 422 with a JSON body; 429 when ``rate_limited``) and in ``_build`` (404
    for every path with an id in it, 403 for every write), so no operation can forget them."""
    result: dict[str, Any] = {"operationId": operation_id, "tags": [tag], "summary": summary}
    if description:
        result["description"] = description
    if public:
        result["security"] = []
    if query:
        result["parameters"] = [
            {"name": name, "in": "query", "required": required, "schema": schema, "description": d}
            for name, (schema, required, d) in query.items()
        ]
    if body is not None:
        result["requestBody"] = {"required": True, "content": _json(body)}
        responses = {**{status: error(status) for status in (400, 413, 415, 422)}, **responses}
    elif body_content is not None:
        result["requestBody"] = {"required": True, "content": body_content}
    if rate_limited:
        responses = {429: error(429), **responses}
    result["responses"] = {400: error(400), 401: error(401), 503: error(503), **responses}
    return result


_STREAM_DESCRIPTION = """\
Sends a message and answers with the stored reply. With `"stream": true` (or, when `stream` is
absent, `Accept: text/event-stream`) the answer is a stream of server-sent events instead:

- `start`: `{turn_id, conversation, user_message}` (`ChatStreamStart`), once the user's message
  is stored;
- `delta`: `{text}` (`ChatStreamDelta`), the next piece of the reply;
- then exactly one of `done`: `{message, stored}` (`ChatStreamDone`, the reply with its rendered
  `html` and `meta` line) or `error`: `{error: {code, message}, partial, message, stored}`
  (`ChatStreamError`, the partial or failed reply); `stored` is false when the database was
  unreachable as the reply ended: the server keeps the reply and writes it when the database is
  back;
- `: keep-alive` comment lines while the model is silent.

The reply is generated on the server whatever happens to this stream: closing it does not stop
the reply (`POST /api/turns/{turn_id}/stop` does), and `GET /api/turns/{turn_id}/events`
attaches to it again with the `id:` of the last event received. Each event is `event: <name>`,
an `id:` line (the reader's place), and one `data:` line of JSON. A bad request (404, 422, 422
`input_too_long`, 429 `budget_exceeded`) is answered as JSON before any stream starts; once it
has started the answer is 200, and a provider failure arrives as the `error` event. Without
streaming, a provider failure is a 502 (the user's message and the failed reply stay stored).
With `"regenerate": true` no new message is stored: the conversation's last user message is
answered again."""

_CHAT_REPLY = {
    "description": "The reply, as JSON or (streaming) as server-sent events.",
    "content": {
        "application/json": {"schema": ref("ChatReply")},
        # Per event (OpenAPI 3.2 calls this `itemSchema`; 3.1 tools read `schema` per event).
        "text/event-stream": {"schema": ref("ChatStreamEvent")},
    },
}

_MESSAGE = {**STR, "description": "The user's message (at most `CHAT_MESSAGE_MAX_CHARS`)."}
_CHAT_OPTIONS = {
    "stream": {**BOOL, "description": "Answer with server-sent events."},
    "version": {
        **ID,
        "description": "Start a new conversation pinned to this prompt version number of the "
        "project: its replies use that version (text and model settings) whatever becomes "
        "active later. Only without a conversation id; an unknown number is a 422.",
    },
    "regenerate": {**BOOL, "description": "Answer the last user message again."},
}


def _chat_body(project: dict[str, Schema], conversation: str) -> Schema:
    """Either a message, or ``regenerate: true`` with the conversation to regenerate in."""
    schema = body_of(project, {"message": _MESSAGE, conversation: ID, **_CHAT_OPTIONS})
    schema["anyOf"] = [
        {"required": ["message"], "properties": {"message": STR}},
        {
            "required": ["regenerate", conversation],
            "properties": {"regenerate": {"const": True}, conversation: ID},
        },
    ]
    return schema


_ID_OR_DIGITS = {
    "anyOf": [ID, {**STR, "pattern": "^[0-9]{1,10}$"}],
    "description": "An id, as a number or a string of digits.",
}

_DESIGN_CHAT_DESCRIPTION = """\
One chat per project, as a client that keeps "the project's chat" expects: without
`conversationId` the message continues the project's chat, its most recently active
conversation that is not pinned to a version (a new one when it has none), so the model sees
the earlier turns. `"newConversation": true` starts a new conversation instead; `version` (a
pinned try) always starts one. `conversationId` names a conversation of the project. Ids may be
numbers or strings of digits. The answer's `conversation_id` says which conversation was used.
Otherwise the same as `POST /api/projects/{project_id}/chat`.

"""


def _design_chat_body() -> Schema:
    schema = _chat_body({"projectId": _ID_OR_DIGITS}, "conversationId")
    schema["properties"]["conversationId"] = nullable(_ID_OR_DIGITS)
    schema["anyOf"][1]["properties"]["conversationId"] = _ID_OR_DIGITS
    schema["properties"]["newConversation"] = {
        **nullable(BOOL),
        "description": "Start a new conversation instead of continuing the project's chat.",
    }
    return schema


_COMPARE_SIDE = body_of(
    {"version": {**ID, "description": "A prompt version number of the project."}},
    {
        "model": {
            **STR,
            "description": "A model from `GET /api/models` answering instead of the version's "
            "own (null: the version's).",
        }
    },
)

_COMPARE_DESCRIPTION = """\
The message is answered twice at once, by the `left` and the `right` side: each side is a prompt
version of the project (its text and settings), optionally under another model. Each answer is
a normal reply in a new conversation of its own, pinned to that version and model (it shows in
the chat with the other conversations), and the user's message and both reply rows are stored
before any provider is called. The answer is 201 as soon as both replies have started; they are
written on the server whatever the client does. Read each as server-sent events with
`GET /api/turns/{turn_id}/events` (its `turn_id`), stop it with `POST /api/turns/{turn_id}/stop`,
or read both with `GET /api/comparisons/{id}`. A comparison is two provider calls: it counts
twice against the per-user chat limit (`RATELIMIT_CHAT`)."""

_DOWNLOAD = {
    "description": "The bytes, as an attachment with their stored content type.",
    "headers": {
        "Content-Disposition": {
            "required": True,
            "schema": {**STR, "pattern": "^attachment"},
        }
    },
    "content": {"*/*": {"schema": {**STR, "contentMediaType": "application/octet-stream"}}},
}

_INT_QUERY = {"type": "integer", "minimum": 0, "maximum": MAX_DB_INT}


def _storage_503(doing: str) -> Schema:
    """503 of an operation that needs the file store as well as the database."""
    return {
        "description": "`database_unavailable`: the database cannot be reached for a moment; "
        f"or `storage_unavailable`: the file store (S3) cannot be reached, so {doing}. "
        "Nothing was done. Try again after `Retry-After` seconds.",
        "headers": _RETRY_AFTER[503],
        "content": _json(ref("Error")),
    }


_BYTES_MISSING = (
    "`not_found`: no such file (or another user's); or `file_bytes_missing`: the file is "
    'listed but its stored bytes are gone from the store ("The stored bytes of X are '
    'missing."; logged on the server).'
)


def _optional_body(operation: dict) -> dict:
    operation["requestBody"]["required"] = False
    return operation


def _operations() -> dict[str, dict[str, dict]]:
    return {
        "/api/openapi.json": {
            "get": op(
                "getOpenApi",
                "This document",
                tag="meta",
                public=True,
                responses={200: ok("The OpenAPI 3.1 document.", {"type": "object"})},
            )
        },
        # --- auth
        "/api/auth/register": {
            "post": op(
                "register",
                "Create an account",
                tag="auth",
                rate_limited=True,
                public=True,
                description="Passwords: at least 8 characters and at most 72 bytes (UTF-8). "
                "Names: at most 80 characters. A taken email is a 409: registration tells "
                "whether an address has an account, so it counts against `RATELIMIT_REGISTER` "
                "per client address, shared with the `/register` page.",
                body=body_of(
                    {"email": {**STR, "format": "email"}, "password": {**STR, "minLength": 8}},
                    {"name": STR},
                ),
                responses={
                    201: ok("The new account and a bearer token.", ref("Session")),
                    409: error(409, "`email_taken`: an account with this email exists."),
                },
            )
        },
        "/api/auth/login": {
            "post": op(
                "login",
                "Log in: a bearer token",
                tag="auth",
                rate_limited=True,
                public=True,
                description="A wrong email or password is the same 401 "
                "(`invalid_credentials`), in the same time.",
                body=body_of({"email": STR, "password": STR}),
                responses={200: ok("The account and a bearer token.", ref("Session"))},
            )
        },
        "/api/auth/me": {
            "get": op(
                "getMe",
                "Who the token belongs to",
                tag="auth",
                responses={200: ok("The account.", obj({"user": ref("User")}))},
            )
        },
        "/api/usage": {
            "get": op(
                "getUsage",
                "Model spending against your budgets",
                tag="auth",
                description="Estimated cost of your replies, titles and comparisons (tokens × "
                "the `MODELS` price of the model asked for) today and this month (UTC), the "
                "server's caps (`USER_BUDGET_USD_DAY`, `USER_BUDGET_USD_MONTH`) and what is "
                "left. Once a cap is reached, calls to a model answer 429 `budget_exceeded` "
                "until `resets_at`.",
                responses={200: ok("Spend and budgets.", ref("Usage"))},
            )
        },
        "/api/auth/logout-all": {
            "post": op(
                "logoutAll",
                "Log out everywhere",
                tag="auth",
                description="Revokes every bearer token and session of the account, this one too.",
                responses={204: ok("Revoked.")},
            )
        },
        # --- projects
        "/api/projects": {
            "get": op(
                "listProjects",
                "Your projects",
                tag="projects",
                description="Most recently updated first.",
                responses={200: ok("The projects.", list_of("Project"))},
            ),
            "post": op(
                "createProject",
                "Create a project",
                tag="projects",
                description="Names: at most 120 characters after trimming, not blank; "
                "descriptions at most 2000. A non-blank `system_prompt` becomes prompt "
                "version 1, active.",
                body=body_of({"name": STR}, {"description": STR, "system_prompt": STR}),
                responses={201: ok("The project.", ref("ProjectDetail"))},
            ),
        },
        "/api/projects/{project_id}": {
            "get": op(
                "getProject",
                "A project, with its active prompt",
                tag="projects",
                responses={200: ok("The project.", ref("ProjectDetail"))},
            ),
            "patch": op(
                "updateProject",
                "Rename or describe a project, or edit its system prompt",
                tag="projects",
                description="Absent or null fields are left as they are. A `system_prompt` "
                "that differs from the active version's text is saved as a new version and "
                "made active, with the active version's model settings and the note "
                '"Edited with the project"; the same text saves nothing. (The prompts API '
                "offers the rest: notes, settings, candidates.)",
                body=body_of(
                    {},
                    {
                        "name": STR,
                        "description": STR,
                        "system_prompt": {
                            **STR,
                            "description": "The new active prompt text (at most "
                            "`PROMPT_MAX_CHARS`).",
                        },
                    },
                ),
                responses={200: ok("The project.", ref("ProjectDetail"))},
            ),
            "delete": op(
                "deleteProject",
                "Delete a project",
                tag="projects",
                description="With its prompt versions, conversations and files.",
                responses={204: ok("Deleted.")},
            ),
        },
        # --- prompts
        "/api/projects/{project_id}/prompts": {
            "get": op(
                "listPromptVersions",
                "Prompt versions",
                tag="prompts",
                description="Newest first.",
                responses={200: ok("The versions.", list_of("PromptVersion"))},
            ),
            "post": op(
                "createPromptVersion",
                "Save a prompt version",
                tag="prompts",
                description="Stores version N+1: the text with its model settings. By default "
                "it becomes production (`activate`); with `candidate: true` it becomes the "
                "candidate instead (tried in pinned chats, compared, given a canary share, then "
                "promoted); with `activate: false` it only joins the history. Settings left out "
                "are kept from the version saved over (`temperature: null` means the "
                "provider's default). Text and settings equal to that version store nothing "
                "(200, `created: false`). At most `PROMPT_MAX_CHARS` after trimming; notes "
                "200; `model` from `GET /api/models`; `temperature` 0-2; `max_output_tokens` "
                "16 to the server's `LLM_MAX_OUTPUT_TOKENS`.",
                body=body_of(
                    {"content": STR},
                    {
                        "note": STR,
                        "activate": BOOL,
                        "candidate": BOOL,
                        "model": STR,
                        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                        "max_output_tokens": {**INT, "minimum": 16},
                    },
                ),
                responses={
                    201: ok("The new version.", ref("PromptVersionSaved")),
                    200: ok("Unchanged: the version saved over.", ref("PromptVersionSaved")),
                    409: error(409, "Saved concurrently too often; try again."),
                },
            ),
        },
        "/api/models": {
            "get": op(
                "listModels",
                "Models a prompt version may use",
                tag="prompts",
                description="The server's allowlist (`MODELS`), the default first.",
                responses={200: ok("The models.", list_of("ModelChoice"))},
            )
        },
        "/api/projects/{project_id}/prompts/release": {
            "get": op(
                "getRelease",
                "Production, candidate and canary",
                tag="prompts",
                responses={200: ok("What serves and what is being tried.", ref("Release"))},
            )
        },
        "/api/projects/{project_id}/prompts/{version}/candidate": {
            "post": op(
                "makeCandidate",
                "Make a version the candidate",
                tag="prompts",
                description="Replaces any other candidate; the canary share starts at 0. "
                "Production itself cannot be the candidate (422).",
                responses={
                    200: ok("The release.", ref("Release")),
                    422: error(422, "The version is production already."),
                },
            )
        },
        "/api/projects/{project_id}/prompts/candidate": {
            "delete": op(
                "discardCandidate",
                "Discard the candidate",
                tag="prompts",
                description="Ends the trial and the canary. The version stays in the history; "
                "conversations the canary gave it keep it.",
                responses={200: ok("The release.", ref("Release"))},
            )
        },
        "/api/projects/{project_id}/prompts/candidate/promote": {
            "post": op(
                "promoteCandidate",
                "Promote the candidate to production",
                tag="prompts",
                description="The candidate becomes the active version; the canary ends.",
                responses={
                    200: ok("The release.", ref("Release")),
                    409: error(409, "There is no candidate."),
                },
            )
        },
        "/api/projects/{project_id}/prompts/canary": {
            "put": op(
                "setCanary",
                "Send a share of new conversations to the candidate",
                tag="prompts",
                description="`percent` (0-100) of new, unpinned conversations are served by "
                "the candidate; the choice is made once per conversation (a hash of its id) "
                "and kept. 0 ends the canary. Needs a candidate.",
                body=body_of({"percent": {**INT, "minimum": 0, "maximum": 100}}),
                responses={200: ok("The release.", ref("Release"))},
            )
        },
        "/api/projects/{project_id}/prompts/{version}": {
            "get": op(
                "getPromptVersion",
                "A prompt version",
                tag="prompts",
                responses={200: ok("The version.", ref("PromptVersion"))},
            )
        },
        "/api/projects/{project_id}/prompts/{version}/activate": {
            "post": op(
                "activatePromptVersion",
                "Make a version active (rollback)",
                tag="prompts",
                description="Moves the project's pointer; nothing is renumbered.",
                responses={200: ok("The now active version.", ref("PromptVersion"))},
            )
        },
        "/api/projects/{project_id}/prompts/metrics": {
            "get": op(
                "getPromptMetrics",
                "Per-version metrics from real traffic",
                tag="prompts",
                description="For each version with replies in the window (production and the "
                "candidate always, first): replies, 👍 rate, error and fallback rates, median "
                "time to first token and total time, mean tokens, estimated cost, and each as a "
                "series over time. SQL aggregates over the stored replies.",
                query={
                    "window": (
                        {"enum": ["24h", "7d", "all"], "default": "7d"},
                        False,
                        "The time window (default `7d`).",
                    )
                },
                responses={
                    200: ok("The metrics.", ref("PromptMetrics")),
                    422: error(422, "`window` is not `24h`, `7d` or `all`."),
                },
            )
        },
        "/api/projects/{project_id}/prompts/diff": {
            "get": op(
                "diffPromptVersions",
                "Compare two versions",
                tag="prompts",
                query={
                    "from": (_INT_QUERY, True, "The older version number."),
                    "to": (_INT_QUERY, True, "The newer version number."),
                },
                responses={
                    200: ok("A unified line diff.", ref("PromptDiff")),
                    422: error(422, "`from` or `to` is not a version number."),
                },
            )
        },
        # --- chat
        "/api/projects/{project_id}/chat": {
            "post": op(
                "chatInProject",
                "Chat in a project",
                tag="chat",
                rate_limited=True,
                description=_STREAM_DESCRIPTION,
                body=_chat_body({}, "conversation_id"),
                responses={200: _CHAT_REPLY, 502: error(502)},
            )
        },
        "/api/chat": {
            "post": op(
                "chat",
                "Chat (project in the body)",
                tag="chat",
                rate_limited=True,
                description=_DESIGN_CHAT_DESCRIPTION + _STREAM_DESCRIPTION,
                body=_design_chat_body(),
                responses={200: _CHAT_REPLY, 404: error(404), 502: error(502)},
            )
        },
        "/api/turns/{turn_id}/events": {
            "get": op(
                "turnEvents",
                "Attach to a turn's events",
                tag="chat",
                description="Server-sent events of a turn (`ChatStreamEvent`): after the event "
                "id given as `Last-Event-ID` (or `?after=`), everything the reader missed, "
                "then live events, then the terminal `done` or `error`; without an id, from "
                "the `start`. A finished turn replays its stored outcome. A reader served from "
                "the database (another process without a shared broker, the broker out of "
                "reach, or events past `TURN_EVENTS_TTL_SECONDS`) gets a `snapshot` of the text "
                "so far first, then `delta`s as the server stores more; those events carry no "
                "`id`. `: keep-alive` comments while nothing happens. A finished turn is "
                "answered at once, whatever the id. Open readers are capped per user "
                "(`TURN_READERS_PER_USER`) and per turn (`TURN_READERS_PER_TURN`), and "
                "attaching counts against `RATELIMIT_TURN_EVENTS`.",
                query={
                    "after": (
                        {**STR, "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"},
                        False,
                        "The last event id received (as `Last-Event-ID`); present but empty is "
                        "a 422.",
                    )
                },
                rate_limited=True,
                responses={
                    200: {
                        "description": "The turn's events.",
                        "content": {"text/event-stream": {"schema": ref("ChatStreamEvent")}},
                    },
                    422: error(422, "`after` / `Last-Event-ID` is not an event id."),
                    429: {
                        **error(
                            429,
                            "`rate_limited` (`RATELIMIT_TURN_EVENTS`), or `too_many_readers`: "
                            "this user (or this turn) has as many readers open as allowed; "
                            "close one.",
                        ),
                        "headers": _retry_after("Seconds to wait before trying again."),
                    },
                },
            )
        },
        "/api/turns/{turn_id}/stop": {
            "post": op(
                "stopTurn",
                "Stop a turn",
                tag="chat",
                description="Ends the reply from any process and any tab: the provider "
                "request is closed and the reply is stored `incomplete` with what arrived; "
                "readers get a `done`. Idempotent: a finished turn is left as it is. Closing a "
                "stream is not Stop.",
                responses={200: ok("The turn as it is now.", ref("TurnState"))},
            )
        },
        "/api/messages/{message_id}/feedback": {
            "put": op(
                "rateReply",
                "Rate a reply 👍/👎, with an optional comment",
                tag="conversations",
                description="Sets or changes the owner's feedback on an assistant reply that "
                'has finished. `rating` is required: `"up"`, `"down"`, or `null` to remove '
                "the feedback (as `DELETE`). `comment` (trimmed, at most 2000 characters): "
                "left out or null keeps the stored comment, blank removes it; a comment needs "
                "a rating. Changeable any number of times; `rated_at` is the last change.",
                body=body_of(
                    {"rating": {"enum": ["up", "down", None]}},
                    {"comment": STR},
                ),
                responses={
                    200: ok("The reply, with its `feedback`.", ref("Message")),
                    422: error(
                        422,
                        "A bad `rating` or `comment` (`validation_failed`), a user's message "
                        "(`not_a_reply`), or a reply still being written "
                        "(`reply_not_finished`).",
                    ),
                },
            ),
            "delete": op(
                "unrateReply",
                "Remove the feedback on a reply",
                tag="conversations",
                description="Removes the rating and the comment. Idempotent.",
                responses={
                    204: ok("Removed (or there was none)."),
                    422: error(
                        422, "A user's message (`not_a_reply`), or a reply still being written."
                    ),
                },
            ),
        },
        "/api/projects/{project_id}/conversations": {
            "get": op(
                "listConversations",
                "A project's conversations",
                tag="conversations",
                description="Most recently active first.",
                responses={200: ok("The conversations.", list_of("Conversation"))},
            )
        },
        "/api/conversations/{conversation_id}": {
            "get": op(
                "getConversation",
                "A conversation",
                tag="conversations",
                responses={200: ok("The conversation.", ref("Conversation"))},
            ),
            "patch": op(
                "renameConversation",
                "Rename a conversation",
                tag="conversations",
                description="Titles: not blank, at most 200 characters after trimming.",
                body=body_of({"title": STR}),
                responses={200: ok("The conversation.", ref("Conversation"))},
            ),
            "delete": op(
                "deleteConversation",
                "Delete a conversation",
                tag="conversations",
                description="With its messages.",
                responses={204: ok("Deleted.")},
            ),
        },
        "/api/conversations/{conversation_id}/title": {
            "post": op(
                "suggestTitle",
                "A title written by the model",
                tag="conversations",
                rate_limited=True,
                description="For a conversation that still has its automatic title (its first "
                "message, cut to 60 characters) and whose first reply is complete: one short "
                "call with the first exchange, on each provider's default model, and the answer "
                "(cleaned, at most 60 characters) becomes the title. A renamed conversation, "
                "the offline demo model, a provider failure or an empty answer leave the title "
                "as it is; the answer is the conversation either way. A rename that lands "
                "during the call wins. The page asks for it once the first reply has ended. No "
                "body.",
                responses={200: ok("The conversation, with its title.", ref("Conversation"))},
            )
        },
        "/api/conversations/{conversation_id}/regenerate": {
            "post": _optional_body(
                op(
                    "regenerate",
                    "Answer a user message again",
                    tag="chat",
                    rate_limited=True,
                    description="No new user message is stored. `message_id` names the reply "
                    "to redo (or a user's message to answer again); without it, the last "
                    "message of the branch being viewed. The earlier reply stays as a sibling "
                    "of the new one (`siblings` in the message list), the new reply ends the "
                    "branch being viewed, and the provider sees that branch up to the message "
                    "answered. The body is optional. Same answers and events as chat:\n\n"
                    + _STREAM_DESCRIPTION,
                    body=body_of(
                        {},
                        {
                            "message_id": {
                                **ID,
                                "description": "A message of this conversation (default: "
                                "the branch's last).",
                            },
                            "stream": _CHAT_OPTIONS["stream"],
                        },
                    ),
                    responses={
                        200: _CHAT_REPLY,
                        422: error(422, "`message_id` is not a message of this conversation."),
                        502: error(502),
                    },
                )
            )
        },
        "/api/messages/{message_id}/edit": {
            "post": op(
                "editMessage",
                "Send a new version of a user's message",
                tag="chat",
                rate_limited=True,
                description="The new text is stored as a sibling of the message (same place "
                "in the conversation) and answered with the branch up to it; the old version "
                "and everything after it stay, one `select` away. The new reply ends the "
                "branch being viewed. Same answers and events as chat:\n\n" + _STREAM_DESCRIPTION,
                body=body_of({"message": _MESSAGE}, {"stream": _CHAT_OPTIONS["stream"]}),
                responses={
                    200: _CHAT_REPLY,
                    422: error(422, "Not a user's message, or the text is empty or too long."),
                    502: error(502),
                },
            )
        },
        "/api/messages/{message_id}/select": {
            "post": op(
                "selectBranch",
                "Show the branch through a version of a message",
                tag="conversations",
                description="The conversation's branch being viewed becomes the newest one "
                "through this message (a ‹ 2/3 › switch). No body.",
                responses={200: ok("The conversation.", ref("Conversation"))},
            )
        },
        "/api/conversations/{conversation_id}/messages": {
            "get": op(
                "listMessages",
                "A page of messages",
                tag="conversations",
                description="Oldest first, ending just before `before` (the newest page "
                "without it). Any page costs the same in any conversation length.",
                query={
                    "before": (_INT_QUERY, False, "A message id: the page ends before it."),
                    "limit": (_INT_QUERY, False, "Page size (default 50), clamped to 1–200."),
                    "html": (
                        STR,
                        False,
                        "`1` adds each assistant reply's rendered `html` and its `meta` line.",
                    ),
                },
                responses={
                    200: ok("The page.", ref("MessagePage")),
                    422: error(422, "`before` or `limit` is not a whole number."),
                },
            )
        },
        # --- compare
        "/api/projects/{project_id}/comparisons": {
            "post": op(
                "createComparison",
                "Answer one message with two versions side by side",
                tag="compare",
                rate_limited=True,
                description=_COMPARE_DESCRIPTION,
                body=body_of({"message": _MESSAGE, "left": _COMPARE_SIDE, "right": _COMPARE_SIDE}),
                responses={
                    201: ok("Started: both answers are being written.", ref("Comparison")),
                    422: error(
                        422,
                        "A blank or too long `message`; a side that is not `{version, model?}` "
                        "(`left`, `right`); a version number the project does not have "
                        "(`left.version`, …); a model not in `GET /api/models` (`left.model`, "
                        "…); or both sides the same version under the same model (`right`).",
                    ),
                },
            ),
            "get": op(
                "listComparisons",
                "A project's comparisons",
                tag="compare",
                description="Newest first, with both answers as stored now.",
                query={
                    "before": (_INT_QUERY, False, "A comparison id: only older ones."),
                    "limit": (_INT_QUERY, False, "Page size (default 20), clamped to 1–100."),
                },
                responses={
                    200: ok("The comparisons.", ref("ComparisonPage")),
                    422: error(422, "`before` or `limit` is not a whole number."),
                },
            ),
        },
        "/api/comparisons/{comparison_id}": {
            "get": op(
                "getComparison",
                "A comparison",
                tag="compare",
                description="With each side's answer as stored now (its text so far while "
                "it is written).",
                responses={200: ok("The comparison.", ref("Comparison"))},
            )
        },
        "/api/comparisons/{comparison_id}/preference": {
            "put": op(
                "setComparisonPreference",
                "Say which answer is better",
                tag="compare",
                description="`left`, `right` or `tie`; `null` clears it. It can be changed "
                "at any time.",
                body=body_of(
                    {
                        "choice": {
                            "enum": ["left", "right", "tie", None],
                            "description": "null: not judged.",
                        }
                    }
                ),
                responses={
                    200: ok("The comparison.", ref("Comparison")),
                    422: error(422, "`choice` is missing or not one of these."),
                },
            )
        },
        # --- files
        "/api/projects/{project_id}/files": {
            "get": op(
                "listFiles",
                "A project's files",
                tag="files",
                description="Newest first, with the storage they take against the quotas.",
                responses={200: ok("The files.", ref("FileList"))},
            ),
            "post": op(
                "uploadFile",
                "Upload a file",
                tag="files",
                rate_limited=True,
                description="Multipart, exactly one file in the field `file` and no other "
                "field but a form's `csrf_token` (another one, `files` included, is a 422 naming "
                "it), at most "
                "`MAX_UPLOAD_MB` (20 MB). The type comes from the name's extension, which "
                "`UPLOAD_ALLOWED_EXTENSIONS` must allow. A built-in type must match its bytes "
                "(a `.png` must be a PNG, text must be UTF-8); a type the operator added "
                "(`.docx`, `.zip`, …) is kept as it is, as `application/octet-stream`, "
                "without text. The same bytes twice are stored once; a taken name becomes "
                "`name (2).ext`. With `OPENAI_API_KEY` set the file is also copied to OpenAI "
                "Files before the answer; a failed copy still answers 201, with "
                "`openai.status` `failed`. Each file counts against `RATELIMIT_UPLOAD` (files "
                "per user, shared with the Files page and copy retries), and must fit the "
                "storage quotas (`STORAGE_QUOTA_*`; new bytes only: the same bytes again cost "
                "nothing); a refused file is neither stored nor copied.",
                body_content={
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {**STR, "contentMediaType": "application/octet-stream"}
                            },
                            "additionalProperties": False,
                        },
                        "encoding": {
                            "file": {
                                "headers": {
                                    "Content-Disposition": {
                                        "description": "The filename's extension gives the type.",
                                        "schema": STR,
                                        "example": 'form-data; name="file"; filename="notes.txt"',
                                    }
                                }
                            }
                        },
                    }
                },
                responses={
                    503: _storage_503("nothing was stored and no file row was made"),
                    201: ok("Stored.", ref("FileUploaded")),
                    200: ok("These bytes were already there.", ref("FileUploaded")),
                    409: error(409, "Too many files share this name."),
                    413: error(
                        413,
                        "`payload_too_large` / `file_too_large`: over the limit; "
                        "`storage_quota_exceeded`: the file would cross a storage quota, "
                        "named in `quota` (nothing was stored).",
                    ),  # fmt: skip
                    415: error(
                        415,
                        "`file_type_not_allowed`: the type is not allowed, or "
                        "the bytes do not match a built-in type's extension.",
                    ),  # fmt: skip
                    422: error(
                        422,
                        "Not exactly one file in `file`, or another field (`validation_failed`, "
                        "naming it in `fields`), "
                        "or an empty file (`file_empty`).",
                    ),  # fmt: skip
                },
            ),
        },
        "/api/projects/{project_id}/files/{file_id}": {
            "get": op(
                "getFile",
                "A file",
                tag="files",
                responses={200: ok("The file.", ref("File"))},
            ),
            "patch": op(
                "updateFile",
                "Use a file in chat, or stop",
                tag="files",
                description="Only files with extracted text (`text.status` `ok`) can be "
                "used; others (images, added types, …) answer 422 `file_has_no_text`.",
                body=body_of({"use_in_chat": BOOL}),
                responses={
                    200: ok("The file.", ref("File")),
                    422: error(422, "`use_in_chat` missing, or `file_has_no_text`."),
                },
            ),
            "delete": op(
                "deleteFile",
                "Delete a file",
                tag="files",
                description="The bytes, the row and the OpenAI copy.",
                responses={
                    204: ok("Deleted."),
                    503: _storage_503("the file was not deleted"),
                },
            ),
        },
        "/api/projects/{project_id}/files/{file_id}/download": {
            "get": op(
                "downloadFile",
                "Download a file",
                tag="files",
                description="Streamed from the store. `ETag` is the content's sha256; "
                "`If-None-Match` and `If-Modified-Since` answer 304, and one `Range` answers "
                "206 with `Content-Range`.",
                responses={
                    200: _DOWNLOAD,
                    404: error(404, _BYTES_MISSING),
                    503: _storage_503("the bytes could not be read"),
                },
            )
        },
        "/api/projects/{project_id}/files/{file_id}/sync": {
            "post": op(
                "syncFile",
                "Retry the OpenAI Files copy",
                tag="files",
                rate_limited=True,
                description="A synced file is returned as it is. OpenAI's failure is stored on "
                "the file (`openai.status` `failed`), not answered as an error. Each call "
                "counts as one file against `RATELIMIT_UPLOAD`.",
                responses={
                    200: ok("The file.", ref("File")),
                    409: error(409, "`sync_unavailable`: no `OPENAI_API_KEY` is set."),
                },
            )
        },
    }


def _path_parameters(path: str) -> list[dict]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": ID,
            "description": PATH_PARAMS[name],
        }
        for name in re.findall(r"{(\w+)}", path)
    ]


def _version() -> str:
    try:
        return version("prompthub")
    except PackageNotFoundError:  # pragma: no cover (running from a bare checkout)
        return "0"


@cache
def _build() -> dict:
    paths: dict[str, dict] = {}
    for path, operations in _operations().items():
        params = _path_parameters(path)
        item: dict[str, Any] = {}
        if params:
            item["parameters"] = params
        for method, operation in operations.items():
            responses = operation["responses"]
            if params:
                responses.setdefault(404, error(404))
            if method != "get":  # the Origin check on cookie-authenticated writes
                responses.setdefault(403, error(403))
            operation["responses"] = {str(code): responses[code] for code in sorted(responses)}
            item[method] = operation
        paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PromptHub API",
            "version": _version(),
            "description": "Projects, versioned system prompts, streamed chat and files. "
            "Authenticate with `Authorization: Bearer <token>` from register or login. "
            'Errors are always `{"error": {"code", "message", "fields"?, "budget"?}}`; another '
            "user's data is always a 404. Integers in paths, queries and bodies are 32-bit.\n\n"
            "Browser apps on another origin may call the API when the server lists that origin "
            "in `CORS_ORIGINS` (CORS: preflights need no authentication, answers are cached "
            "7200 s; `Retry-After`, `X-RateLimit-*`, `Content-Disposition` and `X-Request-ID` "
            "are exposed). Such calls must send a bearer token: a cookie never authorises a "
            "request whose `Origin` is another origin, and credentials are never allowed.",
        },
        "tags": [
            {"name": name}
            for name in (
                "auth",
                "projects",
                "prompts",
                "chat",
                "conversations",
                "compare",
                "files",
                "meta",
            )
        ],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An HS256 JWT from register or login, valid for "
                    "`JWT_EXPIRES_DAYS` (7 by default). Revoked by logout-all, and all at once "
                    "when the server's `JWT_SECRET` changes.",
                }
            },
            "schemas": SCHEMAS,
            "responses": {
                name: {"description": description, "content": _json(ref("Error"))}
                | ({"headers": _RETRY_AFTER[status]} if status in _RETRY_AFTER else {})
                for status, (name, description) in ERRORS.items()
            },
        },
    }


def spec() -> dict:
    """The document (a copy: callers may change it freely)."""
    return copy.deepcopy(_build())


def body_schema(path: str, method: str) -> Schema | None:
    """The JSON request body of an operation (``/api/projects/{project_id}``, ``patch``), or
    None when it takes none. The schema is shared: do not change it."""
    return request_bodies().get((path, method.lower()))


@cache
def request_bodies() -> dict[tuple[str, str], Schema]:
    """Every operation's JSON request body by (path, method)."""
    found = {}
    for path, item in _build()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found[(path, method)] = content["application/json"]["schema"]
    return found


@cache
def spec_json() -> str:
    """The document as served, serialised once per process."""
    return json.dumps(_build(), ensure_ascii=False, indent=1)
