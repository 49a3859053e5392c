"""Event classes, the kind registry and the canonical body encoding.

An event kind is a frozen, slotted attrs class decorated with :func:`event_kind`. Its
``ts`` field becomes the envelope's time; every other field goes into the body under
Zeek's name. A nested attrs value (``id: ConnId``) is flattened with dots, as Zeek
writes it (``id.orig_h``). The body is a msgpack map with its keys sorted, so the same
values always give the same bytes: that is what gets signed, sent and stored.
"""

from __future__ import annotations

import typing
from typing import Any, Callable, Iterable

import attrs
import msgpack

from protocols.errors import EventError

#: kind name -> event class
KINDS: dict[str, type] = {}


@attrs.frozen(slots=True)
class ConnId:
    """A connection's endpoints as Zeek's ``conn_id``: originator and responder."""

    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int


@attrs.frozen(slots=True)
class EncodedEvent:
    """An event ready to be sequenced and signed: its time, kind and canonical body."""

    ts: float
    kind: str
    body: bytes


def _attrs_class_of(annotation: Any) -> type | None:
    """The attrs class inside ``annotation`` (``X`` or ``X | None``), else None."""
    if isinstance(annotation, type) and attrs.has(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and attrs.has(arg):
            return arg
    return None


def _field_paths(cls: type, prefix: str = "") -> list[tuple[str, tuple[str, ...]]]:
    paths: list[tuple[str, tuple[str, ...]]] = []
    for field in attrs.fields(cls):
        if not prefix and field.name == "ts":
            continue
        name = field.metadata.get("zeek", field.name)
        nested = _attrs_class_of(field.type)
        if nested is not None:
            for sub_name, sub_path in _field_paths(nested, prefix + name + "."):
                paths.append((sub_name, (field.name,) + sub_path))
        else:
            paths.append((prefix + name, (field.name,)))
    return paths


def _compile_flattener(cls: type, plan: tuple[tuple[str, tuple[str, ...]], ...]) -> Callable[[Any], dict]:
    """Generate ``lambda e: {name: e.a.b, ...}`` for speed: one dict display, no loops."""
    items = []
    for name, path in plan:
        expr = "e"
        guards = []
        for step in path[:-1]:
            expr += "." + step
            guards.append(f"{expr} is not None")
        expr += "." + path[-1]
        if guards:
            expr = f"({expr} if {' and '.join(guards)} else None)"
        items.append(f"{name!r}: {expr}")
    source = "def flatten(e):\n    return {" + ", ".join(items) + "}\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<flatten {cls.__name__}>", "exec"), namespace)
    return namespace["flatten"]


def event_kind(kind: str) -> Callable[[type], type]:
    """Register an attrs event class under ``kind`` and precompute its encoding plan.

    Field values must be None, bool, int, float, str or tuples of them (no sets: use a
    sorted tuple), so that one value always has one encoding.
    """

    def register(cls: type) -> type:
        if kind in KINDS:
            raise ValueError(f"event kind {kind!r} registered twice")
        if not attrs.has(cls) or "ts" not in attrs.fields_dict(cls):
            raise TypeError(f"{cls.__name__} must be an attrs class with a ts field")
        attrs.resolve_types(cls)
        for field in attrs.fields(cls):
            nested = _attrs_class_of(field.type)
            if nested is not None:
                attrs.resolve_types(nested)
        plan = tuple(sorted(_field_paths(cls)))
        cls.KIND = kind
        cls._PLAN = plan
        cls._FLATTEN = staticmethod(_compile_flattener(cls, plan))
        KINDS[kind] = cls
        return cls

    return register


def flatten(event: Any) -> dict[str, Any]:
    """The body of ``event`` as a dict of Zeek field names (sorted), without ``ts``."""
    return event._FLATTEN(event)


def as_json_object(event: Any) -> dict[str, Any]:
    """``ts``, ``kind`` and the body of an unsigned event, shaped like an exported one."""
    out: dict[str, Any] = {"ts": float(event.ts), "kind": event.KIND}
    for key, value in event._FLATTEN(event).items():
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, UnicodeEncodeError)
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def encode_body(event: Any) -> EncodedEvent:
    """Encode ``event`` canonically; raise :class:`EventError` if it cannot be encoded."""
    try:
        body = _pack(event._FLATTEN(event))
    except _ENCODE_ERRORS as exc:
        raise EventError(f"{event.KIND} event not encodable: {exc}", reason="encoding") from exc
    return EncodedEvent(float(event.ts), event.KIND, body)


def kinds_table() -> Iterable[tuple[str, list[str]]]:
    """(kind, field names) for every registered kind, for docs and the console."""
    for kind in sorted(KINDS):
        yield kind, ["ts"] + [name for name, _ in KINDS[kind]._PLAN]

