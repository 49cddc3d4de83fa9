"""``relay agent|gateway backup --to FILE`` and ``restore --from FILE --home NEW`` (see
:mod:`relay.backup`). The passphrase comes from ``RELAY_BACKUP_PASSPHRASE_FILE`` or a prompt."""

from __future__ import annotations

import time
from pathlib import Path

import click

from relay.cli.common import home_option


def add_backup_commands(group: click.Group, side: str) -> None:
    """Register ``backup`` and ``restore`` on the ``side`` group."""

    @group.command("backup")
    @home_option
    @click.option(
        "--to",
        "to",
        required=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="The backup file to write (0600).",
    )
    def backup(home: Path, to: Path) -> None:
        """Write an encrypted, consistent backup of this home to --to."""
        from relay.backup import check_supported, make_backup, read_passphrase
        from relay.home import Home
        from relay.transport.folder import write_atomic

        opened = Home.open(home, side)
        check_supported(opened)
        data = make_backup(opened, read_passphrase(confirm=True), int(time.time()))
        target = to.absolute()
        write_atomic(target.parent, target.name, data)
        click.echo(f"backup of {side} home {home} written to {target} ({len(data)} bytes)")

    @group.command("restore")
    @click.option(
        "--from",
        "source",
        required=True,
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="The backup file.",
    )
    @home_option
    def restore(source: Path, home: Path) -> None:
        """Restore a backup into a new home (refused over an existing one)."""
        from relay.backup import read_passphrase, restore

        result = restore(source.read_bytes(), read_passphrase(confirm=False), home, side)
        taken = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result.taken_at))
        click.echo(f"restored {side} home {home} from the backup taken at {taken}")
