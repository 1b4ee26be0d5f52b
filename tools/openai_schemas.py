"""Copy the schemas our OpenAI-compatible endpoints answer with out of OpenAI's published OpenAPI
description into ``tests/specs/openai_compat.json`` (every ``$ref`` they use, under ``$defs``),
so the contract tests check our answers against OpenAI's own words without the whole file.

    python -m tools.openai_schemas path/to/openai-openapi.yaml

The description: https://github.com/openai/openai-openapi (the copy used: commit f85dbe22,
2026-08-21, MIT licence in ``tests/specs/openai-openapi.LICENSE``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOTS = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
    "Response",
    "ResponseStreamEvent",
)
OUT = Path(__file__).resolve().parents[1] / "tests" / "specs" / "openai_compat.json"


def _refs(node, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _rewrite(node):
    """Refs to ``$defs``; OpenAPI 3.0's ``nullable: true`` (which the description still uses in
    places, and JSON Schema does not know) as JSON Schema says it: ``null`` among the types
    (and the enum)."""
    if isinstance(node, dict):
        out = {
            k: (v.replace("#/components/schemas/", "#/$defs/") if k == "$ref" else _rewrite(v))
            for k, v in node.items()
            if k != "nullable"
        }
        if node.get("nullable") is True:
            if isinstance(out.get("type"), str):
                out["type"] = [out["type"], "null"]
            if isinstance(out.get("enum"), list) and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
            if "$ref" in out or "allOf" in out or "anyOf" in out or "oneOf" in out:
                out = {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def extract(spec_path: str) -> dict:
    schemas = yaml.safe_load(Path(spec_path).read_text())["components"]["schemas"]
    wanted, todo = set(), list(ROOTS)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        found: set[str] = set()
        _refs(schemas[name], found)
        todo += sorted(found - wanted)
    return {"$defs": {name: _rewrite(schemas[name]) for name in sorted(wanted)}}


if __name__ == "__main__":
    OUT.write_text(json.dumps(extract(sys.argv[1]), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")  # noqa: T201 (a command-line tool)
