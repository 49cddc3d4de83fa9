"""Applications registered with the agent: ``inner_agent.apps`` over a real agent store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inner_agent.apps import (
    CLIENT_ID,
    SECRET_PREFIX,
    Credentials,
    add_app,
    authenticate,
    hash_secret,
    list_apps,
    looks_like_client_id,
    remove_app,
)
from inner_agent.store import AgentStore
from relay.codes import APP_EXISTS, BAD_NAME, BAD_PATTERN, NOT_FOUND, USAGE_CODE
from relay.errors import UsageError
from tests.agent_home import init_agent_home


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AgentStore]:
    opened = AgentStore.open(init_agent_home(tmp_path))
    yield opened
    opened.close()


def test_a_registration_gives_a_fresh_client_id_and_a_secret_shown_once(store: AgentStore) -> None:
    creds = add_app(store, "web", ["db/web/*", "db/web/*", "db/shared/**"], now=100)
    assert CLIENT_ID.fullmatch(creds.client_id)
    assert creds.client_secret.startswith(SECRET_PREFIX)
    assert creds.client_secret not in repr(creds)
    (app,) = list_apps(store)
    assert (app.name, app.client_id, app.created_at) == ("web", creds.client_id, 100)
    assert app.patterns == ("db/shared/**", "db/web/*")  # sorted, once each
    assert app.may_read("db/web/password")
    assert app.may_read("db/shared/a/b")
    assert not app.may_read("db/web/a/b")
    assert not app.may_read("db/other")


def test_only_the_right_secret_authenticates(store: AgentStore) -> None:
    creds = add_app(store, "web", ["db/web/*"], now=1)
    app = authenticate(store, creds.client_id, creds.client_secret)
    assert app is not None and app.name == "web"
    assert authenticate(store, creds.client_id, creds.client_secret + "x") is None
    assert authenticate(store, "app-" + "0" * 24, creds.client_secret) is None
    assert authenticate(store, creds.client_secret, creds.client_id) is None  # swapped


def test_a_name_registered_again_is_a_new_registration(store: AgentStore) -> None:
    first = add_app(store, "web", ["db/web/*"], now=1)
    with pytest.raises(UsageError) as refused:
        add_app(store, "web", ["db/**"], now=2)
    assert refused.value.code == APP_EXISTS
    assert remove_app(store, "web") == first.client_id
    assert authenticate(store, first.client_id, first.client_secret) is None  # at once
    second = add_app(store, "web", ["db/web/*"], now=3)
    assert second.client_id != first.client_id
    assert authenticate(store, first.client_id, first.client_secret) is None


def test_removing_an_unknown_app_is_not_found(store: AgentStore) -> None:
    with pytest.raises(UsageError) as refused:
        remove_app(store, "ghost")
    assert refused.value.code == NOT_FOUND
    assert list_apps(store) == []


@pytest.mark.parametrize(
    ("name", "patterns", "code"),
    [
        ("web", [], USAGE_CODE),
        ("../web", ["db/*"], BAD_NAME),
        ("web", ["/etc/**"], BAD_PATTERN),
    ],
)
def test_bad_registrations_change_nothing(
    store: AgentStore, name: str, patterns: list[str], code: str
) -> None:
    with pytest.raises(UsageError) as refused:
        add_app(store, name, patterns, now=1)
    assert refused.value.code == code
    assert list_apps(store) == []


def test_only_client_id_shaped_values_may_be_logged() -> None:
    creds = Credentials("app-" + "a" * 24, SECRET_PREFIX + "x" * 43)
    assert looks_like_client_id(creds.client_id)
    assert not looks_like_client_id(creds.client_secret)
    assert not looks_like_client_id("app-" + "A" * 24)
    assert not looks_like_client_id("app-" + "a" * 24 + "\n")
    assert hash_secret("s") == hash_secret("s") != hash_secret("t")
    assert len(hash_secret("s")) == 32
