"""The local API of a real ``relay agent run`` process: tokens, reads and every refusal."""

from __future__ import annotations

import base64
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent_daemon import Daemon, start_daemon
from tests.conftest import run_relay

WEB_VALUE = f"PLANTED-web-{os.urandom(8).hex()}".encode()
BATCH_VALUE = f"PLANTED-batch-{os.urandom(8).hex()}".encode()
BINARY_VALUE = b"\xff\xfe" + os.urandom(8) + b"\x00"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("api")
    daemon = start_daemon(
        root,
        {"api.token_ttl": "1h"},  # long: no 401 here can be an expiry
        apps={"web": ["db/web/*"], "batch": ["db/batch/**"], "gone": ["db/web/*"]},
    )
    bundle = daemon.publish(
        {"db/web/password": WEB_VALUE, "db/batch/key": BATCH_VALUE, "db/web/binary": BINARY_VALUE}
    )
    daemon.drop(bundle)
    daemon.wait_event("bundle.applied")
    yield daemon
    took = daemon.stop()
    assert took < 5
    log = daemon.log().encode()
    for value in (WEB_VALUE, BATCH_VALUE):
        assert value not in log
    assert b"PLANTED-" not in log
    assert b"relay.audit" not in log  # no audit write failed or was refused
    for path in (daemon.pair.ag / "agent.log",):
        assert not path.exists()


def test_token_then_read_with_no_store(agent: Daemon) -> None:
    response = agent.read("db/web/password", agent.token("web"))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body == {
        "path": "db/web/password",
        "value": WEB_VALUE.decode(),
        "encoding": "utf-8",
        "version": 1,
        "expires_at": None,
    }
    assert agent.events("secret.read")[-1] == {
        "app": "web",
        "path": "db/web/password",
        "version": 1,
    }


def test_token_request_as_json_and_binary_values_in_base64(agent: Daemon) -> None:
    response = httpx.post(
        f"{agent.url}/v1/oauth2/token",
        json={"grant_type": "client_credentials", **agent.apps["web"]},
    )
    assert response.status_code == 200
    doc = response.json()
    assert doc["token_type"] == "Bearer"
    assert doc["expires_in"] == 3600
    assert response.headers["cache-control"] == "no-store"
    body = agent.read("db/web/binary", doc["access_token"]).json()
    assert body["encoding"] == "base64"
    assert base64.b64decode(body["value"]) == BINARY_VALUE


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer rt_not-a-real-token", "Basic dXNlcjpwYXNz", "bearer  x y"],
)
def test_missing_or_wrong_tokens_are_401(agent: Daemon, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = httpx.get(f"{agent.url}/v1/secrets/db/web/password", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert WEB_VALUE.decode() not in response.text


def test_bad_client_credentials(agent: Daemon) -> None:
    url = f"{agent.url}/v1/oauth2/token"
    web = agent.apps["web"]
    wrong = httpx.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_id": web["client_id"],
            "client_secret": agent.apps["batch"]["client_secret"],
        },
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    unknown = httpx.post(
        url, data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"}
    )
    assert unknown.status_code == 401
    grant = httpx.post(url, data={"grant_type": "password", **web})
    assert grant.status_code == 400
    assert grant.json()["error"] == "unsupported_grant_type"
    missing = httpx.post(url, data={"grant_type": "client_credentials"})
    assert missing.status_code == 401
    assert missing.json()["error"] == "invalid_client"
    assert missing.headers["www-authenticate"].startswith("Basic ")
    no_grant = httpx.post(url, data=web)
    assert no_grant.status_code == 400
    assert no_grant.json()["error"] == "invalid_request"
    garbage = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert garbage.status_code == 400
    assert agent.events("token.denied")


def test_another_apps_path_is_403_and_recorded(agent: Daemon) -> None:
    response = agent.read("db/batch/key", agent.token("web"))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert BATCH_VALUE.decode() not in response.text
    assert {"app": "web", "path": "db/batch/key", "reason": "forbidden"} in agent.events(
        "secret.denied"
    )
    assert agent.read("db/batch/key", agent.token("batch")).status_code == 200


def test_unknown_secret_is_404(agent: Daemon) -> None:
    response = agent.read("db/web/nothing-here", agent.token("web"))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "target",
    [
        b"/v1/secrets/../../../../etc/passwd",
        b"/v1/secrets/db/web/../../../etc/passwd",
        b"/v1/secrets/db/web/..%2f..%2f..%2fetc%2fpasswd",
        b"/v1/secrets/db%2Fweb%2Fpassword",
        b"/v1/secrets/%2e%2e/%2e%2e/etc/passwd",
        b"/v1/secrets//etc/passwd",
        b"/v1/secrets/db/web/./password",
        b"/v1/secrets/db/web/pass%00word",
        b"/v1/secrets/db\\web\\password",
    ],
)
def test_path_traversal_never_reads_a_file(agent: Daemon, target: bytes) -> None:
    token = agent.token("web").encode()
    answer = agent.raw(
        b"GET "
        + target
        + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + token
        + b"\r\nConnection: close\r\n\r\n"
    )
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404), answer
    assert b'"error":"bad_path"' in answer or b'"error":"not_found"' in answer, answer
    assert b"root:" not in answer
    assert WEB_VALUE not in answer
    assert agent.events("secret.denied")[-1]["app"] == "web"


def test_oversized_body_is_413(agent: Daemon) -> None:
    response = httpx.post(
        f"{agent.url}/v1/oauth2/token",
        content=b"grant_type=client_credentials&" + b"x" * 100_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"y" * 1024

    chunked = httpx.post(f"{agent.url}/v1/oauth2/token", content=chunks())
    assert chunked.status_code == 413
    assert chunked.json()["error"] == "too_large"


def test_oversized_headers_are_400_with_a_code(agent: Daemon) -> None:
    answer = agent.raw(
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"error":"headers_too_large"' in answer
    # the server is still fine
    assert httpx.get(f"{agent.url}/v1/health").status_code == 200


def test_headers_trickling_past_the_parser_cap_are_400_with_a_code(agent: Daemon) -> None:
    import socket

    host, port = agent.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one segment per header
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(40):
                sock.sendall(b"X-Pad: " + b"b" * 1000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while chunk := _recv_or_reset(sock):  # the server closes after its answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"error":"bad_request"' in answer


def _recv_or_reset(sock: Any) -> bytes:
    """The next bytes, or ``b""`` at the end (a reset after the answer counts as the end)."""
    try:
        return bytes(sock.recv(65536))
    except ConnectionResetError:
        return b""


def test_health_and_metrics(agent: Daemon) -> None:
    health = httpx.get(f"{agent.url}/v1/health").json()
    assert health["status"] == "ok"
    assert health["stale"] is False
    assert health["secrets"] == 3
    assert isinstance(health["last_import"], int)
    assert 0 <= health["seconds_since_fresh_bundle"] < 600
    agent.read("db/batch/key", agent.token("web"))  # a 403 to count
    metrics = httpx.get(f"{agent.url}/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert "relay_bundles_applied_total 1.0" in text
    assert "relay_secrets 3.0" in text
    assert "relay_secrets_expiring_24h 0.0" in text
    assert "relay_seconds_since_fresh_bundle " in text
    assert 'relay_api_requests_total{status="200"}' in text
    assert 'relay_api_requests_total{status="403"}' in text
    assert "relay_agent_stale 0.0" in text
    assert WEB_VALUE.decode() not in text


def test_openapi_is_served(agent: Daemon) -> None:
    schema = httpx.get(f"{agent.url}/openapi.json").json()
    assert "/v1/oauth2/token" in schema["paths"]
    assert "/v1/secrets/{path}" in schema["paths"]
    assert "/v1/_bench/constant" not in schema["paths"]
    assert httpx.get(f"{agent.url}/v1/_bench/constant").status_code == 404


def test_removed_app_loses_its_live_tokens(agent: Daemon) -> None:
    control = agent.token("web")  # issued first: it expires first
    token = agent.token("gone")
    assert agent.read("db/web/password", token).status_code == 200
    result = run_relay("agent", "app", "rm", "--home", str(agent.pair.ag), "gone")
    assert result.status == 0, result.err
    response = agent.read("db/web/password", token)
    assert response.status_code == 401
    # The older token still works, so the 401 is the removal, not the short token lifetime.
    assert agent.read("db/web/password", control).status_code == 200
    # the same name registered again is a new registration: the old token stays dead (tokens
    # live an hour here, so only the binding to the registration can explain the 401)
    added = run_relay(
        "agent", "app", "add", "--home", str(agent.pair.ag), "gone", "--allow", "db/web/*"
    )
    assert added.status == 0, added.err
    revived = agent.read("db/web/password", token)
    assert revived.status_code == 401
    assert revived.json()["error"] == "unauthorized"
    assert revived.headers["www-authenticate"].startswith("Bearer ")


def test_nothing_planted_is_in_the_home_outside_the_store(agent: Daemon) -> None:
    for path in Path(agent.pair.ag).rglob("*"):
        if path.is_file() and not path.name.startswith("store.db"):
            assert WEB_VALUE not in path.read_bytes()


def test_a_secret_with_a_ttl_is_counted_as_expiring(agent: Daemon) -> None:
    """Its expiry (410) on a clock: tests/test_agent_service_clock.py."""
    applied = len(agent.events("bundle.applied"))
    agent.pair.put("db/web/short", b"short-lived", "--ttl", "1h")
    before = set(agent.pair.out.glob("*.bundle"))
    agent.pair.export()
    (bundle,) = set(agent.pair.out.glob("*.bundle")) - before
    agent.drop(bundle)
    agent.wait_event("bundle.applied", count=applied + 1)
    assert "relay_secrets_expiring_24h 1.0" in httpx.get(f"{agent.url}/metrics").text
    response = agent.read("db/web/short", agent.token("web"))
    assert response.status_code == 200
    assert response.json()["expires_at"] is not None


def test_event_driven_apply_without_rescans(agent: Daemon) -> None:
    """This daemon rescans every 30 s (the default): only file events can make this quick."""
    value = f"PLANTED-event-{os.urandom(8).hex()}".encode()
    agent.drop(agent.publish({"db/web/event": value}))
    assert agent.wait_value("db/web/event", value, within=2.0) < 2.0


def test_service_events_reach_the_audit_chain(agent: Daemon) -> None:
    agent.read("db/web/password", agent.token("web"))
    agent.read("db/batch/key", agent.token("web"))
    wanted = {"agent.started", "bundle.applied", "token.issued", "secret.read", "secret.denied"}

    def chained() -> tuple[Any, list[dict[str, Any]]] | None:
        result = run_relay("agent", "audit", "--home", str(agent.pair.ag), "--json")
        assert result.status == 0, result.err
        records = [json.loads(line) for line in result.out.splitlines() if line.strip()]
        return (result, records) if wanted <= {r["type"] for r in records} else None

    result, records = agent.wait_until(chained, what="the events in the audit chain")
    reads = [r["fields"] for r in records if r["type"] == "secret.read"]
    assert {"app": "web", "path": "db/web/password", "version": 1} in reads
    denied = [r["fields"] for r in records if r["type"] == "secret.denied"]
    assert {"app": "web", "path": "db/batch/key", "reason": "forbidden"} in denied
    assert [r["seq"] for r in records] == list(range(records[0]["seq"], records[-1]["seq"] + 1))
    for before, after in itertools.pairwise(records):
        assert after["prev_hash"] == before["hash"]  # one chain, written in batches
    for value in (WEB_VALUE, BATCH_VALUE):
        assert value.decode() not in result.out


def test_wrong_method_is_405_json_with_allow(agent: Daemon) -> None:
    response = httpx.post(f"{agent.url}/v1/secrets/db/web/password", content=b"")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response.headers["allow"] == "GET"  # RFC 9110 §15.5.6
    token = httpx.get(f"{agent.url}/v1/oauth2/token")
    assert token.status_code == 405
    assert token.headers["allow"] == "POST"
    assert httpx.get(f"{agent.url}/v1/nothing").json()["error"] == "not_found"


def test_a_flood_of_wrong_secrets_is_throttled_without_locking_out_others(agent: Daemon) -> None:
    url = f"{agent.url}/v1/oauth2/token"
    added = run_relay(
        "agent",
        "app",
        "add",
        "--home",
        str(agent.pair.ag),
        "flood",
        "--allow",
        "db/flood/*",
        "--json",
    )
    assert added.status == 0, added.err
    flood = json.loads(added.out)
    wrong = {
        "grant_type": "client_credentials",
        "client_id": flood["client_id"],
        "client_secret": "rs_wrong",
    }
    denied_before = len(agent.events("token.denied"))
    first_interval = _denial_interval()
    statuses = [httpx.post(url, data=wrong).status_code for _ in range(40)]
    intervals = _denial_interval() - first_interval + 1  # 2 if the flood crossed an interval's end
    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}  # further failures: no record each
    throttled = httpx.post(url, data=wrong)
    assert throttled.json()["error"] == "too_many_requests"
    assert throttled.headers["retry-after"] == "60"
    right = httpx.post(url, data={"grant_type": "client_credentials", **flood})
    assert right.status_code == 200  # the right secret is never refused
    assert right.json()["access_token"]
    other = httpx.post(url, data={"grant_type": "client_credentials", **agent.apps["batch"]})
    assert other.status_code == 200
    # aggregated: at most one sample per interval, never a record per failure
    assert len(agent.events("token.denied")) - denied_before <= intervals


def _denial_interval() -> int:
    """The agent's denial interval now: its aggregator numbers intervals on CLOCK_MONOTONIC,
    which this process reads too (inner_agent/denials.py)."""
    import time

    from inner_agent.denials import INTERVAL

    return int(time.monotonic() // INTERVAL)


def test_a_standard_oauth2_client_at_its_defaults_gets_a_token(agent: Daemon) -> None:
    """authlib's client uses client_secret_basic unless told otherwise (RFC 6749 §2.3.1)."""
    from authlib.integrations.httpx_client import OAuth2Client

    creds = agent.apps["web"]
    with OAuth2Client(creds["client_id"], creds["client_secret"]) as client:
        assert client.token_endpoint_auth_method == "client_secret_basic"
        token = client.fetch_token(f"{agent.url}/v1/oauth2/token", grant_type="client_credentials")
        assert token["token_type"] == "Bearer"
        response = client.get(f"{agent.url}/v1/secrets/db/web/password")
    assert response.status_code == 200
    assert response.json()["value"] == WEB_VALUE.decode()


def test_basic_credentials_are_form_urlencoded_and_checked(agent: Daemon) -> None:
    url = f"{agent.url}/v1/oauth2/token"
    web = agent.apps["web"]
    grant = {"grant_type": "client_credentials"}
    ok = httpx.post(url, data=grant, auth=(web["client_id"], web["client_secret"]))
    assert ok.status_code == 200
    wrong = httpx.post(url, data=grant, auth=(web["client_id"], "rs_wrong"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"] == 'Basic realm="relay"'
    for header in ("Basic !!!not-base64", "Basic " + base64.b64encode(b"no-colon").decode()):
        bad = httpx.post(url, data=grant, headers={"Authorization": header})
        assert bad.status_code == 401
        assert bad.json()["error"] == "invalid_client"
    both = httpx.post(url, data={**grant, **web}, auth=(web["client_id"], web["client_secret"]))
    assert both.status_code == 400
    assert both.json()["error"] == "invalid_request"
    twice = httpx.post(
        url,
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={"content-type": "application/x-www-form-urlencoded"},
        auth=(web["client_id"], web["client_secret"]),
    )
    assert twice.status_code == 400
    assert twice.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 4000 + b"]" * 4000,
        b'{"grant_type":' + b'{"a":' * 1200 + b"1" + b"}" * 1200 + b"}",
        b'{"grant_type": "client_credentials", "client_id": [[[[[[[[[[]]]]]]]]]]}',
        b"{not json",
        b"[]",
    ],
    ids=["deep-list", "deep-object", "nested-field", "malformed", "not-an-object"],
)
def test_malformed_or_deeply_nested_json_is_400(agent: Daemon, content: bytes) -> None:
    response = httpx.post(
        f"{agent.url}/v1/oauth2/token",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (400, 401), response.text
    expected = "invalid_client" if b"client_id" in content else "invalid_request"
    assert response.json()["error"] == expected
    assert "Traceback" not in agent.log()


def test_swapped_credentials_are_never_logged_audited_or_echoed(agent: Daemon) -> None:
    planted = f"rs_PLANTED-swapped-{os.urandom(12).hex()}"
    url = f"{agent.url}/v1/oauth2/token"
    web = agent.apps["web"]
    answers = [
        httpx.post(
            url,
            data={
                "grant_type": "client_credentials",
                "client_id": planted,
                "client_secret": web["client_id"],
            },
        ),
        httpx.post(url, data={"grant_type": "client_credentials"}, auth=(planted, "x")),
        httpx.post(
            url,
            json={"grant_type": "client_credentials", "client_id": planted, "client_secret": "x"},
        ),
    ]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_client"
        assert planted not in answer.text
        assert planted not in str(answer.headers)
    for denied in agent.events("token.denied"):  # a sample names a client id or nothing
        assert denied["client_id"] is None or denied["client_id"].startswith("app-")
    audit = run_relay("agent", "audit", "--home", str(agent.pair.ag), "--json")
    assert audit.status == 0
    assert planted not in audit.out
    assert planted not in agent.log()
    for path in Path(agent.pair.ag).rglob("*"):
        if path.is_file() and not path.name.startswith("store.db"):
            assert planted.encode() not in path.read_bytes()


def test_app_add_and_rm_are_audited_without_the_secret(agent: Daemon) -> None:
    home = str(agent.pair.ag)
    added = run_relay("agent", "app", "add", "--home", home, "audited", "--allow", "x/*", "--json")
    assert added.status == 0, added.err
    doc = json.loads(added.out)
    assert run_relay("agent", "app", "rm", "--home", home, "audited").status == 0
    result = run_relay("agent", "audit", "--home", home, "--json")
    records = [json.loads(line) for line in result.out.splitlines() if line.strip()]
    changes = [r for r in records if r["type"] in ("app.added", "app.removed")]
    mine = [r for r in changes if r["fields"]["app"] == "audited"]
    assert [r["type"] for r in mine] == ["app.added", "app.removed"]
    for record in mine:
        assert record["fields"]["client_id"] == doc["client_id"]
        assert record["fields"]["uid"] == os.getuid()
    assert mine[0]["fields"]["allow"] == "x/*"
    assert doc["client_secret"] not in result.out
