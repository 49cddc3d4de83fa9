"""``relay.client`` against a real ``relay agent run``: reads, API error codes, token reuse,
refresh before expiry and after a restart of the agent, unix sockets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relay.client import ApiError, Client
from tests.consume_kit import launch_agent, planted, prepare_agent

pytestmark = pytest.mark.slow  # runs relay and CMD as real processes


def test_client_reads_refreshes_and_reports_api_codes(tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    pair, inbox, creds = prepare_agent(tmp_path, apps={"web": ["db/web/*"]})
    assert pair.agent("config", "set", "api.unix_socket", str(sock)).status == 0
    daemon = launch_agent(pair, inbox, apps=creds)
    text, raw = planted("T"), b"\xff\xfe\x00binary" + os.urandom(4).hex().encode()
    try:
        daemon.drop(daemon.publish({"db/web/text": text, "db/web/raw": raw, "db/x/y": planted()}))
        daemon.wait_event("bundle.applied")
        now = [0.0]
        client = Client(daemon.url, **creds["web"], clock=lambda: now[0])
        got = client.get("db/web/text")
        assert (got.path, got.value, got.version, got.expires_at) == (
            "db/web/text",
            text.decode(),
            1,
            None,
        )
        assert client.get("db/web/raw").value == raw
        assert text.decode() not in repr(got)
        assert creds["web"]["client_secret"] not in repr(client)
        assert len(daemon.events("token.issued")) == 1  # one token for both reads
        with pytest.raises(ApiError) as forbidden:
            client.get("db/x/y")
        assert (forbidden.value.code, forbidden.value.status) == ("forbidden", 403)
        with pytest.raises(ApiError) as missing:
            client.get("db/web/absent")
        assert (missing.value.code, missing.value.status) == ("not_found", 404)
        now[0] = 15 * 60  # the token's lifetime has passed: a fresh one is fetched first
        client.get("db/web/text")
        assert len(daemon.events("token.issued")) == 2
        over_socket = Client(unix_socket=sock, **creds["web"])
        assert over_socket.get("db/web/text").value == text.decode()
        wrong = Client(daemon.url, client_id=creds["web"]["client_id"], client_secret="rs_wrong")
        with pytest.raises(ApiError) as refused:
            wrong.get("db/web/text")
        assert (refused.value.code, refused.value.status) == ("invalid_client", 401)
    finally:
        daemon.stop()
    restarted = launch_agent(pair, inbox, "agent2.log", apps=creds)
    try:  # the old token died with the agent: one 401, one new token, the read succeeds
        moved = Client(restarted.url, **creds["web"])
        moved._token, moved._token_until = "stale-token", float("inf")
        assert moved.get("db/web/text").value == text.decode()
        assert len(restarted.events("token.issued")) == 1
    finally:
        restarted.stop()
    with pytest.raises(ApiError) as unreachable:
        Client(restarted.url, **creds["web"]).get("db/web/text")
    assert unreachable.value.code == "unreachable"


def test_client_from_env_needs_credentials(tmp_path: Path) -> None:
    with pytest.raises(ApiError) as missing:
        Client.from_env({"RELAY_API_URL": "http://127.0.0.1:1"})
    assert missing.value.code == "no_credentials"
    secret_file = tmp_path / "secret"
    secret_file.write_text("rs_x\n")
    client = Client.from_env(
        {
            "RELAY_API_URL": "http://127.0.0.1:1",
            "RELAY_CLIENT_ID": "app-1",
            "RELAY_CLIENT_SECRET_FILE": str(secret_file),
        }
    )
    assert client._secret == "rs_x"
