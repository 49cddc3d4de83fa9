"""Bulk paths at 10k and 100k secrets, next to the raw limit measured in the same run.

For each N (``RELAY_BENCH_SIZES``, default ``10000,100000``) secrets of 100 bytes at paths
``app/grp{i%100}/secret{i}``, in fresh homes under a temporary folder:

- gateway bulk import (``GatewayStore.import_secrets``) into an empty store;
- gateway export (``build_bundle``: read, encode, seal, sign);
- agent import of that bundle into a fresh agent (``AgentImporter.import_bytes``);
- gateway re-import with 1% of the values changed, its export, and the agent's re-import
  (which should write about 1% of the rows: printed);
- ``relay agent get`` as a subprocess (median of 20) next to ``python -c pass``.

The raw limit is measured in the same run on the same machine: libsodium box (seal and open) of
the same plaintext size, one Ed25519 signature (sign and verify), one SQLCipher transaction
inserting the same rows with the raw ``sqlcipher3`` driver (``executemany``), and a raw SELECT of
all rows. Each operation is compared with the raw work it cannot avoid (column "raw limit").
No assertion on time: this prints figures.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from relay import db

T = TypeVar("T")

SIZES_ENV = "RELAY_BENCH_SIZES"
DEFAULT_SIZES = (10_000, 100_000)
VALUE_BYTES = 100
GET_RUNS = 20
VALID_FOR = 7 * 24 * 3600

_PRAGMAS = (  # the same as relay.db.sqlcipher_engine
    "busy_timeout = 15000",
    "journal_mode = WAL",
    f"synchronous = {db.SYNCHRONOUS}",
    "secure_delete = ON",
    "foreign_keys = ON",
)
_RAW_SCHEMA = (  # the agent's secrets table (inner_agent.schema)
    "CREATE TABLE secrets (path VARCHAR(256) NOT NULL PRIMARY KEY, version INTEGER NOT NULL, "
    "value BLOB NOT NULL, expires_at BIGINT, updated_at BIGINT NOT NULL, "
    "bundle_seq BIGINT NOT NULL)"
)
_RAW_INSERT = "INSERT INTO secrets VALUES (?, ?, ?, ?, ?, ?)"
_RAW_UPSERT = (
    "INSERT INTO secrets VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
    "version = excluded.version, value = excluded.value, updated_at = excluded.updated_at, "
    "bundle_seq = excluded.bundle_seq"
)
_RAW_SELECT = "SELECT path, version, value, expires_at, updated_at, bundle_seq FROM secrets"


@dataclass(frozen=True)
class Span:
    """Wall-clock and CPU seconds of one operation (CPU is steadier on a shared machine)."""

    wall: float
    cpu: float

    def __add__(self, other: Span) -> Span:
        return Span(self.wall + other.wall, self.cpu + other.cpu)


@dataclass
class Row:
    """One line of the result table."""

    operation: str
    n: int
    rows: int
    seconds: Span
    limit: Span | None = None  # the raw work this operation cannot avoid
    note: str = ""


def timed(func: Callable[[], T]) -> tuple[Span, T]:
    """Wall-clock and CPU seconds of one call, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = func()
    return Span(time.perf_counter() - wall, time.process_time() - cpu), result


def best_of(runs: int, func: Callable[[], object]) -> Span:
    """The fastest of ``runs`` calls (for the short raw crypto operations)."""
    spans = [timed(func)[0] for _ in range(runs)]
    return Span(min(s.wall for s in spans), min(s.cpu for s in spans))


@contextmanager
def no_passphrase() -> Iterator[None]:
    """Homes made here are not passphrase-wrapped, whatever the caller's environment says."""
    saved = os.environ.pop("RELAY_PASSPHRASE", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["RELAY_PASSPHRASE"] = saved


def make_values(n: int, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"app/grp{i % 100}/secret{i}": rng.randbytes(VALUE_BYTES) for i in range(n)}


def change_one_percent(values: dict[str, bytes], seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    changed = dict(values)
    for index, path in enumerate(values):
        if index % 100 == 0:
            changed[path] = rng.randbytes(VALUE_BYTES)
    return changed


# -- the raw limit ---------------------------------------------------------------------------


def raw_connect(path: Path, key: bytes) -> Any:
    import sqlcipher3

    conn = sqlcipher3.connect(str(path), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    for pragma in _PRAGMAS:
        conn.execute(f"PRAGMA {pragma}")
    return conn


def raw_transaction(conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(sql, rows)
    conn.execute("COMMIT")


def measure_raw(
    folder: Path, values: dict[str, bytes], changed: dict[str, bytes], plaintext_size: int
) -> dict[str, Span]:
    """Seconds of each raw operation for this N."""
    from nacl import bindings

    from relay import crypto

    sender, recipient = crypto.generate_keypair(), crypto.generate_keypair()
    plaintext = os.urandom(plaintext_size)
    nonce = crypto.random_bytes(crypto.BOX_NONCE_BYTES)
    box = bindings.crypto_box(plaintext, nonce, recipient.box_public, sender.box_secret)
    header = os.urandom(400)  # a signed header is a few hundred bytes
    _, sign_secret = bindings.crypto_sign_seed_keypair(sender.sign_seed)
    signed = bindings.crypto_sign(header, sign_secret)
    out: dict[str, Span] = {
        "seal": best_of(
            3,
            lambda: bindings.crypto_box(plaintext, nonce, recipient.box_public, sender.box_secret),
        ),
        "open": best_of(
            3, lambda: bindings.crypto_box_open(box, nonce, sender.box_public, recipient.box_secret)
        ),
        "sign": best_of(3, lambda: bindings.crypto_sign(header, sign_secret)),
        "verify": best_of(3, lambda: bindings.crypto_sign_open(signed, sender.sign_public)),
    }
    now = int(time.time())
    rows = [(path, 1, value, None, now, 1) for path, value in values.items()]
    updates = [(p, 2, v, None, now, 2) for p, v in changed.items() if values[p] != v]
    conn = raw_connect(folder / "raw.db", crypto.random_bytes(32))
    try:
        conn.execute(_RAW_SCHEMA)
        out["insert"], _ = timed(lambda: raw_transaction(conn, _RAW_INSERT, rows))
        out["select"], _ = timed(lambda: conn.execute(_RAW_SELECT).fetchall())
        out["upsert_1pct"], _ = timed(lambda: raw_transaction(conn, _RAW_UPSERT, updates))
    finally:
        conn.close()
    return out


def measure_format(values: dict[str, bytes]) -> dict[str, Span]:
    """JSON and base64 of the payload alone: what the bundle format costs in pure Python."""
    import binascii
    import json

    def encode() -> bytes:
        rows = [
            [p, 1, binascii.b2a_base64(v, newline=False).decode("ascii"), None]
            for p, v in values.items()
        ]
        return json.dumps({"v": 1, "secrets": rows}, separators=(",", ":")).encode()

    encode_s, doc = timed(encode)

    def decode() -> None:
        for row in json.loads(doc)["secrets"]:
            binascii.a2b_base64(row[2], strict_mode=True)

    decode_s, _ = timed(decode)
    return {"encode": encode_s, "decode": decode_s}


# -- relay itself ----------------------------------------------------------------------------


def median_run(argv: list[str], env: dict[str, str], runs: int = GET_RUNS) -> Span:
    """Median wall-clock and CPU seconds of ``argv`` as a subprocess (it must succeed)."""
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)  # warm the caches
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return Span(statistics.median(walls), statistics.median(cpus))


def relay_argv() -> list[str]:
    script = Path(sys.executable).parent / "relay"
    return [str(script)] if script.exists() else [sys.executable, "-m", "relay"]


def bench_size(n: int, folder: Path) -> list[Row]:
    from inner_agent.importer import AgentImporter
    from inner_agent.store import AgentStore
    from outer_gateway.export import build_bundle
    from outer_gateway.store import GatewayStore
    from relay.bundle.envelope import parse_envelope
    from relay.home import Home

    now = int(time.time())
    values = make_values(n, seed=n)
    changed = change_one_percent(values, seed=n + 1)
    n_changed = sum(1 for p in values if values[p] != changed[p])

    gw_home = Home.create(folder / "gateway", "gateway", "gw")
    gw = GatewayStore.open(gw_home)
    ag_home = Home.create(folder / "agent", "agent", "plant7")
    ag = AgentStore.open(ag_home)
    try:
        gw.enroll(ag_home.identity, now)
        gw.grant("plant7", "app/**")
        ag.trust(gw_home.identity, now)
        agent = gw.agent("plant7")
        importer = AgentImporter(ag_home, ag, lambda: int(time.time()))

        t_gw_import, (written, _) = timed(lambda: gw.import_secrets(values, None, now))
        t_export, first = timed(lambda: build_bundle(gw_home, gw, agent, now, VALID_FOR))
        plaintext_size = parse_envelope(first.data).header.payload_len - 40
        t_ag_import, outcome = timed(lambda: importer.import_bytes(first.name, first.data))
        _check_applied(outcome, n)

        t_gw_re, (re_written, _) = timed(lambda: gw.import_secrets(changed, None, now + 1))
        t_export2, second = timed(lambda: build_bundle(gw_home, gw, agent, now + 1, VALID_FOR))
        t_ag_re, outcome2 = timed(lambda: importer.import_bytes(second.name, second.data))
        _check_applied(outcome2, n_changed)
        ag_re_written = outcome2.result.written if outcome2.result else -1
    finally:
        gw.close()
        ag.close()

    # Byte code as an installed package has it: compiled once (into the temp folder), then reused.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RELAY_PASSPHRASE", "PYTHONDONTWRITEBYTECODE")
    }
    env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    get_argv = [*relay_argv(), "agent", "get", "--home", str(folder / "agent"), "app/grp7/secret7"]
    t_get = median_run(get_argv, env)
    t_pass = median_run([sys.executable, "-c", "pass"], env)

    raw = measure_raw(folder, values, changed, plaintext_size)
    fmt = measure_format(values)
    pct = 100 * ag_re_written / n
    return [
        Row("gateway import (empty store)", n, written, t_gw_import, raw["insert"]),
        Row(
            "gateway export (build_bundle)",
            n,
            n,
            t_export,
            raw["select"] + raw["seal"] + raw["sign"],
            f"{len(first.data) / 1e6:.1f} MB bundle",
        ),
        Row(
            "agent import (fresh agent)",
            n,
            n,
            t_ag_import,
            raw["verify"] + raw["open"] + raw["insert"],
        ),
        Row(
            "gateway re-import, 1% changed",
            n,
            re_written,
            t_gw_re,
            raw["select"] + raw["upsert_1pct"],
            f"{re_written} rows written",
        ),
        Row("gateway export after 1%", n, n, t_export2, raw["select"] + raw["seal"] + raw["sign"]),
        Row(
            "agent re-import, 1% changed",
            n,
            ag_re_written,
            t_ag_re,
            raw["verify"] + raw["open"] + raw["select"] + raw["upsert_1pct"],
            f"{ag_re_written} rows written ({pct:.2f}%)",
        ),
        Row("relay agent get (subprocess, median)", n, 0, t_get, t_pass, "limit: python -c pass"),
        Row("python -c pass (median)", n, 0, t_pass),
        Row(
            "raw: box seal of the payload",
            n,
            0,
            raw["seal"],
            None,
            f"{plaintext_size / 1e6:.1f} MB plaintext",
        ),
        Row("raw: box open of the payload", n, 0, raw["open"]),
        Row("raw: Ed25519 sign + verify", n, 0, raw["sign"] + raw["verify"]),
        Row("raw: sqlcipher insert txn", n, n, raw["insert"], None, "executemany, one txn"),
        Row("raw: sqlcipher SELECT all rows", n, n, raw["select"]),
        Row("raw: sqlcipher upsert 1% txn", n, n_changed, raw["upsert_1pct"]),
        Row("format: json + base64 encode", n, n, fmt["encode"], None, "informative"),
        Row("format: json + base64 decode", n, n, fmt["decode"], None, "informative"),
    ]


def _check_applied(outcome: Any, expect_written: int) -> None:
    if outcome.status != "applied" or outcome.result is None:
        raise RuntimeError(f"bundle not applied: {outcome.status} {outcome.code} {outcome.message}")
    if outcome.result.written != expect_written:
        print(f"  note: {outcome.result.written} rows written, expected {expect_written}")


def print_table(rows: list[Row]) -> None:
    headers = (
        "operation", "N", "rows", "wall s", "cpu s", "rows/s", "raw limit s", "ratio", "cpu ratio",
        "note",
    )  # fmt: skip
    cells = [headers]
    for r in rows:
        t, lim = r.seconds, r.limit
        cells.append(
            (
                r.operation,
                f"{r.n:,}",
                f"{r.rows:,}",
                f"{t.wall:.3f}",
                f"{t.cpu:.3f}",
                f"{r.rows / t.wall:,.0f}" if r.rows and t.wall > 0 else "-",
                f"{lim.wall:.3f}" if lim else "-",
                f"{t.wall / lim.wall:.1f}x" if lim and lim.wall > 0 else "-",
                f"{t.cpu / lim.cpu:.1f}x" if lim and lim.cpu > 0 else "-",
                r.note,
            )
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    right = set(range(1, 9))
    for index, c in enumerate(cells):
        print(
            "  ".join(
                cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                for i, cell in enumerate(c)
            ).rstrip()
        )
        if index == 0:
            print("  ".join("-" * w for w in widths))


def sizes() -> list[int]:
    text = os.environ.get(SIZES_ENV, "")
    return [int(s) for s in text.split(",") if s.strip()] or list(DEFAULT_SIZES)


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, sizes {sizes()}")
    rows: list[Row] = []
    with no_passphrase():
        for n in sizes():
            with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
                print(f"N = {n:,} ...", flush=True)
                rows.extend(bench_size(n, Path(tmp)))
    print()
    print_table(rows)
    print(
        "\nraw limit: the unavoidable work of the same operation, measured in this run with "
        "libsodium and the raw sqlcipher3 driver (see docs/performance.md).\n"
        "ratio = wall / raw wall; cpu ratio = cpu / raw cpu (steadier when the machine is shared)"
    )


if __name__ == "__main__":
    main()
