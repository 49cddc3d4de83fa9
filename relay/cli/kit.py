"""``relay kit verify KIT --key PUB``: check an offline install kit before installing it."""

from __future__ import annotations

from pathlib import Path

import click

from relay.codes import BAD_KEY
from relay.errors import UsageError


@click.group()
def kit() -> None:
    """The offline install kit (make dist)."""


@kit.command()
@click.argument("archive", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The release public key (PEM), obtained apart from the kit.",
)
def verify(archive: Path, key_file: Path) -> None:
    """Verify the kit's signed SHA256SUMS and every file in it."""
    from relay.kit import read_pem, verify_kit

    try:
        public = read_pem(key_file.read_text(encoding="ascii"))
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{key_file} is not an Ed25519 public key (PEM)", code=BAD_KEY) from None
    count = verify_kit(archive, public)
    click.echo(f"{archive.name}: signature good, {count} files verified")
