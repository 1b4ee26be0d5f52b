"""Prompt templates: a version's text with ``{{ name }}``, conditions and loops, rendered by
Jinja2's sandbox with bounds on everything a template can make the server do. No Flask, no
database: the prompt editor, the turn's start and (later) evaluation cases call the same
functions with plain values.

- ``declare``: the variables a version declares (name, type, default, description, required),
  checked; ``check``: the text parsed once at save (syntax errors name their line and column)
  and the names it uses; ``resolve``: the values a turn uses, from the call, the conversation
  and the defaults, in that order; ``render``: the text with those values.
- Sandbox: Jinja2's ``SandboxedEnvironment`` (no ``_`` attributes such as ``__class__``) with
  ``StrictUndefined``, an allowlist of filters and of the few methods of strings and dicts,
  no macros, includes or recursive loops; every loop counted (``MAX_ITERATIONS`` in all),
  ``range`` at most ``MAX_RANGE``, ``**`` bounded, every string built (``*``, ``+``, ``~``,
  ``join``) at most ``MAX_OUTPUT`` characters, the output too, and ``MAX_SECONDS`` of rendering.
- Failures are ``TemplateProblem`` (the text: at save) and ``VariableProblems`` (the values:
  at a turn's start), each naming what is wrong; callers turn them into 422s.
"""

from __future__ import annotations

import contextvars
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.meta import find_undeclared_variables
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

TYPES = ("string", "number", "boolean", "list")
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
MAX_VARIABLES = 50
DESCRIPTION_MAX = 200
VALUE_MAX_CHARS = 10_000  # a string value, or one item of a list
LIST_MAX_ITEMS = 100
MAX_OUTPUT = 100_000  # characters: the rendered text, and any string built on the way
MAX_RANGE = 1_000
MAX_ITERATIONS = 10_000  # loop iterations in one rendering, all loops together
MAX_SECONDS = 1.0
MAX_POWER_BITS = 4_096
SYNTAX = ("{{", "{%", "{#")


class TemplateProblem(Exception):
    """The text cannot be a template (at save): ``message`` says where (line, column)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


class VariableProblems(Exception):
    """Values a turn cannot render with, by variable name (or ``""`` for the template)."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("; ".join(f"{k or 'template'}: {v}" for k, v in problems.items()))
        self.problems = problems


@dataclass(frozen=True)
class Variable:
    name: str
    type: str = "string"
    default: Any = None
    description: str | None = None
    required: bool = True

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "description": self.description,
            "required": self.required,
        }


def uses_template(text: str) -> bool:
    """Whether ``text`` has template syntax at all (text without it is sent as it is)."""
    return any(mark in text for mark in SYNTAX)


# --- values ----------------------------------------------------------------------------------


def type_error(kind: str, value: Any) -> str | None:
    """Why ``value`` is not a ``kind`` value (None: it is)."""
    if kind == "string":
        if not isinstance(value, str):
            return "Give a string."
        if len(value) > VALUE_MAX_CHARS:
            return f"Use at most {VALUE_MAX_CHARS:,} characters."
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "Give a number."
        if isinstance(value, float) and not math.isfinite(value):
            return "Give a finite number."
        if isinstance(value, int) and abs(value) > 2**53:
            return "Use a number of at most 2^53."
    elif kind == "boolean":
        if not isinstance(value, bool):
            return "Give true or false."
    elif kind == "list":
        if not isinstance(value, list):
            return "Give a list."
        if len(value) > LIST_MAX_ITEMS:
            return f"Use at most {LIST_MAX_ITEMS} items."
        for item in value:
            kind = _ITEM_KINDS.get(type(item))
            if kind is None or type_error(kind, item):
                return (
                    "Each item is a string, a number or a boolean (strings of at most "
                    f"{VALUE_MAX_CHARS:,} characters)."
                )
    return None


_ITEM_KINDS = {str: "string", int: "number", float: "number", bool: "boolean"}


def declare(raw: object) -> list[Variable]:
    """The declarations a save asks for (a list of objects), checked: ``VariableProblems``
    keyed ``variables[i].field``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise VariableProblems({"variables": "Give a list of variables."})
    if len(raw) > MAX_VARIABLES:
        raise VariableProblems({"variables": f"Declare at most {MAX_VARIABLES} variables."})
    problems: dict[str, str] = {}
    found: list[Variable] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        at = f"variables[{i}]"
        if isinstance(item, Variable):
            item = item.as_dict()
        if not isinstance(item, dict):
            problems[at] = "Give an object with a name."
            continue
        unknown = set(item) - {"name", "type", "default", "description", "required"}
        if unknown:
            problems[at] = f"Not a field of a variable: {', '.join(sorted(unknown))}."
            continue
        name = item.get("name")
        kind = item.get("type") or "string"
        default = item.get("default")
        description = item.get("description")
        required = item.get("required", True)
        if not isinstance(name, str) or not NAME.fullmatch(name):
            problems[f"{at}.name"] = (
                "A name starts with a letter and has letters, digits and _ (at most 64)."
            )
            continue
        if name in seen:
            problems[f"{at}.name"] = f"{name} is declared twice."
            continue
        seen.add(name)
        if kind not in TYPES:
            problems[f"{at}.type"] = "Use string, number, boolean or list."
            continue
        if default is not None and (why := type_error(kind, default)):
            problems[f"{at}.default"] = f"The default of {name}: {why}"
        if description is not None and (
            not isinstance(description, str) or len(description) > DESCRIPTION_MAX
        ):
            problems[f"{at}.description"] = f"Use text of at most {DESCRIPTION_MAX} characters."
        if not isinstance(required, bool):
            problems[f"{at}.required"] = "Give true or false."
        found.append(
            Variable(name, kind, default, (description or "").strip() or None, required is True)
        )
    if problems:
        raise VariableProblems(problems)
    return found


def loaded(stored: list | None) -> list[Variable]:
    """Declarations as stored on a version (checked when it was saved)."""
    return [Variable(**item) for item in stored or []]


def check_values(declared: list[Variable], values: object) -> dict:
    """``values`` (an object) against ``declared``: unknown names and wrong types are
    problems keyed ``variables.<name>``; values that are None are dropped."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise VariableProblems({"variables": "Give an object of variable names and values."})
    by_name = {v.name: v for v in declared}
    problems: dict[str, str] = {}
    for name, value in values.items():
        variable = by_name.get(name)
        if variable is None:
            problems[f"variables.{name}"] = (
                f"The prompt version does not declare {name!s:.64}."
                if declared
                else "The prompt version declares no variables."
            )
        elif value is not None and (why := type_error(variable.type, value)):
            problems[f"variables.{name}"] = f"{name} is a {variable.type}: {why}"
    if problems:
        raise VariableProblems(problems)
    return {k: v for k, v in values.items() if v is not None}


def resolve(
    declared: list[Variable], *, call: Mapping | None = None, conversation: Mapping | None = None
) -> dict:
    """The values a turn uses: the call's, else the conversation's, else the default; a
    required variable with none of them is a problem. Both sources are checked already
    (``check_values``); the conversation's values for names no longer declared are ignored."""
    call, conversation = call or {}, conversation or {}
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for variable in declared:
        name = variable.name
        if call.get(name) is not None:
            values[name] = call[name]
        elif conversation.get(name) is not None:
            if why := type_error(variable.type, conversation[name]):
                problems[f"variables.{name}"] = f"The conversation's {name}: {why}"
            values[name] = conversation[name]
        elif variable.default is not None:
            values[name] = variable.default
        elif variable.required:
            problems[f"variables.{name}"] = f"{name} is required: give it a value."
        else:
            values[name] = None
    if problems:
        raise VariableProblems(problems)
    return values


# --- the sandbox -----------------------------------------------------------------------------


class _Budget:
    def __init__(self) -> None:
        self.iterations = MAX_ITERATIONS
        self.deadline = time.monotonic() + MAX_SECONDS

    def tick(self, n: int = 1) -> None:
        self.iterations -= n
        if self.iterations < 0:
            raise SecurityError(f"The template runs more than {MAX_ITERATIONS:,} loop rounds.")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"The template takes longer than {MAX_SECONDS:g} s to render.")


_budget: contextvars.ContextVar[_Budget] = contextvars.ContextVar("template_budget")


def _sized(value: Any) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > MAX_OUTPUT:
        raise SecurityError(f"The template builds a value over {MAX_OUTPUT:,} characters.")
    return value


def _loop(iterable: Iterable) -> Iterator:
    """Every ``for`` loop's iterable goes through here: each round is counted."""
    budget = _budget.get()
    for item in iterable:
        budget.tick()
        yield item


def _concat(parts: list) -> str:
    return _join(parts)


def _join(value: Iterable, separator: str = "", attribute: Any = None) -> str:
    items = [str(item) for item in value]
    if sum(map(len, items)) + len(separator) * len(items) > MAX_OUTPUT:
        raise SecurityError(f"The template builds a value over {MAX_OUTPUT:,} characters.")
    return separator.join(items)


def _range(*args: int) -> range:
    found = range(*args)
    if len(found) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE:,} items.")
    return found


def _power(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        if right > 0 and max(left.bit_length(), 1) * right > MAX_POWER_BITS:
            raise SecurityError("The number is too large.")
    elif isinstance(right, int | float) and abs(right) > MAX_POWER_BITS:
        raise SecurityError("The number is too large.")
    return left**right


def _times(left: Any, right: Any) -> Any:
    for seq, n in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(n, int) and not isinstance(n, bool):
            if len(seq) * n > MAX_OUTPUT:
                raise SecurityError(f"The template builds a value over {MAX_OUTPUT:,} characters.")
    return left * right


_WIDE = re.compile(r"%[^a-zA-Z%]*(\*|\d{4,})")
_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        "capitalize endswith isdigit isalpha islower isupper lower lstrip rstrip split "
        "startswith strip title upper".split()
    ),
    dict: frozenset({"get", "items", "keys", "values"}),
}
_FILTERS = (
    "abs capitalize count d default first float int last length list lower max min reverse "
    "round sort string sum title trim unique upper wordcount"
).split()


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(obj, Namespace):
            return True
        for kind, allowed in _SAFE_METHODS.items():
            if isinstance(obj, kind):
                return attr in allowed
        return isinstance(obj, dict)  # dict items as attributes: {{ d.key }}

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format / format_map: not offered (a width can allocate gigabytes)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _budget.get().tick(0)
        if operator == "**":
            return _power(left, right)
        if operator == "*":
            return _times(left, right)
        if operator == "%":
            if isinstance(left, str) and _WIDE.search(left):
                raise SecurityError("Format widths above 999 are not supported.")
            return _sized(left % right)
        return _sized(left + right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _budget.get().tick(0)
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_OUTPUT:
                raise SecurityError("A number that large cannot be passed here.")
        return _sized(super().call(__context, __obj, *args, **kwargs))


def _environment() -> _Sandbox:
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=lambda value: "" if value is None else value,
        cache_size=0,
    )
    env.filters = {name: env.filters[name] for name in _FILTERS}
    env.filters.update(join=_join, _loop=_loop, _concat=_concat)
    env.tests = {
        name: env.tests[name]
        for name in (
            "defined",
            "undefined",
            "none",
            "number",
            "string",
            "even",
            "odd",
            "divisibleby",
            "in",
            "eq",
            "ne",
            "lt",
            "le",
            "gt",
            "ge",
            "true",
            "false",
        )
        if name in env.tests
    }
    env.globals = {"range": _range, "namespace": Namespace}
    return env


_ENV = _environment()
_REFUSED: dict[type, str] = {
    nodes.Macro: "macros",
    nodes.CallBlock: "call blocks",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "import",
    nodes.Extends: "extends",
    nodes.Block: "blocks",
}


class _Guard(NodeTransformer):
    """Routes every loop's iterable through ``_loop`` and every ``~`` through ``_concat``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 (the visitor's names)
        node = self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_loop", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        node = self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(parts, "_concat", [], [], None, None, lineno=node.lineno)


def _parsed(text: str) -> nodes.Template:
    try:
        tree = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise _problem(text, exc) from None
    for kind, what in _REFUSED.items():
        found = next(iter(tree.find_all(kind)), None)
        if found is not None:
            raise TemplateProblem(
                f"Line {found.lineno}: {what} are not supported in prompts.", found.lineno, 1
            )
    loop = next((f for f in tree.find_all(nodes.For) if f.recursive), None)
    if loop is not None:
        raise TemplateProblem(
            f"Line {loop.lineno}: recursive loops are not supported in prompts.", loop.lineno, 1
        )
    return tree


def _problem(text: str, exc: TemplateSyntaxError) -> TemplateProblem:
    line, column = exc.lineno, _column(text, exc.lineno)
    return TemplateProblem(
        f"Template syntax error at line {line}, column {column}: {exc.message}", line, column
    )


def _column(text: str, line: int | None) -> int:
    """Jinja reports lines only: the column of the first template mark on that line (1-based),
    which is where the faulty tag or expression starts."""
    lines = text.splitlines() or [""]
    if not line or line > len(lines):
        return 1
    row = lines[line - 1]
    marks = [i for i in (row.find(m) for m in SYNTAX) if i >= 0]
    return (min(marks) if marks else 0) + 1


def check(text: str) -> set[str]:
    """Parse ``text`` (``TemplateProblem`` naming line and column) and return the names it
    reads from outside (its variables; ``range`` and ``namespace`` excluded)."""
    tree = _parsed(text)
    try:
        names = find_undeclared_variables(tree)  # compiles it: unknown filters fail here
    except TemplateSyntaxError as exc:
        raise _problem(text, exc) from None
    return set(names) - set(_ENV.globals)


def render(text: str, values: Mapping[str, Any]) -> str:
    """``text`` rendered with ``values`` (all of them: ``resolve``'s result). Any failure is
    ``VariableProblems``: a variable's name when one is undefined, else ``""``."""
    template = _ENV.from_string(_Guard().visit(_parsed(text)))
    token = _budget.set(_Budget())
    try:
        size = 0
        parts: list[str] = []
        for chunk in template.generate(dict(values)):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(
                    f"The rendered prompt is over {MAX_OUTPUT:,} characters; it was cut off."
                )
            parts.append(chunk)
        return "".join(parts)
    except UndefinedError as exc:
        name = _undefined_name(str(exc.message or ""))
        key = f"variables.{name}" if name else ""
        raise VariableProblems({key: f"The template failed: {exc.message}"}) from None
    except SecurityError as exc:
        raise VariableProblems({"": str(exc)}) from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, RecursionError) as exc:
        raise VariableProblems({"": f"The template failed: {exc}"}) from None
    finally:
        _budget.reset(token)


def _undefined_name(message: str) -> str | None:
    found = re.match(r"'([A-Za-z][A-Za-z0-9_]*)' is undefined", message)
    return found.group(1) if found else None
