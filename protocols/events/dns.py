"""``dns``: one DNS query/response pair, as a line of Zeek's dns.log."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("dns")
@attrs.frozen(slots=True)
class Dns:
    """A DNS transaction; fields and meanings are those of Zeek's dns.log.

    As in Zeek, ``query`` is lower-cased, ``answers``/``TTLs`` hold only answer-section
    records that Zeek summarises (``TXT 14 v=spf1 ...``, ``RRSIG 5 cmu.edu``,
    ``<unknown type=N>``), and ``AA``/``RA``/``rtt`` come from the first such answer.

    Extras beyond Zeek: every answer-section record as parallel tuples
    ``answer_names``/``answer_types``/``answer_ttls``/``answer_data`` (data in
    presentation form: address, target name, ``pref host`` for MX, ``prio weight port
    target`` for SRV, ``mname rname serial`` for SOA, Zeek's ``TXT n s`` form for TXT,
    None for types without one), the response's header counts ``n_answers``,
    ``n_authority``, ``n_additional``, and ``saw_query``/``saw_reply`` (which messages of
    the pair were seen).
    """

    ts: float
    uid: str
    id: ConnId
    proto: str
    trans_id: int | None = None
    rtt: float | None = None
    query: str | None = None
    qclass: int | None = None
    qclass_name: str | None = None
    qtype: int | None = None
    qtype_name: str | None = None
    rcode: int | None = None
    rcode_name: str | None = None
    AA: bool = False
    TC: bool = False
    RD: bool = False
    RA: bool = False
    Z: int = 0
    answers: tuple[str, ...] | None = None
    TTLs: tuple[float, ...] | None = None
    rejected: bool = False
    opcode: int | None = None
    opcode_name: str | None = None
    answer_names: tuple[str, ...] = ()
    answer_types: tuple[str, ...] = ()
    answer_ttls: tuple[int, ...] = ()
    answer_data: tuple[str | None, ...] = ()
    n_answers: int | None = None
    n_authority: int | None = None
    n_additional: int | None = None
    saw_query: bool = False
    saw_reply: bool = False
