"""Quarantine of rejected bundles within a cap: ``relay.quarantine``."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

from relay.quarantine import META_SUFFIX, Quarantine, keep, safe_name

NOON = 1_767_268_800.0  # 2026-01-01T12:00:00Z


def test_safe_name_keeps_no_path_no_leading_dot_and_no_odd_characters() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\temp\\x.bundle") == "x.bundle"
    assert safe_name("..hidden") == "hidden"
    assert safe_name("a b;c$(d).bundle") == "a_b_c__d_.bundle"
    assert safe_name("dir/") == "unnamed"
    assert len(safe_name("x" * 500)) == 100


def test_a_copy_is_private_named_by_time_reason_and_name(tmp_path: Path) -> None:
    folder = tmp_path / "quarantine"
    path = Quarantine(folder, cap=1000).keep("../evil name.bundle", b"abc", "bad_signature", NOON)
    assert path.parent == folder
    assert path.read_bytes() == b"abc"
    assert path.name.startswith("20260101T120000Z.000000000")
    assert path.name.endswith(".bad_signature.evil_name.bundle")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_two_rejections_in_the_same_instant_do_not_overwrite(tmp_path: Path) -> None:
    q = Quarantine(tmp_path, cap=1000)
    first = q.keep("a.bundle", b"1", "malformed", NOON)
    second = q.keep("a.bundle", b"2", "malformed", NOON)
    assert first != second
    assert {first.read_bytes(), second.read_bytes()} == {b"1", b"2"}


def test_the_oldest_copies_make_room_and_the_cap_holds(tmp_path: Path) -> None:
    q = Quarantine(tmp_path, cap=100)
    kept = [q.keep(f"{i}.bundle", bytes([i]) * 40, "malformed", NOON + i) for i in range(4)]
    assert q.used() <= 100
    assert [p.exists() for p in kept] == [False, False, True, True]


def test_a_file_larger_than_the_cap_leaves_a_record_not_a_copy(tmp_path: Path) -> None:
    q = Quarantine(tmp_path, cap=1000)
    q.keep("small.bundle", b"s" * 900, "malformed", NOON - 1)
    data = b"x" * 1001
    path = q.keep("big.bundle", data, "too_large", NOON)
    assert path.name.endswith(".too_large.big.bundle" + META_SUFFIX)
    record = json.loads(path.read_bytes())
    assert record == {
        "file": "big.bundle",
        "reason": "too_large",
        "size": 1001,
        "sha256": hashlib.sha256(data).hexdigest(),
        "time": int(NOON),
        "kept": False,
    }
    assert q.used() <= 1000  # the older copy made room for the record


def test_hidden_files_and_folders_are_not_counted(tmp_path: Path) -> None:
    (tmp_path / ".part").write_bytes(b"x" * 500)
    (tmp_path / "sub").mkdir()
    q = Quarantine(tmp_path, cap=10)
    assert q.used() == 0
    q.keep("a", b"12345", "malformed", NOON)
    assert (tmp_path / ".part").exists()
    assert q.used() == 5


def test_a_missing_folder_holds_nothing(tmp_path: Path) -> None:
    assert Quarantine(tmp_path / "absent", cap=10).used() == 0


def test_the_uncapped_keep_writes_the_whole_file(tmp_path: Path) -> None:
    path = keep(tmp_path, "x.bundle", b"y" * 5000, "expired", NOON)
    assert path.read_bytes() == b"y" * 5000
    assert ".expired.x.bundle" in path.name
