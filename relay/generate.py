"""New secret values for rotation: ``secrets`` (the OS CSPRNG), from a charset spec.

A charset spec names classes joined by ``+``: ``alnum`` (the default), ``alpha``, ``upper``,
``lower``, ``digits``, ``hex``, ``symbols``; or ``chars:XYZ…`` for an explicit set.
"""

from __future__ import annotations

import secrets
import string

from relay.codes import BAD_CHARSET, BAD_VALUE
from relay.errors import UsageError

DEFAULT_LENGTH = 32
DEFAULT_CHARSET = "alnum"
MAX_LENGTH = 4096
_CLASSES = {
    "alnum": string.ascii_letters + string.digits,
    "alpha": string.ascii_letters,
    "upper": string.ascii_uppercase,
    "lower": string.ascii_lowercase,
    "digits": string.digits,
    "hex": "0123456789abcdef",
    "symbols": "!#%+-.:=@^_~",
}


def charset_of(spec: str) -> str:
    """The characters ``spec`` allows, in a stable order; ``bad_charset`` if it names none."""
    if spec.startswith("chars:"):
        chars = "".join(dict.fromkeys(spec[6:]))
        if len(chars) < 2 or not chars.isprintable() or not chars.isascii():
            raise UsageError(
                "chars: needs at least two printable ASCII characters", code=BAD_CHARSET
            )
        return chars
    chosen: dict[str, None] = {}
    for name in spec.split("+"):
        if name.strip() not in _CLASSES:
            known = ", ".join(sorted(_CLASSES))
            raise UsageError(
                f"unknown charset {name!r} (known: {known}, chars:…)", code=BAD_CHARSET
            )
        chosen.update(dict.fromkeys(_CLASSES[name.strip()]))
    return "".join(chosen)


def check_length(length: int) -> int:
    if not 8 <= length <= MAX_LENGTH:
        raise UsageError(f"length must be 8 to {MAX_LENGTH}", code=BAD_VALUE)
    return length


def generate(length: int = DEFAULT_LENGTH, spec: str = DEFAULT_CHARSET) -> bytes:
    """A new random value of ``length`` characters from ``spec``."""
    chars = charset_of(spec)
    return "".join(secrets.choice(chars) for _ in range(check_length(length))).encode("ascii")
