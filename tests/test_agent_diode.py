"""``diode.listen``: ``relay agent run`` hosts the diode receiver itself; a bundle sent across a
lossy one-way link is applied and readable over the API, with no other process involved."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.agent_daemon import start_daemon
from tests.conftest import run_relay
from tests.diode.harness import Damage, LossyRelay

pytestmark = pytest.mark.slow  # runs `relay agent run` with a diode receiver


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_agent_run_receives_from_a_diode_and_applies(tmp_path: Path) -> None:
    port = free_udp_port()
    daemon = start_daemon(tmp_path, settings={"diode.listen": f"127.0.0.1:{port}"})
    relay = LossyRelay(("127.0.0.1", port), Damage(loss=0.03, reorder_window=4, seed=7))
    relay.start()
    try:
        assert f"diode receiver listening on 127.0.0.1:{port}" in daemon.log()
        pair = daemon.pair
        pair.put("db/web/password", b"across-the-diode")
        sent = run_relay("gateway", "export", "--home", str(pair.gw), "--to", relay.address)
        assert sent.status == 0, sent.err
        daemon.wait_value("db/web/password", b"across-the-diode", within=30)
    finally:
        relay.stop()
        assert daemon.stop() < 5  # exits 0 (checked inside) within 5 s
    assert "diode: received hq-to-plant7.secrets.0000000001.bundle" in daemon.log()


def test_diode_listen_needs_an_inbox(tmp_path: Path) -> None:
    from tests.conftest import make_pair

    pair = make_pair(tmp_path)
    assert pair.agent("config", "set", "diode.listen", "127.0.0.1:0").status == 0
    assert pair.agent("config", "set", "api.listen", "127.0.0.1:0").status == 0
    result = run_relay("agent", "run", "--home", str(pair.ag))
    assert result.status != 0
    assert "not_configured" in result.err
    assert "bad_listen" in pair.agent("config", "set", "diode.listen", "nowhere").err
