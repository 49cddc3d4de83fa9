"""The bulk paths the benchmarks time: gateway import, export, agent apply, payload decoding.

These pin behaviour that the driver-level fast paths must keep: versions, unchanged rows left
alone, tombstones, removals, duplicates, and the exact verdict on every secret path.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inner_agent.importer import AgentImporter
from inner_agent.store import AgentStore
from outer_gateway.export import build_bundle
from outer_gateway.store import GatewayStore
from relay.bundle.payload import SecretsPayload, decode_secrets_payload
from relay.errors import BundleRejected
from relay.home import Home
from relay.paths import is_valid_path
from tests.trust_kit import pinned_stores

NOW = 1_800_000_000


@dataclass
class Pair:
    gw_home: Home
    gw: GatewayStore
    ag_home: Home
    ag: AgentStore
    importer: AgentImporter

    def export(self, now: int = NOW) -> tuple[str, bytes]:
        bundle = build_bundle(self.gw_home, self.gw, self.gw.agent("plant7"), now, 3600)
        return bundle.name, bundle.data


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    monkeypatch.delenv("RELAY_PASSPHRASE", raising=False)
    gw_home, gw, ag_home, ag = pinned_stores(tmp_path, NOW)
    yield Pair(gw_home, gw, ag_home, ag, AgentImporter(ag_home, ag, lambda: NOW + 10))
    gw.close()
    ag.close()


def values(n: int, tag: str = "") -> dict[str, bytes]:
    return {f"app/grp{i % 7}/secret{i}": f"value-{i}{tag}".encode() for i in range(n)}


def test_gateway_import_versions_unchanged_and_tombstones(pair: Pair) -> None:
    gw = pair.gw
    first = values(50)
    assert gw.import_secrets(first, None, NOW) == (50, 0)
    assert gw.import_secrets(first, None, NOW + 1) == (0, 50)
    second = dict(first)
    second["app/grp0/secret0"] = b"changed"
    second["app/new/one"] = b"new"
    assert gw.import_secrets(second, None, NOW + 2) == (2, 49)
    # a new expiry is a change; a removed secret imported again comes back as a new version
    assert gw.import_secrets({"app/grp1/secret1": b"value-1"}, NOW + 99, NOW + 3) == (1, 0)
    gw.remove_secret("app/grp2/secret2", NOW + 4)
    assert gw.import_secrets({"app/grp2/secret2": b"value-2"}, None, NOW + 5) == (1, 0)
    rows = {r[0]: r for r in gw.all_rows()}
    assert rows["app/grp0/secret0"][1:] == (2, b"changed", None, False)
    assert rows["app/grp3/secret3"][1:] == (1, b"value-3", None, False)
    assert rows["app/grp1/secret1"][1:] == (2, b"value-1", NOW + 99, False)
    assert rows["app/grp2/secret2"][1:] == (3, b"value-2", None, False)
    gw.remove_secret("app/grp4/secret4", NOW + 6)
    dead = {r[0]: r for r in gw.all_rows()}["app/grp4/secret4"]
    assert dead[1:] == (2, None, None, True)
    assert all(type(r[4]) is bool and type(r[2]) in (bytes, type(None)) for r in gw.all_rows())


def test_agent_apply_full_then_partial(pair: Pair) -> None:
    gw, ag = pair.gw, pair.ag
    first = values(300)
    gw.import_secrets(first, None, NOW)
    outcome = pair.importer.import_bytes(*pair.export())
    assert outcome.status == "applied" and outcome.result is not None
    assert (outcome.result.written, outcome.result.removed, outcome.result.unchanged) == (300, 0, 0)
    assert dict(ag.iter_values()) == first

    # same content, new bundle: nothing written
    outcome = pair.importer.import_bytes(*pair.export(NOW + 1))
    assert outcome.result is not None
    assert (outcome.result.written, outcome.result.removed, outcome.result.unchanged) == (0, 0, 300)

    # 3 changed, 1 added, 2 removed at the gateway, 1 outside the grant: only those rows move
    second = dict(first)
    for i in (5, 6, 7):
        second[f"app/grp{i % 7}/secret{i}"] = b"new value"
    second["app/extra/one"] = b"extra"
    gw.import_secrets(second, None, NOW + 2)
    gw.import_secrets({"other/x": b"not granted"}, None, NOW + 2)
    gw.remove_secret("app/grp1/secret1", NOW + 2)
    gw.remove_secret("app/grp2/secret2", NOW + 2)
    name, data = pair.export(NOW + 2)
    outcome = pair.importer.import_bytes(name, data)
    assert outcome.result is not None
    assert (outcome.result.written, outcome.result.removed, outcome.result.unchanged) == (4, 2, 295)
    gone = ("app/grp1/secret1", "app/grp2/secret2")
    expected = {p: v for p, v in second.items() if p not in gone}
    assert dict(ag.iter_values()) == expected
    versions = {s.path: s.version for s in ag.list_secrets()}
    assert versions["app/grp5/secret5"] == 2 and versions["app/grp0/secret0"] == 1

    assert pair.importer.import_bytes(name, data).status == "duplicate"


def test_agent_apply_after_revoke_removes_everything(pair: Pair) -> None:
    pair.gw.import_secrets(values(20), None, NOW)
    pair.importer.import_bytes(*pair.export())
    pair.gw.grant("plant7", "app/grp0/*")
    pair.gw.revoke("plant7", "app/**")
    outcome = pair.importer.import_bytes(*pair.export(NOW + 1))
    assert outcome.result is not None
    assert (outcome.result.written, outcome.result.removed, outcome.result.unchanged) == (0, 17, 3)
    assert sorted(p for p, _ in pair.ag.iter_values()) == sorted(
        p for p in values(20) if p.startswith("app/grp0/")
    )


PATHS = [
    "a",
    "db/plant7/password",
    "a/b/c.d/e_f/g-h",
    "...",
    "a/.../b",
    ".hidden/x",
    "x/..y",
    ".",
    "..",
    "a/.",
    "a/..",
    "./a",
    "a/../b",
    "",
    "/a",
    "a/",
    "a//b",
    "a b",
    "a*",
    "é",
    "a\n",
    "a\n/b",
    "a/b\n",
    "a" * 256,
    "a" * 257,
    "/".join(["s"] * 16),
    "/".join(["s"] * 17),
]


@pytest.mark.parametrize("path", PATHS)
def test_payload_path_verdict_is_is_valid_path(path: str) -> None:
    doc = SecretsPayload([(path, 1, "dmFsdWU=", None)]).encode()
    if is_valid_path(path):
        assert decode_secrets_payload(doc, 10, 100).secrets == [(path, 1, "dmFsdWU=", None)]
    else:
        with pytest.raises(BundleRejected, match="bad path") as err:
            decode_secrets_payload(doc, 10, 100)
        assert err.value.code == "malformed"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("x", "is not \\[path"),
        (["a", 1, "dmFsdWU="], "is not \\[path"),
        (["a", 0, "dmFsdWU=", None], "bad version"),
        (["a", True, "dmFsdWU=", None], "bad version"),
        (["a", 1.0, "dmFsdWU=", None], "bad version"),
        (["a", 1, None, None], "missing or over"),
        (["a", 1, "A" * 200, None], "missing or over"),
        (["a", 1, base64.b64encode(bytes(101)).decode(), None], "missing or over"),
        (["a", 1, "dmFsdWU", None], "not valid base64"),
        (["a", 1, "dmFs dWU=", None], "not valid base64"),
        (["a", 2**53, "dmFsdWU=", None], "bad version"),
        (["a", 1, "dmFsdWU=", 2**53], "bad expiry"),
        (["a", 1, "dmFsdWU=", -1], "bad expiry"),
        (["a", 1, "dmFsdWU=", False], "bad expiry"),
        ([7, 1, "dmFsdWU=", None], "bad path"),
    ],
)
def test_payload_bad_rows_keep_their_reason(row: object, message: str) -> None:
    good = ["ok/one", 1, "dmFsdWU=", 5]
    doc = json.dumps({"v": 1, "state": "full", "secrets": [good, row]}).encode()
    with pytest.raises(BundleRejected, match=message) as err:
        decode_secrets_payload(doc, 10, 100)
    assert err.value.code == "malformed"


def test_payload_round_trip_keeps_rows_and_order() -> None:
    rows = [(f"p/{i}", i + 1, "dmFsdWU=", None if i % 2 else NOW + i) for i in range(100)]
    decoded = decode_secrets_payload(SecretsPayload(rows, [("gone/x", 3)], 9).encode(), 200, 100)
    assert decoded.secrets == rows
    assert decoded.tombstones == [("gone/x", 3)]
    assert decoded.audit_ack == 9


def test_round_trip_of_a_few_thousand(pair: Pair) -> None:
    many = values(2000)
    pair.gw.import_secrets(many, None, NOW)
    outcome = pair.importer.import_bytes(*pair.export())
    assert outcome.result is not None and outcome.result.written == 2000
    assert dict(pair.ag.iter_values()) == many
