"""The hop's forwarding pass: ``relay.hop.forward`` in process, from a folder to a memory medium,
with a real gateway's bundles."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from relay.bundle.envelope import parse_head
from relay.codes import BAD_SIGNATURE, EXPIRED, MALFORMED, NOT_TRUSTED
from relay.errors import UsageError
from relay.home import Home
from relay.hop.forward import Hop, HopOutcome
from relay.hop.store import HopStore
from relay.identity import read_identity_file
from relay.transport import TransportOptions
from relay.transport.memory import memory_medium
from tests.conftest import Pair, make_pair, run_process, run_relay
from tests.consume_kit import clock_past


@dataclass
class Setup:
    pair: Pair
    hop: Hop
    store: HopStore
    medium: str

    def run(self, delete_after: bool = False) -> list[HopOutcome]:
        return self.hop.run_once(
            str(self.pair.out), f"memory://{self.medium}", TransportOptions(), delete_after
        )

    def audit(self, event_type: str) -> list[dict[str, object]]:
        from relay.audit import log
        from relay.db import sa_executor

        with self.store.engine.connect() as conn:
            records = log.records_after(sa_executor(conn), 0)
        return [dict(r.fields) for r in records if r.type == event_type]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    pair = make_pair(tmp_path)
    assert pair.gateway("grant", "plant7", "**").status == 0
    pair.put("db/a", b"a-1")
    pair.export()
    home = Home.create(tmp_path / "hop", "hop", "hop")
    store = HopStore.open(home)
    hop = Hop(home, store, lambda: int(time.time()))
    yield Setup(pair, hop, store, f"hop-{secrets.token_hex(4)}")
    store.close()


def test_a_hop_that_trusts_nobody_refuses_to_run(setup: Setup) -> None:
    with pytest.raises(UsageError) as refused:
        setup.run()
    assert refused.value.code == NOT_TRUSTED


def test_verified_bundles_are_forwarded_once_and_bad_ones_rejected_in_place(
    setup: Setup,
) -> None:
    assert setup.store.pin(read_identity_file(setup.pair.root / "gw.identity", "gateway"))
    (bundle,) = setup.pair.out.glob("*.bundle")
    data = bundle.read_bytes()
    tampered = bytearray(data)
    tampered[-1] ^= 1
    (setup.pair.out / "aa-tampered.bundle").write_bytes(bytes(tampered))
    (setup.pair.out / "ab-garbage.bundle").write_bytes(b"not a bundle at all")
    outcomes = {o.name: o for o in setup.run()}
    assert (outcomes["aa-tampered.bundle"].status, outcomes["aa-tampered.bundle"].code) == (
        "rejected",
        BAD_SIGNATURE,
    )
    assert (outcomes["ab-garbage.bundle"].status, outcomes["ab-garbage.bundle"].code) == (
        "rejected",
        MALFORMED,
    )
    forwarded = outcomes[bundle.name]
    assert forwarded.status == "forwarded"
    (name,) = memory_medium(setup.medium).names()
    assert forwarded.destination == f"memory://{setup.medium}/{name}"
    assert memory_medium(setup.medium).read(name) == data  # byte for byte
    assert (setup.pair.out / "aa-tampered.bundle").exists()  # rejected files stay
    assert sorted(str(r["reason"]) for r in setup.audit("bundle.rejected")) == [
        BAD_SIGNATURE,
        MALFORMED,
    ]
    (record,) = setup.audit("bundle.forwarded")
    assert (record["file"], record["recipient"], record["kind"]) == (
        bundle.name,
        "plant7",
        "secrets",
    )
    again = {o.name: o.status for o in setup.run()}
    assert again[bundle.name] == "skipped"
    assert len(setup.audit("bundle.forwarded")) == 1


def test_delete_after_forward_empties_the_source_of_what_went(setup: Setup) -> None:
    setup.store.pin(read_identity_file(setup.pair.root / "gw.identity", "gateway"))
    (bundle,) = setup.pair.out.glob("*.bundle")
    assert [o.status for o in setup.run(delete_after=True)] == ["forwarded"]
    assert not bundle.exists()


@pytest.mark.slow
def test_the_hop_judges_time_at_its_persisted_floor_when_its_clock_falls_behind(
    setup: Setup, tmp_path: Path
) -> None:
    """A hop whose clock is set back still refuses a bundle that expired before a bundle it
    forwarded was signed: the floor (the newest signed ``created`` time forwarded) is persisted
    and time is never judged earlier; the clock's fall behind is audited once."""
    setup.store.pin(read_identity_file(setup.pair.root / "gw.identity", "gateway"))
    short, later = tmp_path / "short", tmp_path / "later"
    setup.pair.put("db/b", b"b-1")
    export = ("gateway", "export", "--home", str(setup.pair.gw), "--to")
    assert run_relay(*export, str(short), "--valid-for", "1h").status == 0
    setup.pair.put("db/c", b"c-1")
    tomorrow = time.time() + 86400
    assert run_process(*export, str(later), env=clock_past(tomorrow)).status == 0
    ((late_bundle,),) = [list(later.glob("*.bundle"))]
    created = parse_head(late_bundle.read_bytes()).header.created
    assert created >= tomorrow

    now = int(time.time())  # the hop's clock: a day behind the gateway that signed "later"
    hop = Hop(setup.hop.home, setup.store, lambda: now)
    medium = f"memory://{setup.medium}"
    assert [o.status for o in hop.run_once(str(later), medium, TransportOptions())] == ["forwarded"]
    assert setup.store.time_floor() == created

    # Reopened (the floor is persisted): "short" is valid for an hour of the hop's own clock,
    # but it expired long before "later" was signed.
    setup.store.close()
    store = HopStore.open(setup.hop.home)
    try:
        again = Hop(setup.hop.home, store, lambda: now)
        [outcome] = again.run_once(str(short), medium, TransportOptions())
        assert (outcome.status, outcome.code) == ("rejected", EXPIRED)
        again.run_once(str(short), medium, TransportOptions())  # still behind: no new record
        [behind] = setup.audit("clock.behind")
        assert (behind["clock"], behind["time_floor"]) == (now, created)
        assert list(short.glob("*.bundle"))  # refused files stay where they are
    finally:
        store.close()
