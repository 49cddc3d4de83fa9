"""The audit payload conformance vectors (``docs/spec/bundle-v1.md`` §9), written by
``make_vectors.py`` into ``vectors/audit/``.

The verifier is the gateway; the one trusted sender is the agent; the accepted kind is ``audit``.
The gateway already holds the agent's records 1 and 2 (``context.json`` lists them), so a vector
is judged in four steps: ``verify`` (§10 steps 1-7, kind ``audit``), ``decrypt``, ``payload``
(§9 decoding, and ``agent`` equal to the sender's name) and ``merge`` (§9 merge rules against the
held records). ``expect`` is ``ok``, ``malformed``, ``chain_broken`` or another reason code; an
``ok`` vector gives the decoded head and record seqs, and which records are new.

Deterministic like the bundle vectors: the records are chained from fixed times, clocks and
fields, and every nonce comes from the vector's name.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from make_vectors import AGENT, CREATED, EXPIRES, GATEWAY, NOW, OTHER_AGENT, Party, Recipe

from relay import frozen
from relay.audit.chain import GENESIS_HASH, AuditRecord, next_record, record_to_dict
from relay.audit.record import compute_hash
from relay.bundle.audit_payload import AuditPayload
from relay.bundle.rotation_items import RotationItem

LIMITS = {"max_bundle_bytes": 16384, "max_entries": 16}
T0 = datetime(2027, 1, 15, 7, 0, 0, tzinfo=UTC)
TYPES = ("agent.started", "bundle.applied", "secret.read", "secret.denied", "audit.exported")
HELD = 2  # the gateway holds records 1..HELD


def _chain(n: int) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    prev = None
    for i in range(n):
        fields = {"path": f"db/plant7/s{i}", "app": "cron"} if i % 5 in (2, 3) else {"n": i}
        prev = next_record(
            prev, "vectors-1", TYPES[i % 5], fields, T0 + timedelta(seconds=i), 1000 * i
        )
        records.append(prev)
    return records


CHAIN = _chain(20)
SIX = CHAIN[:6]
HEAD6 = {"seq": 6, "hash": SIX[-1].hash}


def _rehash(record: AuditRecord, **changes: Any) -> AuditRecord:
    forged = frozen.replace(record, **changes)
    return frozen.replace(forged, hash=compute_hash(forged))


def _doc(chain: list[AuditRecord], **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "agent": "plant7",
        "head": dict(HEAD6),
        "records": [record_to_dict(r) for r in chain],
    }
    body.update(changes)
    return body


def _text(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


@dataclasses.dataclass
class AuditVector:
    """One audit vector and what a conforming gateway must say about it."""

    name: str
    plaintext: bytes
    expect: str
    step: str | None
    note: str
    sender: Party = AGENT
    kind: str = "audit"
    seq: int = 1
    result: dict[str, Any] | None = None

    def build(self) -> bytes:
        recipe = Recipe(
            self.name,
            seq=self.seq,
            kind=self.kind,
            sender=self.sender,
            recipient=GATEWAY,
            created=CREATED,
            expires=EXPIRES,
            plaintext=self.plaintext,
        )
        return recipe.build()

    def manifest_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "file": f"{self.name}.bundle",
            "expect": self.expect,
            "step": self.step,
            "note": self.note,
        }
        if self.result is not None:
            entry["result"] = self.result
        return entry


def _ok(name: str, seq: int, records: list[AuditRecord], note: str) -> AuditVector:
    payload = AuditPayload("plant7", 6, SIX[-1].hash, tuple(records))
    seqs = [r.seq for r in records]
    result = {
        "agent": "plant7",
        "head": HEAD6,
        "records": seqs,
        "new": [s for s in seqs if s > HELD],
        "duplicates": sum(1 for s in seqs if s <= HELD),
    }
    return AuditVector(f"ok-{name}", payload.encode(), "ok", None, note, seq=seq, result=result)


ROTATION_ITEMS = (
    RotationItem("0" * 31 + "1", 3, "request", "db/plant7/password", reason="manual"),
    RotationItem("0" * 31 + "2", 4, "escrow", "db/hist/svc", version=5, base=4, value=b"escrowed"),
    RotationItem(
        "0" * 31 + "3", 5, "outcome", "db/hist/svc", version=5, status="applied", detail="ok"
    ),
    RotationItem(
        "0" * 31 + "4", 6, "hook", "db/hist/svc", version=5, hook="reload", result="failed", exit=3
    ),
)


HOOK_AT_3 = ROTATION_ITEMS[3].to_json() | {"seq": 3}


def _ok_vectors() -> list[AuditVector]:
    rotation = _ok("rotation", 5, SIX[2:], "records 3-6 with rotation items (docs/rotation.md)")
    payload = AuditPayload("plant7", 6, SIX[-1].hash, tuple(SIX[2:]), ROTATION_ITEMS)
    rotation.plaintext = payload.encode()
    assert rotation.result is not None
    rotation.result["rotation"] = [item.id for item in ROTATION_ITEMS]
    return [
        _ok("whole", 1, SIX, "records 1-6 and head 6: records 1-2 already held"),
        _ok("split-first", 2, SIX[2:4], "records 3-4 of a split export; head 6"),
        _ok("split-second", 3, SIX[4:], "records 5-6 of a split export; head 6"),
        _ok("empty", 4, [], "no record, only the head: nothing new"),
        rotation,
    ]


def _malformed_cases() -> list[tuple[str, bytes, str]]:
    three = SIX[2:3]
    many = CHAIN[: LIMITS["max_entries"] + 1]
    many_head = {"seq": len(many), "hash": many[-1].hash}
    unknown = record_to_dict(SIX[2]) | {"extra": 1}
    bad_type = record_to_dict(SIX[2]) | {"type": "Secret Read"}
    return [
        ("not-json", b"\x00not json", "bytes that are not JSON"),
        ("not-object", b"[]", "a JSON array"),
        ("utf16", _text(_doc(three)).decode().encode("utf-16"), "UTF-16, not UTF-8"),
        ("extra-member", _text(_doc(three, note="x")), "a member besides v, agent, head, records"),
        ("missing-head", _text({"v": 1, "agent": "plant7", "records": []}), "no head"),
        ("bad-version", _text(_doc(three, v=2)), "v is 2"),
        ("bool-version", _text(_doc(three, v=True)), "v is true, not the integer 1"),
        ("bad-agent-name", _text(_doc(three, agent="Plant 7")), "agent is not an identity name"),
        ("other-agent", _text(_doc(three, agent="plant8")), "agent is not the sender"),
        ("head-extra", _text(_doc(three, head=HEAD6 | {"x": 1})), "head has a third member"),
        (
            "head-upper-hash",
            _text(_doc(three, head=HEAD6 | {"hash": SIX[-1].hash.upper()})),
            "head hash in upper case",
        ),
        ("head-negative", _text(_doc([], head={"seq": -1, "hash": GENESIS_HASH})), "head seq -1"),
        (
            "head-zero-not-genesis",
            _text(_doc([], head={"seq": 0, "hash": SIX[0].hash})),
            "head seq 0 with a hash that is not the genesis hash",
        ),
        ("records-not-array", _text(_doc([], records={})), "records is an object"),
        ("records-descending", _text(_doc([SIX[3], SIX[2]])), "records 4 then 3"),
        ("records-repeated", _text(_doc([SIX[2], SIX[2]])), "record 3 twice"),
        ("record-past-head", _text(_doc(CHAIN[:7])), "record 7 with head 6"),
        ("record-unknown-member", _text(_doc([], records=[unknown])), "a record member extra"),
        ("record-bad-type", _text(_doc([], records=[bad_type])), "a record type with a space"),
        (
            "too-many-records",
            _text(_doc(many, head=many_head)),
            f"{len(many)} records, max_entries = {LIMITS['max_entries']}",
        ),
        ("duplicate-member", _text(_doc(three))[:-1] + b',"v":1}', "member v twice"),
        ("nan", _text(_doc([])).replace(b'"seq":6', b'"seq":NaN'), "head seq NaN"),
        (
            "rotation-past-head",
            _text(_doc(three, rotation=[ROTATION_ITEMS[0].to_json() | {"seq": 7}])),
            "a rotation item whose record is past the head",
        ),
        (
            "rotation-hook-bad-result",
            _text(_doc(three, rotation=[HOOK_AT_3 | {"result": "great"}])),
            "a hook item whose result is not ok, failed or timeout",
        ),
        (
            "rotation-hook-bad-exit",
            _text(_doc(three, rotation=[HOOK_AT_3 | {"exit": 256}])),
            "a hook item whose exit status is above 255",
        ),
        (
            "rotation-hook-output",
            _text(_doc(three, rotation=[HOOK_AT_3 | {"output": "x"}])),
            "a hook item with a member besides the eight (no output ever travels)",
        ),
        (
            "rotation-unknown-kind",
            _text(_doc(three, rotation=[ROTATION_ITEMS[0].to_json() | {"kind": "delete"}])),
            "a rotation item of an unknown kind",
        ),
    ]


def _broken_vectors() -> list[AuditVector]:
    conflict = _rehash(SIX[1], fields={"n": 99})
    conflict_next = _rehash(SIX[2], prev_hash=conflict.hash)
    unhashed = frozen.replace(SIX[2], fields={"n": 99})
    stray = _rehash(SIX[2], prev_hash="ab" * 32)
    cases = [
        ("conflict", [conflict, conflict_next], HEAD6, "record 2 differs from the held one"),
        ("bad-hash", [unhashed], HEAD6, "record 3 does not hash to its hash"),
        ("link", [stray], HEAD6, "record 3 does not link to the held record 2"),
        ("head-hash", SIX[2:], {"seq": 6, "hash": "cd" * 32}, "record 6 is not the declared head"),
    ]
    return [
        AuditVector(
            f"chain-broken-{name}", _text(_doc(records, head=head)), "chain_broken", "merge", note
        )
        for name, records, head, note in cases
    ]


def audit_vectors() -> list[AuditVector]:
    """Every audit vector."""
    three = AuditPayload("plant7", 6, SIX[-1].hash, tuple(SIX[2:3])).encode()
    vectors = _ok_vectors()
    vectors += [
        AuditVector(f"malformed-payload-{name}", data, "malformed", "payload", note)
        for name, data, note in _malformed_cases()
    ]
    vectors += _broken_vectors()
    vectors += [
        AuditVector(
            "malformed-kind-secrets", three, "malformed", "verify", "kind secrets", kind="secrets"
        ),
        AuditVector(
            "unknown-sender",
            three,
            "unknown_sender",
            "verify",
            "plant8 is not enrolled",
            sender=OTHER_AGENT,
        ),
    ]
    return vectors


def write_audit_vectors(out: Path, pretty: Any) -> None:
    """Write the audit vectors, ``manifest.json`` and ``context.json`` into ``out``."""
    vectors = audit_vectors()
    out.mkdir(parents=True, exist_ok=True)
    for vector in vectors:
        (out / f"{vector.name}.bundle").write_bytes(vector.build())
    manifest = {v.name: v.manifest_entry() for v in vectors}
    context = {
        "format": "relay bundle v1 audit payload vectors",
        "parties": "../keys.json",
        "now": NOW,
        "limits": LIMITS,
        "kinds": ["audit"],
        "verifier": GATEWAY.label,
        "trusted_senders": [AGENT.label],
        "held": [{"seq": r.seq, "hash": r.hash, "prev_hash": r.prev_hash} for r in CHAIN[:HELD]],
    }
    (out / "manifest.json").write_text(pretty(manifest), encoding="utf-8")
    (out / "context.json").write_text(pretty(context), encoding="utf-8")
