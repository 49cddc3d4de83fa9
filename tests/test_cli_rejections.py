"""Every reason code of the agent's import, produced through the CLI: one line on stderr, a
non-zero exit, the store unchanged, a quarantine copy when the bytes were read, source untouched."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from relay import crypto
from tests.conftest import Pair, make_pair, run_relay
from tests.forge import forge, forge_sealed_to_other_key, secrets_payload


@pytest.fixture
def loaded(pair: Pair) -> Pair:
    """A pair whose agent holds one applied bundle (seq 1) with db/pw = original."""
    pair.put("db/pw", b"original")
    pair.gateway("grant", "plant7", "db/*")
    pair.export()
    assert pair.agent("import", str(pair.out)).status == 0
    return pair


def store_digest(pair: Pair) -> str:
    listed = pair.agent("secret", "list", "--json").out
    values = [pair.get(item["path"]).out for item in json.loads(listed)]
    return hashlib.sha256((listed + "".join(values)).encode()).hexdigest()


def quarantined(pair: Pair) -> list[Path]:
    folder = pair.ag / "quarantine"
    return sorted(folder.iterdir()) if folder.exists() else []


def reject(pair: Pair, target: Path, code: str, copied: bool = True) -> None:
    """Import ``target`` and check every promise of a rejection."""
    before = store_digest(pair)
    regular = target.is_file() and not target.is_symlink()
    source_before = target.stat() if regular else None
    kept_before = len(quarantined(pair))
    result = pair.agent("import", str(target))
    assert result.status == 1, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert f": {code}: " in lines[0]
    assert store_digest(pair) == before
    assert len(quarantined(pair)) == kept_before + (1 if copied else 0)
    if source_before is not None:  # the source is never modified (media may be read-only)
        after = target.stat()
        assert (after.st_size, after.st_mtime_ns) == (
            source_before.st_size,
            source_before.st_mtime_ns,
        )


def write(pair: Pair, name: str, data: bytes) -> Path:
    folder = pair.root / "media"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def test_malformed_empty_truncated_and_garbage(loaded: Pair) -> None:
    good = loaded.export()[0].read_bytes()
    reject(loaded, write(loaded, "empty.bundle", b""), "malformed")
    reject(loaded, write(loaded, "cut.bundle", good[:-10]), "malformed")
    reject(loaded, write(loaded, "cut-header.bundle", good[:40]), "malformed")
    reject(loaded, write(loaded, "junk.bundle", os.urandom(500)), "malformed")


def test_too_large_is_decided_from_the_size_before_reading(loaded: Pair) -> None:
    sparse = loaded.root / "media" / "huge.bundle"
    sparse.parent.mkdir(exist_ok=True)
    with sparse.open("wb") as handle:
        handle.truncate(4 * 1024**3)  # 4 GiB, sparse: reading it would take long
    started = time.monotonic()
    reject(loaded, sparse, "too_large", copied=False)
    assert time.monotonic() - started < 60  # generous: reading 4 GiB is what must not happen
    assert sparse.stat().st_size == 4 * 1024**3


def test_bad_signature_on_tampered_header_signature_and_payload(loaded: Pair) -> None:
    fresh = loaded.export()[0].read_bytes()
    header_len = int.from_bytes(fresh[8:12], "big")
    sig_at = 12 + header_len
    flipped_sig = bytearray(fresh)
    flipped_sig[sig_at + 5] ^= 0x40
    reject(loaded, write(loaded, "sig.bundle", bytes(flipped_sig)), "bad_signature")
    flipped_payload = bytearray(fresh)
    flipped_payload[-3] ^= 0x01
    reject(loaded, write(loaded, "payload.bundle", bytes(flipped_payload)), "bad_signature")
    header = fresh[12:sig_at].replace(b'"seq":2', b'"seq":9')
    assert header != fresh[12:sig_at]
    reject(
        loaded, write(loaded, "seq.bundle", fresh[:12] + header + fresh[sig_at:]), "bad_signature"
    )


def test_tampered_copy_of_the_applied_bundle_is_bad_signature_not_duplicate(loaded: Pair) -> None:
    applied = sorted(loaded.out.glob("*.bundle"))[0].read_bytes()
    tampered = bytearray(applied)
    tampered[-1] ^= 0x80
    reject(loaded, write(loaded, "again.bundle", bytes(tampered)), "bad_signature")


def test_unknown_sender(loaded: Pair, tmp_path: Path) -> None:
    other = make_pair(tmp_path / "other", gateway_name="rogue", agent_name="plant7")
    # the rogue gateway enrolls our agent's real request and exports to it
    assert (
        run_relay(
            "gateway", "enroll", "--home", str(other.gw), str(loaded.root / "ag.request")
        ).status
        != 0
    )  # name taken by its own agent
    rogue = tmp_path / "rogue"
    run_relay("gateway", "init", "--home", str(rogue), "--name", "rogue")
    assert (
        run_relay("gateway", "enroll", "--home", str(rogue), str(loaded.root / "ag.request")).status
        == 0
    )
    run_relay("gateway", "secret", "put", "--home", str(rogue), "db/pw", "-", stdin=b"evil")
    run_relay("gateway", "grant", "--home", str(rogue), "plant7", "db/*")
    out = run_relay("gateway", "export", "--home", str(rogue), "--to", str(tmp_path / "r"))
    reject(loaded, Path(out.out.strip()), "unknown_sender")


def test_wrong_recipient_explicit_file_and_quiet_skip_in_a_folder(loaded: Pair) -> None:
    other_req = loaded.root / "other.request"
    run_relay(
        "agent",
        "init",
        "--home",
        str(loaded.root / "ag2"),
        "--name",
        "plant9",
        "--request-out",
        str(other_req),
    )
    loaded.gateway("enroll", str(other_req))
    loaded.gateway("grant", "plant9", "db/*")
    stick = loaded.root / "stick"
    run_relay("gateway", "export", "--home", str(loaded.gw), "--to", str(stick))
    theirs = next(stick.glob("hq-to-plant9.*"))
    reject(loaded, theirs, "wrong_recipient")
    folder = loaded.agent("import", str(stick))
    assert folder.status == 0, folder.err
    assert folder.err == ""
    assert "applied hq-to-plant7" in folder.out


def test_rollback(pair: Pair) -> None:
    pair.put("db/pw", b"v1")
    pair.gateway("grant", "plant7", "db/*")
    first = pair.export()[0]
    pair.put("db/pw", b"v2")
    second = pair.export()[0]
    assert pair.agent("import", str(second)).status == 0
    reject(pair, first, "rollback")
    assert pair.get("db/pw").stdout == b"v2\n"


def test_expired_bundle(loaded: Pair) -> None:
    old = int(time.time()) - 7200
    data = forge(
        loaded.gw, loaded.ag, secrets_payload({"db/pw": b"stale"}), created=old, expires=old + 60
    )
    reject(loaded, write(loaded, "old.bundle", data), "expired")


def test_decrypt_failed(loaded: Pair) -> None:
    data = forge_sealed_to_other_key(loaded.gw, loaded.ag, secrets_payload({"db/pw": b"x"}))
    reject(loaded, write(loaded, "sealed-elsewhere.bundle", data), "decrypt_failed")


def test_signed_but_malformed_payload_changes_nothing(loaded: Pair) -> None:
    dup = b'{"v":1,"state":"full","secrets":[["db/a",1,"eA==",null],["db/a",2,"eA==",null]]}'
    reject(loaded, write(loaded, "dup.bundle", forge(loaded.gw, loaded.ag, dup)), "malformed")
    bad_path = secrets_payload({"db/pw": b"x"}).replace(b"db/pw", b"../pw")
    reject(
        loaded,
        write(loaded, "path.bundle", forge(loaded.gw, loaded.ag, bad_path, seq=1001)),
        "malformed",
    )


def test_forged_signature_by_another_key(loaded: Pair) -> None:
    data = forge(
        loaded.gw, loaded.ag, secrets_payload({"db/pw": b"x"}), keys=crypto.generate_keypair()
    )
    reject(loaded, write(loaded, "forged.bundle", data), "bad_signature")


def test_symlink_fifo_and_device_are_never_followed(loaded: Pair) -> None:
    planted = f"sensitive-{os.urandom(8).hex()}"
    target = loaded.root / "etc-shadow"
    target.write_text(planted)
    media = loaded.root / "media"
    media.mkdir(exist_ok=True)
    link = media / "link.bundle"
    link.symlink_to(target)
    reject(loaded, link, "not_regular_file", copied=False)
    fifo = media / "pipe.bundle"
    os.mkfifo(fifo)
    reject(loaded, fifo, "not_regular_file", copied=False)  # must not block
    device = media / "null.bundle"
    device.symlink_to("/dev/zero")
    reject(loaded, device, "not_regular_file", copied=False)
    folder = loaded.agent("import", str(media))
    assert folder.status == 1
    assert folder.err.count("not_regular_file") == 3
    for path in loaded.ag.rglob("*"):
        if path.is_file():
            assert planted.encode() not in path.read_bytes()


def test_quarantine_is_private_and_holds_the_rejected_bytes(loaded: Pair) -> None:
    junk = os.urandom(300)
    reject(loaded, write(loaded, "junk.bundle", junk), "malformed")
    kept = quarantined(loaded)
    assert len(kept) == 1
    assert kept[0].read_bytes() == junk
    assert kept[0].stat().st_mode & 0o777 == 0o600
    assert (loaded.ag / "quarantine").stat().st_mode & 0o777 == 0o700
    assert ".malformed." in kept[0].name


def test_a_bundle_over_the_cap_is_never_written(pair: Pair) -> None:
    pair.gateway("config", "set", "limits.max_bundle_bytes", "3000")
    pair.put("db/big", os.urandom(600).hex().encode())
    pair.gateway("grant", "plant7", "db/*")
    result = pair.gateway("export", "--to", str(pair.out))
    assert result.status != 0
    assert "too_large" in result.err
    assert not pair.out.exists() or not list(pair.out.iterdir())


def test_paths_and_names_with_a_trailing_newline_are_refused(pair: Pair) -> None:
    assert "bad_path" in pair.gateway("secret", "put", "db/x\n", "-", stdin=b"v").err
    home = pair.root / "nl"
    assert "bad_name" in run_relay("gateway", "init", "--home", str(home), "--name", "hq\n").err


def test_a_file_that_vanishes_between_listing_and_reading_is_skipped(loaded: Pair) -> None:
    from inner_agent.importer import AgentImporter
    from inner_agent.store import AgentStore
    from relay.home import Home
    from relay.transport.folder import FolderSource

    media = loaded.root / "media"
    media.mkdir()
    ghost = media / "ghost.bundle"
    ghost.write_bytes(b"soon gone")
    source = FolderSource(media)
    (item,) = source.list_pending()
    ghost.unlink()  # the stick was pulled after the listing
    home = Home.open(loaded.ag, "agent")
    importer = AgentImporter(home, AgentStore.open(home), lambda: 0)
    outcome = importer._import_item(source, item, None)
    assert (outcome.status, outcome.code) == ("skipped", "vanished")
    assert quarantined(loaded) == []
