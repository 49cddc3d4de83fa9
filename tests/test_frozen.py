"""``relay.frozen``: the records ``relay agent get`` imports behave as frozen dataclasses."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from relay.frozen import FrozenInstanceError, frozen, replace


@frozen
class Point:
    """A record with a default."""

    x: int
    y: int = 0


@frozen
class Hidden:
    value: bytes
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(sorted(self.tags)))

    def __repr__(self) -> str:
        return "Hidden(<private>)"


@dataclasses.dataclass(frozen=True)
class Twin:
    x: int
    y: int = 0


def test_fields_in_order_with_defaults_by_position_or_name() -> None:
    assert (Point(1).x, Point(1).y) == (1, 0)
    assert Point(1, 2) == Point(y=2, x=1)
    assert Point.__match_args__ == ("x", "y")
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, 2, z=3)  # type: ignore[call-arg]


def test_repr_eq_and_hash_as_a_frozen_dataclass() -> None:
    assert repr(Point(1, 2)) == repr(Twin(1, 2)).replace("Twin", "Point")
    assert Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != Twin(1, 2)
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert len({Point(1, 2), Point(1, 2), Point(2, 2)}) == 2


def test_assignment_and_deletion_are_refused() -> None:
    point = Point(1)
    with pytest.raises(FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del point.x  # type: ignore[misc]
    assert point.x == 1


def test_post_init_and_an_own_repr_are_kept() -> None:
    hidden = Hidden(b"secret", ("b", "a"))
    assert hidden.tags == ("a", "b")
    assert repr(hidden) == "Hidden(<private>)"
    assert "secret" not in repr(hidden)


def test_replace_copies_with_changes_and_runs_post_init() -> None:
    moved = replace(Point(1, 2), y=5)
    assert moved == Point(1, 5)
    assert replace(Hidden(b"v"), tags=("z", "y")).tags == ("y", "z")
    with pytest.raises(TypeError):
        replace(Point(1), z=1)


def test_instances_pickle() -> None:
    assert pickle.loads(pickle.dumps(Point(3, 4))) == Point(3, 4)  # noqa: S301 - our own bytes
