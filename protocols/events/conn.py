"""``conn``: one finished flow, as a line of Zeek's conn.log."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("conn")
@attrs.frozen(slots=True)
class Conn:
    """A bidirectional flow summary; fields and meanings are those of Zeek's conn.log.

    ``orig_bytes``/``resp_bytes`` are payload bytes (from TCP sequence numbers for TCP),
    ``*_ip_bytes`` count IP-layer bytes, ``history`` and ``conn_state`` use Zeek's letters.
    ``vlan``/``inner_vlan`` are Zeek's vlan-logging fields; ``vlans`` is the whole tag stack.

    Beyond Zeek: ``orig_l2_bytes``/``resp_l2_bytes`` sum the frames' wire lengths and
    ``orig_payload_bytes``/``resp_payload_bytes`` the TCP/UDP payload lengths of every
    packet counted (retransmissions included), the way tshark and Arkime count.
    """

    ts: float
    uid: str
    id: ConnId
    proto: str
    service: str | None
    duration: float | None
    orig_bytes: int | None
    resp_bytes: int | None
    conn_state: str | None
    local_orig: bool | None
    local_resp: bool | None
    missed_bytes: int
    history: str | None
    orig_pkts: int
    orig_ip_bytes: int
    resp_pkts: int
    resp_ip_bytes: int
    tunnel_parents: tuple[str, ...] | None
    ip_proto: int
    vlan: int | None = None
    inner_vlan: int | None = None
    vlans: tuple[int, ...] | None = None
    orig_l2_addr: str | None = None
    resp_l2_addr: str | None = None
    orig_l2_bytes: int | None = None
    resp_l2_bytes: int | None = None
    orig_payload_bytes: int | None = None
    resp_payload_bytes: int | None = None
