"""The conn comparator and the fidelity tool's choice of settings per baseline."""

from __future__ import annotations

from pathlib import Path

from probe.fidelity import conn as conn_fidelity
from probe.fidelity.tool import ZEEK_LOCAL_NETS, Capture, baseline_settings, find_captures


def conn(orig: str, orig_p: int, resp: str, resp_p: int, proto: str = "tcp", service: str | None = None,
         orig_pkts: int = 3, resp_pkts: int = 2, **over) -> dict:
    event = {
        "ts": 10.0, "kind": "conn", "id.orig_h": orig, "id.orig_p": orig_p, "id.resp_h": resp, "id.resp_p": resp_p,
        "proto": proto, "service": service, "duration": 1.5, "conn_state": "SF", "history": "ShADadFf",
        "orig_pkts": orig_pkts, "resp_pkts": resp_pkts, "orig_l2_bytes": orig_pkts * 100,
        "resp_l2_bytes": resp_pkts * 100, "orig_payload_bytes": 40, "resp_payload_bytes": 20, "vlans": None,
    }
    event.update(over)
    return event


def flow(proto: str, a: str, a_port: int, b: str, b_port: int, a_pkts: int, b_pkts: int, app=(), payload=(40, 20)):
    return {
        "proto": proto, "a_ip": a, "a_port": a_port, "b_ip": b, "b_port": b_port,
        "a_to_b": {"packets": a_pkts, "bytes": a_pkts * 100, "payload": payload[0]},
        "b_to_a": {"packets": b_pkts, "bytes": b_pkts * 100, "payload": payload[1]}, "app": list(app),
    }


def test_truth_conversations_agree_with_icmp_folded_per_address_pair() -> None:
    truth = {"flows": [
        flow("tcp", "10.0.0.2", 40000, "10.0.0.1", 443, 3, 2, app=["tls"]),
        flow("icmp", "10.0.0.2", 0, "10.0.0.1", 0, 2, 3, payload=(0, 0)),
    ]}
    events = [
        conn("10.0.0.2", 40000, "10.0.0.1", 443, service="ssl"),
        # echo request/reply, and an unreachable the other way: Zeek keeps them apart
        conn("10.0.0.2", 8, "10.0.0.1", 0, proto="icmp", orig_pkts=2, resp_pkts=2),
        conn("10.0.0.1", 3, "10.0.0.2", 3, proto="icmp", orig_pkts=1, resp_pkts=0),
    ]
    [row] = conn_fidelity.compare_truth(truth, events, "t.pcap")
    assert (row.expected, row.found, row.matched, row.misses) == (2, 2, 2, [])


def test_truth_differences_are_named() -> None:
    truth = {"flows": [flow("tcp", "10.0.0.2", 40000, "10.0.0.1", 445, 3, 2, app=["nbss", "smb2"]),
                       flow("udp", "10.0.0.2", 5000, "10.0.0.1", 53, 1, 1)]}
    events = [conn("10.0.0.2", 40000, "10.0.0.1", 445, resp_pkts=1),
              conn("10.0.0.1", 53, "10.0.0.2", 5000, proto="udp")]
    [row] = conn_fidelity.compare_truth(truth, events, "t.pcap")
    assert row.matched == 0
    assert "packets b->a: truth=2 probe=1" in row.misses[0]
    assert "service: truth has smb, probe has none" in row.misses[0]
    assert row.misses[1] == "udp 10.0.0.2:5000->10.0.0.1:53: no conn event"
    assert row.misses[2].startswith("extra conn udp 10.0.0.1:53->10.0.0.2:5000")


def test_zeek_conn_log_keyed_and_cut() -> None:
    keyed = {"id.orig_h": "10.0.0.2", "id.orig_p": "40000", "id.resp_h": "10.0.0.1", "id.resp_p": "443",
             "proto": "tcp", "service": "ssl", "duration": "1.500001", "conn_state": "SF", "history": "ShADadFf",
             "orig_pkts": "3", "resp_pkts": "2", "tunnel_parents": "-", "uid": "Cxyz"}
    cut = {"id.ctx.vlan": "7", "history": "ShADadFf"}
    expected = {"expected": [{"tool": "zeek", "outputs": {
        "conn.log": {"kind": "zeek_log", "path": "conn", "records": [keyed]},
        "conn.log.cut": {"kind": "zeek_log_cut", "path": None, "records": [cut]},
    }}]}
    events = [conn("10.0.0.2", 40000, "10.0.0.1", 443, service="ssl", vlan=7, tunnel_parents=None)]
    keyed_row, cut_row = conn_fidelity.compare_corpus(expected, events, "c.pcap")
    assert (keyed_row.matched, cut_row.matched) == (1, 1), keyed_row.misses + cut_row.misses
    keyed["conn_state"] = "RSTO"
    cut["id.ctx.vlan"] = "8"
    keyed_row, cut_row = conn_fidelity.compare_corpus(expected, events, "c.pcap")
    assert "conn_state: zeek='RSTO' probe='SF'" in keyed_row.misses[0]
    assert "vlan: zeek='8' probe='7'" in cut_row.misses[0]


def test_arkime_sessions_and_suricata_flows() -> None:
    session = {"source": {"ip": "10.0.0.2", "port": 40000, "packets": 3, "bytes": 300},
               "destination": {"ip": "10.0.0.1", "port": 443, "packets": 2, "bytes": 200}}
    expected = {"expected": [
        {"tool": "arkime", "sessions": [session]},
        {"tool": "suricata", "test": "t", "checks": [
            {"count": 1, "match": {"event_type": "flow", "app_proto": "tls", "flow.pkts_toserver": 3,
                                   "flow.state": "closed", "tcp.state": "closed", "vlan": [5]}},
            {"count": 1, "match": {"event_type": "flow", "tcp.tcp_flags": "1b"}},
        ]},
    ]}
    events = [conn("10.0.0.2", 40000, "10.0.0.1", 443, service="ssl", vlans=[5])]
    arkime, suricata = conn_fidelity.compare_corpus(expected, events, "c.pcap")
    assert (arkime.source, arkime.matched) == ("arkime", 1)
    assert (suricata.expected, suricata.matched) == (2, 1)
    assert "not comparable: tcp.tcp_flags" in suricata.misses[0]
    session["destination"]["bytes"] = 201
    arkime, _ = conn_fidelity.compare_corpus(expected, events, "c.pcap")
    assert "destination.bytes: arkime=201 probe=200" in arkime.misses[0]


def test_settings_follow_the_baseline_tools(tmp_path: Path) -> None:
    capture = Capture(tmp_path / "x.pcap", tmp_path / "x.expected.json", "corpus")
    zeek_bare_c = {"expected": [{"tool": "zeek", "zeek_flags": ["-C", "-b"]}]}
    assert baseline_settings(capture, zeek_bare_c) == {
        "verify_ip_checksum": False, "verify_transport_checksums": False,
        "local_nets": list(ZEEK_LOCAL_NETS), "flip_by_server_port": False,
    }
    zeek_checking = {"expected": [{"tool": "zeek", "zeek_flags": []}, {"tool": "arkime"}]}
    settings = baseline_settings(capture, zeek_checking)
    assert settings["verify_transport_checksums"] and settings["flip_by_server_port"]
    assert baseline_settings(capture, {"expected": [{"tool": "suricata", "args": []}]}) == {
        "verify_ip_checksum": False, "verify_transport_checksums": False}
    assert baseline_settings(Capture(capture.path, capture.baseline_path, "truth"), zeek_bare_c) == {}


def test_find_captures_needs_a_baseline_beside_the_capture(tmp_path: Path) -> None:
    for name in ("a.pcap", "a.truth.json", "b.pcapng", "b.expected.json", "c.pcap", "notes.txt"):
        (tmp_path / name).write_text("")
    found = find_captures([tmp_path])
    assert [(c.name, c.source) for c in found] == [("a.pcap", "truth"), ("b.pcapng", "corpus")]
