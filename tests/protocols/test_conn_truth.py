"""conn events against tshark's flows for every capture in ../shared/pcaps.

Per TCP/UDP flow: the same endpoints with the same originator (a = orig), the same
packet, frame-byte and payload-byte counts each way. ICMP/ICMPv6: tshark counts per
address pair (ports 0); our ICMP conns are per type pair as in Zeek, so they are summed
per address pair before comparing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from probe.replay import dissect_file
from protocols.events.conn import Conn
from tests.conftest import shared_pcaps

pytestmark = pytest.mark.shared


def _truth_rows(truth: dict) -> dict[tuple, tuple]:
    rows = {}
    for flow in truth["flows"]:
        proto = flow["proto"]
        if proto in ("icmp", "icmpv6"):
            key = ("icmp", flow["a_ip"], 0, flow["b_ip"], 0)
        else:
            key = (proto, flow["a_ip"], flow["a_port"], flow["b_ip"], flow["b_port"])
        a, b = flow["a_to_b"], flow["b_to_a"]
        assert key not in rows, f"truth has two flows for {key}"
        rows[key] = (a["packets"], a["bytes"], a["payload"], b["packets"], b["bytes"], b["payload"])
    return rows


def _our_rows(conns: list[Conn]) -> dict[tuple, tuple]:
    rows: dict[tuple, tuple] = {}
    icmp: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    icmp_first: dict[frozenset, tuple[str, str]] = {}
    for conn in sorted(conns, key=lambda c: c.ts):
        cid = conn.id
        if conn.proto == "icmp":
            pair = frozenset((cid.orig_h, cid.resp_h))
            first = icmp_first.setdefault(pair, (cid.orig_h, cid.resp_h))
            same = (cid.orig_h, cid.resp_h) == first
            counts = icmp[("icmp", first[0], 0, first[1], 0)]
            fwd = (conn.orig_pkts, conn.orig_l2_bytes, 0)
            rev = (conn.resp_pkts, conn.resp_l2_bytes, 0)
            a, b = (fwd, rev) if same else (rev, fwd)
            for i in range(3):
                counts[i] += a[i]
                counts[3 + i] += b[i]
            continue
        key = (conn.proto, cid.orig_h, cid.orig_p, cid.resp_h, cid.resp_p)
        assert key not in rows, f"two conns for {key}"
        rows[key] = (
            conn.orig_pkts, conn.orig_l2_bytes, conn.orig_payload_bytes,
            conn.resp_pkts, conn.resp_l2_bytes, conn.resp_payload_bytes,
        )
    rows.update({key: tuple(value) for key, value in icmp.items()})
    return rows


@pytest.mark.parametrize("capture", shared_pcaps(), ids=lambda p: p.name)
def test_conn_matches_tshark_flows(capture: Path, pcaps_dir: Path) -> None:
    truth = json.loads(capture.with_suffix(".truth.json").read_text())
    events, counters = dissect_file(capture)
    conns = [event for event in events if isinstance(event, Conn)]
    expected = _truth_rows(truth)
    found = _our_rows(conns)
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    assert not missing and not extra, f"missing {missing}, extra {extra}"
    wrong = {key: (found[key], expected[key]) for key in expected if found[key] != expected[key]}
    assert not wrong, f"(ours, tshark) per flow: {wrong}"
    assert counters["packets"] == truth["summary"]["packets"]
    assert not any(key.startswith("weird:") for key in counters), counters


def test_every_shared_capture_is_covered(pcaps_dir: Path) -> None:
    assert len(shared_pcaps()) >= 7
