"""API shapes declared once: the pydantic bases every feature's ``schemas.py`` builds on, the
error envelope, and the per-route declaration (``@operation``) the OpenAPI document is built
from.

- ``Out``: a response model. ``Model.of(row)`` reads the attributes of a row (or any object)
  and gives the JSON dict (``Model.read(row)`` the model; a model computes its derived fields
  there), ``model.as_json()`` the JSON of a model built by hand. Every property is always
  present (``null`` when empty) unless declared ``omitted()`` (left out when not set, such as a
  message's rendered ``html``). Limits of stored values are ``documented()``, not enforced.
- ``Body``: a request body. Closed (a field it does not list is a 422 naming it, nested models
  included) and strict (``"1"`` is not a number, ``1`` is not ``true``); an optional field
  given as ``null`` means "not given". ``app.api.body`` reads a request into it and turns
  pydantic's errors into the one error envelope (``Error``, below), with the wording the
  hand-written checks had. A field whose
  rules a service checks (after the ownership check, with its own messages) is declared
  ``Checked``: documented with its type but passed through as sent.
- ``Query``: a view's query parameters (``QueryInt``: digits; empty is "not given"), read with
  ``app.api.args``.
- ``operation(...)``: what the OpenAPI document says about a view (operation id, summary, body,
  query and response models, statuses). ``app/openapi.py`` assembles the document from these and the
  models' JSON Schema (``component_schemas``), so a shape is written once, here and in the
  feature's ``schemas.py``.

No Flask imports, and nothing of the app's but ``models.base``: models and declarations do not
depend on an app, and ``app/errors.py`` builds its bodies with ``Error``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SkipValidation,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticCustomError

from app.models.base import MAX_DB_INT, db_int

Schema = dict[str, Any]

# --- field types -------------------------------------------------------------------------------

# A stored time, as ``datetime.isoformat()`` writes it (``+00:00``, not pydantic's ``Z``).
Time = Annotated[
    datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
# An integer a database column holds (32-bit): larger ones would overflow inside a query.
DbInt = Annotated[int, Field(ge=-MAX_DB_INT - 1, le=MAX_DB_INT)]
# An id in a body: documented as a positive database integer, checked as a database integer (0
# or less is simply not found, as it always was).
Id = Annotated[int, Field(ge=-MAX_DB_INT - 1, le=MAX_DB_INT, json_schema_extra={"minimum": 1})]
# Computed figures of responses, their limits documented (see ``documented``).
Count = Annotated[int, WithJsonSchema({"type": "integer", "minimum": 0})]
NonNegative = Annotated[float, WithJsonSchema({"type": "number", "minimum": 0})]
Rate = Annotated[float, WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1})]


class _BlankIsAbsent:
    """Marks a query parameter whose empty value (``?before=``) means "not given"."""


def _query_int(value: Any) -> Any:
    if isinstance(value, str):
        number = db_int(value)
        if number is None:
            raise PydanticCustomError("query_int", f"Must be a whole number up to {MAX_DB_INT}.")
        return number
    return value


# A whole-number query parameter (ASCII digits, up to a database integer); empty: not given.
QueryInt = Annotated[
    int,
    _BlankIsAbsent(),
    BeforeValidator(_query_int),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_DB_INT}),
]
# A field a service checks itself (its type only documented here); ``Checked[int]``.
Checked = Annotated[Any, SkipValidation]


def checked(schema: Schema, *, description: str | None = None, alias: str | None = None) -> Any:
    """The ``Field`` of a ``Checked`` value: absent is ``None`` (``model_fields_set`` tells
    absent from ``null``), and ``schema`` is what the document says it takes."""
    extra = {**schema, **({"description": description} if description else {})}
    return Field(None, json_schema_extra=extra, alias=alias)


def required_str(description: str | None = None) -> Any:
    """The ``Field`` of a string the body must have but whose absence a service reports, in
    its own words: typed ``str | None`` (``None`` when absent), documented as a string; list
    the name in the model's ``__required__``."""
    return Field(None, description=description, json_schema_extra={"type": "string"})


def documented(description: str | None = None, **schema: Any) -> Any:
    """The ``Field`` of a response property with limits the document states but the response
    does not check (``documented(minimum=1)``): a stored row outside them (older data, a test's
    fixture) is still answered, never a 500."""
    return Field(description=description, json_schema_extra=schema or None)


def _is_none(value: Any) -> bool:
    return value is None


def omitted(description: str | None = None, **options: Any) -> Any:
    """The ``Field`` of an optional response property: left out of the JSON when not set (a
    message's ``html``), and not required by the document."""
    return Field(None, exclude_if=_is_none, description=description, **options)


def _omitted(cls: type[BaseModel]) -> set[str]:
    return {name for name, info in cls.model_fields.items() if info.exclude_if is not None}


def _adjust(schema: Schema, cls: type[BaseModel]) -> None:
    """Per-model touches of the generated schema (``json_schema_extra``): a docstring as one
    line, the model's ``__schema_extra__`` keywords, and the required properties (less the
    omitted ones, plus ``__required__``: fields a service checks for presence itself)."""
    if "description" in schema and cls.__doc__:  # a docstring: one paragraph
        schema["description"] = " ".join(schema["description"].split())
    schema.update(cls.__schema_extra__)
    left_out = _omitted(cls)
    required = [n for n in schema.get("required", []) if n not in left_out]
    required += [n for n in cls.__required__ if n not in required]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)


_ROW_FIELDS: dict[type, tuple[str, ...]] = {}  # per Out model: the fields ``read`` reads


class _Model(BaseModel):
    __required__: ClassVar[tuple[str, ...]] = ()
    __schema_extra__: ClassVar[Schema] = {}


class Out(_Model):
    """A response model (see the module docstring)."""

    model_config = ConfigDict(
        from_attributes=True,
        extra="forbid",
        validate_by_name=True,  # ``from_`` for a property named ``from``
        serialize_by_alias=True,
        json_schema_serialization_defaults_required=True,
        json_schema_extra=_adjust,
    )

    @classmethod
    def of(cls, row: Any, **more: Any) -> dict[str, Any]:
        """The JSON of ``row`` (see ``read``)."""
        return cls.read(row, **more).as_json()

    @classmethod
    def read(cls, row: Any, **more: Any) -> Self:
        """The model of ``row`` (an ORM row, a dataclass: any object with these attributes);
        ``more`` gives the fields the row has no attribute for (derived ones). An omitted
        property is read only when given."""
        names = cls._row_fields()
        return cls(**{n: getattr(row, n) for n in names if n not in more}, **more)

    @classmethod
    def _row_fields(cls) -> tuple[str, ...]:
        found = _ROW_FIELDS.get(cls)
        if found is None:
            left_out = _omitted(cls)
            found = _ROW_FIELDS[cls] = tuple(n for n in cls.model_fields if n not in left_out)
        return found

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Body(_Model):
    """A request body model (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_adjust)

    def given(self, name: str) -> bool:
        """Whether the body had this field (``null`` included)."""
        return name in self.model_fields_set


class Query(_Model):
    """Query parameters: each field one parameter, documented from its schema. Others are
    ignored (a proxy or a cache-buster may add its own); read with ``parse_query``."""

    model_config = ConfigDict(extra="ignore", validate_by_name=True, json_schema_extra=_adjust)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: value
            for key, value in data.items()
            if not (
                value == ""
                and key in fields
                and any(isinstance(m, _BlankIsAbsent) for m in fields[key].metadata)
            )
        }


# --- the per-route declaration -----------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One documented answer of an operation: a description and, when it has a body, its
    model (or a raw schema for shapes that are not JSON objects of ours), its headers."""

    description: str
    model: type[Out] | None = None
    schema: Schema | None = None
    stream: bool = False  # also (or, without a model, only) a stream of server-sent events
    error: bool = False  # the error envelope (``Error``)
    content: dict[str, Any] | None = None  # a whole ``content`` map (downloads)
    headers: dict[str, Any] | None = None


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    responses: dict[int, Reply | str]  # a str: an error status's own description
    description: str | None = None
    body: type[Body] | None = None
    body_optional: bool = False
    body_content: dict[str, Any] | None = None  # a non-JSON body (multipart uploads)
    query: type[Query] | None = None
    rate_limited: bool = False
    errors: tuple[int, ...] = ()  # shared error responses beyond the usual ones (404, 502)


def retry_after(description: str) -> dict[str, Any]:
    """The ``headers`` of an answer that says when to try again."""
    return {
        "Retry-After": {
            "required": True,
            "description": description,
            "schema": {"type": "integer", "minimum": 0},
        }
    }


def operation(operation_id: str, summary: str, **options: Any):
    """Declare what the OpenAPI document says about a view; put it right under the route
    decorator. ``responses`` maps a status to a ``Reply``, to ``(description, Model)``, or (an
    error) to the description of when it happens; the errors every operation of its kind can
    answer are added by the document (``app/openapi.py``)."""
    responses = {
        status: Reply(*value) if isinstance(value, tuple) else value
        for status, value in options.pop("responses").items()
    }
    declared = Operation(operation_id, summary, responses=responses, **options)

    def mark(view):
        view.operation = declared
        return view

    return mark


# --- the error envelope (``app/errors.py`` builds every error body with it) ------------------


class QuotaExceeded(Out):
    """With `storage_quota_exceeded`: the quota the file would cross, in bytes (files for
    `project_files`)."""

    name: Literal["user_bytes", "project_bytes", "project_files"] = Field(
        description="`STORAGE_QUOTA_USER_MB`, `…_PROJECT_MB`, `…_PROJECT_FILES`."
    )
    limit: int
    used: int
    adding: int = Field(description="The refused file's bytes (1 file).")


class BudgetUsedUp(Out):
    """With `budget_exceeded`: the budget used up."""

    period: Literal["day", "month"]
    limit_usd: float = documented(minimum=0)
    spent_usd: float = documented(minimum=0)
    resets_at: Time


class ErrorDetail(Out):
    code: str = Field(
        description="Stable, machine-readable: `validation_failed`, `not_found`, "
        "`invalid_json`, `token_expired`, `email_taken`, …"
    )
    message: str
    fields: dict[str, str] = omitted("Field name → what is wrong with it.", min_length=1)
    quota: QuotaExceeded = omitted()
    budget: BudgetUsedUp = omitted()


class Error(Out):  # the one error envelope of the API (``app/errors.py`` answers with it)
    error: ErrorDetail


# --- JSON Schema -------------------------------------------------------------------------------

REF = "#/components/schemas/{model}"


def component_schemas(models: Iterable[type[BaseModel]]) -> tuple[dict[type, Schema], Schema]:
    """The JSON Schema of each model (a ``$ref``) and every component they use, in the
    document's style: no titles, ``null`` as a type array where it can be one."""
    pairs = [(m, "validation" if issubclass(m, Body) else "serialization") for m in models]
    refs, defs = models_json_schema(pairs, ref_template=REF)
    return (
        {model: refs[(model, mode)] for model, mode in pairs},
        {name: tidy(schema) for name, schema in defs.get("$defs", {}).items()},
    )


def inline(schema: Schema, components: Schema) -> Schema:
    """``schema`` with every reference to a component replaced by the component (request
    bodies are written out in their operation)."""
    if isinstance(schema, dict):
        if "$ref" in schema and len(schema) == 1:
            return inline(components[schema["$ref"].rsplit("/", 1)[1]], components)
        return {key: inline(value, components) for key, value in schema.items()}
    if isinstance(schema, list):
        return [inline(item, components) for item in schema]
    return schema


_SUBSCHEMAS = ("items", "additionalProperties", "contentSchema", "not")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def tidy(schema: Schema) -> Schema:
    """Drop pydantic's titles and ``null`` defaults; ``anyOf: [{type: T}, {type: null}]``
    becomes ``type: [T, null]`` (and an ``enum`` gains ``null``)."""
    if not isinstance(schema, dict):
        return schema
    out = {k: v for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if out.get("default", 0) is None:
        del out["default"]
    if "properties" in out:
        out["properties"] = {name: tidy(sub) for name, sub in out["properties"].items()}
    for key in _SUBSCHEMAS:
        if isinstance(out.get(key), dict):
            out[key] = tidy(out[key])
    for key in _SCHEMA_LISTS:
        if key in out:
            out[key] = [tidy(sub) for sub in out[key]]
    options = out.get("anyOf")
    if options and all(len(o) == 1 and isinstance(o.get("type"), str) for o in options):
        del out["anyOf"]  # [{type: string}, {type: number}] → type: [string, number]
        return {"type": [o["type"] for o in options], **out}
    if options and len(options) == 2 and options[1] == {"type": "null"}:
        first = options[0]
        if isinstance(first.get("type"), str) and "$ref" not in first:
            del out["anyOf"]
            merged = {**first, "type": [first["type"], "null"]}
            if "enum" in merged:
                merged["enum"] = [*merged["enum"], None]
            out = {**merged, **out}
    return out
