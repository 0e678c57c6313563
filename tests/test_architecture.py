"""The floors of docs/architecture.md, read from every import statement (functions included).

Each rule names the files that break it, so a failure says what to move.
"""
from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gdc", "service", "worker")
TOP_FLOOR = "gdc.cli"
API_ENTRY = "service.app"
CLIENT = "gdc.client"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(name: str) -> set[str]:
    """Every dotted name the module imports, top level or inside functions, relative ones resolved."""
    path = project_modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            # `from package import module` imports the module too.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def project_imports(name: str) -> set[str]:
    """The project modules ``name`` imports (a package's ``__init__`` counts for ``from package import x``)."""
    modules = project_modules()
    return {imported for imported in imported_names(name) if imported in modules and imported != name}


def external_imports(name: str) -> set[str]:
    return {imported.split(".")[0] for imported in imported_names(name)} - set(PACKAGES)


def reached(start: str) -> set[str]:
    """All project modules ``start`` loads, directly or through others (itself included)."""
    seen, todo = {start}, [start]
    while todo:
        for imported in project_imports(todo.pop()):
            parents = [".".join(imported.split(".")[:i]) for i in range(1, imported.count(".") + 1)]
            for module in [*parents, imported]:
                if module in project_modules() and module not in seen:
                    seen.add(module)
                    todo.append(module)
    return seen


def floor(name: str) -> str:
    return name.split(".")[0]


def test_the_rules_see_every_module():
    assert {"gdc.cli", "gdc.engine", "gdc.client", "service.app", "worker.tasks"} <= set(project_modules())


def test_the_engine_floor_imports_no_service_or_worker():
    breaking = sorted(
        f"{name} -> {imported}"
        for name in project_modules()
        if floor(name) == "gdc" and name != TOP_FLOOR
        for imported in project_imports(name)
        if floor(imported) in ("service", "worker")
    )
    assert not breaking, "only gdc/cli.py, the top floor, may import service/ or worker/"


def test_the_worker_imports_nothing_of_the_service():
    breaking = sorted(
        f"{name} -> {imported}"
        for name in project_modules()
        if floor(name) == "worker"
        for imported in project_imports(name)
        if floor(imported) == "service"
    )
    assert not breaking, "the API stands on the worker's queue contract, not the other way round"


@pytest.mark.parametrize("start", [API_ENTRY, CLIENT])
def test_no_torch_is_reached_from(start):
    loading_torch = sorted(name for name in reached(start) if "torch" in external_imports(name))
    assert not loading_torch, f"{start} must not load torch"


def test_the_client_reaches_no_service_or_worker_code():
    assert not sorted(name for name in reached(CLIENT) if floor(name) in ("service", "worker"))


def test_nothing_imports_the_top_floor():
    assert not sorted(name for name in project_modules() if TOP_FLOOR in project_imports(name))


def closure(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    seen, todo = set(start), list(start)
    while todo:
        for imported in graph[todo.pop()] - seen:
            seen.add(imported)
            todo.append(imported)
    return seen


def test_no_import_circles():
    graph = {name: project_imports(name) for name in project_modules()}
    in_a_circle = sorted(name for name in graph if name in closure(graph, graph[name]))
    assert not in_a_circle, "each of these reaches itself through its imports"


def test_the_rules_catch_a_circle(tmp_path, monkeypatch):
    """The reader resolves relative imports, so a circle written with them is seen."""
    for name, body in {"a": "from . import b\n", "b": "def f():\n    from .a import x\n"}.items():
        (tmp_path / "gdc").mkdir(exist_ok=True)
        (tmp_path / "gdc" / f"{name}.py").write_text(body)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    project_modules.cache_clear()
    try:
        modules = project_modules()
        assert set(modules) == {"gdc.a", "gdc.b"}
        graph = {name: project_imports(name) for name in modules}
        assert graph == {"gdc.a": {"gdc.b"}, "gdc.b": {"gdc.a"}}
        assert "gdc.a" in closure(graph, graph["gdc.a"])
    finally:
        project_modules.cache_clear()
