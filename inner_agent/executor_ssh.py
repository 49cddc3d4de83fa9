"""``ssh`` executor: run a configured command on a device over SSH, the value on its stdin.

Options: ``host``, ``port`` (22), ``user``, ``identity_file`` (the agent's key), ``known_hosts``
(the device's host key, pinned: an unknown or changed key is refused, never added), ``command``
(run on the device; must exit 0) and optionally ``verify`` (exit 0 if the value on stdin works).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from inner_agent.executors import ExecutorFailed
from relay.codes import BAD_EXECUTOR, ROTATION_FAILED, ROTATION_TIMEOUT
from relay.errors import UsageError

if TYPE_CHECKING:
    from inner_agent.executors import ExecutorConfig


class SshExecutor:
    """Rotate a credential on a device reached over SSH."""

    kind = "ssh"

    def __init__(self, config: ExecutorConfig) -> None:
        options = config.options
        self.timeout = config.timeout
        self.host = _text(options, "host")
        self.port = int(options.get("port", 22))
        self.user = _text(options, "user")
        self.identity_file = Path(_text(options, "identity_file"))
        self.known_hosts = Path(_text(options, "known_hosts"))
        self.command = _text(options, "command")
        self.verify = _text(options, "verify") if "verify" in options else None

    def apply(self, value: bytes) -> None:
        status = self._run(self.command, value)
        if status != 0:
            raise ExecutorFailed(
                f"the device command exited with status {status}", code=ROTATION_FAILED
            )

    def works(self, value: bytes) -> bool | None:
        if self.verify is None:
            return None
        try:
            return self._run(self.verify, value) == 0
        except ExecutorFailed:
            return None

    def _run(self, command: str, value: bytes) -> int:
        import paramiko

        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(self.known_hosts))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                key_filename=str(self.identity_file),
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                allow_agent=False,
                look_for_keys=False,
            )
            return _exec(client, command, value, self.timeout)
        except (paramiko.SSHException, OSError) as exc:
            raise ExecutorFailed(
                f"ssh to {self.host}: {type(exc).__name__}", code=ROTATION_FAILED
            ) from None
        finally:
            client.close()


def _exec(client: Any, command: str, value: bytes, timeout: int) -> int:
    transport = client.get_transport()
    channel = transport.open_session(timeout=timeout)
    channel.settimeout(timeout)
    channel.exec_command(command)
    channel.sendall(value)
    channel.shutdown_write()
    if not channel.status_event.wait(timeout):
        channel.close()
        raise ExecutorFailed(
            f"the device command did not finish within {timeout}s", code=ROTATION_TIMEOUT
        )
    return int(channel.recv_exit_status())


def _text(options: dict[str, Any], key: str) -> str:
    value = options.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(f'an ssh executor needs {key} = "…"', code=BAD_EXECUTOR)
    return value
