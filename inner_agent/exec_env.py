"""The environment of an exec child: variables from secrets, and the command to run.

``--env VAR=PATH`` names one variable; ``--env-file TEMPLATE`` is a template (see
:mod:`inner_agent.render`) rendered in memory into ``VAR=VALUE`` lines, never written anywhere.
The child inherits the caller's environment minus the variables that unlock relay itself
(``RELAY_PASSPHRASE``, ``RELAY_CLIENT_SECRET``…), plus the secrets. Values go to the child's
environment only: never to an argv, a log or a file. Errors name variables and line numbers,
never values.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from inner_agent.secret_source import SecretSource
from relay.codes import BAD_ENV, BAD_ENV_VALUE, COMMAND_NOT_EXECUTABLE, COMMAND_NOT_FOUND
from relay.errors import RelayError, SecretError, UsageError
from relay.paths import check_path

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
WITHHELD = ("RELAY_PASSPHRASE", "RELAY_CLIENT_SECRET", "RELAY_CLIENT_SECRET_FILE")


class CommandError(RelayError):
    """CMD cannot be started; exit statuses as a shell's (127 not found, 126 not runnable)."""

    code = COMMAND_NOT_FOUND


@dataclass(frozen=True)
class Resolved:
    """The variables to add to the child's environment and the secrets they came from."""

    variables: dict[str, str]
    used: dict[str, int]  # path -> version

    def __repr__(self) -> str:
        return f"Resolved(variables=<{len(self.variables)} hidden>, used={self.used!r})"

    def describe(self) -> str:
        """``path@version`` of each secret, sorted (for audit records)."""
        return " ".join(f"{p}@{v}" for p, v in sorted(self.used.items()))


def parse_env_options(items: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """``VAR=PATH`` items as pairs; ``bad_env`` for a bad name, a bad path or a repeat."""
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not ENV_NAME.match(name):
            raise UsageError(f"--env {name!r}: use VAR=PATH with VAR a shell name", code=BAD_ENV)
        if name in pairs:
            raise UsageError(f"--env {name}: given twice", code=BAD_ENV)
        pairs[name] = check_path(path)
    return tuple(pairs.items())


def parse_env_lines(text: str) -> dict[str, str]:
    """``VAR=VALUE`` lines (blank lines and ``#`` comments skipped) as a dict; errors name the
    line, never its content."""
    variables: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        if not sep or not ENV_NAME.match(name):
            raise UsageError(f"env template line {number}: expected VAR=VALUE", code=BAD_ENV)
        variables[name] = value
    return variables


def resolve(
    source: SecretSource, pairs: tuple[tuple[str, str], ...], template: str | None
) -> Resolved:
    """Read every secret the variables need; the first refusal stops it with its code."""
    secrets = source.read_all(path for _, path in pairs)
    variables = {name: _env_text(name, secrets[path].value) for name, path in pairs}
    used = {path: s.version for path, s in secrets.items()}
    if template is not None:
        from inner_agent.render import render_template

        rendered = render_template(template, source)
        for name, value in parse_env_lines(rendered.content.decode("utf-8")).items():
            variables.setdefault(name, _env_text(name, value.encode("utf-8")))
        used.update(rendered.used)
    return Resolved(variables, used)


def child_environment(base: Mapping[str, str], resolved: Resolved) -> dict[str, str]:
    """``base`` without relay's own unlocking variables, plus the resolved variables."""
    env = {k: v for k, v in base.items() if k not in WITHHELD}
    env.update(resolved.variables)
    return env


def find_command(name: str, env: Mapping[str, str]) -> str:
    """The file ``name`` runs (looked up in ``PATH`` unless it has a slash)."""
    if "/" in name:
        if not Path(name).exists():
            raise CommandError(f"{name}: no such file")
        if Path(name).is_dir() or not os.access(name, os.X_OK):
            raise CommandError(f"{name}: not executable", code=COMMAND_NOT_EXECUTABLE)
        return name
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        raise CommandError(f"{name}: command not found")
    return found


def _env_text(name: str, value: bytes) -> str:
    if b"\0" in value:
        raise SecretError(f"the value for {name} holds a NUL byte", code=BAD_ENV_VALUE)
    return value.decode("utf-8", "surrogateescape")  # exact bytes again in the child
