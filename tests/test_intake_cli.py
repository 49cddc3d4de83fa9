"""Bad input through ``relay agent import`` (issue 9): every bad length form, a tampered copy
under an applied bundle's name, a flood of junk against the quarantine cap, and a shared medium
holding other agents' bundles with ``--delete-after-import``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Pair, make_pair, run_relay
from tests.intake_kit import audit_events, bad_length_forms


def quarantine_files(pair: Pair) -> list[Path]:
    folder = pair.ag / "quarantine"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_every_bad_length_form_is_rejected_alone_and_later_bundles_still_apply(
    pair: Pair,
) -> None:
    media = pair.root / "media"
    media.mkdir()
    forms = bad_length_forms()
    for form, data in forms.items():
        (media / f"a-{form}.bundle").write_bytes(data)
    pair.put("db/pw", b"after-the-junk")
    pair.gateway("grant", "plant7", "db/*")
    pair.gateway("export", "--to", str(media))
    result = pair.agent("import", str(media))
    assert result.status == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == len(forms), lines
    for form in forms:
        assert f"relay: rejected: a-{form}.bundle: malformed: " in result.err
    assert "Traceback" not in result.err
    assert pair.get("db/pw").stdout == b"after-the-junk\n"
    rejected = {e["fields"]["file"] for e in audit_events(pair, "bundle.rejected")}
    assert rejected == {f"a-{form}.bundle" for form in forms}
    assert len(quarantine_files(pair)) == len(forms)


def test_a_tampered_copy_under_an_applied_name_is_bad_signature(pair: Pair) -> None:
    pair.put("db/pw", b"v1")
    pair.gateway("grant", "plant7", "db/*")
    (bundle,) = pair.export()
    assert pair.agent("import", str(pair.out)).status == 0
    data = bytearray(bundle.read_bytes())
    data[data.index(b'"seq":1') + 6] = ord("2")  # header altered, name and size unchanged
    bundle.write_bytes(bytes(data))
    again = pair.agent("import", str(pair.out))
    assert again.status == 1, again.out
    assert (
        again.err == f"relay: rejected: {bundle.name}: bad_signature: signature does not verify\n"
    )
    kept = [p for p in quarantine_files(pair) if ".bad_signature." in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(data)
    assert audit_events(pair, "bundle.rejected")[-1]["fields"]["reason"] == "bad_signature"
    assert pair.get("db/pw").stdout == b"v1\n"


def test_the_untouched_applied_bundle_is_a_duplicate_once_its_head_verifies(pair: Pair) -> None:
    pair.put("db/pw", b"v1")
    pair.gateway("grant", "plant7", "db/*")
    (bundle,) = pair.export()
    assert pair.agent("import", str(pair.out)).status == 0
    again = pair.agent("import", str(pair.out))
    assert again.status == 0
    assert f"skipped {bundle.name}: duplicate" in again.out
    assert audit_events(pair, "bundle.duplicate")[-1]["fields"]["file"] == bundle.name


def test_a_flood_of_junk_stays_within_the_quarantine_cap(pair: Pair) -> None:
    cap = 50_000
    assert pair.agent("config", "set", "import.quarantine_bytes", str(cap)).status == 0
    flood = pair.root / "flood"
    flood.mkdir()
    for i in range(60):
        (flood / f"junk{i:03}.bundle").write_bytes(os.urandom(4000))
    (flood / "zz-huge.bundle").write_bytes(os.urandom(cap + 1))
    result = pair.agent("import", str(flood))
    assert result.status == 1
    assert result.err.count(": malformed: ") == 61
    kept = quarantine_files(pair)
    assert sum(p.stat().st_size for p in kept) <= cap
    copies = [p for p in kept if not p.name.endswith(".meta.json")]
    assert 10 <= len(copies) <= 12  # the newest copies; the oldest were dropped
    assert "junk059" in copies[-1].name and "junk000" not in " ".join(p.name for p in kept)
    (meta,) = [p for p in kept if p.name.endswith(".meta.json")]
    assert "zz-huge.bundle" in meta.name
    assert '"kept": false' in meta.read_text() and '"size": 50001' in meta.read_text()
    assert len(audit_events(pair, "bundle.rejected")) == 61  # every one is on the record


def test_same_second_rejections_of_one_name_never_overwrite(pair: Pair) -> None:
    first, second = pair.root / "stick1", pair.root / "stick2"
    for folder, content in ((first, b"one" * 40), (second, b"two" * 40)):
        folder.mkdir()
        (folder / "junk.bundle").write_bytes(content)
    result = pair.agent("import", str(first), str(second))
    assert result.status == 1
    assert sorted(p.read_bytes() for p in quarantine_files(pair)) == [b"one" * 40, b"two" * 40]


@pytest.fixture
def shared(pair: Pair) -> tuple[Pair, Path]:
    """A second agent, plant8, enrolled at the same gateway; both granted db/*."""
    other = pair.root / "ag8"
    request = pair.root / "ag8.request"
    for args in (
        ("agent", "init", "--home", str(other), "--name", "plant8", "--request-out", str(request)),
        ("gateway", "enroll", "--home", str(pair.gw), str(request)),
        ("agent", "trust", "--home", str(other), str(pair.root / "gw.identity")),
    ):
        assert run_relay(*args).status == 0
    pair.put("db/pw", b"shared")
    pair.gateway("grant", "plant7", "db/*")
    pair.gateway("grant", "plant8", "db/*")
    return pair, other


def test_delete_after_import_leaves_other_agents_bundles_on_a_shared_medium(
    shared: tuple[Pair, Path],
) -> None:
    pair, other = shared
    pair.export()
    medium = pair.out
    names = sorted(p.name for p in medium.iterdir())
    assert names == [
        "hq-to-plant7.secrets.0000000001.bundle",
        "hq-to-plant8.secrets.0000000001.bundle",
    ]
    (medium / "junk.bundle").write_bytes(b"not a bundle at all")
    result = pair.agent("import", "--delete-after-import", str(medium))
    assert result.status == 1  # the junk
    assert pair.get("db/pw").stdout == b"shared\n"
    left = sorted(p.name for p in medium.iterdir())
    assert left == ["hq-to-plant8.secrets.0000000001.bundle", "junk.bundle"]
    assert "plant8" not in result.out + result.err  # another site's bundle: a quiet skip
    eight = run_relay("agent", "import", "--home", str(other), "--delete-after-import", str(medium))
    assert eight.status == 1
    assert sorted(p.name for p in medium.iterdir()) == ["junk.bundle"]


def test_delete_after_import_removes_a_rolled_back_or_duplicate_bundle_for_this_agent(
    shared: tuple[Pair, Path],
) -> None:
    pair, _ = shared
    first = pair.export()
    old = pair.root / "old"
    old.mkdir()
    mine = next(p for p in first if "plant7" in p.name)
    (old / mine.name).write_bytes(mine.read_bytes())
    pair.put("db/pw", b"newer")
    pair.export()
    assert pair.agent("import", str(pair.out)).status == 0
    result = pair.agent("import", "--delete-after-import", str(old), str(pair.out))
    assert result.status == 0, result.err
    assert list(old.iterdir()) == []  # applied before: a duplicate, consumed
    assert not [p for p in pair.out.iterdir() if "plant7" in p.name]
    assert [p for p in pair.out.iterdir() if "plant8" in p.name]


def test_another_agents_rollback_is_not_ours_to_delete(shared: tuple[Pair, Path]) -> None:
    pair, _ = shared
    pair.export()
    rolled = pair.root / "rolled"
    rolled.mkdir()
    for p in pair.out.iterdir():
        (rolled / p.name).write_bytes(p.read_bytes())
    pair.put("db/pw", b"newer")
    pair.export()
    assert pair.agent("import", str(pair.out)).status == 0
    seq1 = "hq-to-plant7.secrets.0000000001.bundle"
    (rolled / seq1).unlink()
    fresh = make_pair(pair.root / "unrelated")  # a stranger's medium content
    fresh.put("x/y", b"z")
    fresh.gateway("grant", "plant7", "x/*")
    for p in fresh.export():
        (rolled / f"stranger-{p.name}").write_bytes(p.read_bytes())
    result = pair.agent("import", "--delete-after-import", str(rolled))
    assert result.status == 1
    assert "unknown_sender" in result.err
    assert sorted(p.name for p in rolled.iterdir()) == [
        "hq-to-plant8.secrets.0000000001.bundle",
        "stranger-hq-to-plant7.secrets.0000000001.bundle",
    ]


def test_a_medium_carrying_both_directions_skips_each_sides_own_bundles(pair: Pair) -> None:
    stick = pair.root / "stick"
    pair.put("db/pw", b"both-ways")
    pair.gateway("grant", "plant7", "db/*")
    assert pair.gateway("export", "--to", str(stick)).status == 0
    assert pair.agent("audit", "export", "--to", str(stick)).status == 0
    assert len(list(stick.iterdir())) == 2
    inbound = pair.agent("import", str(stick))
    assert inbound.status == 0, inbound.err  # its own audit bundle is not an error
    outbound = pair.gateway("import", str(stick))
    assert outbound.status == 0, outbound.err  # nor is the gateway's own secrets bundle
    assert "new records" in outbound.out
    assert pair.get("db/pw").stdout == b"both-ways\n"
