"""Tests mirror the packages: every module of ``relay``, ``inner_agent`` and ``outer_gateway`` is
imported by a test.

Two checks, both by reading the syntax trees (imports at any depth, lazy ones included):

- every module is *reached* from the tests: imported by a test file, or by a module that is
  (the CLI's command table and ``python -m relay`` count as imports of what they name);
- every module is imported *directly* by a test file (the CLI's modules count as imported by the
  tests that drive the CLI in-process through ``relay.cli.cli``), except the ones listed in
  :data:`INDIRECT_ONLY`, which are exercised only through the CLI or a running service today.
  The list may only shrink: a module that gains a direct test must leave it, and a new module
  needs a test of its own.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("relay", "inner_agent", "outer_gateway")
ALEMBIC_REVISIONS = ROOT / "outer_gateway" / "migrations" / "versions"
CLI_TABLE = re.compile(r'"((?:relay|inner_agent|outer_gateway)(?:\.\w+)+):\w+"')

# Modules only reached through the CLI or a running ``relay agent run`` (a subprocess), with no
# test of their own. Empty: keep it so. A module that gains a direct test leaves the list; a new
# module needs a test of its own, not a place here.
INDIRECT_ONLY: frozenset[str] = frozenset()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def package_modules() -> dict[str, Path]:
    """Every module of the shipped packages, by dotted name."""
    return {
        module_name(p): p
        for pkg in PACKAGES
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if ALEMBIC_REVISIONS not in p.parents  # loaded by Alembic from their files; every one
    }  # runs in tests/test_migrations.py


@cache
def imports_of(path: Path) -> frozenset[str]:
    """Modules ``path`` imports, at any depth, resolved against the shipped packages."""
    known = package_modules()
    source = path.read_text(encoding="utf-8")
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    found.update(CLI_TABLE.findall(source))  # the CLI's lazy command table
    if "script_location" in source:  # Alembic loads the revision files of versions/ by path
        found.update(n for n in known if n.startswith(module_name(path) + ".versions"))
    if '"-m", "relay"' in source:
        found.add("relay.__main__")
    with_parents = set()
    for name in found:
        parts = name.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(name for name in with_parents if name in known)


def _test_files() -> list[Path]:
    return sorted((ROOT / "tests").rglob("*.py"))


@cache
def directly_imported() -> frozenset[str]:
    return frozenset().union(*(imports_of(p) for p in _test_files()))


@cache
def reached() -> frozenset[str]:
    modules = package_modules()
    seen = set(directly_imported())
    todo = list(seen)
    while todo:
        for name in imports_of(modules[todo.pop()]):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return frozenset(seen)


def test_every_module_is_reached_from_a_test() -> None:
    assert sorted(set(package_modules()) - reached()) == []


def cli_driven() -> set[str]:
    """The CLI's own modules: the tests drive them in-process through ``relay.cli.cli``."""
    if "relay.cli" not in directly_imported():
        return set()
    return {name for name in reached() if name == "relay.cli" or name.startswith("relay.cli.")}


def loaded_by_path() -> set[str]:
    """Alembic revision files: loaded from their folder, not importable by name."""
    return {name for name in package_modules() if ".migrations.versions." in name}


def test_every_module_is_imported_directly_by_a_test_or_listed_as_indirect() -> None:
    packages = {name for name, path in package_modules().items() if path.name == "__init__.py"}
    missing = (
        set(package_modules())
        - directly_imported()
        - cli_driven()
        - packages
        - loaded_by_path()
        - INDIRECT_ONLY
    )
    assert sorted(missing) == [], "give these modules a test that imports them"


def test_the_indirect_list_only_shrinks() -> None:
    assert set(package_modules()) >= INDIRECT_ONLY, "a listed module no longer exists"
    assert sorted(INDIRECT_ONLY & directly_imported()) == [], "remove these from INDIRECT_ONLY"


def test_the_walk_sees_lazy_imports_and_the_cli_table(tmp_path: Path) -> None:
    assert "relay.cli.gateway_audit" in reached()  # imported inside a function
    assert "relay.cli.demo" in reached()  # named only in the CLI's command table
    assert "relay.__main__" in directly_imported()  # `python -m relay` in the tests
