"""``relay agent run`` serves labelled versions over the API and switches a pre-staged successor
on time with no new bundle (served values and audit switch; ``secret.activated`` is recorded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.agent_daemon import start_daemon
from tests.conftest import run_relay

pytestmark = pytest.mark.slow  # starts `relay agent run`

OLD = f"PLANTED-svc-old-{os.urandom(6).hex()}".encode()
NEW = f"PLANTED-svc-new-{os.urandom(6).hex()}".encode()
PATH = "db/web/password"


def test_api_versions_and_the_switch_without_a_bundle(tmp_path: Path) -> None:
    # Little leeway: with the default agent.clock_skew (5m) a successor due in seconds is
    # current at once (the switch is judged at activates_at - clock_skew). The reads of the
    # staged state must come before the switch (9 s after the put): an export, an import and a
    # few requests, which take a second or two on a loaded machine (4 s left too little).
    settings = {"agent.clock_skew": "1s"}
    daemon = start_daemon(tmp_path, settings, apps={"web": ["db/web/*"]})
    try:
        daemon.pair.put(PATH, OLD)
        staged = run_relay(
            "gateway", "secret", "put", "--home", str(daemon.pair.gw), PATH, "-",
            "--activates-at", "10s", stdin=NEW,
        )  # fmt: skip
        assert staged.status == 0, staged.err
        before = set(daemon.pair.out.glob("*.bundle")) if daemon.pair.out.exists() else set()
        daemon.pair.export()
        (bundle,) = set(daemon.pair.out.glob("*.bundle")) - before
        daemon.drop(bundle)
        daemon.wait_event("bundle.applied")
        token = daemon.token("web")
        with daemon.client() as client:
            auth = {"Authorization": f"Bearer {token}"}
            current = client.get(f"/v1/secrets/{PATH}", headers=auth).json()
            pending = client.get(f"/v1/secrets/{PATH}?version=pending", headers=auth).json()
            bad = client.get(f"/v1/secrets/{PATH}?version=next", headers=auth)
            none = client.get(f"/v1/secrets/{PATH}?version=previous", headers=auth)
        switched = daemon.notified_events("secret.activated")
        assert (current["value"], current["version"]) == (OLD.decode(), 1), switched
        assert (pending["value"], pending["version"]) == (NEW.decode(), 2)
        assert (bad.status_code, bad.json()["error"]) == (400, "bad_version")
        assert (none.status_code, none.json()["error"]) == (404, "not_found")
        daemon.wait_event("secret.activated")
        assert daemon.events("secret.activated")[0]["version"] == 2
        daemon.wait_value(PATH, NEW, within=30)
        with daemon.client() as client:
            previous = client.get(
                f"/v1/secrets/{PATH}?version=previous", headers={"Authorization": f"Bearer {token}"}
            ).json()
        assert (previous["value"], previous["version"]) == (OLD.decode(), 1)
        reads = daemon.events("secret.read")
        assert {"app": "web", "path": PATH, "version": 2} in reads
    finally:
        daemon.stop()
    log = daemon.log().encode()
    assert OLD not in log and NEW not in log
