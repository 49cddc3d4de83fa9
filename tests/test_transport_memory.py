"""The in-memory transport keeps the transport contract (checked side by side with the folder
transport) and carries the whole loop, secrets out and audit back, inside one process."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from relay.errors import BundleRejected, TransportError, UsageError
from relay.transport import Destination, Source, open_destination, open_source
from relay.transport.memory import memory_medium
from tests.conftest import Pair

Opened = tuple[Destination, Source, Callable[[str], None]]


def folder_transport(tmp_path: Path) -> Opened:
    folder = tmp_path / "link"
    dest = open_destination(str(folder))
    return dest, open_source(str(folder)), lambda name: (folder / name).unlink()


def memory_transport(_: Path) -> Opened:
    name = f"test-{uuid.uuid4().hex}"
    medium = memory_medium(name)
    location = f"memory://{name}"
    return open_destination(location), open_source(location), medium.delete


@pytest.fixture(params=[folder_transport, memory_transport], ids=["folder", "memory"])
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Opened:
    opened: Opened = request.param(tmp_path)
    return opened


def test_put_then_list_in_name_order_and_fetch(transport: Opened) -> None:
    dest, source, _ = transport
    dest.put("b.bundle", b"second")
    dest.put("a.bundle", b"first")
    dest.put("notes.txt", b"not a bundle")
    pending = source.list_pending()
    assert [p.name for p in pending] == ["a.bundle", "b.bundle"]
    assert source.fetch(pending[0], 100) == b"first"


def test_over_the_cap_is_too_large_before_reading(transport: Opened) -> None:
    dest, source, _ = transport
    dest.put("big.bundle", b"x" * 101)
    (item,) = source.list_pending()
    with pytest.raises(BundleRejected) as caught:
        source.fetch(item, 100)
    assert caught.value.code == "too_large"


def test_a_file_gone_since_the_listing_is_vanished(transport: Opened) -> None:
    dest, source, delete = transport
    dest.put("a.bundle", b"data")
    (item,) = source.list_pending()
    delete("a.bundle")
    with pytest.raises(TransportError) as caught:
        source.fetch(item, 100)
    assert caught.value.code == "vanished"


def test_remove_consumes_a_file(transport: Opened) -> None:
    dest, source, _ = transport
    dest.put("a.bundle", b"data")
    (item,) = source.list_pending()
    source.remove(item)
    assert source.list_pending() == []


def test_a_memory_location_needs_a_name() -> None:
    for bad in ("memory://", "memory://a/b"):
        with pytest.raises(UsageError) as caught:
            open_source(bad)
        assert caught.value.code == "bad_location"


def test_the_whole_loop_through_memory(pair: Pair) -> None:
    out, back = f"out-{uuid.uuid4().hex}", f"back-{uuid.uuid4().hex}"
    pair.put("db/pw", b"memory-loop-value")
    assert pair.gateway("grant", "plant7", "db/*").status == 0
    exported = pair.gateway("export", "--to", f"memory://{out}")
    assert exported.status == 0, exported.err
    assert memory_medium(out).names() == ["hq-to-plant7.secrets.0000000001.bundle"]
    imported = pair.agent("import", f"memory://{out}")
    assert imported.status == 0, imported.err
    assert pair.get("db/pw").stdout == b"memory-loop-value\n"
    sent = pair.agent("audit", "export", "--to", f"memory://{back}", "--json")
    assert sent.status == 0, sent.err
    assert json.loads(sent.out)["bundles"][0]["path"].startswith(f"memory://{back}/")
    received = pair.gateway("import", f"memory://{back}", "--delete-after-import")
    assert received.status == 0, received.err
    assert memory_medium(back).names() == []
    assert pair.gateway("audit", "verify").status == 0
