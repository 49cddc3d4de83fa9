"""Frozen record classes for the modules ``relay agent get`` imports, without ``dataclasses``.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis`` and ``tokenize``): about a
fifth of what ``relay agent get`` imports beyond the interpreter (docs/performance.md). The
classes on that path use :func:`frozen` instead of ``@dataclass(frozen=True)``, with the same
behaviour for what they use: an ``__init__`` taking the annotated fields in order (defaults
allowed, ``__post_init__`` called if defined), ``__repr__`` (unless the class defines one),
``__eq__`` and ``__hash__`` over the fields, assignment refused, ``__match_args__``.
:func:`replace` is ``dataclasses.replace`` for them. Other modules keep ``dataclasses``.
"""

from __future__ import annotations

from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")

_FIELDS = "__frozen_fields__"


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen instance."""


@dataclass_transform(frozen_default=True)
def frozen(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen record of its annotated fields (see the module docstring)."""
    # not inspect.get_annotations: importing inspect is what this module avoids
    names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063
    defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
    params, body = [], []
    for name in names:
        params.append(f"{name}=__defaults[{name!r}]" if name in defaults else name)
        body.append(f"    __set(self, {name!r}, {name})")
    if "__post_init__" in cls.__dict__:
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body or ["    pass"])
    scope: dict[str, Any] = {"__defaults": defaults, "__set": object.__setattr__}
    exec(source, scope)  # noqa: S102 - source built from the class's own field names
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    setattr(cls, "__init__", init)  # noqa: B010
    setattr(cls, _FIELDS, names)
    setattr(cls, "__match_args__", names)  # noqa: B010
    for attr, value in (
        ("__repr__", _repr),
        ("__eq__", _eq),
        ("__hash__", _hash),
        ("__setattr__", _refuse_set),
        ("__delattr__", _refuse_delete),
    ):
        if attr not in cls.__dict__:
            setattr(cls, attr, value)
    return cls


def replace(obj: T, **changes: Any) -> T:
    """A copy of the frozen record ``obj`` with ``changes`` (as ``dataclasses.replace``)."""
    for name in getattr(type(obj), _FIELDS):
        changes.setdefault(name, getattr(obj, name))
    return type(obj)(**changes)


def _values(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, name) for name in getattr(type(obj), _FIELDS))


def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in getattr(type(self), _FIELDS))
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: object) -> Any:  # bool, or NotImplemented
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _refuse_set(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_delete(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")
