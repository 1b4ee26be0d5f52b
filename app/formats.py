"""Output formats: what a prompt version may ask the model to answer in (plain text, a JSON
object, or JSON matching a schema), checked when the version is saved, and each reply checked
against it when it ends (docs/formats.md).

Pure functions over plain values (no database, no request): ``clean_format`` validates what a
save asks for (the schema must be a valid JSON Schema, Draft 2020-12, at most
``SCHEMA_MAX_BYTES`` and ``SCHEMA_MAX_DEPTH`` deep), ``request_format`` turns a version's
columns into the provider-neutral ``OutputFormat`` an adapter puts on its wire, and
``check_reply`` says what is wrong with a reply that should be JSON (None: nothing).

A schema's ``pattern`` (and ``patternProperties``) is a regular expression the owner wrote, run
on text the model wrote: with Python's ``re`` one pathological pattern (``(a+)+$`` on a long
run of ``a``) backtracks for minutes, blocking the process that ends the turn, and under gevent
every stream of every user on it. ``check_reply`` runs them with the ``regex`` module's time
limit, ``PATTERN_SECONDS`` for all of one reply's patterns together; past it the reply is marked
"could not be checked in time".
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextvars import ContextVar
from enum import StrEnum
from typing import Any

import regex
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from app.errors import ValidationFailed
from app.providers.types import OutputFormat


class Format(StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


FORMATS = tuple(f.value for f in Format)
SCHEMA_MAX_BYTES = 32 * 1024  # the schema as compact JSON, in UTF-8
SCHEMA_MAX_DEPTH = 32  # nested objects and arrays
# OpenAI's `name` rule (TextResponseFormatJsonSchema.name): a-z, A-Z, 0-9, _ and -, at most 64.
SCHEMA_NAME = "reply"
ERROR_MAX = 300  # characters of a reply's format error kept on the row
PATTERN_SECONDS = 0.2  # all of one reply's regular expressions together


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _pointer(path) -> str:
    """Where in a document an error is, as a JSON Pointer (``/answer/0``)."""
    parts = [str(p) for p in path]
    return "/" + "/".join(parts) if parts else "the top level"


def parse_schema(raw: object) -> object:
    """A schema as given: a JSON object, or (the page's textarea) text holding one; an empty
    string is None. Unparseable text is a ``ValidationFailed`` on ``output_schema``."""
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ValidationFailed(
                fields={"output_schema": f"This is not JSON ({exc.msg}, line {exc.lineno})."}
            ) from exc
    return raw


def clean_format(output_format: object, output_schema: object) -> tuple[str, dict | None]:
    """Validate a version's format and schema; the schema is kept only for ``json_schema``."""
    if output_format is None:
        output_format = Format.TEXT
    if output_format not in FORMATS:
        raise ValidationFailed(fields={"output_format": "Choose text, json_object or json_schema."})
    if output_format != Format.JSON_SCHEMA:
        return str(output_format), None
    schema = parse_schema(output_schema)
    if schema is None:
        raise ValidationFailed(fields={"output_schema": "Give the JSON Schema replies must match."})
    if not isinstance(schema, dict):
        raise ValidationFailed(fields={"output_schema": "A schema is a JSON object."})
    size = len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False).encode())
    if size > SCHEMA_MAX_BYTES:
        raise ValidationFailed(
            fields={
                "output_schema": f"Use at most {SCHEMA_MAX_BYTES // 1024} KB "
                f"(this has {size:,} bytes)."
            }
        )
    if _depth(schema) > SCHEMA_MAX_DEPTH:
        raise ValidationFailed(
            fields={"output_schema": f"Nest at most {SCHEMA_MAX_DEPTH} levels deep."}
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = _pointer(exc.path)
        raise ValidationFailed(
            fields={"output_schema": f"Not a valid JSON Schema at {where}: {exc.message}"[:300]}
        ) from exc
    _check_refs(schema)
    return str(output_format), schema


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [ref for v in value.values() for ref in _refs(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in _refs(v)]
    return []


def _check_refs(schema: dict) -> None:
    """Every ``$ref`` points inside the schema (``#``, ``#/$defs/…``) and resolves: nothing is
    ever fetched, and a reply is never checked against a reference that leads nowhere."""
    resolver = Registry().with_resource("", DRAFT202012.create_resource(schema)).resolver()
    for ref in _refs(schema):
        if not ref.startswith("#"):
            raise ValidationFailed(
                fields={"output_schema": f"Only references inside the schema (#…): {ref[:80]}"}
            )
        try:
            resolver.lookup(ref)
        except Unresolvable as exc:
            raise ValidationFailed(
                fields={"output_schema": f"The reference {ref[:80]} leads nowhere."}
            ) from exc


def request_format(output_format: str | None, output_schema: dict | None) -> OutputFormat | None:
    """What a version's columns ask of the provider; None for plain text (nothing is sent)."""
    if output_format == Format.JSON_OBJECT:
        return OutputFormat(type="json_object")
    if output_format == Format.JSON_SCHEMA and output_schema is not None:
        return OutputFormat(type="json_schema", name=SCHEMA_NAME, schema=output_schema)
    return None


def check_reply(text: str, wanted: OutputFormat) -> str | None:
    """What is wrong with ``text`` as a reply in ``wanted``; None when it is valid. A JSON
    object format wants an object; a schema format wants a value the schema accepts."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"Not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."[:ERROR_MAX]
    if wanted.type == "json_object" and not isinstance(value, dict):
        return "JSON, but not an object."
    if wanted.type == "json_schema" and wanted.schema is not None:
        deadline = _deadline.set(time.monotonic() + PATTERN_SECONDS)
        try:
            error = next(iter(_Checker(wanted.schema).iter_errors(value)), None)
        except Unresolvable as exc:  # a schema saved before references were checked
            return f"Could not be checked: a reference in the schema leads nowhere ({exc})."[
                :ERROR_MAX
            ]
        except PatternTooSlow:
            return (
                f"Could not be checked in time: the schema's patterns took over "
                f"{PATTERN_SECONDS:g} s on this reply."
            )
        finally:
            _deadline.reset(deadline)
        if error is not None:
            where = _pointer(error.absolute_path)
            return f"Does not match the schema at {where}: {error.message}"[:ERROR_MAX]
    return None


# --- patterns with a time limit ----------------------------------------------------------------

_deadline: ContextVar[float] = ContextVar("pattern_deadline", default=0.0)


class PatternTooSlow(Exception):
    """The reply's patterns used up ``PATTERN_SECONDS``."""


def _search(pattern: str, text: str) -> bool:
    left = _deadline.get() - time.monotonic()
    if left <= 0:
        raise PatternTooSlow
    try:
        return regex.search(pattern, text, timeout=left) is not None
    except TimeoutError as exc:
        raise PatternTooSlow from exc


# The three keywords jsonschema runs ``re.search`` for (its ``_keywords`` module), with ``_search``.


def _pattern(validator, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator, patterns: dict, instance: Any, schema: dict):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator, additional: Any, instance: Any, schema: dict):
    if not validator.is_type(instance, "object"):
        return
    named = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        key
        for key in instance
        if key not in named and not any(_search(pattern, key) for pattern in patterns)
    ]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        shown = ", ".join(repr(extra) for extra in sorted(extras))
        yield ValidationError(f"Additional properties are not allowed ({shown} unexpected)")


_Checker = validators.extend(
    Draft202012Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    },
)
