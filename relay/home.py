"""A home: the private folder (0700) of one gateway or agent.

Layout::

    HOME/relay.toml       settings (``relay gateway|agent config``)
    HOME/identity.key     private keys and the store key, JSON, 0600, optionally passphrase-wrapped
    HOME/store.db         the SQLCipher store (plus -wal/-shm while open)
    HOME/quarantine/      private copies of rejected bundles

The key file holds the Ed25519 seed, the X25519 secret and the 32-byte SQLCipher key. With
``RELAY_PASSPHRASE`` set at ``init`` they are wrapped with Argon2id; every later command then
needs the same ``RELAY_PASSPHRASE``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from relay import crypto
from relay.codes import (
    ALREADY_INITIALIZED,
    BAD_KEY_FILE,
    BAD_PASSPHRASE,
    NOT_INITIALIZED,
    PASSPHRASE_REQUIRED,
    UNSAFE_PERMISSIONS,
    WRONG_HOME,
)
from relay.errors import UsageError
from relay.frozen import frozen
from relay.identity import ROLES, PublicIdentity, check_name, identity_of

if TYPE_CHECKING:
    from relay.config import Config

KEY_FILE = "identity.key"
STORE_FILE = "store.db"
QUARANTINE_DIR = "quarantine"
PASSPHRASE_ENV = "RELAY_PASSPHRASE"  # noqa: S105 - the variable name, not a secret
PASSPHRASE_FILE_ENV = "RELAY_PASSPHRASE_FILE"  # noqa: S105 - a variable name
CREDENTIAL_NAME = "relay-passphrase"  # systemd LoadCredential= name, in $CREDENTIALS_DIRECTORY
MAX_PASSPHRASE_FILE = 4096
_RETIRED_LABEL = re.compile(r"retired\.[0-9a-f]{16}")


def home_passphrase() -> str | None:
    """The passphrase wrapping a home's keys, from the first source set: the file named by
    ``RELAY_PASSPHRASE_FILE``, the systemd credential ``relay-passphrase``, ``RELAY_PASSPHRASE``
    (interactive use; a long-running service should use a file or a credential)."""
    named = os.environ.get(PASSPHRASE_FILE_ENV)
    if named:
        return _passphrase_from(Path(named), PASSPHRASE_FILE_ENV)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).exists():
        return _passphrase_from(Path(credentials) / CREDENTIAL_NAME, "CREDENTIALS_DIRECTORY")
    return os.environ.get(PASSPHRASE_ENV) or None


def _passphrase_from(path: Path, source: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PASSPHRASE_FILE + 1)
        text = data.decode("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        raise UsageError(
            f"cannot read the passphrase file given by {source}", code=PASSPHRASE_REQUIRED
        ) from None
    if not text or len(data) > MAX_PASSPHRASE_FILE:
        raise UsageError(
            f"the passphrase file given by {source} is empty or too long",
            code=PASSPHRASE_REQUIRED,
        )
    return text


@frozen
class Secrets:
    """What the key file protects."""

    keys: crypto.KeyPair
    store_key: bytes

    def __repr__(self) -> str:
        return "Secrets(<private>)"


class Home:
    """An initialised home of one side (``gateway`` or ``agent``)."""

    def __init__(self, path: Path, side: str, identity: PublicIdentity) -> None:
        self.path = path
        self.side = side
        self.identity = identity
        self._secrets: Secrets | None = None
        self._config: Config | None = None

    # -- creation and opening ----------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, side: str, name: str) -> Home:
        """Initialise a new home; refuses (``already_initialized``) to overwrite one."""
        check_name(name)
        if (path / KEY_FILE).exists():
            raise UsageError(f"{path} is already initialised", code=ALREADY_INITIALIZED)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
        secrets = Secrets(crypto.generate_keypair(), crypto.random_bytes(32))
        identity = identity_of(side, name, secrets.keys)
        _write_key_file(path / KEY_FILE, side, name, secrets, home_passphrase())
        home = cls(path, side, identity)
        home._secrets = secrets
        home._doc = _read_key_file(path / KEY_FILE)
        return home

    @classmethod
    def open(cls, path: Path, side: str) -> Home:
        """Open an existing home of ``side``; clear errors when it is missing or the other side."""
        key_path = path / KEY_FILE
        if not key_path.exists():
            raise UsageError(
                f"{path} is not an initialised {side} home (run `relay {side} init`)",
                code=NOT_INITIALIZED,
            )
        doc = _read_key_file(key_path)
        if doc["role"] != side:
            raise UsageError(f"{path} is a {doc['role']} home, not a {side} home", code=WRONG_HOME)
        identity = PublicIdentity(
            side,
            str(doc["name"]),
            crypto.unb64(str(doc["sign_public"]), crypto.KEY_BYTES),
            crypto.unb64(str(doc["box_public"]), crypto.KEY_BYTES),
        )
        home = cls(path, side, identity)
        home._doc = doc
        return home

    # -- contents ----------------------------------------------------------------------------

    @property
    def store_path(self) -> Path:
        return self.path / STORE_FILE

    @property
    def quarantine_path(self) -> Path:
        return self.path / QUARANTINE_DIR

    @property
    def config(self) -> Config:
        if self._config is None:
            # Imported here: `relay agent get` never reads settings, and TOML costs start-up.
            from relay.config import CONFIG_NAME, Config

            self._config = Config(self.path / CONFIG_NAME, self.side)
        return self._config

    @property
    def secrets(self) -> Secrets:
        """The private keys and store key (asks for the passphrase when wrapped)."""
        if self._secrets is None:
            self.use_secrets(_unlock(self._doc))
        assert self._secrets is not None  # noqa: S101 - use_secrets set it or raised
        return self._secrets

    def use_secrets(self, secrets: Secrets) -> None:
        """Take ``secrets`` as this home's keys once they match its identity: the key file's,
        or keys already unlocked by the process that started this one (the agent's apply
        child, inner_agent/apply_child.py), so a wrapped key file is not unwrapped again."""
        if secrets.keys.sign_public != self.identity.sign_public:
            raise UsageError("the key file is inconsistent", code=BAD_KEY_FILE)
        self._secrets = secrets

    def reload_keys(self) -> None:
        """Read the key file again (another process switched the keys)."""
        fresh = Home.open(self.path, self.side)
        self.identity = fresh.identity
        self._doc = fresh._doc
        self._secrets = None

    def replace_keys(self, keys: crypto.KeyPair) -> None:
        """Replace the identity keys (gateway key rotation), keeping the store key and the
        key file's protection (a wrapped file needs ``RELAY_PASSPHRASE`` again)."""
        store_key = self.secrets.store_key
        wrapped = self._doc.get("protection") == "argon2id"
        passphrase = home_passphrase() if wrapped else None
        secrets = Secrets(keys, store_key)
        _write_key_file(self.path / KEY_FILE, self.side, self.identity.name, secrets, passphrase)
        self.identity = identity_of(self.side, self.identity.name, keys)
        self._secrets = secrets
        self._doc = _read_key_file(self.path / KEY_FILE)

    @property
    def protection(self) -> str:
        """How the key file is protected: ``argon2id`` (passphrase) or ``none``."""
        return str(self._doc.get("protection", "none"))

    def key_protection(self) -> dict[str, str]:
        """How each private key of this home is protected (``relay agent status``)."""
        shown = {"identity": self.protection, "store_key": self.protection}
        for label in ("next", "previous"):
            path = self._side_path(label)
            if path.exists():
                shown[f"{label}_key"] = str(_read_key_file(path).get("protection", "none"))
        return shown

    def write_side_key(self, label: str, keys: crypto.KeyPair) -> None:
        """Keep another key pair of this home (``identity.LABEL.key``: an agent's next or
        previous key, a gateway's retired online key), protected as the main key file is."""
        wrapped = self._doc.get("protection") == "argon2id"
        passphrase = home_passphrase() if wrapped else None
        secrets = Secrets(keys, self.secrets.store_key)
        _write_key_file(self._side_path(label), self.side, self.identity.name, secrets, passphrase)

    def read_side_key(self, label: str) -> crypto.KeyPair | None:
        """The key pair kept under ``label``, or ``None``."""
        path = self._side_path(label)
        if not path.exists():
            return None
        return _unlock(_read_key_file(path)).keys

    def has_side_key(self, label: str) -> bool:
        """Whether a key pair is kept under ``label`` (nothing is unlocked)."""
        return self._side_path(label).exists()

    def remove_side_key(self, label: str) -> None:
        self._side_path(label).unlink(missing_ok=True)

    def _side_path(self, label: str) -> Path:
        # next, previous (an agent's rotation), retired.KEY_ID (a gateway's retired online key)
        if label not in ("next", "previous") and not _RETIRED_LABEL.fullmatch(label):
            raise ValueError(f"unknown key label {label!r}")
        return self.path / f"identity.{label}.key"

    _doc: dict[str, object]


def _write_key_file(
    path: Path, side: str, name: str, secrets: Secrets, passphrase: str | None
) -> None:
    from relay.transport.folder import write_atomic

    inner = json.dumps(
        {
            "sign_seed": crypto.b64(secrets.keys.sign_seed),
            "box_secret": crypto.b64(secrets.keys.box_secret),
            "store_key": crypto.b64(secrets.store_key),
        }
    ).encode("ascii")
    doc: dict[str, object] = {
        "relay_key_file": 1,
        "role": side,
        "name": name,
        "sign_public": crypto.b64(secrets.keys.sign_public),
        "box_public": crypto.b64(secrets.keys.box_public),
    }
    if passphrase:
        wrapped = crypto.wrap(inner, passphrase)
        doc["protection"] = "argon2id"
        doc["kdf"] = {
            "salt": crypto.b64(wrapped.salt),
            "opslimit": wrapped.opslimit,
            "memlimit": wrapped.memlimit,
        }
        doc["private"] = crypto.b64(wrapped.sealed)
    else:
        doc["protection"] = "none"
        doc["private"] = crypto.b64(inner)
    write_atomic(path.parent, path.name, json.dumps(doc, indent=2).encode("ascii") + b"\n")


def _read_key_file(path: Path) -> dict[str, object]:
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path} is not a regular file", code=BAD_KEY_FILE)
    if info.st_mode & 0o077:
        raise UsageError(
            f"{path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
            "run chmod 600 on it",
            code=UNSAFE_PERMISSIONS,
        )
    try:
        doc = json.loads(path.read_text(encoding="ascii"))
        if doc.get("relay_key_file") != 1 or doc.get("role") not in ROLES:
            raise ValueError
    except (ValueError, AttributeError):
        raise UsageError(f"{path} is not a relay key file", code=BAD_KEY_FILE) from None
    return dict(doc)


def _unlock(doc: dict[str, object]) -> Secrets:
    try:
        sealed = crypto.unb64(str(doc["private"]))
        if doc.get("protection") == "argon2id":
            passphrase = home_passphrase()
            if not passphrase:
                raise UsageError(
                    f"this home's keys are passphrase-protected: set {PASSPHRASE_FILE_ENV}, "
                    f"the systemd credential {CREDENTIAL_NAME} or {PASSPHRASE_ENV}",
                    code=PASSPHRASE_REQUIRED,
                )
            kdf = doc["kdf"]
            assert isinstance(kdf, dict)  # noqa: S101 - shape checked by the except below
            wrapped = crypto.Wrapped(
                crypto.unb64(kdf["salt"]), int(kdf["opslimit"]), int(kdf["memlimit"]), sealed
            )
            try:
                sealed = crypto.unwrap(wrapped, passphrase)
            except crypto.CryptoFailure:
                raise UsageError("wrong passphrase", code=BAD_PASSPHRASE) from None
        inner = json.loads(sealed)
        return Secrets(
            crypto.KeyPair(
                crypto.unb64(inner["sign_seed"], 32), crypto.unb64(inner["box_secret"], 32)
            ),
            crypto.unb64(inner["store_key"], 32),
        )
    except UsageError:
        raise
    except (ValueError, KeyError, TypeError, AssertionError):
        raise UsageError("the key file is damaged", code=BAD_KEY_FILE) from None
