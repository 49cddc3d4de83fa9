"""``relay hop``: a middle-segment relay checks senders and signatures, forwards, never decrypts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import Pair, run_relay
from tests.consume_kit import wait_for


def hop(pair: Pair, *args: str) -> tuple[int, str, str]:
    result = run_relay("hop", "--home", str(pair.root / "hop"), *args)
    return result.status, result.out, result.err


def test_forward_verified_bundles_both_ways(pair: Pair) -> None:
    planted = f"PLANTED-{os.urandom(8).hex()}".encode()
    pair.put("db/pw", planted)
    pair.gateway("grant", "plant7", "db/*")
    dmz, level3 = pair.root / "dmz", pair.root / "level3"
    run_relay("gateway", "export", "--home", str(pair.gw), "--to", str(dmz))
    status, out, err = hop(
        pair, "--from", str(dmz), "--to", str(level3), "--trust", str(pair.root / "gw.identity")
    )
    assert status == 0, err
    assert "forwarded hq-to-plant7.secrets.0000000001.bundle" in out
    assert "trusting gateway hq: SHA256:" in err
    assert pair.agent("import", str(level3)).status == 0
    assert pair.get("db/pw").stdout == planted + b"\n"
    # again: nothing new to forward, nothing re-sent
    status, out, _ = hop(pair, "--from", str(dmz), "--to", str(level3))
    assert (status, out) == (0, "")
    # the return stream goes through the same hop, once it trusts the agent
    back = pair.root / "back-l3"
    assert pair.agent("audit", "export", "--to", str(back)).status == 0
    status, _, err = hop(
        pair,
        "--from",
        str(back),
        "--to",
        str(pair.root / "back-dmz"),
        "--trust",
        str(pair.root / "ag.request"),
    )
    assert status == 0, err
    assert pair.gateway("import", str(pair.root / "back-dmz")).status == 0
    # the hop holds nothing readable
    for path in (pair.root / "hop").rglob("*"):
        if path.is_file():
            assert planted not in path.read_bytes()
    records = [
        json.loads(x)
        for x in run_relay("hop", "audit", "--home", str(pair.root / "hop"), "--json").out.split(
            "\n"
        )
        if x
    ]
    assert [r["type"] for r in records].count("bundle.forwarded") == 2


def test_rejected_files_stay_at_the_source_with_their_reason(pair: Pair) -> None:
    pair.put("db/pw", b"x")
    pair.gateway("grant", "plant7", "db/*")
    dmz = pair.root / "dmz"
    bundle = Path(
        run_relay("gateway", "export", "--home", str(pair.gw), "--to", str(dmz)).out.strip()
    )
    data = bytearray(bundle.read_bytes())
    data[-1] ^= 1
    bundle.write_bytes(bytes(data))
    status, _, err = hop(
        pair,
        "--from",
        str(dmz),
        "--to",
        str(pair.root / "l3"),
        "--trust",
        str(pair.root / "gw.identity"),
    )
    assert status == 1
    assert f"relay: rejected: {bundle.name}: bad_signature:" in err
    assert bundle.exists()
    assert not (pair.root / "l3").exists() or not list((pair.root / "l3").iterdir())


def test_a_sender_the_hop_does_not_trust_is_refused(pair: Pair, tmp_path: Path) -> None:
    pair.put("db/pw", b"x")
    pair.gateway("grant", "plant7", "db/*")
    dmz = pair.root / "dmz"
    run_relay("gateway", "export", "--home", str(pair.gw), "--to", str(dmz))
    none = hop(pair, "--from", str(dmz), "--to", str(pair.root / "l3"))
    assert none[0] != 0
    assert "not_trusted" in none[2]
    status, _, err = hop(
        pair,
        "--from",
        str(dmz),
        "--to",
        str(pair.root / "l3"),
        "--trust",
        str(pair.root / "ag.request"),
    )
    assert status == 1
    assert ": unknown_sender: " in err


def test_loop_mode_stops_cleanly_on_sigterm(pair: Pair) -> None:
    pair.put("db/pw", b"x")
    pair.gateway("grant", "plant7", "db/*")
    dmz, l3 = pair.root / "dmz", pair.root / "l3"
    run_relay("gateway", "export", "--home", str(pair.gw), "--to", str(dmz))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relay",
            "hop",
            "--home",
            str(pair.root / "hop"),
            "--from",
            str(dmz),
            "--to",
            str(l3),
            "--trust",
            str(pair.root / "gw.identity"),
            "--every",
            "1s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # each wait re-checks at every file event under the pair's folder (inotify)
        wait_for(lambda: l3.exists() and list(l3.glob("*.bundle")), what="first", watch=pair.root)
        run_relay("gateway", "export", "--home", str(pair.gw), "--to", str(dmz))
        wait_for(lambda: len(list(l3.glob("*.bundle"))) >= 2, what="second", watch=pair.root)
        assert len(list(l3.glob("*.bundle"))) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err


def test_a_tampered_copy_under_a_forwarded_name_is_rejected_not_skipped(pair: Pair) -> None:
    """Skipping needs a verified head: a same-name, same-size copy with another header is not."""
    pair.put("db/pw", b"x")
    pair.gateway("grant", "plant7", "db/*")
    dmz, level3 = pair.root / "dmz", pair.root / "level3"
    run_relay("gateway", "export", "--home", str(pair.gw), "--to", str(dmz))
    trust = ("--trust", str(pair.root / "gw.identity"))
    assert hop(pair, "--from", str(dmz), "--to", str(level3), *trust)[0] == 0
    (bundle,) = dmz.iterdir()
    data = bytearray(bundle.read_bytes())
    data[data.index(b'"seq":1') + 6] = ord("2")  # same name, same size, header not signed
    bundle.write_bytes(bytes(data))
    status, _, err = hop(pair, "--from", str(dmz), "--to", str(level3))
    assert status == 1
    assert "bad_signature" in err
    records = run_relay("hop", "audit", "--home", str(pair.root / "hop"), "--json").out
    assert '"bad_signature"' in records
