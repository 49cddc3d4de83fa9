"""Parse what operators type: ``udp://HOST:PORT``, ``HOST:PORT`` and the sending knobs."""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import urlsplit

from relay.codes import BAD_ADDRESS, BAD_OPTION, BAD_URL
from relay.diode.fec import MAX_OVERHEAD
from relay.diode.sender import SendOptions
from relay.errors import UsageError

_Num = TypeVar("_Num", int, float)


def parse_udp_url(url: str) -> tuple[str, int]:
    """``(host, port)`` from ``udp://HOST:PORT``; raises ``UsageError`` (``bad_url``)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "udp" or parts.path not in ("", "/") or parts.query:
        raise UsageError(f"bad diode URL {url!r} (use udp://HOST:PORT)", code=BAD_URL)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or port == 0:
        raise UsageError(f"bad diode URL {url!r} (use udp://HOST:PORT)", code=BAD_URL)
    return parts.hostname, port


def parse_listen(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` (port 0 picks a free one); ``bad_address`` if not."""
    from relay.netaddr import parse_listen as parse_address

    try:
        return parse_address(text)
    except UsageError:
        raise UsageError(f"bad listen address {text!r} (use HOST:PORT)", code=BAD_ADDRESS) from None


def parse_send_options(
    overhead: str | None = None, rate: str | None = None, repeat: str | None = None
) -> SendOptions:
    """:class:`SendOptions` from text; raises ``UsageError`` (``bad_option``) on bad values."""
    defaults = SendOptions()
    return SendOptions(
        overhead=_number(
            "--fec-overhead", overhead, defaults.overhead, float, low=0.0, high=MAX_OVERHEAD
        ),
        rate=_number("--rate", rate, defaults.rate, int, low=0, high=10**11),
        repeat=_number("--repeat", repeat, defaults.repeat, int, low=1, high=1000),
    )


def _number(
    flag: str, text: str | None, default: _Num, kind: type[_Num], *, low: _Num, high: _Num
) -> _Num:
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        message = f"{flag} must be a number in {low}..{high}, not {text!r}"
        raise UsageError(message, code=BAD_OPTION)
    return value
