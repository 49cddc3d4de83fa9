"""Reading bulk secret files for ``relay gateway secret import``: JSON objects and .env files."""

from __future__ import annotations

import json
import re

from relay.codes import BAD_FILE, BAD_PATH
from relay.errors import UsageError
from relay.paths import is_valid_path

_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_./-]*)\s*=\s*(.*)$")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def parse_secret_file(text: str) -> dict[str, bytes]:
    """Path → value from a JSON object (``{"db/pw": "..."}``) or a ``.env`` file."""
    stripped = text.lstrip()
    values = _parse_json(stripped) if stripped.startswith("{") else _parse_env(text)
    for path in values:
        if not is_valid_path(path):
            raise UsageError(f"invalid secret path {path!r} in the file", code=BAD_PATH)
    return {path: value.encode("utf-8") for path, value in values.items()}


def _parse_json(text: str) -> dict[str, str]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise UsageError(
            f"not valid JSON (line {getattr(exc, 'lineno', '?')})", code=BAD_FILE
        ) from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise UsageError("the JSON must be one object of path: string value", code=BAD_FILE)
    return dict(doc)


def _parse_env(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.match(stripped)
        if match is None:
            raise UsageError(f"line {number} is not KEY=VALUE", code=BAD_FILE)
        values[match.group(1)] = _env_value(match.group(2), number)
    return values


def _env_value(raw: str, number: int) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = _closing_quote(raw, quote)
        if end < 0:
            raise UsageError(f"line {number}: unterminated quote", code=BAD_FILE)
        body = raw[1:end]
        if quote == '"':
            body = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)
        return body
    return raw.split(" #", 1)[0].strip()


def _closing_quote(raw: str, quote: str) -> int:
    index = 1
    while index < len(raw):
        if raw[index] == "\\" and quote == '"':
            index += 2
            continue
        if raw[index] == quote:
            return index
        index += 1
    return -1
