"""Backup and restore of a gateway or agent home (``relay agent|gateway backup|restore``).

A backup file is::

    RELAY-BACKUP-1\\n
    {"kdf": {"salt": …, "opslimit": …, "memlimit": …}}\\n
    XSalsa20-Poly1305 secretbox (key: Argon2id of the backup passphrase) of a tar holding
        manifest.json   side, name, time of the backup
        identity.key    the home's key file, as it is (passphrase-wrapped or not)
        relay.toml      the settings, when there are any
        store.db        a consistent copy of the SQLCipher store (``sqlcipher_export``),
                        still encrypted with the home's store key

Only the KDF parameters are in clear: the side, the name and every key are inside the sealed
part, so private keys only ever leave the home under a passphrase. A truncated, altered or
foreign file and a wrong passphrase are one error, ``bad_backup`` (no oracle).

Restoring writes a new home (never over an existing one), then lets the side make the restored
state safe to continue from (:func:`after_restore`): an agent records the restore on its audit
chain (which continues from the backup's head; its high-water marks and applied bundles are
the backup's, so older bundles stay ``rollback``); a gateway moves every agent's forward-stream
seq up by :data:`SEQ_SAFETY_MARGIN`, so no seq handed out after the backup is ever reused.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from relay import crypto
from relay.codes import BACKUP_UNSUPPORTED, PASSPHRASE_REQUIRED, WEAK_PASSPHRASE, WRONG_HOME
from relay.errors import UsageError
from relay.home import KEY_FILE, STORE_FILE, Home

MAGIC = b"RELAY-BACKUP-1\n"
PASSPHRASE_FILE_ENV = "RELAY_BACKUP_PASSPHRASE_FILE"  # noqa: S105 - a variable name
BAD_BACKUP = "bad_backup"
HOME_EXISTS = "home_exists"
SEQ_SAFETY_MARGIN = 1_000_000
MAX_BACKUP_BYTES = 4 << 30
_CONFIG = "relay.toml"
_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Restored:
    """What a restore produced."""

    home: Home
    taken_at: int


def check_supported(home: Home) -> None:
    """``backup_unsupported`` for a gateway whose store is on PostgreSQL (``pg_dump`` it)."""
    if home.side == "gateway" and str(home.config.get("gateway.store_url")):
        raise UsageError(
            "this gateway's store is on a database server: back it up with pg_dump and keep "
            "identity.key and relay.toml with it (docs/backup.md)",
            code=BACKUP_UNSUPPORTED,
        )


def make_backup(home: Home, passphrase: str, now: int) -> bytes:
    """The sealed backup of ``home`` (SQLCipher stores only; PostgreSQL: ``pg_dump``)."""
    check_supported(home)
    members = {
        _MANIFEST: json.dumps(
            {"side": home.side, "name": home.identity.name, "taken_at": now}
        ).encode(),
        KEY_FILE: (home.path / KEY_FILE).read_bytes(),
        STORE_FILE: _snapshot(home),
    }
    config = home.path / _CONFIG
    if config.exists():
        members[_CONFIG] = config.read_bytes()
    wrapped = crypto.wrap(_tar(members), passphrase)
    header = {
        "kdf": {
            "salt": crypto.b64(wrapped.salt),
            "opslimit": wrapped.opslimit,
            "memlimit": wrapped.memlimit,
        }
    }
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + wrapped.sealed


def _snapshot(home: Home) -> bytes:
    """A consistent copy of the store, made with ``sqlcipher_export`` in the home (private)."""
    import sqlcipher3

    from relay.store_version import write_backup

    key = home.secrets.store_key
    conn = sqlcipher3.connect(str(home.store_path), isolation_level=None)
    try:
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        conn.execute("PRAGMA busy_timeout = 15000")
        copy = write_backup(conn, home.store_path, key, f"snapshot-{os.getpid()}")
    finally:
        conn.close()
    try:
        return copy.read_bytes()
    finally:
        copy.unlink()


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def open_backup(data: bytes, passphrase: str) -> dict[str, bytes]:
    """The members of a backup; ``bad_backup`` for anything but an intact one of ours."""
    try:
        if not data.startswith(MAGIC) or len(data) > MAX_BACKUP_BYTES:
            raise ValueError
        header_line, sealed = data[len(MAGIC) :].split(b"\n", 1)
        kdf = json.loads(header_line)["kdf"]
        wrapped = crypto.Wrapped(
            crypto.unb64(kdf["salt"]), int(kdf["opslimit"]), int(kdf["memlimit"]), sealed
        )
        if not 0 < wrapped.opslimit <= 64 or not 0 < wrapped.memlimit <= 4 << 30:
            raise ValueError  # refuse a header that would make us burn CPU or memory
        members = _untar(crypto.unwrap(wrapped, passphrase))
        manifest = json.loads(members[_MANIFEST])
        if manifest["side"] not in ("gateway", "agent") or KEY_FILE not in members:
            raise ValueError
    except (ValueError, KeyError, TypeError, tarfile.TarError, crypto.CryptoFailure):
        raise UsageError(
            "not an intact relay backup, or the wrong passphrase", code=BAD_BACKUP
        ) from None
    return members


def _untar(blob: bytes) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
        for info in tar.getmembers():
            if not info.isfile() or info.name not in (_MANIFEST, KEY_FILE, STORE_FILE, _CONFIG):
                raise ValueError
            handle = tar.extractfile(info)
            if handle is None:
                raise ValueError
            members[info.name] = handle.read()
    return members


def restore(data: bytes, passphrase: str, target: Path, side: str) -> Restored:
    """Write the backup into the new home ``target`` and make it safe to continue from."""
    members = open_backup(data, passphrase)
    manifest = json.loads(members[_MANIFEST])
    if manifest["side"] != side:
        raise UsageError(
            f"this is a backup of a {manifest['side']} home, not a {side} home", code=WRONG_HOME
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(
            f"{target} exists: restore into a new home, never over one", code=HOME_EXISTS
        )
    _write_home(target, members)
    home = Home.open(target, side)
    after_restore(home, int(manifest["taken_at"]))
    return Restored(home, int(manifest["taken_at"]))


def _write_home(target: Path, members: dict[str, bytes]) -> None:
    from relay.transport.folder import write_atomic

    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.chmod(0o700)
    for name in (STORE_FILE, _CONFIG, KEY_FILE):  # the key file last: it marks a home
        if name in members:
            write_atomic(target, name, members[name])


def after_restore(home: Home, taken_at: int) -> None:
    """Record the restore; on a gateway, move every forward-stream seq past any used since."""
    fields = {"backup_taken_at": taken_at}
    if home.side == "agent":
        from inner_agent.audit import AgentAudit
        from inner_agent.store import AgentStore

        AgentStore.open(home).close()  # upgrade an older backup's store first
        AgentAudit(home).record("home.restored", **fields)
        return
    from outer_gateway.delta import forget_bases
    from outer_gateway.store import GatewayStore
    from relay.audit import log
    from relay.db import sa_executor, write_transaction

    store = GatewayStore.open(home)
    try:
        with write_transaction(store.engine) as conn:
            conn.exec_driver_sql(
                f"UPDATE agents SET last_seq = last_seq + {SEQ_SAFETY_MARGIN}"  # noqa: S608
            )
            forget_bases(conn)  # deltas only on bases acknowledged after the restore
            restored = {**fields, "seq_margin": SEQ_SAFETY_MARGIN}
            log.append(sa_executor(conn), "home.restored", restored)
    finally:
        store.close()


def read_passphrase(confirm: bool) -> str:
    """The backup passphrase: the file named by ``RELAY_BACKUP_PASSPHRASE_FILE``, else a prompt
    (confirmed when making a backup)."""
    named = os.environ.get(PASSPHRASE_FILE_ENV)
    if named:
        try:
            text = Path(named).read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            raise UsageError(
                f"cannot read {PASSPHRASE_FILE_ENV} ({exc.strerror})", code=PASSPHRASE_REQUIRED
            ) from None
    else:
        import click

        if not os.isatty(0):
            raise UsageError(
                f"set {PASSPHRASE_FILE_ENV} or run on a terminal to be asked",
                code=PASSPHRASE_REQUIRED,
            )
        text = click.prompt(
            "Backup passphrase", hide_input=True, confirmation_prompt=confirm, err=True
        )
    if len(text) < 8:
        raise UsageError(
            "the backup passphrase must have 8 characters or more", code=WEAK_PASSPHRASE
        )
    return text
