"""Dispatch, the gateway's export loop: ``outer_gateway.dispatch`` in process, over a real store
and a memory or folder destination."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from outer_gateway.audit import GatewayAudit
from outer_gateway.dispatch import dispatch
from outer_gateway.store import GatewayStore
from relay.bundle.envelope import parse_envelope
from relay.codes import UNKNOWN_AGENT
from relay.errors import RelayError, UsageError
from relay.home import Home
from relay.transport import TransportOptions
from relay.transport.memory import memory_medium
from tests.conftest import Pair, make_pair

NOW = 1_800_000_000


@dataclass
class Gateway:
    pair: Pair
    home: Home
    store: GatewayStore

    def exported(self) -> list[dict[str, object]]:
        records = GatewayAudit(self.home, self.store.engine).own_records()
        return [dict(r.fields) for r in records if r.type == "bundle.exported"]


@pytest.fixture
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    pair = make_pair(tmp_path_factory.mktemp("dispatch"))
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    pair.put("db/a", b"a-1")
    home = Home.open(pair.gw, "gateway")
    store = GatewayStore.open(home)
    yield Gateway(pair, home, store)
    store.close()


def test_one_bundle_per_agent_is_put_and_recorded(gateway: Gateway) -> None:
    medium = f"dispatch-{secrets.token_hex(4)}"
    written = dispatch(
        gateway.home, gateway.store, f"memory://{medium}", TransportOptions(), 3600, lambda: NOW
    )
    assert len(written) == 1
    (item,) = written
    assert (item["agent"], item["secrets"], item["tombstones"]) == ("plant7", 1, 0)
    (name,) = memory_medium(medium).names()
    assert item["path"] == f"memory://{medium}/{name}"
    data = memory_medium(medium).read(name)
    assert data is not None and item["bytes"] == len(data)
    header = parse_envelope(data).header
    assert (header.seq, header.recipient, header.expires - header.created) == (
        item["seq"],
        "plant7",
        3600,
    )
    (record,) = gateway.exported()
    assert record["bundle_seq"] == item["seq"]
    assert record["file"] == name
    assert record["agent_name"] == "plant7"


def test_only_names_one_agent_and_a_destination_that_fails_keeps_the_record(
    gateway: Gateway, tmp_path_factory: pytest.TempPathFactory
) -> None:
    blocked = tmp_path_factory.mktemp("blocked") / "not-a-folder"
    blocked.write_bytes(b"")
    with pytest.raises(RelayError):
        dispatch(
            gateway.home, gateway.store, str(blocked), TransportOptions(), 60, lambda: NOW, "plant7"
        )
    # the record and the seq committed before the file was written: the seq is spent, no file
    (spent,) = gateway.exported()
    medium = f"dispatch-{secrets.token_hex(4)}"
    (item,) = dispatch(
        gateway.home, gateway.store, f"memory://{medium}", TransportOptions(), 60, lambda: NOW
    )
    assert item["seq"] == spent["bundle_seq"] + 1  # never a seq sealed into two bundles
    assert [r["bundle_seq"] for r in gateway.exported()] == [spent["bundle_seq"], item["seq"]]
    with pytest.raises(UsageError) as refused:
        dispatch(
            gateway.home,
            gateway.store,
            f"memory://{medium}",
            TransportOptions(),
            60,
            lambda: NOW,
            "nobody",
        )
    assert refused.value.code == UNKNOWN_AGENT
