"""The providers package knows the standard library, httpx and httpx-sse only: no Flask."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import app.providers

PACKAGE = Path(app.providers.__file__).parent
ALLOWED_THIRD_PARTY = {"httpx", "httpx_sse"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_flask_or_app_imports_outside_the_package():
    for path in sorted(PACKAGE.glob("*.py")):
        for root in imported_roots(path):
            if root == "app":
                continue  # checked below: only app.providers.*
            assert root in ALLOWED_THIRD_PARTY or root in sys.stdlib_module_names, (
                f"{path.name} imports {root}"
            )
        source = path.read_text()
        assert "from app." not in source.replace("from app.providers", "")
