"""docs/events.md, generated from the registered event kinds so it cannot fall behind."""

from __future__ import annotations

import inspect

import attrs

import protocols.parsers  # noqa: F401  (registers every parser's kinds)
from protocols.events.base import KINDS, _attrs_class_of


def _type_text(annotation: object) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "").replace("NoneType", "None")


def _fields(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for field in attrs.fields(cls):
        name = field.metadata.get("zeek", field.name)
        nested = _attrs_class_of(field.type)
        if nested is not None:
            rows += _fields(nested, prefix + name + ".")
        else:
            rows.append((prefix + name, _type_text(field.type)))
    return rows


def events_markdown() -> str:
    lines = [
        "# Event kinds",
        "",
        "Every event the probe delivers has an envelope (`probe_id`, `boot_id`, `seq`, `ts`,",
        "`kind`) and a body whose fields follow the Zeek log of the same name: same field",
        "names, same meanings, so that tools which read Zeek logs read these. Fields beyond",
        "Zeek's are described in each kind's note. `ts` is the event's time (for `conn`, the",
        "flow's first packet, as in Zeek). `id.orig_h`/`id.orig_p`/`id.resp_h`/`id.resp_p` are",
        "the flow's originator and responder.",
        "",
        "Encoding: the body is a msgpack map with its keys sorted (values: nil, bool, int,",
        "float, str, or arrays of them); the signed envelope is the msgpack array",
        "`[1, probe_id, boot_id, seq, ts, kind, body]` (docs/protocol.md). `python -m probe",
        "core export` prints each event as one JSON object: the envelope fields, then the body.",
        "",
        "This page is generated from `protocols/events/` by `python -m probe events-docs`;",
        "a test fails when the two differ.",
        "",
    ]
    for kind in sorted(KINDS):
        cls = KINDS[kind]
        doc = inspect.cleandoc(cls.__doc__ or "").replace("\n\n", "\n\n> ")
        lines += [f"## `{kind}`", "", f"> {doc}", "", "| field | type |", "|---|---|"]
        for name, type_text in _fields(cls):
            lines.append(f"| `{name}` | {type_text.replace('|', 'or')} |")
        lines.append("")
    return "\n".join(lines)
