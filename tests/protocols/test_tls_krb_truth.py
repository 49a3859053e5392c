"""ssl and kerberos events of whole captures against tshark truth and the corpus baselines.

Truth (../shared/pcaps): every TLS connection and every Kerberos exchange must agree on
every truth field. Corpus (../shared/corpus): every Zeek ssl.log/kerberos.log record,
Suricata tls/krb5 check and Arkime TLS/krb5 session must agree, including the Kerberos AP
exchanges that the SMB parser hands over from SPNEGO.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probe.fidelity import kerberos as krb_fidelity
from probe.fidelity import ssl as ssl_fidelity
from probe.replay import dissect_file
from protocols.dissect import DissectSettings
from protocols.events.base import as_json_object
from tests.conftest import corpus_captures

pytestmark = pytest.mark.shared

TRUTH_CAPTURES = ("tls", "kerberos", "mixed")


def _events(path: Path, settings: DissectSettings = DissectSettings()) -> list[dict]:
    events, _counters = dissect_file(path, settings)
    return [as_json_object(e) for e in events]


@pytest.mark.parametrize("name", TRUTH_CAPTURES)
def test_truth_agreement(pcaps_dir: Path, name: str) -> None:
    truth = json.loads((pcaps_dir / f"{name}.truth.json").read_text())
    events = _events(pcaps_dir / f"{name}.pcap")
    reports = ssl_fidelity.compare_truth(truth, events, name) + krb_fidelity.compare_truth(truth, events, name)
    tls_flows = {(r["client_ip"], r["client_port"], r["server_ip"], r["server_port"]) for r in truth.get("tls", [])}
    assert reports[0].expected == len(tls_flows)
    assert reports[1].expected == len(krb_fidelity.truth_exchanges(truth.get("kerberos", [])))
    assert reports[0].expected + reports[1].expected > 0
    for report in reports:
        assert report.misses == [], f"{report.kind}: {report.misses}"
        assert report.agreement == 1.0


def _tls_krb_baselines() -> list[Path]:
    chosen = []
    for capture in corpus_captures():
        expected = capture.with_name(capture.stem + ".expected.json")
        if expected.exists() and {"tls", "kerberos"} & set(json.loads(expected.read_text()).get("categories", [])):
            chosen.append(capture)
    return chosen


#: Checksums are the flow engine's business (its own tests compare them with Zeek's);
#: several corpus traces were captured with checksum offload, and their tools ran with
#: checksums ignored, so here every packet reaches the parsers.
CORPUS_SETTINGS = DissectSettings(verify_ip_checksum=False)


@pytest.mark.parametrize("capture", _tls_krb_baselines(), ids=lambda p: p.name)
def test_corpus_agreement(corpus_dir: Path, capture: Path) -> None:
    expected = json.loads(capture.with_name(capture.stem + ".expected.json").read_text())
    events = _events(capture, CORPUS_SETTINGS)
    reports = ssl_fidelity.compare_corpus(expected, events, capture.name) + krb_fidelity.compare_corpus(
        expected, events, capture.name
    )
    assert reports, "a tls/kerberos baseline must yield at least one comparison"
    for report in reports:
        assert report.misses == [], f"{report.kind}/{report.source}: {report.misses}"
        assert report.agreement == 1.0
