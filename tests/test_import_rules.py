"""DESIGN.md's import arrows, read from every module's imports (module level and inside functions).

formats is the bottom and imports nothing of the project; api -> retrieval -> indexing ->
generation; phantoms is test and demo data: generation, indexing and retrieval never import it,
and in api only the commands that render phantoms do.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("formats", "phantoms", "generation", "indexing", "retrieval", "api", "migrations")
MAY_IMPORT = {
    "formats": {"formats"},
    "phantoms": {"formats", "phantoms"},
    "generation": {"formats", "generation"},
    "indexing": {"formats", "generation", "indexing", "migrations"},  # indexing.db finds and runs the migrations
    "retrieval": {"formats", "generation", "indexing", "retrieval"},
    "api": {"formats", "generation", "indexing", "retrieval", "api"},
    "migrations": {"formats", "indexing", "migrations"},
}
# The commands that render phantoms (`s2m phantom`, the demo); evaluation commands that draw
# test data join this list when they are written.
PHANTOM_COMMANDS = {"api/cli/phantom.py", "api/cli/phantom_sketch.py", "api/cli/demo.py", "api/cli/eval_commands.py",
                    "api/cli/eval_sketches.py", "api/cli/eval_generation.py", "api/cli/bench.py"}


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages that `path` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names if name.split(".")[0] in PROJECT}
    return found


def forbidden_arrows() -> list[str]:
    arrows = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            extra = {"phantoms"} if relative in PHANTOM_COMMANDS else set()
            arrows += [f"{relative} -> {target}" for target in sorted(imported_packages(path) - allowed - extra)]
    return arrows


def test_every_import_follows_the_arrows_of_design_md():
    assert forbidden_arrows() == []


def test_the_rule_reads_imports_inside_functions(tmp_path):
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from phantoms.sketch import x\n    import indexing.store\n")
    assert imported_packages(module) == {"phantoms", "indexing"}


def test_each_package_is_checked():
    checked = {package for package in MAY_IMPORT if any((ROOT / package).rglob("*.py"))}
    assert {"formats", "phantoms", "generation", "indexing", "api"} <= checked
