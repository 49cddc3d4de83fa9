"""The catalogue of reason codes, by area: every code relay reports is registered here, once.

To add a code, add one line in your area (keep each area sorted) and regenerate the docs table::

    NEW_CODE = reason("new_code", "what it means, in a few words", area=BUNDLE)
    python -m relay.reasons > docs/reason-codes.md

Then raise it by its constant: ``raise UsageError("…", code=NEW_CODE)``. ``exit_status`` defaults
to 1 (refused); ``http_status`` is set for codes the local API answers with.
"""

from __future__ import annotations

from relay.reasons import OK_SKIP, TRANSPORT, USAGE, reason

BUNDLE = "Bundles (receive path, spec Appendix A)"
AUDIT = "Audit return"
TRANSPORTS = "Transports"
DIODE = "Diode"
SETUP = "Setup and usage"
SECRETS = "Secrets and the stores"
API = "Local API"
CONSUME = "Consumption: exec, render, hooks, client"
GENERAL = "General"
KEYS = "Keys: two-tier gateway keys, agent keys, keys at rest"
ROTATION = "Rotation"

# -- bundles: the receive path (docs/spec/bundle-v1.md, Appendix A) ------------------------------
BAD_SIGNATURE = reason("bad_signature", "signature or payload hash does not verify", area=BUNDLE)
DECRYPT_FAILED = reason("decrypt_failed", "the sealed payload does not open", area=BUNDLE)
DELTA_BASE_MISSING = reason(
    "delta_base_missing",
    "a delta bundle whose base this agent has not applied: nothing changes, a full bundle repairs",
    area=BUNDLE,
)
DUPLICATE = reason(
    "duplicate", "this exact bundle was applied before: a skip", exit_status=OK_SKIP, area=BUNDLE
)
MALFORMED = reason(
    "malformed", "not a v1 bundle, bad header syntax, unaccepted kind, or bad payload", area=BUNDLE
)
NOT_REGULAR_FILE = reason(
    "not_regular_file", "the source is a link, device, folder… (never read)", area=BUNDLE
)
ROLLBACK = reason("rollback", "`seq` not newer than the applied high-water mark", area=BUNDLE)
TOO_LARGE = reason(
    "too_large",
    "over a size cap (bundle, secret value or request body)",
    http_status=413,
    area=BUNDLE,
)
UNKNOWN_SENDER = reason(
    "unknown_sender", "sender key id not pinned, or pinned under another name", area=BUNDLE
)
WRONG_RECIPIENT = reason("wrong_recipient", "addressed to another identity", area=BUNDLE)
EXPIRED = reason(
    "expired",
    "a bundle past its `expires`, or a secret past its expiry",
    http_status=410,
    area=BUNDLE,
)

# -- bundles: the certificate chain of a gateway with a root (spec §15) ---------------------------
AGENT_REVOKED = reason(
    "agent_revoked", "the agent is revoked: no exports, return stream cut off", area=BUNDLE
)
CERT_EXPIRED = reason(
    "cert_expired",
    "the signing key's certificate ended (give or take the clock skew)",
    area=BUNDLE,
)
CERT_INVALID = reason(
    "cert_invalid",
    "no chain, or a certificate not by the trusted root, for another gateway, role or key",
    area=BUNDLE,
)
CERT_NOT_YET_VALID = reason(
    "cert_not_yet_valid", "the signing key's certificate is not valid yet", area=BUNDLE
)
KEY_REVOKED = reason("key_revoked", "the signing key is revoked by the root", area=BUNDLE)
ROOT_CHAIN_BROKEN = reason(
    "root_chain_broken", "a root chain with a gap, a loop, a forged or foreign root", area=BUNDLE
)
ROOT_ROLLBACK = reason(
    "root_rollback", "certified by a root older than the trusted one", area=BUNDLE
)

# -- keys: rotation, revocation, root key files and tokens ----------------------------------------
ALREADY_EXISTS = reason(
    "already_exists", "the key file or token key already exists", exit_status=USAGE, area=KEYS
)
BAD_ROOT_KEY = reason(
    "bad_root_key",
    "not a relay root key file, or not the key it names",
    exit_status=USAGE,
    area=KEYS,
)
BAD_TRUST_FILE = reason(
    "bad_trust_file", "the gateway's trust.json is damaged", exit_status=USAGE, area=KEYS
)
KEY_ACTIVE = reason(
    "key_active",
    "the active signing key cannot be revoked: rotate first",
    exit_status=USAGE,
    area=KEYS,
)
NO_ROOT = reason(
    "no_root",
    "the gateway has no root yet (relay gateway root init)",
    exit_status=USAGE,
    area=KEYS,
)
PKCS11_FAILED = reason(
    "pkcs11_failed", "the PKCS#11 module or token cannot be used", exit_status=USAGE, area=KEYS
)
PKCS11_UNSUPPORTED = reason(
    "pkcs11_unsupported",
    "the token lacks Ed25519 (CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA)",
    exit_status=USAGE,
    area=KEYS,
)
ROOT_REUSED = reason(
    "root_reused", "the new root key was a root before", exit_status=USAGE, area=KEYS
)
ROTATION_INVALID = reason(
    "rotation_invalid", "an agent key rotation request that does not verify", area=KEYS
)
ROTATION_PENDING = reason(
    "rotation_pending",
    "an agent key rotation is already under way",
    exit_status=USAGE,
    area=KEYS,
)
ROTATION_REPLAYED = reason(
    "rotation_replayed", "a rotation request for a key that is no longer current", area=KEYS
)
UNKNOWN_KEY = reason("unknown_key", "no signing key with that id", exit_status=USAGE, area=KEYS)
WEAK_PASSPHRASE = reason(
    "weak_passphrase",
    "a root or backup passphrase shorter than 8 characters",
    exit_status=USAGE,
    area=SETUP,
)
WRONG_ROOT = reason(
    "wrong_root", "this is not the gateway's current root key", exit_status=USAGE, area=KEYS
)

# -- audit return ---------------------------------------------------------------------------------
CHAIN_BROKEN = reason(
    "chain_broken", "audit records do not link to the chain already held", area=AUDIT
)

# -- transports -----------------------------------------------------------------------------------
AUTH_FAILED = reason(
    "auth_failed", "the SFTP server refused the identity", exit_status=TRANSPORT, area=TRANSPORTS
)
CONNECT_FAILED = reason(
    "connect_failed", "cannot connect to the server", exit_status=TRANSPORT, area=TRANSPORTS
)
CONNECTION_LOST = reason(
    "connection_lost",
    "the connection dropped mid-transfer",
    exit_status=TRANSPORT,
    area=TRANSPORTS,
)
HOST_KEY_MISMATCH = reason(
    "host_key_mismatch",
    "the server's host key differs from the pinned one",
    exit_status=TRANSPORT,
    area=TRANSPORTS,
)
HOST_KEY_REVOKED = reason(
    "host_key_revoked",
    "the server's host key is marked @revoked",
    exit_status=TRANSPORT,
    area=TRANSPORTS,
)
HOST_KEY_UNKNOWN = reason(
    "host_key_unknown",
    "the server's host key is not in the known-hosts file",
    exit_status=TRANSPORT,
    area=TRANSPORTS,
)
REMOTE_DENIED = reason(
    "remote_denied",
    "permission denied on the remote folder",
    exit_status=TRANSPORT,
    area=TRANSPORTS,
)
REMOTE_FAILED = reason(
    "remote_failed", "the remote operation failed", exit_status=TRANSPORT, area=TRANSPORTS
)
REMOTE_MISSING = reason(
    "remote_missing",
    "the remote folder or file does not exist",
    exit_status=TRANSPORT,
    area=TRANSPORTS,
)
TRANSPORT_FAILED = reason(
    "transport_failed", "moving bytes failed", exit_status=TRANSPORT, area=TRANSPORTS
)
VANISHED = reason(
    "vanished",
    "a file went away between listing and reading",
    exit_status=TRANSPORT,
    area=TRANSPORTS,
)

# -- diode ----------------------------------------------------------------------------------------
BAD_PACKET = reason("bad_packet", "a datagram is not a well-formed diode packet", area=DIODE)
CHECKSUM_MISMATCH = reason(
    "checksum_mismatch", "a reassembled transfer fails its SHA-256 or manifest", area=DIODE
)

# -- setup and usage: the operator asked for something invalid; nothing changed -------------------
ALREADY_ENROLLED = reason(
    "already_enrolled", "an agent of that name is enrolled", exit_status=USAGE, area=SETUP
)
ALREADY_INITIALIZED = reason(
    "already_initialized", "the home is already initialised", exit_status=USAGE, area=SETUP
)
ALREADY_TRUSTED = reason(
    "already_trusted",
    "the agent (or hop) already trusts another gateway (root)",
    exit_status=USAGE,
    area=SETUP,
)
APP_EXISTS = reason("app_exists", "an app of that name exists", exit_status=USAGE, area=SETUP)
BAD_ADDRESS = reason("bad_address", "not a HOST:PORT address", exit_status=USAGE, area=SETUP)
BAD_CONFIG = reason(
    "bad_config",
    "`relay.toml` is not valid TOML, or a [[hooks]]/[[exec]] table is wrong",
    exit_status=USAGE,
    area=SETUP,
)
BAD_DURATION = reason(
    "bad_duration",
    "not a positive duration such as 30s, 15m, 24h, 7d",
    exit_status=USAGE,
    area=SETUP,
)
BAD_FILE = reason(
    "bad_file", "an input file is not in the expected format", exit_status=USAGE, area=SETUP
)
BAD_IDENTITY = reason(
    "bad_identity",
    "not a valid, self-signed identity of the expected role",
    exit_status=USAGE,
    area=SETUP,
)
BAD_KEY_FILE = reason(
    "bad_key_file",
    "the key file is damaged or not a relay key file",
    exit_status=USAGE,
    area=SETUP,
)
BAD_LISTEN = reason(
    "bad_listen", "not a listen address such as 127.0.0.1:8787", exit_status=USAGE, area=SETUP
)
BAD_LOCATION = reason(
    "bad_location", "not a usable sftp:// location", exit_status=USAGE, area=SETUP
)
BAD_NAME = reason("bad_name", "not a valid identity name", exit_status=USAGE, area=SETUP)
BAD_OPTION = reason("bad_option", "a diode option is out of range", exit_status=USAGE, area=SETUP)
BAD_PASSPHRASE = reason(
    "bad_passphrase", "the passphrase does not unwrap the key", exit_status=USAGE, area=SETUP
)
BAD_PATTERN = reason(
    "bad_pattern", "not a valid glob pattern over secret paths", exit_status=USAGE, area=SETUP
)
BAD_STORE = reason(
    "bad_store", "the store cannot be opened with the home's key", exit_status=USAGE, area=SETUP
)
BAD_URL = reason("bad_url", "not a usable udp://HOST:PORT URL", exit_status=USAGE, area=SETUP)
BAD_VALUE = reason("bad_value", "a setting's value is not valid", exit_status=USAGE, area=SETUP)
EMPTY_VALUE = reason("empty_value", "the secret value is empty", exit_status=USAGE, area=SETUP)
IDENTITY_REQUIRED = reason(
    "identity_required",
    "an SFTP location needs an identity file",
    exit_status=USAGE,
    area=SETUP,
)
IDENTITY_UNREADABLE = reason(
    "identity_unreadable", "the SSH identity file cannot be used", exit_status=USAGE, area=SETUP
)
KNOWN_HOSTS_REQUIRED = reason(
    "known_hosts_required",
    "an SFTP location needs a known-hosts file",
    exit_status=USAGE,
    area=SETUP,
)
KNOWN_HOSTS_UNREADABLE = reason(
    "known_hosts_unreadable",
    "the known-hosts file cannot be read",
    exit_status=USAGE,
    area=SETUP,
)
LISTEN_FAILED = reason(
    "listen_failed",
    "the service cannot listen on its address or socket",
    exit_status=USAGE,
    area=SETUP,
)
NON_LOOPBACK_LISTEN = reason(
    "non_loopback_listen", "the API listens on loopback only", exit_status=USAGE, area=SETUP
)
NOT_CONFIGURED = reason(
    "not_configured", "a setting the command needs is not set", exit_status=USAGE, area=SETUP
)
NOT_INITIALIZED = reason(
    "not_initialized", "the home is not initialised", exit_status=USAGE, area=SETUP
)
NOT_TRUSTED = reason(
    "not_trusted", "no trusted gateway or sender is pinned yet", exit_status=USAGE, area=SETUP
)
PASSPHRASE_REQUIRED = reason(
    "passphrase_required",
    "the key is wrapped; give RELAY_PASSPHRASE_FILE, the relay-passphrase credential or "
    "RELAY_PASSPHRASE",
    exit_status=USAGE,
    area=SETUP,
)
UNKNOWN_AGENT = reason(
    "unknown_agent", "no enrolled agent of that name", exit_status=USAGE, area=SETUP
)
UNKNOWN_SETTING = reason(
    "unknown_setting", "no setting of that name", exit_status=USAGE, area=SETUP
)
UNSAFE_PERMISSIONS = reason(
    "unsafe_permissions", "a key file is readable by others", exit_status=USAGE, area=SETUP
)
USAGE_CODE = reason("usage", "the command was called wrongly", exit_status=USAGE, area=SETUP)
WRONG_HOME = reason(
    "wrong_home", "the home belongs to the other side", exit_status=USAGE, area=SETUP
)

# -- secrets and the stores -----------------------------------------------------------------------
BAD_PATH = reason(
    "bad_path", "not a valid secret path", exit_status=USAGE, http_status=400, area=SECRETS
)
NOT_FOUND = reason("not_found", "no such secret, grant, app or file", http_status=404, area=SECRETS)
STALE = reason(
    "stale", "the agent is stale and this secret fails closed", http_status=410, area=SECRETS
)

STORE_TOO_NEW = reason(
    "store_too_new",
    "the store was written by a newer relay: upgrade relay first",
    exit_status=USAGE,
    area=SECRETS,
)

# -- rotation (docs/rotation.md) ------------------------------------------------------------------
BAD_CHARSET = reason(
    "bad_charset",
    "not a charset spec (alnum, hex, a+b, chars:…)",
    exit_status=USAGE,
    area=ROTATION,
)
BAD_EXECUTOR = reason(
    "bad_executor",
    "a [[rotation.executor]] table is not valid",
    exit_status=USAGE,
    area=ROTATION,
)
BAD_TIME = reason(
    "bad_time",
    "not an RFC 3339 time with offset, nor a duration from now",
    exit_status=USAGE,
    area=ROTATION,
)
BAD_VERSION = reason(
    "bad_version",
    "version is current, previous or pending",
    exit_status=USAGE,
    http_status=400,
    area=ROTATION,
)
ROTATION_FAILED = reason(
    "rotation_failed",
    "the executor did not set the new value; the old one stays",
    area=ROTATION,
)
ROTATION_IN_PROGRESS = reason(
    "rotation_in_progress",
    "a local rotation of this path is under way",
    exit_status=USAGE,
    area=ROTATION,
)
ROTATION_TIMEOUT = reason(
    "rotation_timeout",
    "the executor did not finish in time; the old value stays",
    area=ROTATION,
)

# -- operations: backup and restore, the offline kit, default destinations ------------------------
OPERATIONS = "Operations (backup, restore, install kit)"
BAD_BACKUP = reason(
    "bad_backup",
    "not an intact relay backup, or the wrong passphrase",
    exit_status=USAGE,
    area=OPERATIONS,
)
BACKUP_UNSUPPORTED = reason(
    "backup_unsupported",
    "the store is on a database server: use pg_dump",
    exit_status=USAGE,
    area=OPERATIONS,
)
HOME_EXISTS = reason(
    "home_exists",
    "restore only into a new home, never over one",
    exit_status=USAGE,
    area=OPERATIONS,
)
NO_DESTINATION = reason(
    "no_destination", "no --to given and export.to not set", exit_status=USAGE, area=OPERATIONS
)
BAD_KEY = reason("bad_key", "not an Ed25519 public key in PEM", exit_status=USAGE, area=OPERATIONS)
KIT_BAD_SIGNATURE = reason(
    "kit_bad_signature",
    "the kit's SHA256SUMS is not signed by this release key",
    exit_status=USAGE,
    area=OPERATIONS,
)
KIT_MODIFIED = reason(
    "kit_modified",
    "a file of the kit is altered, added or missing",
    exit_status=USAGE,
    area=OPERATIONS,
)
KIT_MALFORMED = reason(
    "kit_malformed", "not a relay kit archive", exit_status=USAGE, area=OPERATIONS
)

# -- local API (RFC 6749 error codes where OAuth defines one) -------------------------------------
BAD_REQUEST = reason("bad_request", "the HTTP request is not valid", http_status=400, area=API)
FORBIDDEN = reason("forbidden", "this app or uid may not do this", http_status=403, area=API)
HEADERS_TOO_LARGE = reason(
    "headers_too_large", "request headers over the cap", http_status=400, area=API
)
INVALID_CLIENT = reason(
    "invalid_client", "unknown client or wrong client secret", http_status=401, area=API
)
INVALID_REQUEST = reason(
    "invalid_request",
    "the token request is missing or repeats a field",
    http_status=400,
    area=API,
)
METHOD_NOT_ALLOWED = reason(
    "method_not_allowed", "the method is not allowed on this resource", http_status=405, area=API
)
OVERLOADED = reason(
    "overloaded", "every connection is being served; retry shortly", http_status=503, area=API
)
REQUEST_TIMEOUT = reason(
    "request_timeout",
    "the request was not sent in full within api.read_timeout",
    http_status=408,
    area=API,
)
TOO_MANY_REQUESTS = reason(
    "too_many_requests", "too many failed attempts; try later", http_status=429, area=API
)
UID_NOT_ALLOWED = reason(
    "uid_not_allowed",
    "audit reason: the socket peer's uid is not allowed",
    http_status=403,
    area=API,
)
UNAUTHORIZED = reason(
    "unauthorized", "missing, bad, expired or revoked token", http_status=401, area=API
)
UNSUPPORTED_GRANT_TYPE = reason(
    "unsupported_grant_type", "grant_type is not client_credentials", http_status=400, area=API
)

# -- consumption: relay agent exec / render, [[hooks]], [[exec]], relay.client ---------------------
API_ERROR = reason("api_error", "the local API refused a client's request", area=CONSUME)
BAD_ENV = reason(
    "bad_env",
    "--env is not VAR=PATH, or an env template line is not VAR=VALUE",
    exit_status=USAGE,
    area=CONSUME,
)
BAD_ENV_VALUE = reason(
    "bad_env_value", "a value cannot be an environment variable (a NUL byte)", area=CONSUME
)
BAD_OWNER = reason(
    "bad_owner", "unknown user or group for --owner", exit_status=USAGE, area=CONSUME
)
BAD_RESPONSE = reason("bad_response", "the local API's answer is not JSON", area=CONSUME)
BAD_SIGNAL = reason("bad_signal", "not a signal name or number", exit_status=USAGE, area=CONSUME)
BAD_TEMPLATE = reason(
    "bad_template",
    "the template file cannot be read, is over 1 MiB or not UTF-8",
    exit_status=USAGE,
    area=CONSUME,
)
COMMAND_NOT_EXECUTABLE = reason(
    "command_not_executable",
    "CMD exists but cannot be run (as a shell: 126)",
    exit_status=126,
    area=CONSUME,
)
COMMAND_NOT_FOUND = reason(
    "command_not_found", "CMD is not found (as a shell: 127)", exit_status=127, area=CONSUME
)
NO_CREDENTIALS = reason(
    "no_credentials", "API client credentials are missing", exit_status=USAGE, area=CONSUME
)
NOT_TEXT = reason("not_text", "a template needs a UTF-8 value", area=CONSUME)
RATE_LIMIT = reason(
    "rate_limit", "audit reason: a restart waits for the crash-loop limit", area=CONSUME
)
TEMPLATE_ERROR = reason(
    "template_error", "unknown name or filter, syntax error, or failed expression", area=CONSUME
)
TEMPLATE_FORBIDDEN = reason(
    "template_forbidden", "a template reached for Python internals", area=CONSUME
)
UNREACHABLE = reason(
    "unreachable", "the local API cannot be reached", exit_status=TRANSPORT, area=CONSUME
)
WRITE_FAILED = reason(
    "write_failed", "the output cannot be written; the old file is kept", area=CONSUME
)

# -- general --------------------------------------------------------------------------------------
ERROR = reason("error", "an error without a more specific code", area=GENERAL)
