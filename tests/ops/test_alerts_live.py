"""Every alert fires and clears on a real replay against a real Core we stall (SIGSTOP).

Each transition must be logged, shown on the alert board (the console's view) and reach
the Core as a signed ``notice`` event. Thresholds are the design's defaults except where
a window is shortened so the test does not wait a minute.
"""

from __future__ import annotations

import logging

import pytest

from actors.messages import EventBatch
from probe.app import ProbeApp
from probe.commands.run import sample_capture
from protocols.events.base import EncodedEvent
from tests.ops.flood import write_flood_pcap
from tests.ops.rig import CoreProcess, enrolled_key, probe_config, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def core(tmp_path):
    cores: list[CoreProcess] = []

    def start(credit: int = 20_000) -> CoreProcess:
        c = CoreProcess(tmp_path / "core", credit=credit)
        c.start()
        cores.append(c)
        return c

    yield start
    for c in cores:
        c.stop()


@pytest.fixture
def apps():
    running: list[ProbeApp] = []

    def start(config) -> ProbeApp:
        app = ProbeApp(config)
        running.append(app)
        app.start()
        return app

    yield start
    for app in running:
        app.stop()


def active(app: ProbeApp) -> set[str]:
    return {a["key"] for a in app.alerts.active()}


def notices(core: CoreProcess) -> list[tuple[str, str]]:
    """(alert key, state) of the notices the Core stored, in sequence order."""
    return [(n["note"] + (":" + n["sub"] if n.get("sub") else ""), n["state"]) for n in core.events("notice")]


def raised_then_cleared(core: CoreProcess, note: str) -> bool:
    """The Core saw the alert raised and, last of all, cleared.

    Under a flood the buffer drops its oldest events, notices included (the drop report
    tells the Core), so an alert that flaps may reach the Core as raised, raised, cleared.
    """
    seen = [state for key, state in notices(core) if key == note]
    return "raised" in seen and seen[-1] == "cleared"


def test_a_stalled_core_raises_connection_buffer_and_resource_alerts_and_they_clear(tmp_path, core, apps, caplog):
    caplog.set_level(logging.INFO, logger="probe.alerts")
    pcap = write_flood_pcap(tmp_path / "flood.pcap", 8_000, per_flow=100)
    c = core()
    data = tmp_path / "data"
    enrolled_key(data, c)
    config = probe_config(
        data, pcap, c.url,
        buffer__disk_quota_mb=2, capture__batch_packets=256, dissect__udp_idle_timeout=1.0,
        uplink__connect_timeout=0.3, alerts__connection_failures_window=4.0,
    )
    c.stall()  # it accepts connections (the kernel does) but never answers
    app = apps(config)
    wait_for(lambda: {"connection_failures", "buffer_utilization:disk", "resource:spool"} <= active(app), 90)
    wait_for(lambda: app.metrics.total("uplink_connection_failures_total") >= 3, 30)
    assert app.status() == "degraded"
    c.resume()
    wait_for(lambda: not active(app) and app.buffer.pending == 0, 90)
    for note in ("Probe::Connection_Failures", "Probe::Buffer_High:disk", "Probe::Resource_High:spool"):
        wait_for(lambda: raised_then_cleared(c, note), 30)
    history = [(h["key"], h["state"]) for h in app.alerts.history()]
    for key in ("connection_failures", "buffer_utilization:disk", "resource:spool"):
        assert history.index((key, "raised")) < history.index((key, "cleared"))
    logged = [(r.event, r.alert) for r in caplog.records if r.name == "probe.alerts"]
    assert ("alert_raised", "resource:spool") in logged and ("alert_cleared", "resource:spool") in logged


def test_a_slowed_core_raises_backpressure_and_a_flood_raises_drops(tmp_path, core, apps):
    pcap = write_flood_pcap(tmp_path / "flood.pcap", 12_000, per_flow=100)
    c = core(credit=300)  # a Core that lets only 300 events be in flight
    data = tmp_path / "data"
    enrolled_key(data, c)
    config = probe_config(
        data, pcap, c.url,
        buffer__disk_quota_mb=1, buffer__memory_events=1000, capture__batch_packets=256,
        dissect__udp_idle_timeout=1.0, alerts__backpressure_seconds=1.0, alerts__drops_window=2.0,
    )
    app = apps(config)
    wait_for(lambda: app.metrics.total("events_delivered_total") > 0, 60, poll=0.01)
    c.stall()  # every credit the Core gave is in flight and no ack comes back
    wait_for(lambda: {"backpressure", "drops"} <= active(app), 90)
    assert app.metrics.gauge("uplink_credit_exhausted") == 1.0
    assert app.buffer.accounts().dropped.get("buffer_full", 0) > 200
    c.resume()
    wait_for(lambda: "backpressure" not in active(app), 60)
    wait_for(lambda: app.tracker.all_done() and not active(app) and app.buffer.pending == 0, 120)
    for note in ("Probe::Backpressure", "Probe::Events_Dropped"):
        wait_for(lambda: raised_then_cleared(c, note), 30, message=lambda: f"{note}: {notices(c)}")
    assert app.buffer.accounts().balanced


def test_signature_failures_raise_and_clear(tmp_path, core, apps):
    c = core()
    data = tmp_path / "data"
    enrolled_key(data, c)
    config = probe_config(data, sample_capture(), c.url, alerts__signature_failures_window=3.0)
    app = apps(config)
    wait_for(lambda: app.tracker.all_done() and app.buffer.pending == 0, 60)
    # a malformed batch on the pipe from a dissection process: events whose body is no
    # bytes cannot be signed; the signer drops and counts them and goes on
    bad = [EncodedEvent(1_700_000_000.0 + i, "weird", None) for i in range(3)]
    assert app.signer_window.acquire(timeout=10)
    assert app.directory.tell("signer", EventBatch("test:malformed", 0, bad))
    wait_for(lambda: "signature_failures" in active(app), 30)
    assert app.metrics.total("signature_failures_total") == 3
    wait_for(lambda: raised_then_cleared(c, "Probe::Signature_Failures"), 60)
    accounts = app.buffer.accounts()
    assert accounts.dropped == {"signature": 3} and accounts.balanced
