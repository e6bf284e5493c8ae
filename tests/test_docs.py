"""The docs say what is true: docs/architecture.md names every module of the tree and no other,
and the README and docs link nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("formats", "phantoms", "generation", "indexing", "retrieval", "evaluation", "api", "migrations", "benchmarks")
SECTION = "## Packages and modules"


def listed_modules(page: str) -> dict[str, set[str]]:
    """Folder -> module file names, from the bullets of the page's module section (the part of each
    bullet line before its first parenthesis: `folder/`: `module.py`, ...)."""
    section = page.split(SECTION, 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {}
    for line in section.splitlines():
        if not line.startswith("- `"):
            continue
        folder = None
        for token in re.findall(r"`([^`]+)`", line.split("(", 1)[0]):
            if token.endswith("/"):
                folder = token.rstrip("/")
                listed.setdefault(folder, set())
            elif folder is not None and token.endswith(".py") and "/" not in token:
                listed[folder].add(token)
    return listed


def tree_modules(root: Path) -> dict[str, set[str]]:
    """Folder -> its module file names (`__init__.py` left out), for every folder of the packages holding one."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            if path.name != "__init__.py":
                found.setdefault(path.parent.relative_to(root).as_posix(), set()).add(path.name)
    return found


def test_the_architecture_page_lists_every_module_of_the_tree_and_no_other() -> None:
    assert listed_modules((ROOT / "docs" / "architecture.md").read_text()) == tree_modules(ROOT)


def test_the_module_lists_are_read_per_folder() -> None:
    page = (f"{SECTION}\n\n- `a/`: `x.py`, `y.py` (see `b/z.py` and `c/`)\n  `w.py` on a second line is prose\n"
            "- `d/`: `e.py`; `d/f/`: `g.py`.\n\n## Next\n- `h/`: `i.py`\n")
    assert listed_modules(page) == {"a": {"x.py", "y.py"}, "d": {"e.py"}, "d/f": {"g.py"}}


def test_no_doc_links_outside_the_repository() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    outside = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()) + re.findall(r"`(\.\./[^`]+)`", page.read_text()):
            if target.startswith(("http://", "https://")) and not target.startswith(("http://127.0.0.1", "http://localhost")):
                outside.append(f"{page.name}: {target}")
            elif not target.startswith(("http", "#")) and not (page.parent / target.split("#")[0]).resolve().is_relative_to(ROOT):
                outside.append(f"{page.name}: {target}")
    assert outside == []
