"""DNS and HTTP events from whole captures against tshark truth and the corpus baselines.

Runs the real engine (``probe.replay.dissect_file``) over ../shared captures and checks
with the fidelity comparators: every truth record of ``dns.pcap``, ``http.pcap`` and
``mixed.pcap`` must agree field by field, and the corpus captures with DNS or HTTP
expectations must agree except for the differences listed (and explained) below.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probe.fidelity import dns as dns_fidelity
from probe.fidelity import http as http_fidelity
from protocols.dissect import DissectSettings
from protocols.events import as_json_object
from tests.conftest import corpus_captures

replay = pytest.importorskip("probe.replay", reason="the flow engine (probe.replay.dissect_file) is not merged yet")

pytestmark = pytest.mark.shared

TRUTH_CAPTURES = ["dns.pcap", "http.pcap", "mixed.pcap"]

#: (capture, kind, source) -> why the probe knowingly differs from that tool there
KNOWN_DIFFERENCES = {
    ("sv-dns-truncated-rname.pcap", "dns", "suricata"):
        "the query holds more than 25 questions: Zeek (whose dns.log the probe follows) "
        "takes it for non-DNS traffic and logs nothing; Suricata logs it with a name cut at 1025",
}


def _events(path: Path, **settings) -> list[dict]:
    events, _counters = replay.dissect_file(path, DissectSettings(**settings))
    return [as_json_object(e) for e in events]


def _checksums_ignored(expected: dict) -> bool:
    """Whether every tool behind a baseline ran without checksum checks (as the probe must then).

    Arkime never checks them; Zeek does unless run with -C; Suricata unless with -k none.
    """
    for tool in expected.get("expected", []):
        if tool.get("tool") == "zeek" and "-C" not in (tool.get("zeek_flags") or []):
            return False
        if tool.get("tool") == "suricata" and "-k none" not in (tool.get("args") or []):
            return False
    return True


@pytest.mark.parametrize("name", TRUTH_CAPTURES)
def test_truth_agreement_is_complete(pcaps_dir: Path, name: str) -> None:
    truth = json.loads((pcaps_dir / name.replace(".pcap", ".truth.json")).read_text())
    events = _events(pcaps_dir / name)
    rows = dns_fidelity.compare_truth(truth, events, name) + http_fidelity.compare_truth(truth, events, name)
    for row in rows:
        assert row.expected == len(truth.get(row.kind, []))
        assert row.matched == row.expected, f"{name} {row.kind}: " + "\n".join(row.misses)
    assert sum(row.expected for row in rows) > 0


def _dns_http_corpus() -> list[Path]:
    out = []
    for path in corpus_captures():
        expected = json.loads(path.with_name(path.name.rsplit(".", 1)[0] + ".expected.json").read_text())
        if any(c.startswith("dns") or c == "http" for c in expected.get("categories", [])):
            out.append(path)
    return out


@pytest.mark.parametrize("path", _dns_http_corpus(), ids=lambda p: p.name)
def test_corpus_agreement(path: Path) -> None:
    expected = json.loads(path.with_name(path.name.rsplit(".", 1)[0] + ".expected.json").read_text())
    events = _events(path, verify_ip_checksum=not _checksums_ignored(expected))
    rows = dns_fidelity.compare_corpus(expected, events, path.name) + http_fidelity.compare_corpus(
        expected, events, path.name
    )
    for row in rows:
        known = KNOWN_DIFFERENCES.get((path.name, row.kind, row.source))
        if known is not None:
            assert row.matched < row.expected, f"known difference gone, update the list: {known}"
            continue
        assert row.matched == row.expected, f"{path.name} {row.kind}/{row.source}: " + "\n".join(row.misses)
