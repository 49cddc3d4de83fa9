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
"""

from __future__ import annotations

# Reason codes for rejected bundles (stable: scripts and SIEM rules match on them).
MALFORMED = "malformed"
TOO_LARGE = "too_large"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_SENDER = "unknown_sender"
WRONG_RECIPIENT = "wrong_recipient"
ROLLBACK = "rollback"
EXPIRED = "expired"
DECRYPT_FAILED = "decrypt_failed"
NOT_REGULAR_FILE = "not_regular_file"
DUPLICATE = "duplicate"  # a skip, not an error
# Two-tier gateway keys (spec §15).
CERT_INVALID = "cert_invalid"
CERT_EXPIRED = "cert_expired"
CERT_NOT_YET_VALID = "cert_not_yet_valid"
KEY_REVOKED = "key_revoked"
ROOT_CHAIN_BROKEN = "root_chain_broken"
ROOT_ROLLBACK = "root_rollback"
AGENT_REVOKED = "agent_revoked"  # the return stream of a revoked agent, after its cut-off

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
    }
)


class RelayError(Exception):
    """Root of every error relay reports to a user."""

    code = "error"
    exit_status = 1

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def diagnostics(self) -> str:
        """One line for humans: ``CODE: message``."""
        return f"{self.code}: {self.message}"


class BundleRejected(RelayError):
    """A bundle failed a check; ``code`` is one of :data:`BUNDLE_REASONS`."""

    code = MALFORMED


class BundleDuplicate(RelayError):
    """The identical signed bundle was already applied: a harmless skip."""

    code = DUPLICATE
    exit_status = 0


class TransportError(RelayError):
    """Moving bytes across a transport failed."""

    code = "transport_failed"


class SecretError(RelayError):
    """A secret cannot be served."""

    code = "not_found"


class UsageError(RelayError):
    """The operator's request is invalid; nothing was changed."""

    code = "usage"
    exit_status = 2
