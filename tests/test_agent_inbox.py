"""The watched inbox of a real ``relay agent run``: complete files only, once each, quickly,
never following links, atomically under load and across SIGTERM."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inner_agent.rawdb import raw_connection
from inner_agent.store import AgentStore
from relay.home import Home
from tests.agent_daemon import Daemon, start_daemon
from tests.forge import forge, secrets_payload


def planted(tag: str) -> bytes:
    return f"PLANTED-{tag}-{os.urandom(8).hex()}".encode()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("inbox")
    inboxes = f"{root / 'inbox'},{root / 'mounted-later'}"
    daemon = start_daemon(
        root, {"agent.rescan_every": "1s", "agent.inbox": inboxes}, apps={"web": ["**"]}
    )
    yield daemon
    daemon.stop()
    assert "PLANTED-" not in daemon.log()


def quarantined(daemon: Daemon) -> list[Path]:
    folder = daemon.pair.ag / "quarantine"
    return sorted(folder.iterdir()) if folder.exists() else []


def wait_value(daemon: Daemon, path: str, value: bytes, within: float) -> float:
    return daemon.wait_value(path, value, within)


def test_secret_readable_within_two_seconds_of_the_file_landing(agent: Daemon) -> None:
    value = planted("fast")
    bundle = agent.publish({"db/fast": value})
    agent.drop(bundle)
    assert wait_value(agent, "db/fast", value, within=2.0) < 2.0


def test_slow_copy_is_applied_once_and_never_quarantined(agent: Daemon) -> None:
    value = planted("slow")
    data = agent.publish({"db/slow": value}).read_bytes()
    target = agent.inbox / "slow-copy.bundle"
    pieces = [data[i : i + max(1, len(data) // 8)] for i in range(0, len(data), len(data) // 8)]
    with target.open("wb") as out:
        for index, piece in enumerate(pieces):
            out.write(piece)
            out.flush()
            os.fsync(out.fileno())
            # an inbox pass after each piece; two after the fourth: one began with it in place
            agent.wait_scans(2 if index == 3 else 1)
    wait_value(agent, "db/slow", value, within=2.0)
    agent.wait_scans(2)  # a rescan or two
    applied = [e for e in agent.events("bundle.applied") if e["file"] == target.name]
    assert len(applied) == 1
    assert not [e for e in agent.events("bundle.rejected") if e["file"] == target.name]
    assert quarantined(agent) == []


def test_a_partial_file_that_disappears_leaves_nothing(agent: Daemon) -> None:
    value = planted("yanked")
    data = agent.publish({"db/yanked": value}).read_bytes()
    target = agent.inbox / "yanked.bundle"
    target.write_bytes(data[: len(data) // 2])
    agent.wait_log("waiting for the rest of yanked.bundle")
    target.unlink()
    agent.wait_scans(2)
    assert not [e for e in agent.events("bundle.rejected") if e["file"] == target.name]
    assert not [e for e in agent.events("bundle.applied") if e["file"] == target.name]
    assert quarantined(agent) == []
    response = agent.read("db/yanked", agent.token())
    assert response.status_code == 404


def test_links_fifos_and_devices_are_refused_unread(agent: Daemon, tmp_path: Path) -> None:
    sensitive = tmp_path / "shadow"
    marker = planted("sensitive")
    sensitive.write_bytes(marker)
    before = agent.notified_events("bundle.rejected")
    (agent.inbox / "link.bundle").symlink_to(sensitive)
    (agent.inbox / "dangling.bundle").symlink_to(tmp_path / "nowhere")
    os.mkfifo(agent.inbox / "pipe.bundle")
    names = ["link.bundle", "dangling.bundle", "pipe.bundle"]
    try:
        os.mknod(agent.inbox / "null.bundle", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        names.append("null.bundle")
    except PermissionError:
        pass  # no CAP_MKNOD here: links and FIFOs still cover the path
    (agent.inbox / "dir.bundle").mkdir()
    names.append("dir.bundle")
    agent.wait_event("bundle.rejected", before + len(names))
    agent.wait_scans(2)  # two more passes: still one rejection per file
    for name in names:
        rejected = [e for e in agent.events("bundle.rejected") if e["file"] == name]
        assert len(rejected) == 1
        assert rejected[0]["reason"] == "not_regular_file"
        assert rejected[0]["quarantined"] is None
    for path in agent.pair.ag.rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes()
    assert marker.decode() not in agent.log()
    # the inbox still works: a FIFO never blocked the worker
    value = planted("after")
    agent.drop(agent.publish({"db/after-links": value}))
    wait_value(agent, "db/after-links", value, within=2.0)
    for name in names:
        path = agent.inbox / name
        path.rmdir() if name == "dir.bundle" else path.unlink()


def test_a_folder_that_appears_later_is_watched(agent: Daemon) -> None:
    later = agent.inbox.parent / "mounted-later"
    assert not later.exists()
    later.mkdir(mode=0o700)
    agent.wait_scans(2)  # the rescan job re-arms the watches, then pokes a pass
    value = planted("later")
    bundle = agent.publish({"db/later": value})
    temp = later / f".{bundle.name}.part"
    temp.write_bytes(bundle.read_bytes())
    temp.rename(later / bundle.name)
    wait_value(agent, "db/later", value, within=2.0)


def test_bundle_dropped_during_a_request_storm_is_never_torn(agent: Daemon) -> None:
    old, new = planted("old"), planted("new")
    agent.drop(agent.publish({"db/storm": old}))
    wait_value(agent, "db/storm", old, within=2.0)
    token = agent.token()
    seen: list[list[tuple[int, str]]] = [[] for _ in range(4)]
    stop = threading.Event()
    progress = threading.Condition()

    def hammer(out: list[tuple[int, str]]) -> None:
        with httpx.Client(base_url=agent.url, timeout=10) as client:
            while not stop.is_set():
                r = client.get("/v1/secrets/db/storm", headers={"Authorization": f"Bearer {token}"})
                with progress:
                    out.append((r.status_code, r.json().get("value", r.text)))
                    progress.notify_all()

    def after_new(results: list[tuple[int, str]]) -> int:
        values = [v for _, v in results]
        return len(values) - values.index(new.decode()) if new.decode() in values else 0

    threads = [threading.Thread(target=hammer, args=(s,)) for s in seen]
    for t in threads:
        t.start()
    with progress:  # every thread is reading before the new bundle lands
        assert progress.wait_for(lambda: all(len(s) >= 3 for s in seen), 30), agent.log()
    agent.drop(agent.publish({"db/storm": new}))
    with progress:  # every thread saw the new value, and kept reading it for a while
        assert progress.wait_for(lambda: all(after_new(s) >= 5 for s in seen), 30), agent.log()
    stop.set()
    for t in threads:
        t.join()
    for results in seen:
        assert results
        assert {status for status, _ in results} == {200}
        values = [v for _, v in results]
        assert set(values) <= {old.decode(), new.decode()}
        first_new = values.index(new.decode())
        assert old.decode() not in values[first_new:]  # never back to the old value


def store_state(home: Home) -> tuple[bool, int]:
    """(a writer holds the store's write lock, bulk rows visible to other readers), read from
    outside the agent: an import holds the lock for its whole transaction and its rows stay
    invisible until it commits."""
    import sqlcipher3

    with raw_connection(home) as conn:
        rows = conn.execute("SELECT count(*) FROM secrets WHERE path LIKE 'bulk/%'").fetchone()[0]
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlcipher3.OperationalError:
            return True, int(rows)
        conn.execute("ROLLBACK")
        return False, int(rows)


def test_sigterm_during_an_import_applies_all_or_nothing_and_exits_0(agent: Daemon) -> None:
    values = {f"bulk/s{i:05d}": os.urandom(16).hex().encode() for i in range(20000)}
    data = forge(agent.pair.gw, agent.pair.ag, secrets_payload(values), seq=10_000)
    home = Home.open(agent.pair.ag, "agent")
    temp = agent.inbox / ".bulk.part"
    temp.write_bytes(data)
    temp.rename(agent.inbox / "bulk.bundle")
    # The import has begun: the write lock is held across several probes (an audit write holds
    # it for a moment only) and none of its rows is committed yet.
    held = 0
    deadline = time.monotonic() + 30
    while held < 3:
        assert time.monotonic() < deadline, agent.log()
        locked, rows = store_state(home)
        assert rows == 0, "the import finished before the signal could land in it"
        held = held + 1 if locked else 0
    started = time.monotonic()
    agent.proc.send_signal(signal.SIGTERM)
    _, rows = store_state(home)
    assert rows == 0, "the import committed before the signal was sent"  # so: mid-import
    assert agent.proc.wait(timeout=15) == 0, agent.log()
    assert time.monotonic() - started < 10  # join budgets (4 s) plus slack on a loaded machine
    assert "Traceback" not in agent.log()
    store = AgentStore.open(home)
    try:
        bulk = [s for s in store.list_secrets() if s.path.startswith("bulk/")]
        applied = store.high_water(Home.open(agent.pair.gw, "gateway").identity.key_id, "secrets")
    finally:
        store.close()
    assert len(bulk) in (0, len(values))
    assert applied is not None
    assert (applied.seq == 10_000) == (len(bulk) == len(values))
    assert "agent.stopped" in agent.log()
