"""The one exception tree of relay.

Every error a user can meet is a :class:`RelayError` with a stable ``code`` (a reason code from
``docs/spec/bundle-v1.md`` or the CLI contract) and a one-line human message that never contains a
secret value. The CLI prints ``relay: error: CODE: message`` and exits non-zero; the library only
raises. Programmer misuse stays a plain ``ValueError``/``RuntimeError``.

The tree is split by origin, as in python-tuf:

- :class:`BundleRejected`: bad data arrived (from the gap, a medium, a server).
- :class:`TransportError`: moving bytes failed (connection, host key, remote folder).
- :class:`SecretError`: a request for a secret cannot be served (``not_found``, ``expired``).
- :class:`UsageError`: the operator asked for something invalid (bad argument, missing home).
- :class:`ApiError`: a local-API request cannot be served (HTTP status and code).

Codes, their exit and HTTP statuses live in one registry (:mod:`relay.reasons`, catalogue in
:mod:`relay.codes`); the CLI and the API read them from there.
"""

from __future__ import annotations

from relay.codes import (
    AGENT_REVOKED,
    BAD_SIGNATURE,
    CERT_EXPIRED,
    CERT_INVALID,
    CERT_NOT_YET_VALID,
    CHAIN_BROKEN,
    DECRYPT_FAILED,
    DELTA_BASE_MISSING,
    DUPLICATE,
    ERROR,
    EXPIRED,
    KEY_REVOKED,
    MALFORMED,
    NOT_FOUND,
    NOT_REGULAR_FILE,
    ROLLBACK,
    ROOT_CHAIN_BROKEN,
    ROOT_ROLLBACK,
    TOO_LARGE,
    TRANSPORT_FAILED,
    UNKNOWN_SENDER,
    USAGE_CODE,
    WRONG_RECIPIENT,
)
from relay.reasons import USAGE, exit_status_of, http_status_of

__all__ = [
    "AGENT_REVOKED",
    "BAD_SIGNATURE",
    "BUNDLE_REASONS",
    "CERT_EXPIRED",
    "CERT_INVALID",
    "CERT_NOT_YET_VALID",
    "CHAIN_BROKEN",
    "DECRYPT_FAILED",
    "DELTA_BASE_MISSING",
    "DUPLICATE",
    "EXPIRED",
    "KEY_REVOKED",
    "MALFORMED",
    "NOT_REGULAR_FILE",
    "ROLLBACK",
    "ROOT_CHAIN_BROKEN",
    "ROOT_ROLLBACK",
    "TOO_LARGE",
    "UNKNOWN_SENDER",
    "WRONG_RECIPIENT",
    "ApiError",
    "BundleDuplicate",
    "BundleRejected",
    "RelayError",
    "SecretError",
    "TransportError",
    "UsageError",
]

# The codes a rejected bundle can carry (stable: scripts and SIEM rules match on them).
BUNDLE_REASONS = frozenset(
    {
        MALFORMED,
        TOO_LARGE,
        BAD_SIGNATURE,
        UNKNOWN_SENDER,
        WRONG_RECIPIENT,
        ROLLBACK,
        EXPIRED,
        DECRYPT_FAILED,
        NOT_REGULAR_FILE,
        CERT_INVALID,
        CERT_EXPIRED,
        CERT_NOT_YET_VALID,
        KEY_REVOKED,
        ROOT_CHAIN_BROKEN,
        ROOT_ROLLBACK,
        AGENT_REVOKED,
        DELTA_BASE_MISSING,
    }
)


class RelayError(Exception):
    """Root of every error relay reports to a user."""

    code = ERROR

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    @property
    def exit_status(self) -> int:
        """The CLI exit status, from the reason-code registry."""
        return exit_status_of(self.code)

    @property
    def http_status(self) -> int:
        """The local API's HTTP status, from the reason-code registry."""
        return http_status_of(self.code)

    def diagnostics(self) -> str:
        """One line for humans: ``CODE: message``."""
        return f"{self.code}: {self.message}"


class BundleRejected(RelayError):
    """A bundle failed a check; ``code`` is one of :data:`BUNDLE_REASONS`."""

    code = MALFORMED


class BundleDuplicate(RelayError):
    """The identical signed bundle was already applied: a harmless skip."""

    code = DUPLICATE


class TransportError(RelayError):
    """Moving bytes across a transport failed."""

    code = TRANSPORT_FAILED


class SecretError(RelayError):
    """A secret cannot be served."""

    code = NOT_FOUND


class UsageError(RelayError):
    """The operator's request is invalid; nothing was changed."""

    code = USAGE_CODE

    @property
    def exit_status(self) -> int:
        """Always 2, whatever the code (``not_found`` of an app to remove is the operator's
        mistake; of a secret to read, a refusal): the request was invalid, nothing changed."""
        return USAGE


class ApiError(RelayError):
    """A local-API request that cannot be served: HTTP ``status``, stable ``code``, safe
    ``message``. ``status`` is the registry's HTTP status for ``code`` (a test checks every
    call site)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status
