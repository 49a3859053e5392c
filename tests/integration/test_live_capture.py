"""Live capture for real: AF_PACKET rings on a veth whose peer sits in a namespace we create.

Each test builds its own namespace and veth pair (tests/integration/netlab.py), sends UDP
flows from inside the namespace with real sockets, runs the whole probe (dissection
processes, signer, spool, uplink, an embedded Core process) and checks what the Core holds.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import pytest

from probe.app import ProbeApp
from probe.config import load_config
from protocols.events.envelope import decode_canonical, split_signed
from storage.core_store import CoreStore
from tests.integration.netlab import NetLab, namespaces_left

pytestmark = [pytest.mark.netns, pytest.mark.slow]

if os.geteuid() != 0:  # pragma: no cover - CI and the dev machine run as root
    pytest.skip("live capture tests create namespaces and packet sockets: they need root", allow_module_level=True)


def until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def lab():
    with NetLab() as made:
        yield made
    assert not namespaces_left()


class LiveRun:
    """A running probe capturing the lab's interface, stopped (and summarised) on exit."""

    def __init__(self, lab: NetLab, data_dir: str, **settings: Any) -> None:
        overrides = {
            "capture.interface": lab.capture,
            "probe.data_dir": data_dir,
            "capture.ring_block_size": 1 << 20,
            "capture.ring_block_count": 8,
            "capture.ring_block_timeout_ms": 50,
            **settings,
        }
        self.app = ProbeApp(load_config(None, overrides))
        self.summary: dict[str, Any] = {}

    def __enter__(self) -> "LiveRun":
        self.app.start()
        try:
            until(lambda: all(self.app.tracker.capturing()), what="the rings to open")
        except BaseException:
            self.app.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.app.stop()

    def packets(self) -> int:
        return self.app.tracker.totals().get("packets", 0)

    def stop(self) -> dict[str, Any]:
        """Graceful stop (as on SIGINT): flush open flows, deliver, summarise."""
        self.app.request_stop()
        outcome = self.app.wait()
        self.app.stop()
        self.summary = self.app.summary(outcome)
        return self.summary

    def core_conns(self) -> list[dict[str, Any]]:
        assert self.app.core is not None
        store = CoreStore(os.path.join(self.app.core.data_dir, "store"))
        try:
            bodies = [decode_canonical(split_signed(record)[1]) for _, _, record in store.events()]
        finally:
            store.close()
        return [e.body for e in bodies if e.kind == "conn"]


def _by_sport(conns: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    out = {}
    for conn in conns:
        assert conn["id.orig_p"] not in out, f"flow from port {conn['id.orig_p']} logged twice (split)"
        out[conn["id.orig_p"]] = conn
    return out


def test_traffic_from_a_namespace_is_captured_whole(lab, tmp_path):
    with LiveRun(lab, str(tmp_path)) as run:
        assert lab.promiscuity() >= 1  # the ring socket holds the interface promiscuous
        sent = lab.send_udp(20, 50, rate=5000)
        until(lambda: run.packets() >= sent, what="every packet to be dissected")
        summary = run.stop()
        conns = _by_sport(run.core_conns())
    assert lab.promiscuity() == 0  # restored with the socket
    live = summary["live"]
    assert summary["outcome"] == "stopped"
    assert summary["packets"] == sent == 1000
    assert summary["flows"] == 20
    assert live["kernel_packets"] == sent and live["kernel_drops"] == 0 and live["dropped_at_source"] == {}
    assert sorted(conns) == list(range(40000, 40020))
    assert all(c["orig_pkts"] == 50 and c["proto"] == "udp" and c["id.resp_p"] == 9999 for c in conns.values())
    assert summary["delivered"] == summary["events_created"] and summary["pending"] == 0


def test_link_down_and_up_costs_one_restart_and_no_flow(lab, tmp_path):
    with LiveRun(lab, str(tmp_path)) as run:
        sent = lab.send_udp(5, 10, first_sport=40000)
        until(lambda: run.packets() >= sent, what="the first packets")
        lab.set_capture_up(False)
        until(lambda: run.app.metrics.total("capture_failures_total") == 1, what="the capture to fail")
        assert not any(run.app.tracker.capturing())
        time.sleep(2.5)
        lab.set_capture_up(True)
        until(lambda: all(run.app.tracker.capturing()), what="the capture to come back by itself")
        sent += lab.send_udp(5, 10, first_sport=41000)
        until(lambda: run.packets() >= sent, what="the packets after the restart")
        summary = run.stop()
        conns = _by_sport(run.core_conns())
        metrics = run.app.metrics
    assert metrics.counter("capture_failures_total", reason="link_down", worker="0") == 1
    assert metrics.total("capture_failures_total") == 1
    assert metrics.total("capture_restarts_total") == 1
    assert metrics.total("worker_starts_total") == 1  # the dissection process itself never stopped
    # flows opened before the link went down were still open in the dissector afterwards
    assert sorted(conns) == list(range(40000, 40005)) + list(range(41000, 41005))
    assert all(c["orig_pkts"] == 10 for c in conns.values())
    assert summary["packets"] == 100 and summary["live"]["kernel_drops"] == 0


def test_two_workers_share_the_flows_without_splitting_one(lab, tmp_path):
    with LiveRun(lab, str(tmp_path), **{"capture.workers": 2}) as run:
        sent = lab.send_udp(40, 10, rate=4000)
        until(lambda: run.packets() >= sent, what="every packet over both workers")
        summary = run.stop()
        conns = _by_sport(run.core_conns())
    workers = summary["live"]["workers"]
    assert len(workers) == 2
    assert all(w["flows"] > 0 for w in workers), workers  # the hash spreads 40 flows over both
    assert sum(w["flows"] for w in workers) == 40
    assert sum(w["packets"] for w in workers) == sent == 400
    assert sorted(conns) == list(range(40000, 40040))  # one conn per flow: none was split
    assert all(c["orig_pkts"] == 10 for c in conns.values())


def test_a_filter_keeps_only_matching_packets(lab, tmp_path):
    with LiveRun(lab, str(tmp_path), **{"capture.filter": "udp dst port 9999 and src portrange 40000-40002"}) as run:
        lab.send_udp(5, 4, first_sport=40000)  # ports 40000-40004: three flows match
        lab.send_udp(3, 4, dport=7777, first_sport=42000)  # none matches
        until(lambda: run.packets() >= 12, what="the matching packets")
        time.sleep(0.3)  # anything unwanted would arrive by now
        summary = run.stop()
        conns = _by_sport(run.core_conns())
    assert summary["packets"] == 12
    assert summary["live"]["kernel_packets"] == 12  # the kernel rejected the rest before the ring
    assert sorted(conns) == [40000, 40001, 40002]


def _conn_key(conn: dict[str, Any]) -> tuple:
    return tuple(conn.get(k) for k in (
        "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "conn_state", "history",
        "orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes",
    ))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_capture_replayed_onto_the_wire_gives_the_events_of_the_file(lab, tmp_path, workers):
    """Real application traffic (DNS, HTTP, SMB, DCE/RPC, Kerberos; VLAN-tagged HTTP) through the ring.

    With two workers both directions of every TCP conversation must reach the same one
    (the kernel's flow hash is symmetric), or the events would differ from the file's.
    """
    from probe.commands.run import sample_capture
    from probe.replay import dissect_file
    from protocols.events.base import as_json_object

    captures = [sample_capture()]
    vlan = "/work/shared/corpus/arkime-http-twovlan.pcap"
    if os.path.exists(vlan):
        captures.append(vlan)
    expected: list[dict[str, Any]] = []
    for path in captures:
        expected += [as_json_object(e) for e in dissect_file(path)[0]]
    with LiveRun(lab, str(tmp_path), **{"capture.workers": workers}) as run:
        for path in captures:  # one after the other, real time x4 (flows keep their shape)
            lab.ns_exec(["tcpreplay", "-q", "-i", lab.inner, "--multiplier", "4", path])
        until(lambda: run.packets() >= 658, what="the replayed packets")
        summary = run.stop()
        assert run.app.core is not None
        store = CoreStore(os.path.join(run.app.core.data_dir, "store"))
        try:
            got = [decode_canonical(split_signed(r)[1]) for _, _, r in store.events()]
        finally:
            store.close()
    assert summary["live"]["kernel_drops"] == 0
    assert all(w["packets"] > 0 for w in summary["live"]["workers"])
    kinds = lambda events: sorted(e["kind"] for e in events)  # noqa: E731
    assert sorted(e.kind for e in got) == kinds(expected)
    live_conns = sorted(_conn_key(e.body) for e in got if e.kind == "conn")
    file_conns = sorted(_conn_key(e) for e in expected if e["kind"] == "conn")
    assert live_conns == file_conns
