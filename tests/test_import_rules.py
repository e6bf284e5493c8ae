"""DESIGN.md's import arrows and the absence of import circles, read from every module's imports
(module level and inside functions alike).

formats is the bottom and imports nothing of the project; api -> evaluation -> retrieval ->
indexing -> generation; phantoms is test and demo data: generation, indexing and retrieval never
import it, evaluation may, and in api only the commands that render phantoms do.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("formats", "phantoms", "generation", "indexing", "retrieval", "evaluation", "api", "migrations")
MAY_IMPORT = {
    "formats": {"formats"},
    "phantoms": {"formats", "phantoms"},
    "generation": {"formats", "generation"},
    "indexing": {"formats", "generation", "indexing", "migrations"},  # indexing.db finds and runs the migrations
    "retrieval": {"formats", "generation", "indexing", "retrieval"},
    "evaluation": {"formats", "phantoms", "generation", "indexing", "retrieval", "evaluation"},
    "api": {"formats", "generation", "indexing", "retrieval", "evaluation", "api"},
    "migrations": {"formats", "indexing", "migrations"},
}
# The commands that render phantoms (`s2m phantom`, the demo); the evaluations and benchmarks that
# draw test data live in evaluation/.
PHANTOM_COMMANDS = {"api/cli/phantom.py", "api/cli/phantom_sketch.py", "api/cli/demo.py"}
# Modules that read the archive only through indexing.store's named functions (issue 34: no SQL
# statement is built in a route or in the engine), and the routes, which take their session from
# api.deps.SessionDep and never open one.
NO_SQL = ("api/routes/*.py", "retrieval/engine.py")
ROUTES = "api/routes/*.py"


def imported_names(path: Path, package: str) -> list[str]:
    """Every dotted name `path` imports anywhere in its body (relative imports resolved against `package`)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages that `path` imports anywhere in its body."""
    return {name.split(".")[0] for name in imported_names(path, "") if name.split(".")[0] in PROJECT}


def forbidden_arrows() -> list[str]:
    arrows = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            extra = {"phantoms"} if relative in PHANTOM_COMMANDS else set()
            arrows += [f"{relative} -> {target}" for target in sorted(imported_packages(path) - allowed - extra)]
    return arrows


def session_openings(path: Path) -> list[int]:
    """The lines where `path` reaches an archive's session factory (`archive.sessions()`, `.sessions.begin()`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return sorted(node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "sessions")


def select_calls(path: Path) -> list[int]:
    """The lines where `path` calls `select(...)` (SQLAlchemy's statement builder, by any name it is reached by)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if called == "select":
                lines.append(node.lineno)
    return sorted(lines)


def module_graph(root: Path) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (a `from m import name` counts as importing m,
    or m.name where that is a module)."""
    files = {}
    for package in PROJECT:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def module_of(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {found for imported in imported_names(path, package)
                       if (found := module_of(imported)) is not None and found != name}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for start in graph:
        if start in order:
            continue
        work = [(start, iter(sorted(graph[start])))]
        order[start] = low[start] = len(order)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in order:
                    order[target] = low[target] = len(order)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                elif target in on_stack:
                    low[node] = min(low[node], order[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == order[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    circles.append(group)
    return circles


def test_every_import_follows_the_arrows_of_design_md():
    assert forbidden_arrows() == []


def test_no_module_imports_itself_back_through_others():
    assert import_circles(module_graph(ROOT)) == []


def test_no_route_and_not_the_engine_builds_a_select():
    paths = sorted({path for pattern in NO_SQL for path in ROOT.glob(pattern)})
    assert len(paths) > 2
    assert [f"{path.relative_to(ROOT)}:{line}" for path in paths for line in select_calls(path)] == []


def test_routes_take_their_session_from_the_one_dependency():
    paths = sorted(ROOT.glob(ROUTES))
    assert [f"{path.relative_to(ROOT)}:{line}" for path in paths for line in session_openings(path)] == []
    assert any("SessionDep" in path.read_text() for path in paths)


def test_the_session_check_finds_a_route_opening_its_own(tmp_path):
    module = tmp_path / "route.py"
    module.write_text("def read(service):\n    with service.archive().sessions() as session:\n        pass\n"
                      "    with service.archive().sessions.begin() as session:\n        pass\n")
    assert session_openings(module) == [2, 4]


def test_the_select_check_finds_calls_inside_functions(tmp_path):
    module = tmp_path / "route.py"
    module.write_text("import sqlalchemy as sa\nfrom sqlalchemy import select\n\n"
                      "def read(session):\n    session.scalars(select(Image))\n    return sa.select(Image.id)\n")
    assert select_calls(module) == [5, 6]


def test_the_rule_reads_imports_inside_functions(tmp_path):
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from phantoms.sketch import x\n    import indexing.store\n")
    assert imported_packages(module) == {"phantoms", "indexing"}


def test_a_circle_through_a_function_level_import_is_found(tmp_path):
    package = tmp_path / "evaluation"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from evaluation.b import helper\n")
    (package / "b.py").write_text("def helper():\n    from . import c\n")
    (package / "c.py").write_text("def late():\n    from evaluation.a import name\n")
    (package / "d.py").write_text("import evaluation.a\n")
    assert import_circles(module_graph(tmp_path)) == [{"evaluation.a", "evaluation.b", "evaluation.c"}]


def test_each_package_is_checked():
    checked = {package for package in MAY_IMPORT if any((ROOT / package).rglob("*.py"))}
    assert {"formats", "phantoms", "generation", "indexing", "evaluation", "api"} <= checked
