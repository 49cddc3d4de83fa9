"""Points in time as operators write them: RFC 3339 (``2027-01-15T08:00:00Z``) or a duration
from now (``90m``, ``2d``)."""

from __future__ import annotations

from datetime import datetime

from relay.codes import BAD_TIME
from relay.durations import parse_duration
from relay.errors import UsageError


def parse_time(text: str, now: int) -> int:
    """Seconds since the epoch; ``bad_time`` (``UsageError``) if ``text`` is neither form.

    >>> parse_time("2027-01-15T08:00:00Z", 0)
    1800000000
    >>> parse_time("1h", 100)
    3700
    """
    cleaned = text.strip()
    if cleaned and cleaned[0].isdigit() and "-" in cleaned:
        try:
            parsed = datetime.fromisoformat(cleaned.replace("z", "Z"))
        except ValueError:
            raise UsageError(f"bad time {text!r} (RFC 3339 or a duration)", code=BAD_TIME) from None
        if parsed.tzinfo is None or "T" not in cleaned.upper():
            raise UsageError(f"{text!r} needs a date, a time and a UTC offset", code=BAD_TIME)
        return int(parsed.timestamp())
    try:
        return now + parse_duration(cleaned)
    except UsageError:
        raise UsageError(f"bad time {text!r} (RFC 3339 or a duration)", code=BAD_TIME) from None
