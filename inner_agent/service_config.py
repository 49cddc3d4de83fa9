"""The settings of ``relay agent run``, read once from the home and checked together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relay.codes import NON_LOOPBACK_LISTEN, USAGE_CODE
from relay.config import Config
from relay.durations import parse_duration
from relay.errors import UsageError
from relay.netaddr import is_loopback, parse_listen


@dataclass(frozen=True)
class ServiceSettings:
    """What the service needs from ``relay.toml``."""

    inbox: tuple[Path, ...]
    listen: tuple[str, int] | None
    unix_socket: Path | None
    allowed_uids: frozenset[int]
    token_ttl: int
    read_timeout: int
    max_staleness: int | None
    fail_closed: tuple[str, ...]
    rescan_every: int

    @classmethod
    def from_config(cls, config: Config) -> ServiceSettings:
        """Read and cross-check the settings; ``UsageError`` on an unsafe or empty set-up."""
        listen_text = str(config.get("api.listen"))
        listen = None if listen_text == "off" else parse_listen(listen_text)
        exposed = listen is not None and not is_loopback(listen[0])
        if exposed and not config.get("api.allow_non_loopback"):
            raise UsageError(
                f"api.listen {listen_text} is not a loopback address; the API would be "
                "reachable from the network. Set api.allow_non_loopback true to accept that",
                code=NON_LOOPBACK_LISTEN,
            )
        socket_text = str(config.get("api.unix_socket"))
        if listen is None and not socket_text:
            raise UsageError(
                "api.listen is off and api.unix_socket is empty: nothing to serve", code=USAGE_CODE
            )
        staleness = str(config.get("agent.max_staleness"))
        return cls(
            inbox=tuple(Path(p) for p in config.get("agent.inbox")),
            listen=listen,
            unix_socket=Path(socket_text) if socket_text else None,
            allowed_uids=frozenset(int(u) for u in config.get("api.allowed_uids")),
            token_ttl=parse_duration(str(config.get("api.token_ttl"))),
            read_timeout=parse_duration(str(config.get("api.read_timeout"))),
            max_staleness=parse_duration(staleness) if staleness else None,
            fail_closed=tuple(str(p) for p in config.get("agent.fail_closed")),
            rescan_every=parse_duration(str(config.get("agent.rescan_every"))),
        )
