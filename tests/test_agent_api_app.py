"""The local API application in process (``inner_agent.api``): the ASGI app over a real service
and store, driven by an in-memory HTTP client. The running server (`relay agent run`) is
tested in tests/test_agent_api.py; here every branch of the app and its guard, fast."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from inner_agent import events
from inner_agent.api import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    PEER_UID_KEY,
    create_app,
)
from inner_agent.service import AgentService
from inner_agent.service_config import ServiceSettings
from inner_agent.store import AgentStore
from relay import codes
from relay.home import Home
from tests.conftest import make_pair, run_relay

with warnings.catch_warnings():  # starlette asks for httpx2; the httpx client still works
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

VALUE = b"api-app-value"
BINARY = b"\xff\x00\xfe"


@dataclass
class Api:
    client: TestClient
    service: AgentService
    creds: dict[str, str]
    recorded: list[tuple[str, dict[str, object]]]

    def token(self) -> str:
        response = self.client.post(
            "/v1/oauth2/token", data={"grant_type": "client_credentials", **self.creds}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def get(self, path: str, token: str | None = None) -> tuple[int, dict[str, object]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.client.get(path, headers=headers)
        return response.status_code, response.json()


def with_peer_uid(app: ASGIApp, uid: int) -> ASGIApp:
    """What the unix-socket server does: the peer's uid in the scope."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, PEER_UID_KEY: uid}, receive, send)

    return call


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    pair = make_pair(tmp_path_factory.mktemp("api-app"))
    assert pair.gateway("grant", "plant7", "**").status == 0
    pair.put("db/web/password", VALUE)
    pair.put("db/web/binary", BINARY)
    pair.put("db/other/key", b"other")
    pair.export()
    assert pair.agent("import", str(pair.out)).status == 0
    assert pair.agent("config", "set", "api.allowed_uids", "1000").status == 0
    added = run_relay(
        "agent", "app", "add", "--home", str(pair.ag), "web", "--allow", "db/web/*", "--json"
    )
    doc = json.loads(added.out)
    home = Home.open(pair.ag, "agent")
    store = AgentStore.open(home)
    recorded: list[tuple[str, dict[str, object]]] = []
    events.set_sink(lambda kind, fields: recorded.append((kind, dict(fields))))
    service = AgentService(store, home.store_path, ServiceSettings.from_config(home.config))
    try:
        with TestClient(create_app(service), base_url="http://127.0.0.1") as client:
            creds = {"client_id": doc["client_id"], "client_secret": doc["client_secret"]}
            yield Api(client, service, creds, recorded)
    finally:
        events.set_sink(None)
        store.close()


def test_a_token_reads_a_granted_secret_and_nothing_is_cached(api: Api) -> None:
    response = api.client.get(
        "/v1/secrets/db/web/password", headers={"Authorization": f"Bearer {api.token()}"}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body == {
        "path": "db/web/password",
        "value": VALUE.decode(),
        "encoding": "utf-8",
        "version": body["version"],
        "expires_at": None,
    }


def test_bytes_that_are_not_utf8_come_as_base64(api: Api) -> None:
    status, body = api.get("/v1/secrets/db/web/binary", api.token())
    assert status == 200
    assert (body["encoding"], base64.b64decode(str(body["value"]))) == ("base64", BINARY)


def test_http_basic_client_authentication_is_accepted(api: Api) -> None:
    basic = base64.b64encode(f"{api.creds['client_id']}:{api.creds['client_secret']}".encode())
    response = api.client.post(
        "/v1/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic.decode()}"},
    )
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/secrets/db/other/key", 403, codes.FORBIDDEN),
        ("/v1/secrets/db/web/absent", 404, codes.NOT_FOUND),
        ("/v1/secrets/db/web/password?version=oldest", 400, codes.BAD_VERSION),
        ("/v1/secrets/db/web%2Fpassword", 400, codes.BAD_PATH),
    ],
)
def test_refusals_carry_their_reason_code(api: Api, path: str, status: int, code: str) -> None:
    got, body = api.get(path, api.token())
    assert (got, body["error"]) == (status, code)


def test_no_or_a_bad_token_is_401_with_a_bearer_challenge(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        response = api.client.get("/v1/secrets/db/web/password", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == codes.UNAUTHORIZED
        assert response.headers["www-authenticate"] == 'Bearer realm="relay"'


def test_wrong_client_credentials_are_invalid_client_with_a_basic_challenge(api: Api) -> None:
    response = api.client.post(
        "/v1/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": api.creds["client_id"],
            "client_secret": "rs_wrong",
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] == codes.INVALID_CLIENT
    assert response.headers["www-authenticate"] == 'Basic realm="relay"'


def test_unknown_routes_and_methods(api: Api) -> None:
    status, body = api.get("/v2/nothing")
    assert (status, body["error"]) == (404, codes.NOT_FOUND)
    response = api.client.delete("/v1/health")
    assert response.status_code == 405
    assert response.json()["error"] == codes.METHOD_NOT_ALLOWED
    assert response.headers["allow"] == "GET"


def test_a_malformed_or_deeply_nested_body_is_invalid_request(api: Api) -> None:
    for body in (b"{", b"[" * 4000 + b"]" * 4000):  # under the body cap, over the nesting one
        response = api.client.post(
            "/v1/oauth2/token", content=body, headers={"content-type": "application/json"}
        )
        assert (response.status_code, response.json()["error"]) == (400, codes.INVALID_REQUEST)


def test_bodies_and_headers_over_their_caps_are_refused_before_the_app(api: Api) -> None:
    response = api.client.post("/v1/oauth2/token", content=b"x" * (MAX_BODY_BYTES + 1))
    assert (response.status_code, response.json()["error"]) == (413, codes.TOO_LARGE)
    response = api.client.get("/v1/health", headers={"x-big": "a" * MAX_HEADER_BYTES})
    assert (response.status_code, response.json()["error"]) == (400, codes.HEADERS_TOO_LARGE)


def test_health_and_metrics(api: Api) -> None:
    status, body = api.get("/v1/health")
    assert status == 200
    assert body["secrets"] == 3
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert "relay_api_requests_total" in response.text


def test_a_peer_uid_not_allowed_on_the_socket_is_forbidden_and_noted(api: Api) -> None:
    guarded = create_app(api.service)
    with TestClient(with_peer_uid(guarded, 4242), base_url="http://127.0.0.1") as client:
        response = client.get("/v1/health")
    assert (response.status_code, response.json()["error"]) == (403, codes.FORBIDDEN)
    with TestClient(with_peer_uid(guarded, 1000), base_url="http://127.0.0.1") as client:
        assert client.get("/v1/health").status_code == 200


def test_the_served_schema_is_the_documents(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    assert "/v1/oauth2/token" in schema["paths"]
    assert "/v1/_bench/constant" not in schema["paths"]
