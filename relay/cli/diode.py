"""``relay diode send`` and ``relay diode receive``: files across a one-way UDP link."""

from __future__ import annotations

import os
import signal
import stat
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from relay.codes import NOT_FOUND, NOT_REGULAR_FILE, TOO_LARGE
from relay.errors import TransportError, UsageError

if TYPE_CHECKING:
    from relay.diode.sender import EncodedFile

MAX_SEND_BYTES = 512 << 20


@click.group()
def diode() -> None:
    """Send files over a one-way UDP link (data diode) with forward error correction."""


@diode.command("send")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--to", "to", required=True, metavar="udp://HOST:PORT", help="Where the receiver listens."
)
@click.option(
    "--fec-overhead", metavar="RATIO", help="Parity blocks per data block (default 0.25)."
)
@click.option(
    "--rate",
    metavar="BYTES_PER_S",
    help="Wire rate in bytes per second (default 20000000; 0 = unpaced).",
)
@click.option("--repeat", metavar="N", help="Passes over all files (carousel; default 1).")
def send(
    files: tuple[str, ...], to: str, fec_overhead: str | None, rate: str | None, repeat: str | None
) -> None:
    """Send FILE... to the receiver at --to."""
    from relay.diode.arguments import parse_send_options, parse_udp_url
    from relay.diode.sender import send_files

    host, port = parse_udp_url(to)
    options = parse_send_options(fec_overhead, rate, repeat)
    outgoing = [_read_file(Path(f)) for f in files]
    sent = send_files(outgoing, host, port, options)
    click.echo(f"sent {len(outgoing)} file(s) in {sent} datagrams to {to}", err=True)


@diode.command("receive")
@click.option(
    "--listen",
    required=True,
    metavar="HOST:PORT",
    help="HOST:PORT to listen on (port 0: any free port).",
)
@click.option(
    "--out", "out_dir", required=True, metavar="DIR", help="Folder for received files (made 0700)."
)
@click.option(
    "--expire", default="60s", show_default=True, help="Drop incomplete transfers idle this long."
)
def receive(listen: str, out_dir: str, expire: str) -> None:
    """Receive files until SIGTERM or SIGINT; write each one only when complete and verified."""
    from relay.diode.arguments import parse_listen
    from relay.diode.assembly import ReceiverLimits
    from relay.diode.receiver import open_socket, receive_forever
    from relay.durations import parse_duration
    from relay.transport.folder import ensure_private_dir

    host, port = parse_listen(listen)
    limits = ReceiverLimits(expire_after=float(parse_duration(expire)))
    ensure_private_dir(Path(out_dir))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with open_socket(host, port) as sock:
        bound = sock.getsockname()
        click.echo(f"relay: diode listening on {bound[0]}:{bound[1]}", err=True)
        assembler = receive_forever(sock, Path(out_dir), stop, _report, limits)
    counters = assembler.counters
    click.echo(
        f"relay: diode stopped ({counters.accepted} blocks used, {counters.duplicate} not needed, "
        f"{counters.malformed} malformed, {counters.refused} refused)",
        err=True,
    )


def _report(line: str) -> None:
    click.echo(f"relay: diode: {line}", err=True)


def _read_file(path: Path) -> EncodedFile:
    """A regular file named by the operator (links followed), within a size cap, read straight
    into the object a transfer carries."""
    from relay.diode.manifest import FileChanged, read_object
    from relay.diode.sender import EncodedFile

    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"{path} is not a regular file", code=NOT_REGULAR_FILE)
            if info.st_size > MAX_SEND_BYTES:
                raise UsageError(f"{path} is over {MAX_SEND_BYTES} bytes", code=TOO_LARGE)
            return EncodedFile(read_object(path.name, handle, info.st_size))
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", code=NOT_FOUND) from None
    except FileChanged as exc:
        raise TransportError(f"cannot read {path}: it changed while being read ({exc})") from None
    except OSError as exc:
        raise TransportError(f"cannot read {path}: {exc.strerror}") from None
