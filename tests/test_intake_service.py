"""Bad input through the running service (issue 9): junk in the watched inbox, and junk sent by the
low side across ``diode.listen``, can neither freeze the agent nor hide from the audit; repeated
rejections show in ``/v1/health`` (``degraded``) and ``/metrics``.

Regression: one file such as ``{"payload_len":1e999}`` whose name sorted before the real bundles
made every inbox scan raise: nothing after it was ever applied, nothing was audited, and health
said ``ok``. Over a diode one datagram was enough.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent_daemon import Daemon, start_daemon
from tests.conftest import run_relay
from tests.intake_kit import bad_length_forms

# Forms the codec can judge at once; the others are valid bundle prefixes, which the inbox waits
# for (up to its give-up time) without holding up anything else.
JUDGED = {
    form: data
    for form, data in bad_length_forms().items()
    if form not in ("truncated-prefix", "magic-and-half-length", "empty")
}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("intake")
    port = free_udp_port()
    daemon = start_daemon(
        root,
        {"agent.rescan_every": "1s", "diode.listen": f"127.0.0.1:{port}"},
        apps={"web": ["**"]},
    )
    daemon.diode_port = port  # type: ignore[attr-defined]
    yield daemon
    daemon.stop()


def wait_rejected(agent: Daemon, names: set[str], timeout: float = 30.0) -> dict[str, str]:
    def rejected() -> dict[str, str] | None:
        found = {e["file"]: e["reason"] for e in agent.events("bundle.rejected")}
        return found if names <= set(found) else None

    return agent.wait_until(rejected, timeout, f"{names} rejected")


def write_into(folder: Path, name: str, data: bytes) -> None:
    temp = folder / f".{name}.part"
    temp.write_bytes(data)
    temp.rename(folder / name)


def test_junk_in_the_inbox_never_freezes_it_and_is_audited(agent: Daemon) -> None:
    for form, data in bad_length_forms().items():
        write_into(agent.inbox, f"a-{form}.bundle", data)  # sorts before every real bundle
    bundle = agent.publish({"db/after-inbox-junk": b"still-applied"})
    agent.drop(bundle)
    agent.wait_value("db/after-inbox-junk", b"still-applied", within=20)
    found = wait_rejected(agent, {f"a-{form}.bundle" for form in JUDGED})
    assert all(found[f"a-{form}.bundle"] == "malformed" for form in JUDGED)
    quarantine = agent.pair.ag / "quarantine"
    kept = " ".join(p.name for p in quarantine.iterdir())
    assert all(f"a-{form}.bundle" in kept for form in JUDGED)
    with httpx.Client(base_url=agent.url, timeout=10) as client:
        health = client.get("/v1/health").json()
        metrics = client.get("/metrics").text
    assert health["status"] == "degraded"
    assert health["degraded"].startswith("repeated_rejections")
    assert 'relay_agent_degraded{reason="repeated_rejections"} 1.0' in metrics
    assert 'relay_bundles_rejected_total{reason="malformed"}' in metrics
    assert "Traceback" not in agent.log()
    assert "inbox scan failed" not in agent.log()


def test_junk_sent_across_the_diode_never_freezes_the_agent(agent: Daemon, tmp_path: Path) -> None:
    port = agent.diode_port  # type: ignore[attr-defined]
    files = []
    for form, data in JUDGED.items():
        path = tmp_path / f"d-{form}.bundle"
        path.write_bytes(data)
        files.append(str(path))
    sent = run_relay("diode", "send", *files, "--to", f"udp://127.0.0.1:{port}")
    assert sent.status == 0, sent.err
    wait_rejected(agent, {f"d-{form}.bundle" for form in JUDGED})
    # The diode's folder is the agent's own: judged junk is removed (copies are in quarantine).
    agent.wait_until(
        lambda: not [p for p in agent.inbox.iterdir() if p.name.startswith("d-")],
        what="the diode's judged junk removed",
    )
    kept = " ".join(p.name for p in (agent.pair.ag / "quarantine").iterdir())
    assert all(f"d-{form}.bundle" in kept for form in JUDGED)
    agent.pair.put("db/after-diode-junk", b"across")
    home = str(agent.pair.gw)
    exported = run_relay("gateway", "export", "--home", home, "--to", f"udp://127.0.0.1:{port}")
    assert exported.status == 0, exported.err
    agent.wait_value("db/after-diode-junk", b"across", within=30)
    assert "Traceback" not in agent.log()
