"""ARCHITECTURE.md's module map is the tree's (``tools/module_map.py``), and features meet only
through each other's services and serializers."""

from __future__ import annotations

from tools import module_map

FEATURES = {"auth", "keys", "projects", "prompts", "chat", "compare", "compat", "files"}


def test_the_module_map_in_architecture_is_generated_from_the_tree():
    written = module_map.current(module_map.DOC.read_text())
    assert written == module_map.render(), "ARCHITECTURE.md's module map is stale: make module-map"


def test_no_feature_imports_another_features_routes_or_api():
    found = module_map.modules()
    crossing = []
    for name, path in found.items():
        parts = name.split(".")
        if name == "app.blueprints" or len(parts) < 3 or parts[1] not in FEATURES:
            continue
        for dep in module_map.imports(path, set(found)):
            dep_parts = dep.split(".")
            if (
                len(dep_parts) == 3
                and dep_parts[1] in FEATURES
                and dep_parts[1] != parts[1]
                and dep_parts[2] in ("routes", "api")
            ):
                crossing.append(f"{name} -> {dep}")
    assert crossing == []


def test_the_import_reader_sees_imports_inside_functions(tmp_path):
    """The map and the check would be blind to a hidden dependency otherwise."""
    source = tmp_path / "m.py"
    source.write_text(
        "def f():\n    from app.chat import services\n    from app.files.api import bp\n"
    )
    assert module_map.imports(source, {"app.chat", "app.chat.services", "app.files.api"}) == {
        "app.chat.services",
        "app.files.api",
    }
