"""The dns/http fidelity comparators: agreement when fields agree, a named miss when not."""

from __future__ import annotations

from probe.fidelity import dns as dns_fidelity
from probe.fidelity import http as http_fidelity
from protocols.dns import DnsAnalyzer
from protocols.http import HttpAnalyzer
from tests.protocols.recording_ctx import RecordingContext
from tests.protocols.test_dns import A_ANSWER, query, response, rr
from tests.protocols.test_http import GET, OK

CLIENT, SERVER = ("10.0.0.2", 40000), ("10.0.0.1", 53)


def dns_events(*messages) -> list[dict]:
    ctx = RecordingContext(orig=CLIENT, resp=SERVER)
    analyzer = DnsAnalyzer(ctx)
    for is_orig, payload, ts in messages:
        analyzer.data(is_orig, payload, ts)
    analyzer.end(9.0)
    return ctx.exported()


def truth_dns(**over) -> dict:
    rec = {
        "frame": 1, "ts": 1.0, "transport": "udp", "stream": 0, "client_ip": CLIENT[0],
        "client_port": CLIENT[1], "server_ip": SERVER[0], "server_port": SERVER[1], "id": 7,
        "opcode": 0, "qname": "www.Example.com", "qtype": "A", "response_frame": 2,
        "rcode": "NOERROR", "answers": [{"name": "www.example.com", "type": "A", "ttl": 300, "data": "192.0.2.7"}],
        "n_authority": 0, "n_additional": 0,
    }
    rec.update(over)
    return {"dns": [rec]}


def test_dns_truth_agrees_and_each_difference_is_a_miss():
    events = dns_events((True, query(7), 1.0), (False, response(7, answers=[A_ANSWER]), 1.1))
    [row] = dns_fidelity.compare_truth(truth_dns(), events, "t.pcap")
    assert (row.expected, row.matched, row.misses) == (1, 1, [])
    [row] = dns_fidelity.compare_truth(truth_dns(rcode="NXDOMAIN", n_additional=1), events, "t.pcap")
    assert row.matched == 0
    assert "rcode: truth='NXDOMAIN' probe='NOERROR'" in row.misses[0] and "n_additional" in row.misses[0]
    [row] = dns_fidelity.compare_truth(truth_dns(id=8), events, "t.pcap")
    assert row.matched == 0 and "no dns event" in row.misses[0]


def test_dns_truth_txt_data_compares_in_zeek_form():
    txt = rr(b"\xc0\x0c", 16, 0, b"\x0ev=spf1 mx -all")
    events = dns_events((True, query(7, qtype=16), 1.0), (False, response(7, qtype=16, answers=[txt]), 1.1))
    answers = [{"name": "www.example.com", "type": "TXT", "ttl": 0, "data": ["v=spf1 mx -all"]}]
    [row] = dns_fidelity.compare_truth(truth_dns(qtype="TXT", answers=answers), events, "t.pcap")
    assert row.matched == 1, row.misses


def test_dns_zeek_log_and_suricata_checks():
    events = dns_events((True, query(7), 1.0), (False, response(7, answers=[A_ANSWER]), 1.5))
    record = {
        "uid": "Cwhatever", "id.orig_h": CLIENT[0], "id.orig_p": str(CLIENT[1]), "id.resp_h": SERVER[0],
        "id.resp_p": str(SERVER[1]), "proto": "udp", "trans_id": "7", "rtt": "0.500000",
        "query": "www.example.com", "qclass": "1", "qclass_name": "C_INTERNET", "qtype": "1",
        "qtype_name": "A", "rcode": "0", "rcode_name": "NOERROR", "AA": "T", "TC": "F", "RD": "T",
        "RA": "T", "Z": "0", "answers": "192.0.2.7", "TTLs": "300.000000", "rejected": "F",
    }
    expected = {"expected": [
        {"tool": "zeek", "outputs": {"dns.log": {"kind": "zeek_log", "path": "dns", "records": [record]}}},
        {"tool": "suricata", "test": "t", "checks": [
            {"count": 2, "match": {"event_type": "dns"}},
            {"count": 1, "match": {"event_type": "dns", "dns.type": "response", "dns.answers[0].rdata": "192.0.2.7"}},
            {"count": 1, "match": {"event_type": "dns", "dns.queries[0].rrname.__len": 99}},
        ]},
    ]}
    zeek, suricata = dns_fidelity.compare_corpus(expected, events, "c.pcap")
    assert (zeek.source, zeek.matched, zeek.expected) == ("zeek", 1, 1), zeek.misses
    assert (suricata.source, suricata.matched, suricata.expected) == ("suricata", 2, 3)
    assert "rrname.__len=99" in suricata.misses[0]
    record["rcode_name"] = "NXDOMAIN"
    [zeek, _] = dns_fidelity.compare_corpus(expected, events, "c.pcap")
    assert zeek.matched == 0 and "rcode_name: zeek='NXDOMAIN' probe='NOERROR'" in zeek.misses[0]


def test_http_truth_agrees_and_differences_are_misses():
    ctx = RecordingContext(proto="tcp", orig=CLIENT, resp=("10.0.0.1", 80))
    analyzer = HttpAnalyzer(ctx)
    analyzer.data(True, GET, 1.0)
    analyzer.data(False, OK, 1.1)
    analyzer.end(2.0)
    rec = {
        "frame": 4, "ts": 1.0, "stream": 0, "client_ip": CLIENT[0], "client_port": CLIENT[1],
        "server_ip": "10.0.0.1", "server_port": 80, "method": "GET", "host": "www.example.com:8080",
        "uri": "/index.html", "version": "HTTP/1.1", "user_agent": "curl/7.88.1",
        "request_content_length": None, "request_transfer_encoding": None, "status": 200, "reason": "OK",
        "response_frame": 6, "response_content_length": 22, "response_transfer_encoding": None,
        "response_content_type": "text/html", "interim_statuses": [],
    }
    [row] = http_fidelity.compare_truth({"http": [rec]}, ctx.exported(), "h.pcap")
    assert (row.matched, row.misses) == (1, [])
    rec["interim_statuses"] = [100]
    rec["response_content_type"] = "text/plain"
    [row] = http_fidelity.compare_truth({"http": [rec]}, ctx.exported(), "h.pcap")
    assert row.matched == 0
    assert "interim_statuses" in row.misses[0] and "response_content_type" in row.misses[0]
