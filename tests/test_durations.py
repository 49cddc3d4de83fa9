import pytest

from relay.durations import format_duration, parse_duration
from relay.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("24h", 86400), ("7d", 604800), ("1d12h", 129600), ("2w", 1209600)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "-5s", "0s", "s", "1.5h", "7d junk"])
def test_bad_duration_is_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_duration(text)
    assert err.value.code == "bad_duration"
