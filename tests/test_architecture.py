"""The floors of docs/architecture.md, read from every import statement (functions included).

Each rule names the files that break it, so a failure says what to move.
"""
from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each package's floor, from the ground up; an import may point to its own floor or below, never up.
FLOORS = {"gdc": 0, "worker": 1, "service": 2, "apps": 3}
PACKAGES = tuple(FLOORS)
API_ENTRY = "service.app"
CLIENT = "gdc.client"
# What the engine floor never imports: it knows no command line, HTTP, queue, plotting or OpenCV.
NOT_IN_THE_ENGINE = {"argparse", "fastapi", "starlette", "uvicorn", "redis", "rq", "matplotlib", "cv2"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(path: Path, name: str) -> set[str]:
    """Every dotted name the module at ``path`` imports, top level or inside functions, relative ones resolved."""
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
    return {imported for imported in imported_names(modules[name], name) if imported in modules and imported != name}


def external_imports(name: str) -> set[str]:
    return {imported.split(".")[0] for imported in imported_names(project_modules()[name], name)} - set(PACKAGES)


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


def floor(name: str) -> int:
    return FLOORS[name.split(".")[0]]


def test_the_rules_see_every_floor():
    assert {"apps.cli", "gdc.engine", "gdc.client", "service.app", "worker.tasks"} <= set(project_modules())


def test_no_import_points_up_a_floor():
    breaking = sorted(
        f"{name} -> {imported}"
        for name in project_modules()
        for imported in project_imports(name)
        if floor(imported) > floor(name)
    )
    assert not breaking, "an import points only down: engine <- worker <- service <- apps (docs/architecture.md)"


def test_the_engine_knows_no_command_line_http_queue_or_plotting():
    breaking = sorted(
        f"{name} imports {', '.join(sorted(external_imports(name) & NOT_IN_THE_ENGINE))}"
        for name in project_modules()
        if floor(name) == FLOORS["gdc"] and external_imports(name) & NOT_IN_THE_ENGINE
    )
    assert not breaking


@pytest.mark.parametrize("start", [API_ENTRY, CLIENT])
def test_no_torch_is_reached_from(start):
    loading_torch = sorted(name for name in reached(start) if "torch" in external_imports(name))
    assert not loading_torch, f"{start} must not load torch"


def test_the_client_reaches_only_torch_free_engine_files():
    assert {floor(name) for name in reached(CLIENT)} == {FLOORS["gdc"]}


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


def test_the_benchmarks_import_no_tests():
    """A helper that benchmarks and tests both need lives in the packages, which both import."""
    breaking = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "benchmarks").rglob("*.py")
        if any(name.split(".")[0] == "tests" for name in imported_names(path, module_name(path)))
    )
    assert not breaking


def test_the_architecture_doc_names_every_module():
    """docs/architecture.md names each module by its path, with its one job."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"[\w/]+\.py", doc))
    missing = sorted(
        str(path.relative_to(ROOT))
        for path in project_modules().values()
        if path.name != "__init__.py" and str(path.relative_to(ROOT)) not in named
    )
    assert not missing, "add each to docs/architecture.md with what it does"


def test_the_rules_catch_a_circle_and_an_import_up(tmp_path, monkeypatch):
    """The reader resolves relative imports, so a circle written with them is seen, and floors read from the path."""
    files = {"gdc/a.py": "from . import b\n", "gdc/b.py": "def f():\n    from .a import x\n", "gdc/c.py": "import apps.d\n"}
    for name, body in {**files, "apps/d.py": ""}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(body)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    project_modules.cache_clear()
    try:
        graph = {name: project_imports(name) for name in project_modules()}
        assert graph == {"gdc.a": {"gdc.b"}, "gdc.b": {"gdc.a"}, "gdc.c": {"apps.d"}, "apps.d": set()}
        assert "gdc.a" in closure(graph, graph["gdc.a"])
        assert floor("apps.d") > floor("gdc.c")
    finally:
        project_modules.cache_clear()
