"""Delta bundles (spec §8.3, ADR 0015): the header's base, the delta payload, the agent's base
check, and the gateway's choice of a base from what the agent acknowledged."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outer_gateway.delta import KEEP_UNACKED, choose_base, forget_bases
from outer_gateway.policies import Policy, set_policy
from outer_gateway.versions import put_current, stage_pending
from relay.bundle.envelope import BundleBase, Header, parse_header
from relay.bundle.payload import SecretsPayload, decode_secrets_payload
from relay.bundle.receive import MemoryStreams, check_base
from relay.bundle.verify import HighWater
from relay.canonical import canonical_json
from relay.codes import DELTA_BASE_MISSING
from relay.db import write_transaction
from relay.errors import MALFORMED, BundleRejected
from tests.conftest import run_relay
from tests.delta_site import Site, template

BASE_ID = "ab" * 32


def _header(**changes: object) -> bytes:
    header = Header("secrets", "hq", "0" * 16, "plant7", "1" * 16, 7, 1, 2, 100, "c" * 64)
    doc = header.to_json()
    doc.update(changes)
    return canonical_json(doc)


# -- the signed header ------------------------------------------------------------------------


def test_the_base_is_an_optional_header_member() -> None:
    parsed = parse_header(_header(base={"id": BASE_ID, "seq": 5}))
    assert parsed.base == BundleBase(BASE_ID, 5)
    assert parse_header(canonical_json(parsed.to_json())) == parsed
    assert parse_header(_header()).base is None


@pytest.mark.parametrize(
    "base",
    [
        {"id": BASE_ID},
        {"id": BASE_ID, "seq": 5, "x": 1},
        {"id": "AB" * 32, "seq": 5},
        {"id": BASE_ID, "seq": 0},
        {"id": BASE_ID, "seq": 7},  # not older than the bundle itself
        {"id": BASE_ID, "seq": True},
        [BASE_ID, 5],
    ],
)
def test_a_bad_base_is_malformed(base: object) -> None:
    with pytest.raises(BundleRejected) as caught:
        parse_header(_header(base=base))
    assert caught.value.code == MALFORMED


def test_only_secrets_bundles_have_a_base() -> None:
    with pytest.raises(BundleRejected):
        parse_header(_header(kind="audit", base={"id": BASE_ID, "seq": 5}))


# -- the payload ------------------------------------------------------------------------------


def test_a_delta_payload_round_trips_and_needs_a_base() -> None:
    delta = SecretsPayload([("db/a", 3, "YQ==", None)], [("db/b", 2)], 4, delta=True)
    data = delta.encode()
    assert json.loads(data)["state"] == "delta"
    assert decode_secrets_payload(data, 10, 16, delta=True) == delta
    with pytest.raises(BundleRejected):  # no base in the header: must be full state
        decode_secrets_payload(data, 10, 16)
    with pytest.raises(BundleRejected):  # a base in the header: must be a delta
        decode_secrets_payload(SecretsPayload([]).encode(), 10, 16, delta=True)


# -- the agent's base check -------------------------------------------------------------------


class _Bundle:
    """The two attributes check_base reads."""

    def __init__(self, base: BundleBase | None) -> None:
        self.stream_key = "k" * 16
        self.envelope = type("E", (), {"header": type("H", (), {"base": base})()})()


def test_the_base_must_be_applied_in_the_same_stream_under_its_seq() -> None:
    streams = MemoryStreams(
        {("k" * 16, "secrets"): HighWater(9, "cd" * 32)},
        applied_in={BASE_ID: ("k" * 16, 5), "ef" * 32: ("other", 6)},
    )
    check_base(_Bundle(None), streams)  # type: ignore[arg-type]
    check_base(_Bundle(BundleBase(BASE_ID, 5)), streams)  # type: ignore[arg-type]
    check_base(_Bundle(BundleBase("cd" * 32, 9)), streams)  # type: ignore[arg-type]
    for missing in (BundleBase(BASE_ID, 4), BundleBase("ef" * 32, 6), BundleBase("01" * 32, 5)):
        with pytest.raises(BundleRejected) as caught:
            check_base(_Bundle(missing), streams)  # type: ignore[arg-type]
        assert caught.value.code == DELTA_BASE_MISSING


# -- end to end: real stores, real export, import and audit return ----------------------------


@pytest.fixture(scope="module")
def pair_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template(tmp_path_factory.mktemp("delta") / "template")


@pytest.fixture
def site(pair_template: Path, tmp_path: Path) -> Iterator[Site]:
    made = Site.copy_of(pair_template, tmp_path / "site", int(time.time()))
    made.store.grant("plant7", "db/**")
    for i in range(20):
        made.store.put_secret(f"db/s{i:02d}", b"value-%d" % i, None, made.tick())
    made.store.put_secret("other/x", b"not granted", None, made.tick())
    yield made
    made.close()


def _acknowledge(site: Site) -> None:
    for data in site.audit_bundles():
        site.return_audit(data)


def test_the_first_bundle_is_full_and_a_delta_follows_its_acknowledgement(site: Site) -> None:
    first = site.export()
    assert first.base_seq is None and first.secrets == 20
    assert site.export().base_seq is None  # not acknowledged yet: full again
    assert site.apply(first.data).status == "applied"
    _acknowledge(site)
    site.store.put_secret("db/s03", b"changed", None, site.tick())
    site.store.remove_secret("db/s04", site.tick())
    site.store.put_secret("other/x", b"still not granted", None, site.tick())
    delta = site.export()
    assert (delta.base_seq, delta.secrets, delta.tombstones) == (first.seq, 1, 1)
    outcome = site.apply(delta.data)
    assert outcome.status == "applied", outcome
    assert outcome.result is not None
    assert (outcome.result.written, outcome.result.removed) == (1, 1)
    assert site.served() == site.intended()


def test_deltas_are_cumulative_so_acknowledgements_may_lag(site: Site) -> None:
    first = site.export()
    site.apply(first.data)
    _acknowledge(site)
    site.store.put_secret("db/s01", b"one", None, site.tick())
    second = site.export()
    site.store.put_secret("db/s02", b"two", None, site.tick())
    third = site.export()  # the agent's ack of `second` has not arrived: same base
    assert second.base_seq == third.base_seq == first.seq
    assert site.apply(second.data).status == "applied"
    assert site.apply(third.data).status == "applied"
    assert site.served() == site.intended()


def test_a_refused_delta_changes_nothing_and_the_refusal_brings_a_full_bundle(
    site: Site,
) -> None:
    first = site.export()
    site.apply(first.data)
    _acknowledge(site)
    lost = site.export()  # never reaches the agent, but an acknowledgement is taken for it
    with write_transaction(site.store.engine) as conn:
        conn.exec_driver_sql("UPDATE export_bases SET acked = true WHERE seq = ?", (lost.seq,))
    site.store.put_secret("db/s05", b"changed", None, site.tick())
    delta = site.export()
    assert delta.base_seq == lost.seq
    before = site.stream_state()
    outcome = site.apply(delta.data)
    assert (outcome.status, outcome.code) == ("rejected", DELTA_BASE_MISSING)
    assert outcome.quarantined is not None
    assert site.stream_state() == before  # nothing changed
    _acknowledge(site)  # the refusal travels back: no delta on anything older
    repair = site.export()
    assert repair.base_seq is None
    assert site.apply(repair.data).status == "applied"
    assert site.served() == site.intended()
    _acknowledge(site)
    site.store.put_secret("db/s06", b"changed", None, site.tick())
    after = site.export()
    assert after.base_seq == repair.seq
    assert site.apply(after.data).status == "applied"
    assert site.served() == site.intended()


def test_a_restored_agent_refuses_deltas_until_a_full_bundle(site: Site, tmp_path: Path) -> None:
    site.agent_store.close()
    shutil.copytree(site.root / "ag", tmp_path / "ag-backup")  # the agent before the base
    _reopen_agent(site)
    first = site.export()
    assert site.apply(first.data).status == "applied"
    _acknowledge(site)
    site.agent_store.close()  # the agent is restored from the older backup
    shutil.rmtree(site.root / "ag")
    shutil.copytree(tmp_path / "ag-backup", site.root / "ag")
    _reopen_agent(site)
    site.store.put_secret("db/s05", b"changed", None, site.tick())
    delta = site.export()
    before = site.stream_state()
    outcome = site.apply(delta.data)
    assert (outcome.status, outcome.code) == ("rejected", DELTA_BASE_MISSING)
    assert site.stream_state() == before
    # Its audit chain now forks (the gateway reports chain_broken): `export --full` repairs.
    repair = site.export(full=True)
    assert site.apply(repair.data).status == "applied"
    assert site.served() == site.intended()


def _reopen_agent(site: Site) -> None:
    site.agent_store = type(site.agent_store).open(site.ag)
    site.importer.store = site.agent_store


def test_full_every_and_forced_full(site: Site) -> None:
    site.gw.config.set("export.full_every", "3")
    first = site.export()
    site.apply(first.data)
    _acknowledge(site)
    kinds = []
    for _ in range(4):
        bundle = site.export()
        kinds.append(bundle.base_seq is not None)
        site.apply(bundle.data)
        _acknowledge(site)
    assert kinds == [True, True, False, True]  # seq 4 is 3 after the full seq 1
    assert site.export(full=True).base_seq is None


def test_grant_changes_add_and_remove_paths(site: Site) -> None:
    site.store.put_secret("app/token", b"t", None, site.tick())
    first = site.export()
    site.apply(first.data)
    _acknowledge(site)
    site.store.grant("plant7", "app/**")
    site.store.revoke("plant7", "db/**")
    site.store.grant("plant7", "db/s1*")
    delta = site.export()
    assert delta.base_seq == first.seq
    assert site.apply(delta.data).status == "applied"
    assert site.served() == site.intended()
    assert "other/x" not in site.served()[0]


def test_rotation_labels_travel_in_deltas(site: Site) -> None:
    first = site.export()
    site.apply(first.data)
    _acknowledge(site)
    put_current(site.store, "db/s07", b"rotated", None, site.tick(), 10**6)
    stage_pending(site.store, "db/s08", b"soon", None, site.now + 10**6, 60, site.tick())
    delta = site.export()
    assert delta.base_seq == first.seq
    assert site.apply(delta.data).status == "applied"
    served = site.served()
    assert served == site.intended()
    assert served[1]["db/s07"]["previous"][0] == 1
    assert served[1]["db/s08"]["pending"][0] == 2


def test_a_restored_gateway_forgets_its_bases(site: Site) -> None:
    first = site.export()
    site.apply(first.data)
    _acknowledge(site)
    with site.store.engine.connect() as conn:
        assert choose_base(conn, "plant7", first.seq + 1, ("db/**",), 24) is not None
    with write_transaction(site.store.engine) as conn:
        forget_bases(conn)
    assert site.export().base_seq is None


def test_export_rows_are_pruned(site: Site) -> None:
    site.gw.config.set("export.full_every", "1000")
    first = site.export()
    site.apply(first.data)
    _acknowledge(site)
    for _ in range(KEEP_UNACKED + 2):  # never acknowledged
        assert site.export().base_seq == first.seq
    with site.store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM export_bases").scalar_one()
    assert rows <= KEEP_UNACKED + 2
    # The exports right after the base are forgotten (their grants with them): full.
    assert site.export().base_seq is None


def test_deltas_with_the_gateway_on_postgresql(
    pair_template: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("database")
    site = Site.copy_of(pair_template, tmp_path / "pg", int(time.time()), url)
    try:
        site.store.grant("plant7", "db/**")
        site.store.import_secrets({f"db/s{i}": b"v%d" % i for i in range(50)}, None, site.tick())
        first = site.export()
        site.apply(first.data)
        _acknowledge(site)
        site.store.put_secret("db/s1", b"changed", None, site.tick())
        site.store.remove_secret("db/s2", site.tick())
        site.store.grant("plant7", "app/**")
        site.store.put_secret("app/new", b"new", None, site.tick())
        delta = site.export()
        assert (delta.base_seq, delta.secrets, delta.tombstones) == (first.seq, 2, 1)
        assert site.apply(delta.data).status == "applied"
        assert site.served() == site.intended()
    finally:
        site.close()


def test_freshness_rules_travel_whole_in_deltas(site: Site) -> None:
    set_policy(site.store, Policy("db/s1*", None, 32, "alnum", None, 3600, True), site.tick())
    set_policy(site.store, Policy("app/**", None, 32, "alnum", None, 60, True), site.tick())
    first = site.export()
    site.apply(first.data)
    held = site.agent_store.get_meta("policies")
    assert held is not None and json.loads(held) == [["db/s1*", 3600, True]]
    _acknowledge(site)
    site.store.put_secret("db/s02", b"changed", None, site.tick())  # not governed by the rule
    delta = site.export()
    assert delta.base_seq == first.seq
    site.apply(delta.data)
    assert site.agent_store.get_meta("policies") == held


def test_a_removed_path_with_a_pending_version_goes_full(site: Site) -> None:
    first = site.export()
    site.apply(first.data)
    _acknowledge(site)
    site.store.remove_secret("db/s05", site.tick())
    stage_pending(site.store, "db/s05", b"back", None, site.now + 10**6, 60, site.tick())
    bundle = site.export()
    assert site.apply(bundle.data).status == "applied"
    assert site.served() == site.intended()
    assert "db/s05" not in site.served()[0]


def test_gateway_export_full_on_the_command_line(site: Site, tmp_path: Path) -> None:
    first = site.export()
    site.apply(first.data)
    _acknowledge(site)
    out = str(tmp_path / "out")
    gw = str(site.root / "gw")
    delta = run_relay("gateway", "export", "--home", gw, "--to", out, "--json")
    assert delta.status == 0, delta.err
    assert [item["base_seq"] for item in json.loads(delta.out)] == [first.seq]
    full = run_relay("gateway", "export", "--home", gw, "--to", out, "--json", "--full")
    assert [item["base_seq"] for item in json.loads(full.out)] == [None]


def test_a_path_made_after_its_grant_was_revoked_is_never_named(site: Site) -> None:
    first = site.export()
    site.apply(first.data)
    _acknowledge(site)
    site.store.revoke("plant7", "db/**")
    site.store.grant("plant7", "db/s0*")
    removals = site.export()  # db/s1x were sent by the base: removals in a delta
    assert removals.base_seq == first.seq and removals.tombstones == 10
    site.store.put_secret("db/new-after-revoke", b"x", None, site.tick())
    bundle = site.export()  # the base's grants matched it, but it was never sent: full
    assert bundle.base_seq is None
    assert b"db/new-after-revoke" not in _plaintext(site, bundle.data)
    assert site.apply(bundle.data).status == "applied"
    assert site.served() == site.intended()


def _plaintext(site: Site, data: bytes) -> bytes:
    from relay import crypto
    from relay.bundle.envelope import parse_envelope

    envelope = parse_envelope(data)
    return crypto.unseal(site.ag.secrets.keys, site.gw.identity.box_public, envelope.payload)
