"""Find every reason code the source can raise, by reading its syntax tree.

A code reaches a user through a ``code=``/``reason=`` keyword, a ``code = …`` class attribute of an
error class, or the code argument of ``ApiError(status, code, message)`` /
``error_response(status, code, message)`` / ``_deny(app, path, status, code, message)``. Each is a
string literal or a name; names are resolved in the module's namespace (names that are not module
attributes, such as a function's parameter, are dynamic and not reported).
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("relay", "inner_agent", "outer_gateway")

# call name -> (index of the status argument or None, index of the code argument)
STATUS_CALLS: dict[str, tuple[int | None, int]] = {
    "ApiError": (0, 1),
    "error_response": (0, 1),
    "_deny": (2, 3),
    "note": (None, 1),  # inner_agent.denials.note(event_type, reason, ...)
}


@dataclass(frozen=True)
class Use:
    """One place a reason code is used."""

    where: str
    code: str
    status: int | None  # the HTTP status given with it, if any
    literal: bool = False  # written as a string literal, not by its constant from relay.codes


def source_files() -> list[Path]:
    """Every Python file of the shipped packages."""
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def module_name(path: Path) -> str:
    """``relay/cli/agent.py`` -> ``relay.cli.agent``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def uses_in(source: str, where: str, namespace: dict[str, object] | None = None) -> list[Use]:
    """The reason codes ``source`` uses; names resolve in ``namespace``."""
    found: list[Use] = []
    names = namespace or {}
    for node, status in _code_nodes(ast.parse(source)):
        code = _resolve(node, names)
        if code is not None:
            literal = isinstance(node, ast.Constant)
            found.append(Use(f"{where}:{node.lineno}", code, status, literal))
    return found


def uses_in_package_sources() -> list[Use]:
    """Every reason code the shipped source uses."""
    found: list[Use] = []
    for path in source_files():
        main = path.name == "__main__.py"  # importing it would run the CLI
        names = {} if main else vars(importlib.import_module(module_name(path)))
        where = str(path.relative_to(ROOT))
        found += uses_in(path.read_text(encoding="utf-8"), where, names)
    return found


def _code_nodes(tree: ast.AST) -> Iterator[tuple[ast.expr, int | None]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("code", "reason"):
            yield node.value, None
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "code" for t in statement.targets
                ):
                    yield statement.value, None
        elif isinstance(node, ast.Call):
            yield from _status_call(node)


def _status_call(node: ast.Call) -> Iterator[tuple[ast.expr, int | None]]:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if name not in STATUS_CALLS:
        return
    status_at, code_at = STATUS_CALLS[name]
    if len(node.args) <= code_at:
        return
    status_node = None if status_at is None else node.args[status_at]
    status = status_node.value if isinstance(status_node, ast.Constant) else None
    yield node.args[code_at], status if isinstance(status, int) else None


def _resolve(node: ast.expr, names: dict[str, object]) -> str | None:
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.Name):
        value = names.get(node.id)
        return value if isinstance(value, str) else None
    return None
