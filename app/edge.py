"""What a request body may be, decided before anything reads it.

**A cap per route, on every body.** Each request is capped when its body is first read (by a
form, ``get_json``, Flask-WTF or a view, whoever comes first): an upload view (``@takes_uploads``)
at ``MAX_CONTENT_LENGTH`` (``MAX_UPLOAD_MB`` plus the multipart framing), any other ``/api/``
route at ``MAX_JSON_KB``, everything else (pages: urlencoded forms) at ``MAX_FORM_KB``. A
declared ``Content-Length`` over the cap is refused before a byte is read; a chunked body (no
length; gunicorn and Werkzeug's server set ``wsgi.input_terminated``) is counted while it is
read, and the first byte past the cap is a 413. Werkzeug's own ``LimitedStream`` is not enough
here: for a maximum, ``readall`` stops at the limit and returns the first bytes of a longer body
as if they were all of it (a truncated form is parsed, a truncated JSON body is "invalid");
``CappedStream`` reads one byte past the cap to tell "exactly the cap" from "more".

**JSON nesting is bounded before parsing.** ``json.loads`` recurses once per level: a body of
``[[[[…`` a few thousand deep is a ``RecursionError`` (a 500) long before any size limit. The
app's JSON provider scans bracket depth first (strings skipped, linear, over bytes that are
already capped) and refuses more than ``MAX_JSON_DEPTH`` levels with ``JSONTooDeep``, a
``ValueError``, so every reader of JSON sees it as malformed input: ``json_body`` answers 400
``json_too_deep``, ``get_json(silent=True)`` (the login rate limit's key) gets ``None``, and
Flask-WTF's JSON forms a 400.

**An upload has only the fields its view reads.** ``refuse_unknown_fields`` (called by an
upload view once ownership is checked) turns any other multipart field, text or file, into a
422 naming it, instead of silently ignoring it (a misspelt ``files`` would look like success).

**A body the app did not read is read after the answer.** A refusal often comes before the
body is read (a 401, a 404, the database away). A server that then closes the connection with
body bytes still arriving makes the kernel reset it (RST), and a proxy still sending the body
can lose the answer: HAProxy logged such uploads ``SD`` and passed the app's 503 on without its
own headers (RFC 9112, section 9.6, "Tear-down", asks servers to keep reading instead).
``drain_unread_body`` reads what is left, after the answer is written and before the server
closes, for declared lengths up to ``DRAIN_MAX_BYTES`` and within the route's cap; a longer
body, or one without a length, is closed on as before.

No database, no ``flask.g``: this runs before authentication.
"""

from __future__ import annotations

import json
import re
from typing import IO, Any

from flask import Flask, Response, current_app, request
from flask.json.provider import DefaultJSONProvider
from flask.wrappers import Request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_content_length

from app.errors import ValidationFailed, wants_json

# Our bodies are a level or two deep; 64 leaves room for clients' own extra fields and is far
# below the interpreter's recursion limit (1000), inside a greenlet too.
MAX_JSON_DEPTH = 64
# The most of a refused body read after the answer (``drain_unread_body``).
DRAIN_MAX_BYTES = 1024 * 1024
_JSON_SPECIAL = re.compile(r'[\[\]{}"\\]')


def takes_uploads(view):
    """Mark a view whose body is a file upload: it is capped at the upload limit
    (``MAX_CONTENT_LENGTH``) instead of the JSON or form limit. Put it right under the route
    decorator, like ``@public``."""
    view.takes_uploads = True
    return view


# Sent by our own forms on every POST (and accepted by the CSRF check in the body): never unknown.
ALWAYS_ALLOWED_FIELDS = frozenset({"csrf_token"})


def refuse_unknown_fields(*allowed: str) -> None:
    """422 (``ValidationFailed``, one field error each) when the multipart body of this upload
    has fields other than ``allowed``; the message names them (the first few, shortened)."""
    known = ALWAYS_ALLOWED_FIELDS.union(allowed)
    unknown = sorted({*request.form.keys(), *request.files.keys()} - known)
    if not unknown:
        return
    shown = [name if len(name) <= 40 else name[:40] + "…" for name in unknown[:5]]
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    expected = ", ".join(f"`{name}`" for name in allowed)
    raise ValidationFailed(
        f"Unknown field{'s' if len(unknown) > 1 else ''} "
        f"{', '.join(f'`{name}`' for name in shown)}{more}: "
        f"this upload takes only {expected}.",
        fields=dict.fromkeys(shown, "Unknown field."),
    )


def body_cap() -> tuple[int, str]:
    """The current request's body cap in bytes, and how to say it to the client."""
    config = current_app.config
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "takes_uploads", False):
        message = f"The request is larger than the {config['MAX_UPLOAD_MB']} MB upload limit."
        return config["MAX_CONTENT_LENGTH"], message
    if wants_json():
        limit = config["MAX_JSON_KB"]
        return limit * 1024, f"JSON bodies are limited to {limit} KiB."
    limit = config["MAX_FORM_KB"]
    return limit * 1024, f"Form bodies are limited to {limit} KiB."


class CappedStream(LimitedStream):
    """The body, up to ``cap`` bytes; reading a byte past it raises ``RequestEntityTooLarge``.

    It lets one byte more through than the cap (``limit = cap + 1``) so that a body of exactly
    ``cap`` bytes ends normally while a longer one is noticed, however it is read (``read()``,
    ``read(n)``, ``readinto``)."""

    def __init__(self, stream: IO[bytes], cap: int, message: str) -> None:
        super().__init__(stream, cap + 1, is_max=True)
        self.cap = cap
        self.message = message
        self.received = 0

    def readinto(self, b) -> int | None:  # type: ignore[override]
        count = super().readinto(b) or 0
        self.received += count
        if self.received > self.cap:
            raise RequestEntityTooLarge(self.message)
        return count

    def on_exhausted(self) -> None:
        raise RequestEntityTooLarge(self.message)


class EdgeRequest(Request):
    """Flask's request with the per-route body cap (see the module docstring)."""

    @property
    def max_content_length(self) -> int | None:  # type: ignore[override]
        if self._max_content_length is not None:  # set by a view: it knows better
            return self._max_content_length
        if not current_app:
            return super().max_content_length
        return body_cap()[0]

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value

    @cached_property
    def stream(self) -> IO[bytes]:  # type: ignore[override]
        if self.shallow or not current_app:
            return super().stream
        cap, message = self.max_content_length, body_cap()[1]
        length = get_content_length(self.environ)
        if cap is not None and length is not None and length > cap:
            raise RequestEntityTooLarge(message)
        if cap is not None and "wsgi.input_terminated" in self.environ:
            return CappedStream(self.environ["wsgi.input"], cap, message)
        # Without a terminating server Werkzeug reads exactly Content-Length (checked above)
        # or nothing at all: safe as it is.
        return super().stream

    def _get_file_stream(self, *args: Any, **kwargs: Any) -> IO[bytes]:
        """Werkzeug's spooled file for an uploaded part, remembered so ``close`` (called when
        the request ends) closes it even when parsing stopped halfway (a 413, a client gone):
        Werkzeug then drops the part without closing it."""
        part = super()._get_file_stream(*args, **kwargs)
        self.__dict__.setdefault("_file_parts", []).append(part)
        return part

    def close(self) -> None:
        super().close()
        for part in self.__dict__.pop("_file_parts", ()):
            part.close()


def drain_unread_body(response: Response) -> Response:
    """After each request: read what is left of its body once the answer has been written
    (``call_on_close``: the server calls it before closing the connection), so the connection
    ends with a close, not a reset (see the module docstring)."""
    length = get_content_length(request.environ)
    if not length or length > DRAIN_MAX_BYTES or request.shallow:
        return response
    try:
        stream = request.stream  # the one the view read from, if it did: it knows the rest
    except HTTPException:  # a declared length over the route's cap: nothing is read
        return response
    response.call_on_close(lambda: _read_to_end(stream))
    return response


def _read_to_end(stream: IO[bytes]) -> None:
    try:
        while stream.read(64 * 1024):
            pass
    except (HTTPException, OSError):  # past the cap, or the client went away: stop reading
        pass


class JSONTooDeep(ValueError):
    """JSON nested deeper than ``MAX_JSON_DEPTH``; refused before it is parsed."""


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether arrays/objects in ``text`` nest deeper than ``limit``. Brackets inside strings
    do not count. Linear: one step per bracket, quote or backslash; stops at the first level
    too deep. Text that is not JSON gets an answer too; the parser then refuses it anyway."""
    depth = 0
    in_string = False
    escaped_at = -1
    for match in _JSON_SPECIAL.finditer(text):
        pos = match.start()
        if pos == escaped_at:
            continue
        char = text[pos]
        if in_string:
            if char == "\\":
                escaped_at = pos + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


class DepthLimitedJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, refusing nesting deeper than ``MAX_JSON_DEPTH`` before parsing."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if isinstance(s, bytes | bytearray):
            # What json.loads does with bytes (UTF-8/16/32 by their first bytes), done first so
            # the scan sees characters, not bytes.
            s = bytes(s).decode(json.detect_encoding(s), "surrogatepass")
        if nesting_exceeds(s, MAX_JSON_DEPTH):
            raise JSONTooDeep(f"JSON may nest at most {MAX_JSON_DEPTH} levels deep.")
        return super().loads(s, **kwargs)


def init_app(app: Flask) -> None:
    app.request_class = EdgeRequest
    app.after_request(drain_unread_body)
    app.json = DepthLimitedJSONProvider(app)
