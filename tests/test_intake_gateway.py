"""The return stream through the same import loop (issue 9): junk and a tampered copy of an
imported audit bundle are rejected and kept in quarantine; the authentic copy is a duplicate
only once its signed head verifies; ``--delete-after-import`` leaves the junk."""

from __future__ import annotations

from tests.conftest import Pair
from tests.intake_kit import bad_length_forms


def test_gateway_import_judges_junk_and_tampered_audit_copies(pair: Pair) -> None:
    up = pair.root / "up"
    assert pair.agent("audit", "export", "--to", str(up)).status == 0
    (bundle,) = up.iterdir()
    assert pair.gateway("import", str(up)).status == 0
    again = pair.gateway("import", str(up))
    assert again.status == 0 and "duplicate" in again.out
    original = bundle.read_bytes()
    tampered = bytearray(original)
    tampered[tampered.index(b'"seq":1') + 6] = ord("2")
    bundle.write_bytes(bytes(tampered))
    for form, data in bad_length_forms().items():
        (up / f"a-{form}.bundle").write_bytes(data)
    result = pair.gateway("import", "--delete-after-import", str(up))
    assert result.status == 1
    assert f"relay: rejected: {bundle.name}: bad_signature: " in result.err
    assert result.err.count(": malformed: ") == len(bad_length_forms())
    kept = [p.name for p in (pair.gw / "quarantine").iterdir()]
    assert any(".bad_signature." in name for name in kept)
    assert len(list(up.iterdir())) == len(bad_length_forms()) + 1  # nothing judged ours: kept
    bundle.write_bytes(original)
    cleaned = pair.gateway("import", "--delete-after-import", str(up))
    assert not bundle.exists()  # the authentic copy: a duplicate, consumed
    assert cleaned.status == 1
