"""House rules that no other test sees: no import circle among the modules of ``app/``, and no
comment or document naming a file the repository does not have.

Both read the source, not the running app, so they cost a second and fail with the exact
circle or the exact file and line to fix.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"


# --- import circles ---------------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The ``app`` modules a file imports, at any depth (functions included). ``from a.b import
    c`` imports ``a.b.c`` when that is a module, else ``a.b``. Parent packages are not counted:
    every module would otherwise import ``app`` and its factory."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if is_module(sub) else target)
    return {m for m in found if (m == "app" or m.startswith("app.")) and m != name}


def import_graph(root: Path = APP) -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(root.rglob("*.py"))}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def one_loop(graph: dict[str, set[str]], members: list[str]) -> list[str]:
    """A concrete import path around a circle: ``a -> b -> ... -> a``."""
    inside = set(members)
    start = members[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(graph[path[-1]] & inside)
        back = start if start in nxt else None
        if back or not (fresh := [n for n in nxt if n not in seen]):
            return [*path, back or nxt[0]]
        path.append(fresh[0])
        seen.add(fresh[0])


def test_the_app_has_no_import_circles():
    graph = import_graph()
    assert len(graph) > 30 and "app.chat.services" in graph  # the walk found the app
    found = circles(graph)
    assert found == [], "import circles in app/ (one loop, then every module caught in it):\n" + (
        "\n".join(f"{' -> '.join(one_loop(graph, m))}\n    ({', '.join(m)})" for m in found)
    )


def test_the_circle_finder_sees_long_circles_and_imports_inside_functions(tmp_path, monkeypatch):
    """The checker itself, on a small tree: a three-module circle closed by an import inside a
    function, and ``from pkg import sub`` counted as importing the submodule."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    pkg = tmp_path / "app"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from app.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("def late():\n    from app import a\n")
    (pkg / "d.py").write_text("import app.a\n")
    graph = import_graph(pkg)
    assert graph["app.a"] == {"app.sub.b"} and graph["app.sub.b"] == {"app.sub.c"}
    assert circles(graph) == [["app.a", "app.sub.b", "app.sub.c"]]
    assert one_loop(graph, ["app.a", "app.sub.b", "app.sub.c"]) == [
        "app.a",
        "app.sub.b",
        "app.sub.c",
        "app.a",
    ]


# --- references to files ----------------------------------------------------------------------

# Where comments and documents are read, and what counts as naming a file: a path from one of
# the repository's top-level folders, or any path climbing out with ``../``.
SOURCES = {
    "app": "*.py",
    "tests": "*.py",
    "templates": "*.html",
    "static/js": "*.js",
    "static/css": "*.css",
    "docs": "*.md",
}
EXCLUDED: set[str] = set()
ROOTS = ("app", "tests", "docs", "templates", "static", "migrations", "instance", ".ci")
PATH = re.compile(
    r"(?<![\w./@-])(?:(?:\.\./)+[\w.-]+(?:/[\w.*-]+)*|(?:" + "|".join(map(re.escape, ROOTS)) + r")/"
    r"[\w.*/-]*)"
)
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
# A file named without its folder (``relay.py``): some file of that name must exist.
BARE = re.compile(r"(?<![\w./@-])[\w-]+\.(?:py|md|html|js|css|toml|ya?ml|sql|cfg|ini)\b")
# Names that point at no file of ours on purpose, each with its reason.
ALLOWED = {
    "notes.md",  # README: an example of a file a user uploads
    "fly.toml",  # docs/deploy.md: another host's configuration, which we do not ship
}
ALLOWED_PREFIXES = ("instance/",)  # made at runtime (database, uploads, secret) and gitignored
SKIPPED_FOLDERS = {"instance", "node_modules", "__pycache__"}  # and every folder named .*


def comments_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of the comments and documentation in a file."""
    text = path.read_text()
    if path.suffix == ".md":
        yield from enumerate(text.splitlines(), 1)
    elif path.suffix == ".py":
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                yield tok.start[0], tok.string
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(
                node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
            ) and (doc := ast.get_docstring(node, clean=False)):
                yield node.body[0].lineno, doc
    else:
        patterns = {
            ".html": r"\{#.*?#\}|<!--.*?-->",
            ".js": r"/\*.*?\*/|(?<![:\\])//[^\n]*",
            ".css": r"/\*.*?\*/",
        }
        for match in re.finditer(patterns[path.suffix], text, re.S):
            yield text.count("\n", 0, match.start()) + 1, match.group()


def named_paths(path: Path, text: str) -> Iterator[tuple[str, Path]]:
    """(as written, where it points) for each file path in ``text``."""
    text = URL.sub(" ", text)
    if path.suffix == ".md":
        for target in MD_LINK.findall(text):
            target = target.split("#")[0]
            if target and not target.startswith(("mailto:", "/")):
                yield target, path.parent / target
        text = MD_LINK.sub(" ", text)
    for match in PATH.finditer(text):
        written = match.group().rstrip(".,;:")
        base = path.parent if written.startswith("../") else ROOT
        yield written, base / written
    for match in BARE.finditer(PATH.sub(" ", text)):
        yield match.group(), None


def repository_names() -> set[str]:
    names = set()
    for path in ROOT.rglob("*"):
        inside = path.relative_to(ROOT).parts[:-1]
        if not any(p in SKIPPED_FOLDERS or p.startswith(".") for p in inside):
            names.add(path.name)
    return names


def exists(target: Path) -> bool:
    target = target.resolve()
    if not target.is_relative_to(ROOT):
        return False  # outside the repository: never a reference we may keep
    if "*" in target.name:
        return any(target.parent.glob(target.name))
    return target.exists()


def documents() -> list[Path]:
    found = sorted(ROOT.glob("*.md"))
    for folder, pattern in SOURCES.items():
        found += sorted((ROOT / folder).rglob(pattern))
    return [p for p in found if str(p.relative_to(ROOT)) not in EXCLUDED]


def stale_references(files: list[Path]) -> list[str]:
    stale = []
    names = repository_names()
    for path in files:
        for line, text in comments_of(path):
            for written, target in named_paths(path, text):
                if written in ALLOWED or written.startswith(ALLOWED_PREFIXES):
                    continue
                if target is None and written in names:
                    continue
                if target is None or not exists(target):
                    stale.append(f"{path.relative_to(ROOT)}:{line}: {written}")
    return sorted(set(stale))


def test_comments_and_documents_name_only_files_that_exist():
    files = documents()
    assert len(files) > 100  # app, tests, templates, scripts, styles and documents were read
    stale = stale_references(files)
    assert stale == [], "comments or documents name files the repository does not have:\n" + (
        "\n".join(stale)
    )


def test_the_reference_check_sees_stale_paths_in_each_kind_of_file(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "app").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "app" / "real.py").write_text(
        '"""See app/real.py, app/gone.py, real.py and gone.py."""\n\n'
        'x = "app/not_a_comment.py"  # docs/gone.md\n'
    )
    (tmp_path / "docs" / "guide.md").write_text(
        "[ok](../app/real.py), [bad](missing.md), ../outside/NOTES.md, https://x.example/app/no.py,"
        " app/*.py, app/none*.py, instance/prompthub.db\n"
    )
    page = tmp_path / "page.html"
    page.write_text("{# templates/gone.html #} <p>templates/not_a_comment.html</p>")
    script = tmp_path / "a.js"
    script.write_text("// static/js/gone.js\nconst u = 'https://h.example/static/x.js'; /* app/ */")
    files = [tmp_path / "app" / "real.py", tmp_path / "docs" / "guide.md", page, script]
    assert stale_references(files) == [
        "a.js:1: static/js/gone.js",
        "app/real.py:1: app/gone.py",
        "app/real.py:1: gone.py",
        "app/real.py:3: docs/gone.md",
        "docs/guide.md:1: ../outside/NOTES.md",
        "docs/guide.md:1: app/none*.py",
        "docs/guide.md:1: missing.md",
        "page.html:1: templates/gone.html",
    ]
