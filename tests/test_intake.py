"""The one import loop (:mod:`relay.intake`) on its own, over the in-memory transport: what it
decides itself (head-first skips, per-file isolation, removal) with a recording side in place of
the pipeline (the pipeline has its own tests)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from relay.bundle.limits import Limits
from relay.intake import import_location
from relay.transport.base import TransportOptions
from relay.transport.memory import memory_medium

LIMITS = Limits(max_bundle_bytes=1024, max_secret_bytes=64, max_entries=10, quarantine_bytes=0)


@dataclass
class RecordingSide:
    """Judges ``known*`` files from their head, blows up on ``boom*``, consumes the rest."""

    limits: Limits = LIMITS
    read_whole: list[str] = field(default_factory=list)

    def judge_head(self, name: str, head: bytes) -> str | None:
        return f"{name}:applied-by-head" if head.startswith(b"known") else None

    def import_bytes(self, name: str, data: bytes, listed: bool = False) -> str:
        self.read_whole.append(name)
        return f"{name}:imported"

    def unread(self, name: str, status: str, code: str, message: str) -> str:
        return f"{name}:{status}:{code}"

    def removable(self, outcome: str) -> bool:
        return outcome.endswith((":imported", ":applied-by-head"))


def _medium(files: dict[str, bytes]) -> str:
    name = f"intake-{secrets.token_hex(4)}"
    medium = memory_medium(name)
    for file, data in files.items():
        medium.write(file, data)
    return f"memory://{name}"


def test_a_file_judged_from_its_head_is_never_read_whole() -> None:
    side = RecordingSide()
    location = _medium({"a.bundle": b"known head", "b.bundle": b"fresh"})
    assert import_location(location, None, side) == [
        "a.bundle:applied-by-head",
        "b.bundle:imported",
    ]
    assert side.read_whole == ["b.bundle"]


def test_an_oversized_file_is_rejected_unread_and_the_loop_goes_on() -> None:
    side = RecordingSide()
    location = _medium({"a.bundle": b"x" * 2048, "b.bundle": b"fresh"})
    assert import_location(location, None, side) == [
        "a.bundle:rejected:too_large",
        "b.bundle:imported",
    ]


def test_delete_after_import_removes_only_what_the_side_consumed() -> None:
    side = RecordingSide()
    location = _medium({"a.bundle": b"x" * 2048, "b.bundle": b"fresh", "c.bundle": b"known"})
    import_location(location, TransportOptions(delete_after_import=True), side)
    assert memory_medium(location.removeprefix("memory://")).names() == ["a.bundle"]
