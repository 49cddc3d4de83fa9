"""The diode loop: gateway → lossy one-way UDP → agent inbox, and audit back through a second
diode, with real receivers and a relay that drops and reorders datagrams."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Pair
from tests.consume_kit import wait_for
from tests.diode.harness import Damage, LossyRelay, Receiver


def wait_for_files(folder: Path, count: int, timeout: float = 60) -> list[Path]:
    """The bundles in ``folder`` once there are ``count``, re-checked at each file event."""

    def arrived() -> list[Path] | None:
        found = sorted(folder.glob("*.bundle")) if folder.exists() else []
        return found if len(found) >= count else None

    found: list[Path] = wait_for(
        arrived, timeout, f"{count} bundles in {folder}", watch=folder.parent
    )
    return found


def test_gateway_to_agent_and_audit_back_over_lossy_diodes(pair: Pair) -> None:
    inbox, audit_inbox = pair.root / "agent-inbox", pair.root / "gateway-inbox"
    forward, backward = Receiver(inbox), Receiver(audit_inbox)
    down = LossyRelay(("127.0.0.1", forward.port), Damage(loss=0.05, reorder_window=8, seed=3))
    up = LossyRelay(("127.0.0.1", backward.port), Damage(loss=0.05, duplicate=0.05, seed=4))
    down.start()
    up.start()
    try:
        pair.put("ot/plc7/password", b"through-the-diode")
        pair.gateway("grant", "plant7", "ot/**")
        pair.gateway("config", "set", "diode.rate", "5000000")
        sent = pair.gateway("export", "--to", down.address)
        assert sent.status == 0, sent.err
        assert "udp://" in sent.out
        bundle = wait_for_files(inbox, 1)[0]
        assert bundle.name == "hq-to-plant7.secrets.0000000001.bundle"
        assert pair.agent("import", str(inbox)).status == 0
        assert pair.get("ot/plc7/password").stdout == b"through-the-diode\n"
        back = pair.agent("audit", "export", "--to", up.address)
        assert back.status == 0, back.err
        wait_for_files(audit_inbox, 1)
        imported = pair.gateway("import", str(audit_inbox))
        assert imported.status == 0, imported.err
        assert pair.gateway("audit", "verify").status == 0
    finally:
        assert forward.stop() == 0
        assert backward.stop() == 0
        down.stop()
        up.stop()
    assert down.seen > down.forwarded  # the link really lost datagrams
