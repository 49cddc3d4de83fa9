"""The world a crash run works on: a gateway and an agent home, a model of what each exported
bundle must leave in the agent's store, and the checks made after every kill.

Everything is read back from the real SQLCipher files through the stores' own APIs, in this
process, only while no ``relay`` process of the run is alive (never a mock, never a copy).
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from inner_agent.audit import AgentAudit
from inner_agent.store import AgentStore
from outer_gateway.audit import GatewayAudit
from outer_gateway.store import GatewayStore
from relay.audit.chain import AuditRecord, verify_chain
from relay.bundle.envelope import parse_envelope
from relay.home import Home
from relay.transport.folder import _TEMP_NAME as TEMP_NAME
from tests.conftest import Pair, make_pair

AGENT = "plant7"
VALUE_BYTES = 48


class CrashCheckFailed(AssertionError):
    """An invariant did not hold after a kill (the message says which, and where)."""


@dataclass(frozen=True)
class Exported:
    """One complete bundle file the gateway wrote: its seq, id, and a copy kept by the run."""

    seq: int
    bundle_id: str
    copy: Path


@dataclass
class World:
    """A gateway/agent pair, the gateway's current secrets, and what was exported so far."""

    pair: Pair
    rng: random.Random
    secrets: dict[str, str] = field(default_factory=dict)
    model: dict[int, dict[str, str]] = field(default_factory=dict)  # seq -> expected state
    seen: dict[int, str] = field(default_factory=dict)  # seq -> bundle id, across every kill
    exported: list[Exported] = field(default_factory=list)  # complete bundles, seq order
    applied: list[Exported] = field(default_factory=list)  # applied to the agent, in order
    serial: int = 0
    temps_left: int = 0

    @property
    def out(self) -> Path:
        return self.pair.out

    @property
    def archive(self) -> Path:
        return self.pair.root / "archive"

    # -- the gateway's secrets ---------------------------------------------------------------

    def fill(self, count: int) -> None:
        """Put ``count`` secrets on the gateway and grant them all to the agent."""
        self.secrets = {f"app{i % 37}/svc{i}/password": self._value() for i in range(count)}
        self._import(self.secrets)
        assert self.pair.gateway("grant", AGENT, "**").status == 0

    def mutate(self) -> None:
        """Change about 5% of the values, add a few paths and remove a few, so every bundle's
        full state differs from the one before (a half-applied store would show)."""
        paths = sorted(self.secrets)
        changed = {p: self._value() for p in self.rng.sample(paths, max(1, len(paths) // 20))}
        self.serial += 1
        for i in range(5):
            changed[f"new{self.serial}/item{i}/token"] = self._value()
        self._import(changed)
        self.secrets.update(changed)
        for path in self.rng.sample(sorted(self.secrets), 3):
            assert self.pair.gateway("secret", "rm", path).status == 0
            del self.secrets[path]

    def _value(self) -> str:
        return "".join(
            self.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8)
        ) * (VALUE_BYTES // 8)

    def _import(self, values: dict[str, str]) -> None:
        source = self.pair.root / "secrets.json"
        source.write_text(json.dumps(values))
        result = self.pair.gateway("secret", "import", str(source))
        assert result.status == 0, result.err
        source.unlink()

    # -- the gateway's exports ---------------------------------------------------------------

    def collect_exports(self, where: str) -> list[Exported]:
        """Check the export folder and the gateway's store after a kill, then move every new
        complete bundle into the archive (the agent's queue)."""
        self.archive.mkdir(exist_ok=True)
        hidden = [p.name for p in self.out.glob(".*")] if self.out.exists() else []
        strays = [name for name in hidden if not TEMP_NAME.fullmatch(name)]
        if strays:
            raise CrashCheckFailed(f"{where}: unexpected hidden files in the export: {strays}")
        self.temps_left = len(hidden)  # a kill before the rename: hidden, swept when stale
        records = self.gateway_records(where)
        exported = {int(r.fields["bundle_seq"]): str(r.fields["bundle_hash"]) for r in records}
        new = []
        for path in sorted(self.out.glob("*.bundle")) if self.out.exists() else []:
            data = path.read_bytes()
            try:
                envelope = parse_envelope(data)
            except Exception as exc:
                raise CrashCheckFailed(
                    f"{where}: {path.name} is visible but not whole: {exc}"
                ) from None
            seq, bundle_id = envelope.header.seq, envelope.bundle_id
            if self.seen.setdefault(seq, bundle_id) != bundle_id:
                raise CrashCheckFailed(f"{where}: seq {seq} was used for two different bundles")
            if exported.get(seq) != bundle_id:
                raise CrashCheckFailed(f"{where}: {path.name} has no bundle.exported record")
            copy = self.archive / path.name
            shutil.move(path, copy)
            self.model[seq] = dict(self.secrets)
            new.append(Exported(seq, bundle_id, copy))
        self.exported.extend(new)
        self.exported.sort(key=lambda e: e.seq)
        return new

    def gateway_records(self, where: str) -> list[AuditRecord]:
        """The gateway's ``bundle.exported`` records, after checking its chain and that no seq
        was recorded twice or beyond the store's committed seq."""
        home = Home.open(self.pair.gw, "gateway")
        store = GatewayStore.open(home)
        try:
            records = GatewayAudit(home, store.engine).own_records()
            last_seq = store.agent(AGENT).last_seq
        finally:
            store.close()
        _check_chain(records, f"{where}: gateway")
        exported = [r for r in records if r.type == "bundle.exported"]
        seqs = Counter(int(r.fields["bundle_seq"]) for r in exported)
        twice = sorted(seq for seq, n in seqs.items() if n > 1)
        if twice:
            raise CrashCheckFailed(f"{where}: seqs {twice} recorded for more than one bundle")
        if seqs and max(seqs) > last_seq:
            raise CrashCheckFailed(f"{where}: a recorded seq is above the committed {last_seq}")
        return exported

    # -- the agent's store -------------------------------------------------------------------

    def pending(self) -> Exported | None:
        """The next exported bundle the agent has not applied yet."""
        done = {e.seq for e in self.applied}
        return next((e for e in self.exported if e.seq not in done), None)

    def check_agent(self, where: str, bundle: Exported) -> bool:
        """After a kill while ``bundle`` was being applied: the store holds exactly the state
        before it or exactly its state, the audit chain verifies, and no bundle was recorded as
        applied twice. Returns whether ``bundle`` is applied."""
        home = Home.open(self.pair.ag, "agent")
        store = AgentStore.open(home)
        try:
            state = {path: value.decode() for path, value in store.iter_values()}
            (sender,) = store.trusted_senders()
            mark = store.high_water(sender, "secrets")
        finally:
            store.close()
        records = AgentAudit(home).records()
        _check_chain(records, f"{where}: agent")
        earlier = [e for e in self.applied if e.seq != bundle.seq]
        before = earlier[-1].seq if earlier else None
        seq = None if mark is None else mark.seq
        if seq not in (before, bundle.seq):
            raise CrashCheckFailed(f"{where}: high-water {seq}, expected {before} or {bundle.seq}")
        expected = {} if seq is None else self.model[seq]
        if state != expected:
            diff = len(set(state.items()) ^ set(expected.items()))
            raise CrashCheckFailed(
                f"{where}: the store is not the state of seq {seq} ({diff} entries differ; "
                f"{len(state)} held, {len(expected)} expected): a half-applied bundle"
            )
        counts = Counter(
            str(r.fields.get("bundle_hash")) for r in records if r.type == "bundle.applied"
        )
        twice = [h for h, n in counts.items() if n > 1]
        if twice:
            raise CrashCheckFailed(f"{where}: bundles recorded as applied twice: {twice}")
        applied = seq == bundle.seq
        if counts.get(bundle.bundle_id, 0) != int(applied):
            raise CrashCheckFailed(
                f"{where}: seq {bundle.seq} applied={applied} but recorded "
                f"{counts.get(bundle.bundle_id, 0)} times as bundle.applied"
            )
        if applied and bundle not in self.applied:
            self.applied.append(bundle)
        return applied

    def check_all_applied_once(self, where: str) -> None:
        """Every bundle exported so far was applied exactly once (by its audit record)."""
        home = Home.open(self.pair.ag, "agent")
        records = AgentAudit(home).records()
        _check_chain(records, f"{where}: agent")
        counts = Counter(
            str(r.fields.get("bundle_hash")) for r in records if r.type == "bundle.applied"
        )
        wrong = [(e.seq, counts.get(e.bundle_id, 0)) for e in self.exported]
        wrong = [(seq, n) for seq, n in wrong if n != 1]
        if wrong:
            raise CrashCheckFailed(f"{where}: (seq, times applied) not exactly once: {wrong}")


def check_audit_exports(world: World, where: str, folder: Path) -> dict[str, dict[str, object]]:
    """The agent's audit bundles in ``folder``: each one has its ``audit.exported`` record (the
    record commits before the file is written), and no audit bundle seq was recorded twice.
    Returns each file's record fields."""
    records = AgentAudit(Home.open(world.pair.ag, "agent")).records()
    _check_chain(records, f"{where}: agent")
    exported = [r for r in records if r.type == "audit.exported"]
    seqs = Counter(int(r.fields["bundle_seq"]) for r in exported)  # type: ignore[arg-type]
    twice = sorted(seq for seq, n in seqs.items() if n > 1)
    if twice:
        raise CrashCheckFailed(f"{where}: audit bundle seqs {twice} recorded twice")
    by_file = {str(r.fields["file"]): dict(r.fields) for r in exported}
    files = sorted(p.name for p in folder.glob("*.bundle")) if folder.exists() else []
    orphans = [name for name in files if name not in by_file]
    if orphans:
        raise CrashCheckFailed(f"{where}: audit bundles without their audit.exported: {orphans}")
    return {name: by_file[name] for name in files}


def agent_audit_head(world: World) -> int:
    """The seq of the agent's newest audit record."""
    records = AgentAudit(Home.open(world.pair.ag, "agent")).records()
    return records[-1].seq if records else 0


def _check_chain(records: list[AuditRecord], where: str) -> None:
    report = verify_chain(records)
    if not report.ok:
        raise CrashCheckFailed(f"{where} audit chain: gaps {report.gaps} breaks {report.breaks}")


def make_world(root: Path, rng: random.Random, secrets: int) -> World:
    """A fresh pair under ``root`` with ``secrets`` granted secrets on the gateway."""
    world = World(make_pair(root, agent_name=AGENT), rng)
    world.fill(secrets)
    (root / "inbox").mkdir(mode=0o700)
    for key, value in (("agent.inbox", str(root / "inbox")), ("api.listen", "127.0.0.1:0")):
        result = world.pair.agent("config", "set", key, value)
        assert result.status == 0, result.err
    return world
