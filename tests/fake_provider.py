"""A fake LLM provider server over real HTTP on loopback, for tests and benchmarks.

Speaks the wire formats of shared/PROTOCOLS.md: OpenAI Responses (``/v1/responses``, JSON and
SSE with ``event:`` lines, ``sequence_number``, no ``[DONE]``), OpenAI Files (``/v1/files``) and
OpenRouter chat completions (``/api/v1/chat/completions``, ``data:`` chunks, comment keep-alives,
``[DONE]``), with their error bodies and headers. Behaviour is scripted per request with
``Scenario`` (latency, error statuses with retry hints, in-band errors, mid-stream failures,
truncation, malformed events, keep-alives, hangs); every request is recorded, and a client that
goes away mid-stream is noticed (``disconnects``).

In-process: ``FakeProviderServer().start()``. Another process: ``python -m tests.fake_provider
--port 8099 --ttft-ms 200 --tokens 50 --token-delay-ms 10``; it is then scripted over HTTP with
``POST /_control/script``, ``POST /_control/reset``, ``GET /_control/requests``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import secrets
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

OPENAI_KEY = "test-openai-key"
OPENROUTER_KEY = "test-openrouter-key"
DEFAULT_DELTAS = ["Hello", " from", " the", " fake", " model."]
_ids = itertools.count(1)


@dataclass
class Scenario:
    """How the fake answers one request. Defaults: a quick, successful reply."""

    status: int = 200
    error: str | None = None  # error code/type for an error status or in-band error
    message: str | None = None  # error message (a realistic default per status otherwise)
    deltas: list[str] | None = None
    ttft_ms: int = 0  # wait before the first byte of the body (after headers for streams)
    token_delay_ms: int = 0
    hang_s: float = 0  # wait before sending anything at all (to trip read timeouts)
    retry_after: str | None = None
    retry_after_ms: str | None = None
    should_retry: str | None = None
    inband_error: bool = False  # 200, then an error before any text
    flat_error: bool = False  # OpenAI: documented flat error-event shape instead of nested
    fail_after: int | None = None  # in-band error after N deltas
    truncate_after: int | None = None  # end the body after N deltas with no terminal event
    cut_after: int | None = None  # drop the connection (broken chunked body) after N deltas
    malformed: bool = False  # an invalid JSON data line before any text
    keepalive: bool = False  # OpenAI keepalive events / OpenRouter comments between deltas
    terminal: str = "completed"  # OpenAI: completed | incomplete | failed
    usage_variant: str = "empty_choices"  # OpenRouter usage chunk: empty_choices | one_choice
    body_error: bool = False  # non-streaming 200 whose body carries an error
    raw: str | None = None  # OpenRouter error.metadata.raw
    moderation: bool = False  # OpenRouter 403 with moderation metadata
    int_code: bool = True  # OpenRouter in-band error code as int (else a string)

    def text_deltas(self) -> list[str]:
        return list(self.deltas if self.deltas is not None else DEFAULT_DELTAS)


class _Cut(Exception):
    """Raised inside a body generator: the server drops the connection mid-body."""


@dataclass
class Recorded:
    endpoint: str
    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)
    disconnected: bool = False
    completed: bool = False


class FakeProvider:
    """The WSGI application; state lives here so tests can script and inspect it."""

    def __init__(self, openai_key: str = OPENAI_KEY, openrouter_key: str = OPENROUTER_KEY):
        self.openai_key = openai_key
        self.openrouter_key = openrouter_key
        self.default = Scenario()
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.queues: dict[str, deque[Scenario]] = defaultdict(deque)
            self.requests: list[Recorded] = []
            self.files: dict[str, dict] = {}

    def script(self, endpoint: str, *scenarios: Scenario) -> None:
        """Queue behaviours for the next requests to ``responses``, ``chat`` or ``files``."""
        with self.lock:
            self.queues[endpoint].extend(scenarios)

    def calls(self, endpoint: str) -> list[Recorded]:
        return [r for r in self.requests if r.endpoint == endpoint]

    @property
    def disconnects(self) -> int:
        return sum(r.disconnected for r in self.requests)

    def _next(self, endpoint: str) -> Scenario:
        with self.lock:
            queue = self.queues[endpoint]
            return queue.popleft() if queue else self.default

    # --- WSGI ------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/_control/"):
            return self.control(request)
        if path == "/v1/responses" and request.method == "POST":
            return self.openai_responses(request)
        if path == "/v1/files" and request.method == "POST":
            return self.openai_upload(request)
        if path.startswith("/v1/files/"):
            return self.openai_file(request, path.rsplit("/", 1)[1])
        if path == "/api/v1/chat/completions" and request.method == "POST":
            return self.openrouter_chat(request)
        if path == "/api/v1/models" and request.method == "GET":
            return _json({"data": [{"id": "openai/gpt-4o-mini", "name": "GPT-4o-mini"}]})
        return _json({"error": {"message": "Not found", "code": 404}}, 404)

    def record(self, endpoint: str, request: Request, **extra) -> Recorded:
        rec = Recorded(
            endpoint=endpoint,
            method=request.method,
            path=request.path,
            headers=dict(request.headers.items()),
            **extra,
        )
        with self.lock:
            self.requests.append(rec)
        return rec

    # --- control (for a fake in another process) -------------------------------------------

    def control(self, request: Request) -> Response:
        if request.path == "/_control/reset":
            self.reset()
            return _json({"ok": True})
        if request.path == "/_control/script":
            body = request.get_json()
            self.script(body["endpoint"], *(Scenario(**s) for s in body["scenarios"]))
            return _json({"ok": True})
        if request.path == "/_control/default":
            self.default = Scenario(**request.get_json())
            return _json({"ok": True})
        if request.path == "/_control/requests":
            return _json({"data": [asdict(r) for r in self.requests]})
        return _json({"error": "unknown control"}, 404)

    # --- OpenAI -----------------------------------------------------------------------------

    def _openai_headers(self) -> Headers:
        return Headers({"x-request-id": f"req_{secrets.token_hex(8)}"})

    def _openai_error(self, status: int, sc: Scenario, headers: Headers) -> Response:
        defaults = {
            400: ("invalid_request_error", "Unsupported parameter: 'temperature' is not supported with this model."),
            401: ("invalid_api_key", "Incorrect API key provided: sk-abc***xyz."),
            403: ("unsupported_country_region_territory", "Country, region, or territory not supported"),
            404: ("model_not_found", "The model `gpt-x` does not exist or you do not have access to it."),
            429: ("rate_limit_exceeded", "Rate limit reached for gpt-4o-mini in organization org-abc on tokens per min (TPM). Please try again in 6.57s."),
            500: (None, "The server had an error while processing your request. Sorry about that!"),
            503: (None, "The engine is currently overloaded, please try again later."),
        }  # fmt: skip
        code, message = defaults.get(status, (None, f"HTTP {status}"))
        code = sc.error or code
        kind = {400: "invalid_request_error", 401: "invalid_request_error", 429: "tokens"}.get(
            status, "server_error"
        )
        if code == "insufficient_quota":
            kind = "insufficient_quota"
            message = "You exceeded your current quota, please check your plan and billing details."
        for name, value in (
            ("retry-after", sc.retry_after),
            ("retry-after-ms", sc.retry_after_ms),
            ("x-should-retry", sc.should_retry),
        ):
            if value is not None:
                headers[name] = value
        body = {
            "error": {"message": sc.message or message, "type": kind, "param": None, "code": code}
        }
        return _json(body, status, headers)

    def openai_responses(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        rec = self.record("responses", request, json=body)
        sc = self._next("responses")
        headers = self._openai_headers()
        if sc.hang_s:
            time.sleep(sc.hang_s)
        if request.headers.get("Authorization") != f"Bearer {self.openai_key}":
            return self._openai_error(401, Scenario(), headers)
        if sc.status >= 400:
            return self._openai_error(sc.status, sc, headers)
        model = _dated((body or {}).get("model") or "gpt-4o-mini")
        resp_id = f"resp_{next(_ids):06d}"
        if not (body or {}).get("stream"):
            time.sleep(sc.ttft_ms / 1000)
            if sc.body_error:
                err = {
                    "code": sc.error or "server_error",
                    "message": sc.message or "An error occurred while processing the request.",
                }
                return _json({**_response_obj(resp_id, model, "failed", [], None), "error": err}, 200, headers)  # fmt: skip
            text = "".join(sc.text_deltas())
            status = "incomplete" if sc.terminal == "incomplete" else "completed"
            obj = _response_obj(resp_id, model, status, [_message_item(text)], _usage(body, text))
            if status == "incomplete":
                obj["incomplete_details"] = {"reason": "max_output_tokens"}
            rec.completed = True
            return _json(obj, 200, headers)
        return self._stream(rec, self._openai_events(sc, resp_id, model, body), headers)

    def _openai_events(self, sc: Scenario, resp_id: str, model: str, body: dict):
        seq = itertools.count()

        def ev(kind: str, **fields) -> str:
            data = {"type": kind, "sequence_number": next(seq), **fields}
            return f"event: {kind}\ndata: {json.dumps(data)}\n\n"

        shell = _response_obj(resp_id, model, "in_progress", [], None)
        yield ev("response.created", response=shell)
        yield ev("response.in_progress", response=shell)
        time.sleep(sc.ttft_ms / 1000)
        if sc.malformed:
            yield "event: response.output_text.delta\ndata: {not json\n\n"
            return
        if sc.inband_error:
            yield self._openai_inband(sc, ev, resp_id, model)
            return
        item_id = f"msg_{resp_id[5:]}"
        yield ev("response.output_item.added", output_index=0, item={"id": item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"})  # fmt: skip
        yield ev("response.content_part.added", item_id=item_id, output_index=0, content_index=0, part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""})  # fmt: skip
        deltas = sc.text_deltas()
        for i, delta in enumerate(deltas):
            if i and sc.token_delay_ms:
                time.sleep(sc.token_delay_ms / 1000)
            if sc.fail_after is not None and i == sc.fail_after:
                yield self._openai_inband(sc, ev, resp_id, model)
                return
            if sc.truncate_after is not None and i == sc.truncate_after:
                return
            if sc.cut_after is not None and i == sc.cut_after:
                raise _Cut()
            if sc.keepalive:
                yield ev("keepalive")
            yield ev("response.output_text.delta", item_id=item_id, output_index=0, content_index=0, delta=delta, logprobs=[])  # fmt: skip
        text = "".join(deltas)
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        yield ev("response.output_text.done", item_id=item_id, output_index=0, content_index=0, text=text, logprobs=[])  # fmt: skip
        yield ev("response.content_part.done", item_id=item_id, output_index=0, content_index=0, part=part)  # fmt: skip
        yield ev("response.output_item.done", output_index=0, item=_message_item(text, item_id))
        if sc.terminal == "failed":
            yield self._openai_inband(sc, ev, resp_id, model)
            return
        status = "incomplete" if sc.terminal == "incomplete" else "completed"
        final = _response_obj(
            resp_id, model, status, [_message_item(text, item_id)], _usage(body, text)
        )
        if status == "incomplete":
            final["incomplete_details"] = {"reason": "max_output_tokens"}
        yield ev(f"response.{status}", response=final)

    def _openai_inband(self, sc: Scenario, ev, resp_id: str, model: str) -> str:
        code = sc.error or "server_error"
        message = sc.message or (
            "You exceeded your current quota, please check your plan and billing details."
            if code == "insufficient_quota"
            else "An error occurred while processing the request."
        )
        if sc.flat_error:
            error = ev("error", code=code, message=message, param=None)
        else:
            error = ev(
                "error", error={"type": code, "code": code, "message": message, "param": None}
            )
        failed = _response_obj(resp_id, model, "failed", [], None)
        failed["error"] = {"code": code, "message": message}
        return error + ev("response.failed", response=failed)

    def openai_upload(self, request: Request) -> Response:
        upload = request.files.get("file")
        data = upload.read() if upload else b""
        rec = self.record(
            "files",
            request,
            form=dict(request.form),
            files={
                k: {"filename": f.filename, "content_type": f.content_type, "size": len(data)}
                for k, f in request.files.items()
            },
        )
        sc = self._next("files")
        headers = self._openai_headers()
        if request.headers.get("Authorization") != f"Bearer {self.openai_key}":
            return self._openai_error(401, Scenario(), headers)
        if sc.status >= 400:
            return self._openai_error(sc.status, sc, headers)
        if not upload or "purpose" not in request.form:
            return self._openai_error(400, Scenario(message="Missing required parameter: 'file' or 'purpose'."), headers)  # fmt: skip
        file_id = f"file-{secrets.token_hex(11)}"
        obj = {
            "object": "file",
            "id": file_id,
            "purpose": request.form["purpose"],
            "filename": upload.filename,
            "bytes": len(data),
            "created_at": int(time.time()),
            "expires_at": None,
            "status": "processed",
            "status_details": None,
        }
        self.files[file_id] = obj
        rec.completed = True
        return _json(obj, 200, headers)

    def openai_file(self, request: Request, file_id: str) -> Response:
        self.record("files", request)
        sc = self._next("files")
        headers = self._openai_headers()
        if request.headers.get("Authorization") != f"Bearer {self.openai_key}":
            return self._openai_error(401, Scenario(), headers)
        if sc.status >= 400:
            return self._openai_error(sc.status, sc, headers)
        if file_id not in self.files:
            body = {"error": {"message": f"No such File object: {file_id}", "type": "invalid_request_error", "param": "id", "code": None}}  # fmt: skip
            return _json(body, 404, headers)
        if request.method == "DELETE":
            del self.files[file_id]
            return _json({"id": file_id, "object": "file", "deleted": True}, 200, headers)
        return _json(self.files[file_id], 200, headers)

    # --- OpenRouter -------------------------------------------------------------------------

    def _openrouter_error(self, status: int, sc: Scenario) -> Response:
        defaults = {
            400: "Invalid request: 'messages' is required",
            401: "User not found.",
            402: "Insufficient credits. Add more using https://openrouter.ai/credits",
            403: "Your input was flagged",
            408: "Operation timed out. Please try again later.",
            429: "Provider returned error",
            500: "Internal Server Error",
            502: "Provider returned error",
            503: "No endpoints found that can handle the requested parameters.",
        }
        error: dict[str, Any] = {
            "code": status,
            "message": sc.message or defaults.get(status, f"HTTP {status}"),
        }
        metadata: dict[str, Any] = {}
        if sc.raw:
            metadata["raw"] = sc.raw
            metadata["provider_name"] = "SomeProvider"
        if sc.moderation or (status == 403 and sc.error is None):
            metadata.update(reasons=["violence"], flagged_input="…", provider_name="OpenAI", model_slug="openai/gpt-4o-mini")  # fmt: skip
        if sc.error:
            metadata["error_type"] = sc.error
        if metadata:
            error["metadata"] = metadata
        headers = Headers()
        if sc.retry_after is not None:
            headers["Retry-After"] = sc.retry_after
        return _json({"error": error, "user_id": "user_fake"}, status, headers)

    def openrouter_chat(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        rec = self.record("chat", request, json=body)
        sc = self._next("chat")
        if sc.hang_s:
            time.sleep(sc.hang_s)
        if request.headers.get("Authorization") != f"Bearer {self.openrouter_key}":
            return self._openrouter_error(401, Scenario(message="No cookie auth credentials found" if not request.headers.get("Authorization") else "User not found."))  # fmt: skip
        if sc.status >= 400:
            return self._openrouter_error(sc.status, sc)
        model = (body or {}).get("model") or "openai/gpt-4o-mini"
        gen_id = f"gen-{int(time.time())}-{secrets.token_hex(10)}"
        headers = Headers({"X-Generation-Id": gen_id})
        if not (body or {}).get("stream"):
            time.sleep(sc.ttft_ms / 1000)
            if sc.body_error:
                err = {"message": sc.message or "Provider returned error", "code": 429, "metadata": {"raw": sc.raw or "error code: 1015", "provider_name": "Kluster"}}  # fmt: skip
                return _json({"error": err, "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "error"}]}, 200, headers)  # fmt: skip
            text = "".join(sc.text_deltas())
            rec.completed = True
            return _json({
                "id": gen_id, "provider": "OpenAI", "model": model, "object": "chat.completion",
                "created": int(time.time()),
                "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop", "native_finish_reason": "stop",
                             "message": {"role": "assistant", "content": text, "refusal": None, "reasoning": None}}],
                "usage": _or_usage(body, text),
            }, 200, headers)  # fmt: skip
        return self._stream(rec, self._openrouter_chunks(sc, gen_id, model, body), headers)

    def _openrouter_chunks(self, sc: Scenario, gen_id: str, model: str, body: dict):
        base = {"id": gen_id, "provider": "OpenAI", "model": model, "object": "chat.completion.chunk", "created": int(time.time())}  # fmt: skip

        def chunk(choices, **extra) -> str:
            return f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n"

        def delta(content: str, finish: str | None = None) -> dict:
            return {"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": finish, "native_finish_reason": finish, "logprobs": None}  # fmt: skip

        def error_chunk() -> str:
            code: Any = 429 if sc.int_code else "server_error"
            err: dict[str, Any] = {"code": code, "message": sc.message or "Rate limit exceeded", "metadata": {"error_type": sc.error or "rate_limit_exceeded"}}  # fmt: skip
            if sc.raw:
                err["metadata"]["raw"] = sc.raw
            return chunk(
                [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}], error=err
            )

        yield ": OPENROUTER PROCESSING\n\n"
        waited = 0.0
        while waited < sc.ttft_ms / 1000:
            step = min(0.2, sc.ttft_ms / 1000 - waited)
            time.sleep(step)
            waited += step
            if sc.keepalive:
                yield ": OPENROUTER PROCESSING\n\n"
        if sc.malformed:
            yield "data: {not json\n\n"
            return
        if sc.inband_error:
            yield error_chunk()
            return
        deltas = sc.text_deltas()
        for i, text in enumerate(deltas):
            if i and sc.token_delay_ms:
                time.sleep(sc.token_delay_ms / 1000)
            if sc.fail_after is not None and i == sc.fail_after:
                yield error_chunk()
                return
            if sc.truncate_after is not None and i == sc.truncate_after:
                return
            if sc.cut_after is not None and i == sc.cut_after:
                raise _Cut()
            if sc.keepalive:
                yield ": OPENROUTER PROCESSING\n\n"
            yield chunk([delta(text)])
        full = "".join(deltas)
        yield chunk([delta("", "stop")], system_fingerprint="fp_fake")
        usage = _or_usage(body, full)
        if sc.usage_variant == "one_choice":
            yield chunk([{"index": 0, "delta": {"content": ""}, "finish_reason": None, "logprobs": None}], usage=usage)  # fmt: skip
        else:
            yield chunk([], usage=usage)
        yield "data: [DONE]\n\n"

    # --- streaming plumbing -----------------------------------------------------------------

    def _stream(self, rec: Recorded, frames, headers: Headers) -> Response:
        def body():
            try:
                for frame in frames:
                    yield frame.encode()
                rec.completed = True
            except GeneratorExit:  # the client went away: the server closed us
                rec.disconnected = True
                raise

        headers["Cache-Control"] = "no-cache"
        return Response(body(), status=200, headers=headers, mimetype="text/event-stream")


def _dated(model: str) -> str:
    return "gpt-4o-mini-2024-07-18" if model == "gpt-4o-mini" else model


def _message_item(text: str, item_id: str = "msg_fake") -> dict:
    return {"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]}  # fmt: skip


def _response_obj(resp_id, model, status, output, usage) -> dict:
    return {
        "id": resp_id, "object": "response", "created_at": int(time.time()), "status": status,
        "background": False, "completed_at": None, "error": None, "incomplete_details": None,
        "instructions": None, "max_output_tokens": None, "model": model, "output": output,
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": False, "temperature": 1,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1,
        "truncation": "disabled", "usage": usage, "user": None, "metadata": {},
    }  # fmt: skip


def _count_words(body: dict | None) -> int:
    return len(json.dumps(body or {}).split())


def _usage(body, text) -> dict:
    tin, tout = _count_words(body), len(text.split())
    return {"input_tokens": tin, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": tout, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": tin + tout}  # fmt: skip


def _or_usage(body, text) -> dict:
    tin, tout = _count_words(body), len(text.split())
    return {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout, "cost": 0.0000033, "is_byok": False, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip


def _json(data: Any, status: int = 200, headers: Headers | None = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers, mimetype="application/json")


class FakeProviderServer:
    """Runs ``FakeProvider`` on a free loopback port in a daemon thread."""

    def __init__(self, port: int = 0, **kw) -> None:
        self.app = FakeProvider(**kw)
        self.server = make_server("127.0.0.1", port, self.app, threaded=True)
        self.server.socket.listen(1024)  # room for hundreds of concurrent connects
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.openai_base_url = self.url + "/v1"
        self.openrouter_base_url = self.url + "/api/v1"
        self._thread: threading.Thread | None = None

    def start(self) -> FakeProviderServer:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # Delegation, so tests read ``fake.script(...)``, ``fake.requests`` …
    def __getattr__(self, name):
        return getattr(self.app, name)


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# Werkzeug logs every request and a traceback for a deliberately cut body; keep tests quiet.
logging.getLogger("werkzeug").setLevel(logging.CRITICAL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--ttft-ms", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--token-delay-ms", type=int, default=10)
    args = parser.parse_args()
    server = FakeProviderServer(args.port)
    server.app.default = Scenario(
        deltas=[f"tok{i} " for i in range(args.tokens)],
        ttft_ms=args.ttft_ms,
        token_delay_ms=args.token_delay_ms,
    )
    print(
        f"fake provider on {server.url} (OpenAI {server.openai_base_url}, OpenRouter {server.openrouter_base_url})",
        flush=True,
    )
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
