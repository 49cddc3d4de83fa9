"""A Python application reading its database password through the agent's local API.

Run with RELAY_API_URL (or RELAY_API_SOCKET), RELAY_CLIENT_ID and RELAY_CLIENT_SECRET_FILE in
its environment (a systemd unit's Environment= and LoadCredential= are a good home for them).
"""

from __future__ import annotations

import sys

from relay.client import ApiError, Client


def main() -> int:
    client = Client.from_env()
    path = sys.argv[1] if len(sys.argv) > 1 else "db/app/password"
    try:
        secret = client.get(path)
    except ApiError as exc:  # exc.code is the API's: not_found, forbidden, expired, stale...
        print(f"cannot read {path}: {exc.code}", file=sys.stderr)
        return 1
    # Use secret.value (str, or bytes when it is not UTF-8); never print or log it.
    print(f"read {path} version {secret.version} ({len(secret.value)} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
