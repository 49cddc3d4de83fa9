"""The audit settings in relay.toml: audit.jsonl, audit.syslog, audit.syslog_format."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.audit.sinks import JsonlSink, SyslogSink, sinks_from_settings
from relay.config import Config
from relay.errors import UsageError


@pytest.mark.parametrize("side", ["gateway", "agent"])
def test_defaults_are_off_and_rfc5424(tmp_path: Path, side: str) -> None:
    config = Config(tmp_path / "relay.toml", side)
    assert config.get("audit.jsonl") == ""
    assert config.get("audit.syslog") == ""
    assert config.get("audit.syslog_format") == "rfc5424"


def test_valid_values_round_trip_through_the_file(tmp_path: Path) -> None:
    config = Config(tmp_path / "relay.toml", "agent")
    config.set("audit.jsonl", str(tmp_path / "audit.jsonl"))
    config.set("audit.syslog", "tcp://127.0.0.1:6514")
    config.set("audit.syslog_format", "CEF")
    again = Config(tmp_path / "relay.toml", "agent")
    sinks = sinks_from_settings(
        again.get("audit.jsonl"), again.get("audit.syslog"), again.get("audit.syslog_format")
    )
    assert isinstance(sinks[0], JsonlSink)
    assert isinstance(sinks[1], SyslogSink)
    assert sinks[1].fmt == "cef"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("audit.jsonl", "relative/audit.jsonl"),
        ("audit.syslog", "http://siem:514"),
        ("audit.syslog", "udp://siem"),
        ("audit.syslog", "unix://dev/log"),
        ("audit.syslog_format", "leef"),
    ],
)
def test_invalid_values_are_refused(tmp_path: Path, key: str, value: str) -> None:
    config = Config(tmp_path / "relay.toml", "gateway")
    with pytest.raises(UsageError) as info:
        config.set(key, value)
    assert info.value.code == "bad_value"
    assert not (tmp_path / "relay.toml").exists()
