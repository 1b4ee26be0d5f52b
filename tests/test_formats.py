"""``app/formats.py`` on plain values: what a save may ask for, what is sent, how a reply is
checked (no Flask, no database)."""

import json

import pytest

from app.errors import ValidationFailed
from app.formats import PATTERN_SECONDS, check_reply, clean_format, request_format
from app.providers.types import ChatRequest, OutputFormat

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def test_text_and_json_object_keep_no_schema():
    assert clean_format(None, None) == ("text", None)
    assert clean_format("json_object", SCHEMA) == ("json_object", None)
    assert clean_format("json_schema", '{"type": "object"}') == ("json_schema", {"type": "object"})


@pytest.mark.parametrize(
    ("fmt", "schema"),
    [("xml", None), ("json_schema", None), ("json_schema", ""), ("json_schema", "[1]"),
     ("json_schema", {"type": 5}), ("json_schema", {"properties": []})],
)  # fmt: skip
def test_bad_formats_and_schemas_are_refused(fmt, schema):
    with pytest.raises(ValidationFailed):
        clean_format(fmt, schema)


def test_local_references_resolve():
    schema = {"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}}
    assert clean_format("json_schema", schema) == ("json_schema", schema)
    wanted = OutputFormat("json_schema", "reply", schema)
    assert "at /a: 'x' is not of type 'integer'" in check_reply('{"a": "x"}', wanted)
    # A schema stored without the check (older data) is reported, not raised.
    dangling = OutputFormat("json_schema", "reply", {"$ref": "#/$defs/gone"})
    assert check_reply("{}", dangling).startswith("Could not be checked")


def test_what_is_sent():
    assert request_format("text", None) is None
    assert request_format("json_object", None) == OutputFormat("json_object")
    sent = request_format("json_schema", SCHEMA)
    assert (sent.type, sent.name, sent.schema, sent.strict) == (
        "json_schema",
        "reply",
        SCHEMA,
        True,
    )


@pytest.mark.parametrize(
    ("text", "wanted", "problem"),
    [
        ('{"n": 1}', OutputFormat("json_schema", "reply", SCHEMA), None),
        ('{"n": "1"}', OutputFormat("json_schema", "reply", SCHEMA), "at /n: '1' is not of type"),
        ("{}", OutputFormat("json_schema", "reply", SCHEMA), "'n' is a required property"),
        ('```json\n{"n": 1}\n```', OutputFormat("json_object"), "Not JSON"),
        ('"just a string"', OutputFormat("json_object"), "not an object"),
        ('{"any": true}', OutputFormat("json_object"), None),
    ],
)
def test_replies_are_checked(text, wanted, problem):
    found = check_reply(text, wanted)
    assert found is None if problem is None else problem in found


def test_a_request_without_its_format_asks_for_it_in_words():
    req = ChatRequest("Be brief.", [], "Hi", output_format=OutputFormat("json_object"))
    plain = req.without_format()
    assert plain.output_format is None
    assert (
        plain.system == "Be brief.\n\nAnswer with one JSON object only (no prose, no code fences)."
    )
    assert plain.without_format() is plain


def schema_format(schema: dict) -> OutputFormat:
    return OutputFormat(type="json_schema", name="reply", schema=schema)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"code": "abc", "tags": {"x-1": 2}}', None),
        ('{"code": "ABC"}', "Does not match the schema at /code: 'ABC' does not match"),
        ('{"tags": {"y": 2}}', "Does not match the schema at /tags: Additional properties"),
        ('{"tags": {"x-1": "two"}}', "Does not match the schema at /tags/x-1: 'two' is not"),
    ],
)
def test_patterns_still_decide(text, problem):
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[a-z]+$"},
            "tags": {
                "type": "object",
                "patternProperties": {"^x-": {"type": "integer"}},
                "additionalProperties": False,
            },
        },
    }
    found = check_reply(text, schema_format(schema))
    assert found == problem if problem is None else found.startswith(problem), found


CATASTROPHIC = "^(a|a)*$"  # backtracks 2^n times on "aaa…a!", with re and with regex


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"code": {"type": "string", "pattern": CATASTROPHIC}}},
        {"patternProperties": {CATASTROPHIC: {"type": "string"}}},
        {"patternProperties": {CATASTROPHIC: {}}, "additionalProperties": False},
    ],
    ids=["pattern", "patternProperties", "additionalProperties"],
)
def test_a_pathological_pattern_is_cut_at_the_time_limit(schema):
    """A pattern the owner wrote, on text the model wrote, cannot hold the process: with
    ``re`` this reply took seconds (and a few more letters, minutes) and came back "does not
    match"; now the check stops at ``PATTERN_SECONDS`` and says so."""
    long = "a" * 25 + "!"
    text = json.dumps({"code": long, long: long})
    found = check_reply(text, schema_format({"type": "object", **schema}))
    assert found == (
        f"Could not be checked in time: the schema's patterns took over {PATTERN_SECONDS:g} s on "
        "this reply."
    )
