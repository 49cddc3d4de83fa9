"""Picking a transport from a location string: ``relay.transport.select``."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import pytest

from relay.codes import BAD_LOCATION, BAD_URL, KNOWN_HOSTS_REQUIRED, USAGE_CODE
from relay.errors import UsageError
from relay.transport import TransportOptions
from relay.transport.base import Pending, Source
from relay.transport.diode import DiodeDestination
from relay.transport.folder import FolderDestination, FolderSource
from relay.transport.memory import MemoryDestination, MemorySource, memory_medium
from relay.transport.select import each_pending, open_destination, open_source


def test_a_plain_path_is_a_folder_created_private(tmp_path: Path) -> None:
    destination = open_destination(str(tmp_path / "new" / "out"))
    assert isinstance(destination, FolderDestination)
    where = destination.put("a.bundle", b"A")
    destination.close()
    assert Path(where).read_bytes() == b"A"
    assert stat.S_IMODE((tmp_path / "new" / "out").stat().st_mode) == 0o700
    source = open_source(str(tmp_path / "new" / "out"))
    assert isinstance(source, FolderSource)
    assert [p.name for p in source.list_pending()] == ["a.bundle"]
    source.close()


def test_memory_locations_share_one_medium_by_name() -> None:
    name = f"select-{secrets.token_hex(4)}"
    destination = open_destination(f"memory://{name}")
    assert isinstance(destination, MemoryDestination)
    destination.put("b.bundle", b"B")
    destination.put("a.bundle", b"A")
    assert memory_medium(name).names() == ["a.bundle", "b.bundle"]
    source = open_source(f"MEMORY://{name}")  # the scheme is case-insensitive
    assert isinstance(source, MemorySource)


def test_each_pending_handles_every_file_in_order_and_closes(tmp_path: Path) -> None:
    name = f"each-{secrets.token_hex(4)}"
    for file in ("2.bundle", "1.bundle"):
        memory_medium(name).write(file, file.encode())

    def read(source: Source, item: Pending) -> tuple[str, bytes]:
        return item.name, source.fetch(item, 100)

    assert each_pending(f"memory://{name}", None, read) == [
        ("1.bundle", b"1.bundle"),
        ("2.bundle", b"2.bundle"),
    ]
    (tmp_path / "empty").mkdir()
    assert each_pending(str(tmp_path / "empty"), None, read) == []


def test_udp_is_a_diode_destination_but_not_a_source() -> None:
    destination = open_destination("udp://127.0.0.1:9")
    assert isinstance(destination, DiodeDestination)
    with pytest.raises(UsageError) as refused:
        open_source("udp://127.0.0.1:9")
    assert refused.value.code == USAGE_CODE
    assert "unsupported source" in refused.value.message
    with pytest.raises(UsageError) as refused:
        open_destination("udp://nowhere")
    assert refused.value.code == BAD_URL


def test_sftp_needs_its_pinning_before_any_connection() -> None:
    for opener in (open_destination, open_source):
        with pytest.raises(UsageError) as refused:
            opener("sftp://relay@127.0.0.1:1/in", TransportOptions())
        assert refused.value.code == KNOWN_HOSTS_REQUIRED


@pytest.mark.parametrize("location", ["ftp://h/x", "https://h/x", "file:///tmp/x"])
def test_other_schemes_are_refused_for_both_directions(location: str) -> None:
    for opener in (open_destination, open_source):
        with pytest.raises(UsageError) as refused:
            opener(location)
        assert refused.value.code == USAGE_CODE


def test_a_bad_memory_location_is_bad_location() -> None:
    with pytest.raises(UsageError) as refused:
        open_destination("memory://a/b")
    assert refused.value.code == BAD_LOCATION
