"""``postgresql`` executor: set a role's password over a real connection, then prove it.

Options: ``dsn`` (a connection with the right to ``ALTER ROLE``), ``role``, and ``login`` (the
conninfo a service uses, without password; default: ``dsn`` as ``role``). The password is sent
as a SCRAM-SHA-256 verifier computed here (as ``psql``'s ``\\password`` does), so the clear value
never reaches the server or its statement log. Proof: a login as the role with the new value,
and, where the connection may read ``pg_authid``, a check of the value against the stored
verifier (which also proves it where ``pg_hba.conf`` trusts local logins).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import TYPE_CHECKING, Any

from inner_agent.executors import ExecutorFailed
from relay.codes import BAD_EXECUTOR, ROTATION_FAILED
from relay.errors import UsageError

if TYPE_CHECKING:
    from inner_agent.executors import ExecutorConfig

ITERATIONS = 4096


def scram_verifier(password: bytes, salt: bytes, iterations: int = ITERATIONS) -> str:
    """The ``SCRAM-SHA-256$…`` verifier PostgreSQL stores for ``password``."""
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def matches_verifier(password: bytes, verifier: str) -> bool:
    """Whether ``password`` is the one ``verifier`` was made from."""
    try:
        method, rest = verifier.split("$", 1)
        params, _keys = rest.split("$", 1)
        iterations, salt = params.split(":", 1)
        expected = scram_verifier(password, base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return method == "SCRAM-SHA-256" and hmac.compare_digest(expected, verifier)


class PostgresExecutor:
    """Rotate a PostgreSQL role's password."""

    kind = "postgresql"

    def __init__(self, config: ExecutorConfig) -> None:
        options = config.options
        self.timeout = config.timeout
        self.dsn = _text(options, "dsn")
        self.role = _text(options, "role")
        self.login = str(options.get("login") or "")

    def apply(self, value: bytes) -> None:
        from psycopg import sql

        verifier = scram_verifier(value, os.urandom(16))
        statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(self.role), sql.Literal(verifier)
        )
        with self._admin() as conn:
            _execute(conn, statement)
        if not self._login(value):
            raise ExecutorFailed(
                f"role {self.role} cannot log in with the new value", code=ROTATION_FAILED
            )
        if self.works(value) is False:
            raise ExecutorFailed(
                f"role {self.role} does not hold the new value", code=ROTATION_FAILED
            )

    def works(self, value: bytes) -> bool | None:
        """Checked against the stored verifier (``None`` when it cannot be read)."""
        try:
            with self._admin() as conn:
                row = conn.execute(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (self.role,)
                ).fetchone()
        except ExecutorFailed:
            return None
        except Exception:  # no right to read pg_authid: a login is all we can try
            return self._login(value) or None
        if row is None or row[0] is None:
            return False
        return matches_verifier(value, str(row[0]))

    def _admin(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.timeout)
        except psycopg.Error as exc:
            raise ExecutorFailed(f"cannot connect: {_state(exc)}", code=ROTATION_FAILED) from None

    def _login(self, value: bytes) -> bool:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        base = self.login or make_conninfo(self.dsn, user=self.role)
        params: dict[str, Any] = dict(conninfo_to_dict(base))
        params.update(password=value.decode("utf-8"), connect_timeout=self.timeout)
        try:
            with psycopg.connect(make_conninfo(**params)) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True


def _execute(conn: Any, statement: Any) -> None:
    import psycopg

    try:
        conn.execute(statement)
    except psycopg.Error as exc:  # never the statement: it holds the verifier
        raise ExecutorFailed(f"ALTER ROLE failed: {_state(exc)}", code=ROTATION_FAILED) from None


def _state(exc: Exception) -> str:
    return str(getattr(exc, "sqlstate", None) or type(exc).__name__)


def _text(options: dict[str, Any], key: str) -> str:
    value = options.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(f'a postgresql executor needs {key} = "…"', code=BAD_EXECUTOR)
    return value
