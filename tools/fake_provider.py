"""A real HTTP fake of OpenAI (Responses, Files) and OpenRouter (chat completions) for tests and
benchmarks, speaking the wire formats described in docs/providers.md.

It is a WSGI app on Werkzeug's threaded server (one thread per connection) in a daemon thread.
Behaviour is scripted per request with ``Scenario``s queued per endpoint (``"responses"``,
``"chat"``, ``"files"``); with nothing queued a request gets a normal successful reply
("Hello from the fake model."). Every request is recorded (``.requests``, ``.calls(endpoint)``),
requests without the right bearer key get the provider's real 401, and a client closing a stream
early is noticed (Werkzeug's next write fails) and counted (``.disconnects``,
``RecordedRequest.disconnected``).

    fake = FakeProviderServer().start()
    fake.script("responses", Scenario(status=503), Scenario(status=503))  # the next two calls
    fake.script("chat", Scenario(deltas=["Hel", "lo"], usage_variant="one_choice"))
    ...
    fake.stop()

Routes: ``POST /v1/responses`` (JSON or SSE), ``POST|GET /v1/files``, ``GET|DELETE
/v1/files/<id>``, ``GET /v1/files/<id>/content``, ``POST /api/v1/chat/completions`` (JSON or
SSE), ``GET /api/v1/models`` (no auth). Control, for a fake running in another process:
``POST /_control/script`` ``{"endpoint": "chat", "scenarios": [{...}]}``, ``POST
/_control/default`` ``{...scenario}``, ``POST /_control/reset``, ``GET /_control/requests``.

Standalone (benchmarks): ``python -m tools.fake_provider --port 8765 --ttft-ms 200 --tokens 50
--token-delay-ms 10`` serves until killed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import signal
import socket
import threading
import time
from collections import deque
from contextlib import closing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

DEFAULT_OPENAI_KEY = "test-openai-key"
DEFAULT_OPENROUTER_KEY = "test-openrouter-key"
DEFAULT_TEXT = "Hello from the fake model."
ENDPOINTS = ("responses", "chat", "files")
# The purposes POST /v1/files accepts (CreateFileRequest.purpose in OpenAI's OpenAPI document).
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_EXPIRY_SECONDS = 30 * 24 * 3600
LIVE_MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
}
LISTEN_BACKLOG = 1024  # Werkzeug's default (128) is short for hundreds of simultaneous connects
PROCESSING = b": OPENROUTER PROCESSING\n\n"


@dataclass
class Scenario:
    """What the fake does for one request; the defaults give a quick, successful reply. Fields
    that do not apply to an endpoint are ignored.

    Errors before any body: ``status`` (not 200) with ``error`` (a code such as
    ``rate_limit_exceeded``, ``insufficient_quota``, ``invalid_api_key``, ``model_not_found``,
    ``content_policy_violation``; for OpenRouter a ``metadata.error_type``, or ``missing`` for the
    401 without a key, ``guardrail`` for a 403 guardrail), ``moderation`` (OpenRouter 403 with
    moderation metadata), ``message`` replacing the default text, ``raw`` (OpenRouter
    ``metadata.raw``), and the headers ``retry_after`` (``Retry-After``: seconds or an HTTP
    date), ``retry_after_ms`` (``retry-after-ms``), ``should_retry`` (``x-should-retry``).

    A reply: ``deltas`` (exact pieces) or ``text`` (split at spaces); ``ttft_ms`` before the
    first byte (OpenAI: the headers wait too; OpenRouter sends ``: OPENROUTER PROCESSING``
    comments meanwhile); ``token_delay_ms`` between deltas; ``hang_s`` of silence before anything
    at all (read timeouts); ``keepalive`` (OpenAI ``keepalive`` events, OpenRouter comments,
    between deltas); ``obfuscation`` (None: as the request asked, on by default); ``terminal``
    ``completed``/``incomplete``/``failed`` (OpenAI; ``incomplete`` makes OpenRouter finish with
    ``length``); ``refusal``: the model refuses with this text.

    Failures with HTTP 200: ``inband_error`` (before any delta) or after ``fail_after`` deltas,
    with code ``error`` (default ``server_error``). OpenAI streams send an ``error`` event (nested
    as live, or ``flat_error`` as documented) then ``response.failed``; OpenRouter streams an error
    chunk with ``finish_reason: "error"`` and ``code`` an int (``int_code``) or a string.
    ``body_error``: the same failure for a non-streamed request (OpenAI ``status: "failed"``,
    OpenRouter a top-level ``error``, or ``choices[0].error`` with ``error_in_choice``).
    ``reject_format``: a request with an output format is refused with this status (400: the
    model does not support it; OpenRouter 404: no endpoint honours the parameters), before any
    other scripted behaviour. ``truncate_after`` N deltas the body ends cleanly without its terminal event / ``[DONE]``;
    ``cut_after`` N deltas the connection closes in the middle of a chunk. ``malformed``: an
    event whose data is not JSON, before any delta. ``usage_variant`` (OpenRouter):
    ``empty_choices`` (documented) or ``one_choice`` (seen live).
    """

    status: int = 200
    error: str | None = None
    message: str | None = None
    raw: str | None = None
    moderation: bool = False
    retry_after: float | str | None = None
    retry_after_ms: float | str | None = None
    should_retry: bool | str | None = None
    deltas: list[str] | None = None
    text: str | None = None
    ttft_ms: float = 0
    token_delay_ms: float = 0
    hang_s: float = 0
    keepalive: bool = False
    obfuscation: bool | None = None
    terminal: str = "completed"
    incomplete_reason: str = "max_output_tokens"
    refusal: str | None = None
    inband_error: bool = False
    fail_after: int | None = None
    flat_error: bool = False
    int_code: bool = True
    body_error: bool = False
    error_in_choice: bool = False
    truncate_after: int | None = None
    cut_after: int | None = None
    malformed: bool = False
    usage_variant: str = "empty_choices"
    # A request carrying an output format (OpenAI ``text.format`` other than text, OpenRouter
    # ``response_format``) is refused with this status, as by a model without the feature.
    reject_format: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown scenario fields: {sorted(unknown)}")
        return cls(**data)

    def pieces(self, default_text: str) -> list[str]:
        if self.refusal is not None:
            return split_words(self.refusal)
        if self.deltas is not None:
            return list(self.deltas)
        return split_words(self.text if self.text is not None else default_text)

    @property
    def failure_at(self) -> int | None:
        """After how many deltas an in-band failure comes (None: no in-band failure)."""
        if self.fail_after is not None:
            return self.fail_after
        return 0 if (self.inband_error or self.body_error) else None

    @property
    def failure_code(self) -> str:
        return self.error or "server_error"

    @property
    def stop_after(self) -> tuple[int, str] | None:
        """``(deltas, "eof" | "cut")`` when the body ends without its terminal event."""
        if self.cut_after is not None:
            return self.cut_after, "cut"
        if self.truncate_after is not None:
            return self.truncate_after, "eof"
        return None


@dataclass
class RecordedRequest:
    endpoint: str
    method: str
    path: str
    headers: Headers  # case-insensitive: headers["HTTP-Referer"] == headers["http-referer"]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # filename, size, content...
    status: int | None = None
    scenario: Scenario | None = None
    completed: bool = False  # the whole body was written
    disconnected: bool = False  # the client closed the stream before its end

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "method": self.method,
            "path": self.path,
            "headers": dict(self.headers.items()),
            "json": self.json,
            "form": self.form,
            "files": {
                name: {k: v for k, v in info.items() if k != "content"}
                for name, info in self.files.items()
            },
            "status": self.status,
            "scenario": asdict(self.scenario) if self.scenario else None,
            "completed": self.completed,
            "disconnected": self.disconnected,
        }


Recorded = RecordedRequest


# --- small helpers ------------------------------------------------------------------------------


def split_words(text: str) -> list[str]:
    """``"Hello from x."`` → ``["Hello", " from", " x."]`` (they join back to the text)."""
    if not text:
        return []
    first, *rest = text.split(" ")
    return [first, *(" " + word for word in rest)]


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def live_model(model: str) -> str:
    """The dated snapshot id the live API answers with (``gpt-4o-mini-2024-07-18``)."""
    if model in LIVE_MODELS:
        return LIVE_MODELS[model]
    return model if model[-10:-8] == "20" else f"{model}-2024-07-18"


def new_id(prefix: str, hex_chars: int = 24) -> str:
    return prefix + secrets.token_hex(hex_chars // 2)


def word_count(*texts: Any) -> int:
    return sum(len(t.split()) for t in texts if isinstance(t, str))


def header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers or {}, mimetype="application/json"
    )


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass(frozen=True)
class Pause:
    """Yielded by the reply generators between writes: the server waits this long before asking
    for the next bytes. The threaded WSGI server sleeps the request's thread; the bench server
    (``tools/bench/fake_async.py``) awaits, so both serve the very same event sequence."""

    seconds: float


class _Closed(Exception):
    """The server was reset or stopped while a request slept: end that request quietly."""


# --- OpenAI bodies ------------------------------------------------------------------------------

OPENAI_ERRORS: dict[str, tuple[str, str | None, str]] = {
    # code: (type, param, message)
    "invalid_request_error": (
        "invalid_request_error",
        "temperature",
        "Unsupported parameter: 'temperature' is not supported with this model.",
    ),
    "content_policy_violation": (
        "invalid_request_error",
        None,
        "Your request was rejected as a result of our safety system.",
    ),
    "context_length_exceeded": (
        "invalid_request_error",
        "input",
        "Your input exceeds the context window of this model. Please adjust your input and try "
        "again.",
    ),
    "invalid_api_key": (
        "invalid_request_error",
        None,
        "Incorrect API key provided: sk-abc***xyz. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    "unsupported_country_region_territory": (
        "request_forbidden",
        None,
        "Country, region, or territory not supported",
    ),
    "model_not_found": (
        "invalid_request_error",
        None,
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    "rate_limit_exceeded": (
        "tokens",
        None,
        "Rate limit reached for {model} in organization org-fake on tokens per min (TPM): Limit "
        "30000, Used 25265, Requested 8020. Please try again in 6.57s. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
    ),
    "insufficient_quota": (
        "insufficient_quota",
        None,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
    ),
    "server_error": (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
}
OPENAI_STATUS_CODES = {
    400: "invalid_request_error",
    401: "invalid_api_key",
    403: "unsupported_country_region_territory",
    404: "model_not_found",
    429: "rate_limit_exceeded",
    500: "server_error",
}
NULL_CODES = {"invalid_request_error", "server_error"}  # live bodies send "code": null for these


def openai_error(status: int, sc: Scenario, model: str) -> dict[str, Any]:
    code = sc.error or OPENAI_STATUS_CODES.get(status)
    if code in OPENAI_ERRORS:
        etype, param, message = OPENAI_ERRORS[code]
    elif status in (502, 503):
        etype, param, message = "server_error", None, "The engine is currently overloaded."
    elif status == 408:
        etype, param, message = "timeout", None, "Request timed out."
    elif status == 409:
        etype, param, message = "conflict", None, "Another request is still being processed."
    else:
        etype, param, message = "invalid_request_error", None, f"Request failed ({code})."
    if code in NULL_CODES or status in (408, 409, 502, 503):
        code = None
    message = sc.message or message.replace("{model}", model or "unknown")
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def openai_inband_error(code: str, model: str, message: str | None) -> dict[str, Any]:
    """The ``error`` object of an in-band failure, as live streams nest it."""
    etype, param, default = OPENAI_ERRORS.get(code, OPENAI_ERRORS["server_error"])
    if code == "server_error":  # live: {"type": "server_error", "code": null, ...}
        default, code = "An error occurred while processing the request.", None
    text = message or default.replace("{model}", model)
    return {"type": etype, "code": code, "message": text, "param": param}


def openai_auth_error(auth: str, key: str) -> dict[str, Any] | None:
    """None when ``auth`` carries ``key``; else the 401 body OpenAI sends."""
    if auth == f"Bearer {key}":
        return None
    given = auth[7:].strip() if auth.startswith("Bearer ") else ""
    if not given:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an "
            "API key from https://platform.openai.com/account/api-keys."
        )
        code = None
    else:
        masked = f"{given[:3]}***{given[-4:]}" if len(given) > 8 else "***"
        message = (
            f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        code = "invalid_api_key"
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }


# --- OpenRouter bodies --------------------------------------------------------------------------

OPENROUTER_ERROR_STATUS = {
    "rate_limit_exceeded": 429,
    "provider_overloaded": 529,
    "provider_unavailable": 502,
    "server_error": 500,
    "server": 500,
    "timeout": 408,
    "payment_required": 402,
    "authentication": 401,
    "permission_denied": 403,
    "invalid_request": 400,
    "context_length_exceeded": 400,
    "content_policy_violation": 403,
}


def openrouter_error(status: int, sc: Scenario, model: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if status == 401:
        missing = sc.error == "missing"
        message = "No cookie auth credentials found" if missing else "User not found."
    elif status == 402:
        message = (
            "This request requires more credits, or fewer max_tokens. You requested up to 32000 "
            "tokens, but can only afford 27342. To increase, visit "
            "https://openrouter.ai/settings/credits and upgrade to a paid account"
        )
        metadata = {"provider_name": None}
        extra["user_id"] = "user_fake"
    elif status == 403 and sc.moderation:
        message = (
            f'{model} requires moderation on OpenAI. Your input was flagged for "harassment". '
            "No credits were charged."
        )
        metadata = {
            "reasons": ["harassment"],
            "flagged_input": "…the flagged part of the input…",
            "provider_name": "OpenAI",
            "model_slug": model,
        }
    elif status == 403 and sc.error == "guardrail":
        message = "Request blocked by a guardrail."
        metadata = {"patterns": ["credit card number"]}
    elif status == 403:
        message = "Key is disabled or not allowed to use this model."
    elif status == 404:
        message = f"No endpoints found for {model}."
    elif status == 408:
        message = "Operation timed out. Please try again later."
    elif status == 429:
        message = "Provider returned error"
        metadata = {
            "raw": f"{model} is temporarily rate-limited upstream. Please retry shortly.",
            "provider_name": "OpenAI",
        }
    elif status == 502:
        message = "Provider returned error"
        metadata = {"provider_name": "OpenAI"}
    elif status == 503:
        message = "No allowed providers are available for the selected model."
    elif status >= 500:
        message = "Internal Server Error"
    else:
        message = "Invalid request: messages must be a non-empty array"
    if sc.raw is not None:
        metadata["raw"] = sc.raw
    if sc.error in OPENROUTER_ERROR_STATUS:
        metadata["error_type"] = sc.error
    error: dict[str, Any] = {"code": status, "message": sc.message or message}
    if metadata:
        error["metadata"] = metadata
    return {"error": error, **extra}


def openrouter_inband_error(sc: Scenario) -> dict[str, Any]:
    """The error object of a failure delivered with HTTP 200 (stream chunk or JSON body)."""
    if sc.body_error and sc.error is None:  # the live shape of BerriAI/litellm#8448
        metadata = {
            "raw": sc.raw if sc.raw is not None else "error code: 1015",
            "provider_name": "Kluster",
        }
        return {
            "message": sc.message or "Provider returned error",
            "code": 429,
            "metadata": metadata,
        }
    code = sc.failure_code
    status = OPENROUTER_ERROR_STATUS.get(code, 500)
    messages = {429: "Rate limit exceeded", 402: "Insufficient credits"}
    error: dict[str, Any] = {
        "code": status if sc.int_code else code,
        "message": sc.message or messages.get(status, "Internal server error"),
        "metadata": {"error_type": code},
    }
    if sc.raw is not None:
        error["metadata"]["raw"] = sc.raw
    return error


# --- request checks the real APIs make (they catch our bugs) -----------------------------------


FORMAT_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def check_format_name(name: Any) -> str | None:
    """``name`` of a json_schema format: a-z, A-Z, 0-9, _ and -, at most 64 (both APIs)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or set(name) - FORMAT_NAME_CHARS:
        return "Invalid 'name': use a-z, A-Z, 0-9, underscores and dashes, at most 64."
    return None


def validate_text_format(text: Any) -> str | None:
    """OpenAI Responses ``text`` (``ResponseTextParam``): ``format`` is one of
    ``{"type": "text"}``, ``{"type": "json_object"}`` or ``{"type": "json_schema", "name",
    "schema", "strict"?, "description"?}`` (``TextResponseFormatConfiguration``: flat)."""
    if not isinstance(text, dict):
        return "Invalid type for 'text': expected an object."
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        return "Invalid value for 'text.format.type': use text, json_object or json_schema."
    if fmt["type"] != "json_schema":
        return None if set(fmt) == {"type"} else "Unknown parameter in 'text.format'."
    if "json_schema" in fmt:  # the Chat Completions nesting, sent to the wrong API
        return "Unknown parameter: 'text.format.json_schema'."
    for required in ("name", "schema"):
        if required not in fmt:
            return f"Missing required parameter: 'text.format.{required}'."
    if not isinstance(fmt["schema"], dict):
        return "Invalid type for 'text.format.schema': expected an object."
    if not isinstance(fmt.get("strict", False), bool | None):
        return "Invalid type for 'text.format.strict': expected a boolean."
    return check_format_name(fmt["name"])


def validate_response_format(fmt: Any) -> str | None:
    """OpenRouter (Chat Completions) ``response_format``: ``{"type": "json_object"}`` or
    ``{"type": "json_schema", "json_schema": {"name", "strict"?, "schema"}}`` (nested)."""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        return "response_format.type must be text, json_object or json_schema"
    if fmt["type"] != "json_schema":
        return None
    inner = fmt.get("json_schema")
    if not isinstance(inner, dict) or not isinstance(inner.get("schema"), dict):
        return "response_format.json_schema must be an object with a schema object"
    if not isinstance(inner.get("strict", False), bool | None):
        return "response_format.json_schema.strict must be a boolean"
    return check_format_name(inner.get("name"))


def asks_format(body: Any) -> bool:
    """Whether a request asks for an output format other than plain text."""
    if not isinstance(body, dict):
        return False
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    response_format = body.get("response_format")
    return any(
        isinstance(f, dict) and f.get("type") not in (None, "text") for f in (fmt, response_format)
    )


def validate_openai(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if "response_format" in body:
        return "Unsupported parameter: 'response_format'. The Responses API takes 'text.format'."
    if "text" in body and (problem := validate_text_format(body["text"])):
        return problem
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "Missing required parameter: 'model'."
    if "/" in model:
        return f"Invalid model ID '{model}'."
    if "input" not in body:
        return "Missing required parameter: 'input'."
    tokens = body.get("max_output_tokens")
    if tokens is not None and (not isinstance(tokens, int) or tokens < 16):
        return (
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
            f"but got {tokens} instead."
        )
    return None


def validate_openrouter(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON body"
    model = body.get("model")
    if not isinstance(model, str) or "/" not in model:
        return f"{model} is not a valid model ID"
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return 'Input required: specify "prompt" or "messages"'
    if "text" in body:
        return "text is not a Chat Completions parameter (use response_format)"
    if "response_format" in body and (problem := validate_response_format(body["response_format"])):
        return problem
    return None


def public_file(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if k != "content"}


def models_body() -> dict[str, Any]:
    def model(slug: str, name: str, prompt: str, completion: str) -> dict[str, Any]:
        return {
            "id": slug, "canonical_slug": slug, "name": name, "created": 1721260800,
            "description": f"{name} (fake)", "context_length": 128000,
            "architecture": {"modality": "text->text", "input_modalities": ["text"],
                             "output_modalities": ["text"], "tokenizer": "GPT",
                             "instruct_type": None},
            "pricing": {"prompt": prompt, "completion": completion, "request": "0", "image": "0"},
            "top_provider": {"context_length": 128000, "max_completion_tokens": 16384,
                             "is_moderated": True},
            "per_request_limits": None,
            "supported_parameters": ["max_tokens", "temperature", "stop"],
            "default_parameters": None, "expiration_date": None,
            "links": {"details": f"/api/v1/models/{slug}/endpoints"},
        }  # fmt: skip

    data = [
        model("openai/gpt-4o-mini", "OpenAI: GPT-4o-mini", "0.00000015", "0.0000006"),
        model("openai/gpt-4o", "OpenAI: GPT-4o", "0.0000025", "0.00001"),
    ]
    return {"data": data, "links": {"next": None}, "total_count": len(data)}


# --- the server ---------------------------------------------------------------------------------


class FakeProviderServer:
    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        openai_key: str = DEFAULT_OPENAI_KEY,
        openrouter_key: str = DEFAULT_OPENROUTER_KEY,
        default: Scenario | None = None,
        text: str = DEFAULT_TEXT,
        comment_interval_ms: float = 100,
    ) -> None:
        self.host, self.port = host, port
        self.openai_key, self.openrouter_key = openai_key, openrouter_key
        self.default = default or Scenario()
        self.text = text
        self.comment_interval = comment_interval_ms / 1000
        self.files: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queues: dict[str, deque[Scenario]] = {name: deque() for name in ENDPOINTS}
        self._requests: list[RecordedRequest] = []
        self._wake = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeProviderServer:
        self._server = make_server(
            self.host, self.port, self, threaded=True, request_handler=_QuietHandler
        )
        self._server.socket.listen(LISTEN_BACKLOG)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fake-provider", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        self._wake_sleepers()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def openrouter_base_url(self) -> str:
        return self.url + "/api/v1"

    def app_config(self, *, openai: bool = True, openrouter: bool = True, **extra) -> dict:
        """App settings that send chat to this server: both providers (or the ones asked for)
        with test keys and this server's URLs, then ``extra`` settings on top."""
        config: dict = {
            "OPENAI_BASE_URL": self.openai_base_url,
            "OPENROUTER_BASE_URL": self.openrouter_base_url,
        }
        if openai:
            config["OPENAI_API_KEY"] = "test-openai-key"
        if openrouter:
            config["OPENROUTER_API_KEY"] = "test-openrouter-key"
        return {**config, **extra}

    # -- scripting and inspection ---------------------------------------------------------------

    def reset(self) -> None:
        """Forget scripts, recordings and files; end requests still sleeping (hangs)."""
        self._wake_sleepers()
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
            self._requests.clear()
            self.files.clear()

    def script(self, endpoint: str, *scenarios: Scenario | dict[str, Any]) -> None:
        """Queue behaviour for the next requests to ``endpoint``, one scenario per request."""
        if endpoint not in self._queues:
            raise ValueError(f"unknown endpoint {endpoint!r}: one of {ENDPOINTS}")
        parsed = [s if isinstance(s, Scenario) else Scenario.from_dict(s) for s in scenarios]
        with self._lock:
            self._queues[endpoint].extend(parsed)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def calls(self, endpoint: str) -> list[RecordedRequest]:
        """The recorded requests to one endpoint (``responses``, ``chat``, ``files``)."""
        return [r for r in self.requests if r.endpoint == endpoint]

    @property
    def disconnects(self) -> int:
        """How many streams their client closed before the end."""
        with self._lock:
            return sum(r.disconnected for r in self._requests)

    def wait_for_disconnects(self, count: int = 1, timeout: float = 3.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(r.disconnected for r in self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    # -- internals ------------------------------------------------------------------------------

    def _wake_sleepers(self) -> None:
        wake, self._wake = self._wake, threading.Event()
        wake.set()

    def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        wake = self._wake
        if seconds <= 0.05:  # token gaps: a plain sleep is cheaper than a wait on an Event
            time.sleep(seconds)
            if wake.is_set():
                raise _Closed
        elif wake.wait(seconds):
            raise _Closed

    def _next(self, endpoint: str) -> Scenario:
        with self._lock:
            queue = self._queues[endpoint]
            return queue.popleft() if queue else self.default

    def _finish(self, rec: RecordedRequest, *, disconnected: bool = False) -> None:
        with self._changed:
            rec.completed = not disconnected
            rec.disconnected = disconnected
            self._changed.notify_all()

    def _stream(self, rec: RecordedRequest, chunks: Any) -> Any:
        """Stream ``chunks``. A client going away surfaces here as GeneratorExit at a yield
        (Werkzeug closes the iterator when a write fails): record it."""
        try:
            with closing(chunks):
                for chunk in chunks:
                    if isinstance(chunk, Pause):
                        self._sleep(chunk.seconds)
                    else:
                        yield chunk
        except GeneratorExit:
            self._finish(rec, disconnected=True)
            raise
        except _Closed:
            return
        self._finish(rec)

    def _reply(self, rec: RecordedRequest, response: Response, environ, start_response):
        rec.status = response.status_code
        rec.completed = True
        return response(environ, start_response)

    # -- WSGI -----------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        path, method = request.path.rstrip("/"), request.method
        if path.startswith("/_control/"):
            return self._control(request, path)(environ, start_response)
        if path == "/v1/responses" and method == "POST":
            endpoint, handler = "responses", self._responses
        elif path.startswith("/v1/files"):
            endpoint, handler = "files", self._files
        elif path == "/api/v1/chat/completions" and method == "POST":
            endpoint, handler = "chat", self._chat
        elif path == "/api/v1/models" and method == "GET":
            return json_response(200, models_body())(environ, start_response)
        else:
            body = {
                "error": {
                    "message": f"Unknown route: {method} {path}",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
            return json_response(404, body)(environ, start_response)
        rec = RecordedRequest(endpoint, method, path, Headers(request.headers.items()))
        if request.mimetype == "multipart/form-data":
            rec.form = request.form.to_dict()
            for name, storage in request.files.items():
                content = storage.read()
                storage.close()  # Werkzeug spools uploads to temporary files
                rec.files[name] = {
                    "filename": storage.filename,
                    "content_type": storage.mimetype,
                    "size": len(content),
                    "content": content,
                }
        else:
            rec.json = request.get_json(silent=True)
        with self._lock:
            self._requests.append(rec)
        return handler(request, rec, environ, start_response)

    def _control(self, request: Request, path: str) -> Response:
        data = request.get_json(silent=True) if request.method == "POST" else None
        try:
            if path == "/_control/reset" and request.method == "POST":
                self.reset()
                return json_response(200, {"ok": True})
            if path == "/_control/script" and request.method == "POST":
                scenarios = data.get("scenarios") or []
                self.script(data.get("endpoint", ""), *scenarios)
                return json_response(200, {"queued": len(scenarios)})
            if path == "/_control/default" and request.method == "POST":
                self.default = Scenario.from_dict(data or {})
                return json_response(200, {"ok": True})
        except (AttributeError, TypeError, ValueError) as exc:
            return json_response(400, {"error": str(exc)})
        if path == "/_control/requests" and request.method == "GET":
            records = [r.to_json() for r in self.requests]
            return json_response(200, {"data": records, "disconnects": self.disconnects})
        return json_response(404, {"error": "unknown control route"})

    # -- OpenAI /v1/responses -------------------------------------------------------------------

    def _openai_headers(self, sc: Scenario | None = None) -> dict[str, str]:
        headers = {"x-request-id": new_id("req_", 32), "openai-processing-ms": "42"}
        if sc is None:
            return headers
        for name, value in (
            ("retry-after", sc.retry_after),
            ("retry-after-ms", sc.retry_after_ms),
            ("x-should-retry", sc.should_retry),
        ):
            if value is not None:
                headers[name] = header_value(value)
        if sc.status == 429:
            headers.update({
                "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
                "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6.57s",
            })  # fmt: skip
        return headers

    def _responses(self, request: Request, rec: RecordedRequest, environ, start_response):
        denied = openai_auth_error(request.headers.get("Authorization", ""), self.openai_key)
        if denied is not None:
            return self._reply(
                rec, json_response(401, denied, self._openai_headers()), environ, start_response
            )
        sc = rec.scenario = self._next("responses")
        invalid = validate_openai(rec.json)
        if invalid:
            body = {
                "error": {
                    "message": invalid,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
            return self._reply(
                rec, json_response(400, body, self._openai_headers()), environ, start_response
            )
        if sc.reject_format is not None and asks_format(rec.json):
            body = {
                "error": {
                    "message": "Invalid parameter: 'text.format' is not supported with this model.",
                    "type": "invalid_request_error",
                    "param": "text.format",
                    "code": "unsupported_parameter",
                }
            }
            response = json_response(sc.reject_format, body, self._openai_headers())
            return self._reply(rec, response, environ, start_response)
        try:
            self._sleep(sc.hang_s)
        except _Closed:
            return self._reply(rec, json_response(503, {}), environ, start_response)
        if sc.status != 200:
            error = openai_error(sc.status, sc, rec.json["model"])
            response = json_response(sc.status, error, self._openai_headers(sc))
            return self._reply(rec, response, environ, start_response)
        reply = OpenAIReply(self, sc, rec.json)
        rec.status = 200
        if rec.json.get("stream"):
            start_response("200 OK", [
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("Cache-Control", "no-cache"),
                *self._openai_headers().items(),
            ])  # fmt: skip
            return self._stream(rec, reply.events(environ))
        try:
            self._sleep(sc.ttft_ms / 1000)
        except _Closed:
            return self._reply(rec, json_response(503, {}), environ, start_response)
        response = json_response(200, reply.response_body(), self._openai_headers())
        return self._reply(rec, response, environ, start_response)

    # -- OpenAI /v1/files -----------------------------------------------------------------------

    def _files(self, request: Request, rec: RecordedRequest, environ, start_response):
        def reply(status: int, body: Any) -> Any:
            return self._reply(
                rec, json_response(status, body, self._openai_headers()), environ, start_response
            )

        denied = openai_auth_error(request.headers.get("Authorization", ""), self.openai_key)
        if denied is not None:
            return reply(401, denied)
        sc = rec.scenario = self._next("files")
        if sc.status != 200:
            response = json_response(
                sc.status, openai_error(sc.status, sc, ""), self._openai_headers(sc)
            )
            return self._reply(rec, response, environ, start_response)
        path, method = rec.path, rec.method
        if path == "/v1/files" and method == "POST":
            return reply(*self._upload(rec))
        if path == "/v1/files" and method == "GET":
            purpose = request.args.get("purpose")
            with self._lock:
                data = [
                    public_file(f)
                    for f in self.files.values()
                    if not purpose or f["purpose"] == purpose
                ]
            return reply(
                200,
                {
                    "object": "list",
                    "data": data,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                    "has_more": False,
                },
            )
        file_id, _, rest = path.removeprefix("/v1/files/").partition("/")
        with self._lock:
            stored = self.files.get(file_id)
        if stored is None:
            return reply(
                404,
                {
                    "error": {
                        "message": f"No such File object: {file_id}",
                        "type": "invalid_request_error",
                        "param": "id",
                        "code": None,
                    }
                },
            )
        if rest == "content" and method == "GET":
            response = Response(
                stored["content"],
                headers=self._openai_headers(),
                mimetype="application/octet-stream",
            )
            return self._reply(rec, response, environ, start_response)
        if not rest and method == "GET":
            return reply(200, public_file(stored))
        if not rest and method == "DELETE":
            with self._lock:
                self.files.pop(file_id, None)
            return reply(200, {"id": file_id, "object": "file", "deleted": True})
        return reply(
            404,
            {
                "error": {
                    "message": f"Unknown route: {method} {path}",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
        )

    def _upload(self, rec: RecordedRequest) -> tuple[int, dict[str, Any]]:
        purpose = rec.form.get("purpose")
        upload = rec.files.get("file")
        if not purpose or upload is None:
            missing = "purpose" if not purpose else "file"
            return 400, {
                "error": {
                    "message": f"Missing required parameter: '{missing}'.",
                    "type": "invalid_request_error",
                    "param": missing,
                    "code": "missing_required_parameter",
                }
            }
        if purpose not in UPLOAD_PURPOSES:  # CreateFileRequest.purpose is an enum
            return 400, {
                "error": {
                    "message": f"'{purpose}' is not one of {list(UPLOAD_PURPOSES)} - 'purpose'",
                    "type": "invalid_request_error",
                    "param": "purpose",
                    "code": None,
                }
            }
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
        created = int(time.time())
        stored = {
            "object": "file",
            "id": "file-" + "".join(secrets.choice(alphabet) for _ in range(22)),
            "purpose": purpose,
            "filename": upload["filename"] or "upload",
            "bytes": upload["size"],
            "created_at": created,
            # FileExpirationAfter: batch files expire after 30 days, others are kept.
            "expires_at": created + BATCH_EXPIRY_SECONDS if purpose == "batch" else None,
            "status": "processed",
            "status_details": None,
            "content": upload["content"],
        }
        with self._lock:
            self.files[stored["id"]] = stored
        return 200, public_file(stored)

    # -- OpenRouter /api/v1/chat/completions ----------------------------------------------------

    def _chat(self, request: Request, rec: RecordedRequest, environ, start_response):
        headers = {"X-Generation-Id": new_id("gen-", 20)}
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.openrouter_key}":
            missing = not auth.startswith("Bearer ") or not auth[7:].strip()
            body = openrouter_error(401, Scenario(error="missing" if missing else None), "")
            return self._reply(rec, json_response(401, body, headers), environ, start_response)
        sc = rec.scenario = self._next("chat")
        invalid = validate_openrouter(rec.json)
        if invalid:
            body = {"error": {"code": 400, "message": invalid}}
            return self._reply(rec, json_response(400, body, headers), environ, start_response)
        model = rec.json["model"]
        if sc.reject_format is not None and asks_format(rec.json):
            words = (
                "No endpoints found that can handle the requested parameters."
                if sc.reject_format == 404
                else "This model does not support response_format."
            )
            body = {"error": {"code": sc.reject_format, "message": words}}
            response = json_response(sc.reject_format, body, headers)
            return self._reply(rec, response, environ, start_response)
        try:
            self._sleep(sc.hang_s)
        except _Closed:
            return self._reply(rec, json_response(503, {}), environ, start_response)
        if sc.status != 200:
            if sc.retry_after is not None:
                headers["Retry-After"] = header_value(sc.retry_after)
            if sc.retry_after_ms is not None:
                headers["retry-after-ms"] = header_value(sc.retry_after_ms)
            response = json_response(sc.status, openrouter_error(sc.status, sc, model), headers)
            return self._reply(rec, response, environ, start_response)
        reply = OpenRouterReply(self, sc, rec.json, headers["X-Generation-Id"])
        rec.status = 200
        if rec.json.get("stream"):
            start_response("200 OK", [
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
                *headers.items(),
            ])  # fmt: skip
            return self._stream(rec, reply.chunks(environ))
        try:
            self._sleep(sc.ttft_ms / 1000)
        except _Closed:
            return self._reply(rec, json_response(503, {}), environ, start_response)
        return self._reply(
            rec, json_response(200, reply.completion_body(), headers), environ, start_response
        )


# --- reply generators ---------------------------------------------------------------------------


class OpenAIReply:
    """One Responses API reply: the JSON body (§A.2) or the SSE event sequence (§A.3)."""

    def __init__(self, server: FakeProviderServer, sc: Scenario, body: dict[str, Any]) -> None:
        self.server, self.sc, self.request = server, sc, body
        self.model = live_model(body["model"])
        self.id, self.msg_id = new_id("resp_", 32), new_id("msg_", 32)
        self.pieces = sc.pieces(server.text)
        self.created = int(time.time())
        self.seq = itertools.count()
        items = body.get("input")
        contents = [i.get("content") for i in items if isinstance(i, dict)] if isinstance(
            items, list) else [items]  # fmt: skip
        self.input_tokens = word_count(body.get("instructions"), *contents)

    # -- objects --------------------------------------------------------------------------------

    def response(
        self,
        status: str,
        *,
        output: list | None = None,
        usage: bool = False,
        error: dict | None = None,
    ) -> dict[str, Any]:
        req = self.request
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error,
            "incomplete_details": ({"reason": self.sc.incomplete_reason}
                                   if status == "incomplete" else None),
            "instructions": req.get("instructions"),
            "max_output_tokens": req.get("max_output_tokens"),
            "model": self.model, "output": output or [], "parallel_tool_calls": True,
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "service_tier": "default", "store": req.get("store", True),
            "temperature": req.get("temperature", 1),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto", "tools": [], "top_p": 1, "truncation": "disabled",
            "usage": self.usage() if usage else None,
            "user": None, "metadata": req.get("metadata") or {},
        }  # fmt: skip

    def usage(self) -> dict[str, Any]:
        output_tokens = word_count("".join(self.pieces))
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + output_tokens,
        }

    def part(self, text: str) -> dict[str, Any]:
        if self.sc.refusal is not None:
            return {"type": "refusal", "refusal": text}
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def item(self, status: str, content: list) -> dict[str, Any]:
        return {
            "id": self.msg_id,
            "type": "message",
            "status": status,
            "content": content,
            "role": "assistant",
        }

    def failed_error(self) -> dict[str, Any]:
        code = self.sc.failure_code
        message = openai_inband_error(code, self.model, self.sc.message)["message"]
        return {"code": code, "message": message}

    def response_body(self) -> dict[str, Any]:
        sc = self.sc
        if sc.failure_at is not None or sc.terminal == "failed":
            return self.response("failed", error=self.failed_error())
        text = "".join(self.pieces)
        status = "incomplete" if sc.terminal == "incomplete" else "completed"
        # A reasoning item first, as reasoning models send: clients must not assume output[0].
        reasoning = {"id": new_id("rs_", 32), "type": "reasoning", "summary": []}
        output = [reasoning, self.item("completed", [self.part(text)])]
        return self.response(status, output=output, usage=True)

    # -- stream ---------------------------------------------------------------------------------

    def event(self, kind: str, **payload: Any) -> bytes:
        data = {"type": kind, "sequence_number": next(self.seq), **payload}
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

    def events(self, environ: dict[str, Any]) -> Any:
        sc = self.sc
        yield Pause(sc.ttft_ms / 1000)  # nothing written yet, so the headers wait too
        obfuscate = sc.obfuscation
        if obfuscate is None:
            options = self.request.get("stream_options") or {}
            obfuscate = options.get("include_obfuscation", True)
        yield self.event("response.created", response=self.response("in_progress"))
        yield self.event("response.in_progress", response=self.response("in_progress"))
        if sc.malformed:
            yield b'event: response.output_text.delta\ndata: {"type": "response.output_text.d\n\n'
        if sc.failure_at == 0:
            yield from self.failure()
            return
        yield self.event(
            "response.output_item.added", output_index=0, item=self.item("in_progress", [])
        )
        yield self.event(
            "response.content_part.added",
            item_id=self.msg_id,
            output_index=0,
            content_index=0,
            part=self.part(""),
        )
        refusing = sc.refusal is not None
        kind = "response.refusal.delta" if refusing else "response.output_text.delta"
        sent: list[str] = []
        for index, piece in enumerate(self.pieces):
            if sc.stop_after and index == sc.stop_after[0]:
                break
            if index:
                yield Pause(sc.token_delay_ms / 1000)
            if sc.keepalive:
                yield self.event("keepalive")
            extra: dict[str, Any] = {} if refusing else {"logprobs": []}
            if obfuscate:
                extra["obfuscation"] = secrets.token_urlsafe(9)[: max(1, 12 - len(piece))]
            yield self.event(
                kind, item_id=self.msg_id, output_index=0, content_index=0, delta=piece, **extra
            )
            sent.append(piece)
            if sc.failure_at is not None and len(sent) == sc.failure_at:
                yield from self.failure()
                return
        if sc.stop_after:
            if sc.stop_after[1] == "cut":
                cut_connection(environ, self.event(kind, delta="never arrives"))
            return
        yield from self.finish("".join(sent))

    def finish(self, text: str) -> Any:
        ids = {"item_id": self.msg_id, "output_index": 0, "content_index": 0}
        if self.sc.refusal is not None:
            yield self.event("response.refusal.done", **ids, refusal=text)
        else:
            yield self.event("response.output_text.done", **ids, text=text, logprobs=[])
        yield self.event("response.content_part.done", **ids, part=self.part(text))
        item = self.item("completed", [self.part(text)])
        yield self.event("response.output_item.done", output_index=0, item=item)
        if self.sc.terminal == "failed":
            yield self.event(
                "response.failed", response=self.response("failed", error=self.failed_error())
            )
        elif self.sc.terminal == "incomplete":
            yield self.event(
                "response.incomplete",
                response=self.response("incomplete", output=[item], usage=True),
            )
        else:
            yield self.event(
                "response.completed", response=self.response("completed", output=[item], usage=True)
            )

    def failure(self) -> Any:
        """The live in-band failure: ``error`` (nested, or flat as documented), then
        ``response.failed``."""
        nested = openai_inband_error(self.sc.failure_code, self.model, self.sc.message)
        if self.sc.flat_error:
            yield self.event(
                "error", code=nested["code"], message=nested["message"], param=nested["param"]
            )
        else:
            yield self.event("error", error=nested)
        yield self.event(
            "response.failed", response=self.response("failed", error=self.failed_error())
        )


class OpenRouterReply:
    """One chat-completions reply: the JSON body (§D.2) or the SSE chunks (§D.3)."""

    def __init__(
        self, server: FakeProviderServer, sc: Scenario, body: dict[str, Any], generation: str
    ) -> None:
        self.server, self.sc, self.request = server, sc, body
        self.model, self.id = body["model"], generation
        self.pieces = sc.pieces(server.text)
        self.created = int(time.time())
        self.prompt_tokens = word_count(
            *(m.get("content") for m in body["messages"] if isinstance(m, dict))
        )
        self.finish = "length" if sc.terminal == "incomplete" else "stop"

    def usage(self) -> dict[str, Any]:
        completion = word_count("".join(self.pieces))
        return {
            "prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion, "cost": 0.0000033,
            "is_byok": False, "prompt_tokens_details": {"cached_tokens": 0},
            "cost_details": {"upstream_inference_cost": None},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }  # fmt: skip

    def envelope(self, obj: str, choices: list, **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": "OpenAI",
            "model": self.model,
            "object": obj,
            "created": self.created,
            "choices": choices,
            **extra,
        }

    def completion_body(self) -> dict[str, Any]:
        sc = self.sc
        if sc.failure_at is not None:
            error = openrouter_inband_error(sc)
            if sc.error_in_choice:
                choice = {
                    "index": 0,
                    "finish_reason": "error",
                    "native_finish_reason": "error",
                    "message": {"role": "assistant", "content": ""},
                    "error": error,
                }
                return self.envelope("chat.completion", [choice])
            empty = {
                "index": 0,
                "finish_reason": None,
                "message": {"role": "assistant", "content": ""},
            }
            return {**self.envelope("chat.completion", [empty]), "error": error}
        message = {
            "role": "assistant",
            "content": "".join(self.pieces),
            "refusal": None,
            "reasoning": None,
        }
        if sc.refusal is not None:
            message.update(content=None, refusal=sc.refusal)
        choice = {
            "index": 0,
            "logprobs": None,
            "finish_reason": self.finish,
            "native_finish_reason": self.finish,
            "message": message,
        }
        return self.envelope(
            "chat.completion", [choice], system_fingerprint="fp_fake", usage=self.usage()
        )

    def chunk(self, choices: list, **extra: Any) -> bytes:
        data = self.envelope("chat.completion.chunk", choices, **extra)
        return f"data: {json.dumps(data)}\n\n".encode()

    def choice(self, content: str | None, finish: str | None = None) -> dict[str, Any]:
        return {
            "index": 0,
            "delta": {"role": "assistant", "content": content},
            "finish_reason": finish,
            "native_finish_reason": finish,
            "logprobs": None,
        }

    def chunks(self, environ: dict[str, Any]) -> Any:
        sc, server = self.sc, self.server
        thinking = sc.ttft_ms / 1000
        if thinking > 0:  # headers at once, then comments while the model "thinks"
            deadline = time.monotonic() + thinking
            yield PROCESSING
            while (left := deadline - time.monotonic()) > 0:
                yield Pause(min(left, server.comment_interval))
                yield PROCESSING
        if sc.malformed:
            yield b'data: {"id": "gen-broken", "choices": [{"delta": \n\n'
        for index, piece in enumerate(self.pieces):
            if index == sc.failure_at or (sc.stop_after and index == sc.stop_after[0]):
                break
            if index:
                yield Pause(sc.token_delay_ms / 1000)
                if sc.keepalive:
                    yield PROCESSING
            yield self.chunk([self.choice(piece)])
        else:
            index = len(self.pieces)
        if sc.failure_at is not None and index >= sc.failure_at:
            yield self.chunk([self.choice("", "error")], error=openrouter_inband_error(sc))
            return
        if sc.stop_after:
            if sc.stop_after[1] == "cut":
                cut_connection(environ, self.chunk([self.choice("never arrives")]))
            return
        finish = self.choice("", self.finish)
        if sc.refusal is not None:
            finish["delta"] = {"role": "assistant", "content": None, "refusal": sc.refusal}
        yield self.chunk([finish], system_fingerprint="fp_fake")
        if sc.usage_variant == "one_choice":
            yield self.chunk([self.choice("")], usage=self.usage())
        else:
            yield self.chunk([], usage=self.usage())
        yield b"data: [DONE]\n\n"


def cut_connection(environ: dict[str, Any], event: bytes) -> None:
    """Write half of a chunk straight to the socket and close it: the client sees the body end
    in the middle of a chunk (httpx: ``RemoteProtocolError: incomplete chunked read``)."""
    sock = environ["werkzeug.socket"]
    try:
        sock.sendall(f"{len(event):x}\r\n".encode() + event[: len(event) // 2])
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# --- standalone ---------------------------------------------------------------------------------


def bench_scenario(tokens: int, ttft_ms: float, token_delay_ms: float) -> Scenario:
    vocabulary = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do".split()
    deltas = [("" if i == 0 else " ") + vocabulary[i % len(vocabulary)] for i in range(tokens)]
    return Scenario(deltas=deltas, ttft_ms=ttft_ms, token_delay_ms=token_delay_ms)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI + OpenRouter server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--ttft-ms", type=float, default=200)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--token-delay-ms", type=float, default=10)
    parser.add_argument("--openai-key", default=DEFAULT_OPENAI_KEY)
    parser.add_argument("--openrouter-key", default=DEFAULT_OPENROUTER_KEY)
    args = parser.parse_args(argv)
    server = FakeProviderServer(
        args.port,
        host=args.host,
        openai_key=args.openai_key,
        openrouter_key=args.openrouter_key,
        default=bench_scenario(args.tokens, args.ttft_ms, args.token_delay_ms),
    ).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"fake provider listening on {server.url}", flush=True)  # noqa: T201
    print(f"  OPENAI_BASE_URL={server.openai_base_url}", flush=True)  # noqa: T201
    print(f"  OPENROUTER_BASE_URL={server.openrouter_base_url}", flush=True)  # noqa: T201
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
