"""Templates rendered with secrets: a sandboxed Jinja2 environment and an atomic file write.

The template sees two functions and nothing else: ``secret("PATH")`` (the value, as text) and
``secret_meta("PATH")`` (``path``, ``version``, ``expires_at``). Unknown names fail
(``StrictUndefined``), filters other than a few pure string ones fail at compile time, and the
sandbox refuses attribute access to Python internals. Each secret is read once, when the
template first asks for it; a refused path stops the rendering with its reason code, and nothing
is written before the whole template rendered. Error messages never carry a value: every value
read is scrubbed from them, and errors not raised by the template engine itself are named by
type only.

:func:`write_if_changed` writes the output atomically (temp file in the same folder, fsync,
rename, fsync of the folder) and only when the content, mode or owner differ; on any error the
old file is left as it was.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import hashlib
import os
import pwd
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inner_agent.lookup import Secret
from inner_agent.secret_source import SecretSource
from relay.codes import (
    BAD_OWNER,
    BAD_TEMPLATE,
    BAD_VALUE,
    NOT_TEXT,
    TEMPLATE_ERROR,
    TEMPLATE_FORBIDDEN,
    WRITE_FAILED,
)
from relay.errors import RelayError, SecretError, UsageError
from relay.paths import is_valid_path

MAX_TEMPLATE_BYTES = 1024 * 1024
SAFE_FILTERS = ("trim", "lower", "upper", "replace", "tojson", "indent")


class TemplateError(RelayError):
    """A template that cannot be rendered; nothing was written."""

    code = TEMPLATE_ERROR


@dataclass(frozen=True)
class Rendered:
    """A rendered template and the secrets it used (path -> version)."""

    content: bytes
    used: dict[str, int]

    def __repr__(self) -> str:
        return f"Rendered(<{len(self.content)} bytes>, used={self.used!r})"

    def fingerprint(self) -> str:
        """``path@version`` of each secret used, sorted: what changes when the output must."""
        return " ".join(f"{p}@{v}" for p, v in sorted(self.used.items()))


def read_template(path: Path) -> str:
    """The text of a template file (``bad_template`` if unreadable, too big or not UTF-8)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        raise UsageError(
            f"cannot read template {path}: {exc.strerror}", code=BAD_TEMPLATE
        ) from None
    if len(data) > MAX_TEMPLATE_BYTES:
        raise UsageError(f"template {path} is larger than 1 MiB", code=BAD_TEMPLATE)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"template {path} is not UTF-8", code=BAD_TEMPLATE) from None


def render_template(text: str, source: SecretSource) -> Rendered:
    """Render ``text`` with secrets from ``source``; :class:`TemplateError` or the source's
    :class:`SecretError` (with its reason code) otherwise."""
    template = _compile(text)
    secrets: dict[str, Secret] = {}
    output = _run(template, _lookup(source, secrets), secrets)
    return Rendered(output.encode("utf-8"), {p: s.version for p, s in secrets.items()})


def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters = {name: env.filters[name] for name in SAFE_FILTERS}
    env.filters["b64encode"] = lambda text: base64.b64encode(str(text).encode()).decode("ascii")
    env.tests = {}
    env.globals = {}
    return env


def _compile(text: str) -> Any:
    from jinja2 import TemplateError as JinjaError

    try:
        return _environment().from_string(text)
    except JinjaError as exc:
        raise TemplateError(f"template: {_describe(exc, {})}") from None


def _run(
    template: Any, functions: dict[str, Callable[[str], Any]], secrets: dict[str, Secret]
) -> str:
    from jinja2 import TemplateError as JinjaError
    from jinja2.exceptions import SecurityError

    try:
        return str(template.render(functions))
    except (SecretError, TemplateError):
        raise
    except SecurityError as exc:
        raise TemplateError(
            f"template: {_describe(exc, secrets)}", code=TEMPLATE_FORBIDDEN
        ) from None
    except JinjaError as exc:
        raise TemplateError(f"template: {_describe(exc, secrets)}") from None
    except Exception as exc:  # the template's own expression failed: never show its message
        raise TemplateError(f"template: {type(exc).__name__} while rendering") from None


def _checked(path: Any) -> str:
    if not isinstance(path, str) or not is_valid_path(path):
        raise TemplateError("template: secret() needs a literal, valid secret path")
    return path


def _lookup(source: SecretSource, secrets: dict[str, Secret]) -> dict[str, Callable[[str], Any]]:
    def get(path: str) -> Secret:
        path = _checked(path)
        if path not in secrets:
            secrets.update(source.read_all([path]))
        return secrets[path]

    def secret(path: str) -> str:
        try:
            return get(path).value.decode("utf-8")
        except UnicodeDecodeError:
            raise TemplateError(
                f"template: {path!r} is not UTF-8 text (use exec for bytes)", code=NOT_TEXT
            ) from None

    def secret_meta(path: str) -> dict[str, Any]:
        found = get(path)
        return {"path": found.path, "version": found.version, "expires_at": found.expires_at}

    return {"secret": secret, "secret_meta": secret_meta}


def _describe(exc: Exception, secrets: dict[str, Secret]) -> str:
    message = str(getattr(exc, "message", None) or exc)
    for secret in secrets.values():
        text = secret.value.decode("utf-8", "replace")
        if len(text) >= 1:
            message = message.replace(text, "<hidden>")
    message = (message.splitlines() or [""])[0][:300]
    line = getattr(exc, "lineno", None)
    return f"line {line}: {message}" if line else message


# -- writing ---------------------------------------------------------------------------------


def parse_mode(text: str) -> int:
    """``0600``-style octal permissions (``bad_value`` otherwise)."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise UsageError(f"{text!r} is not an octal mode such as 0600", code=BAD_VALUE) from None
    if not 0 <= mode <= 0o777:
        raise UsageError(f"{text!r} is not a file mode (0000-0777)", code=BAD_VALUE)
    return mode


def parse_owner(text: str) -> tuple[int, int]:
    """``USER[:GROUP]`` (names or numbers) as ``(uid, gid)``; ``-1`` keeps the group."""
    user, _, group = text.partition(":")
    try:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        gid = -1 if not group else int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise UsageError(f"unknown user or group in {text!r}", code=BAD_OWNER) from None
    return uid, gid


def content_digest(content: bytes) -> str:
    """SHA-256 of rendered content, keyed so that a stored digest reveals nothing guessable."""
    return hashlib.sha256(b"relay.render.v1\0" + content).hexdigest()


def is_current(out: Path, content: bytes, mode: int, owner: tuple[int, int] | None) -> bool:
    """Whether ``out`` already holds ``content`` with ``mode`` (and ``owner``)."""
    try:
        info = out.lstat()
        if not out.is_file() or out.is_symlink() or (info.st_mode & 0o7777) != mode:
            return False
        if owner is not None and (
            info.st_uid != owner[0] or (owner[1] != -1 and info.st_gid != owner[1])
        ):
            return False
        return out.read_bytes() == content
    except OSError:
        return False


def write_if_changed(
    out: Path, content: bytes, mode: int = 0o600, owner: tuple[int, int] | None = None
) -> bool:
    """Write ``content`` to ``out`` atomically unless it is already there; True if written.
    ``write_failed`` on any error, the old file untouched and no temp file left."""
    if is_current(out, content, mode, owner):
        return False
    folder = out.parent
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise RelayError(f"cannot write in {folder}: {exc.strerror}", code=WRITE_FAILED) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if owner is not None:
                os.fchown(handle.fileno(), *owner)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp).replace(out)
        _fsync_folder(folder)
    except OSError as exc:
        with contextlib.suppress(OSError):
            Path(temp).unlink()
        raise RelayError(f"cannot write {out}: {exc.strerror}", code=WRITE_FAILED) from None
    return True


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
