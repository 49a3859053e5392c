"""Steps shared by the identity scenarios: watch a halt, check what a halt promises, reload.

A halt promises (docs/identity.md): not one more event frame reaches the Core (promise
6), while capture, dissection, signing and buffering go on; the ``identity`` alert is
raised, ``probe health`` says halted; a refused reload changes nothing; a good reload
(SIGHUP, the console) resumes transmission and the backlog is delivered, oldest first.
"""

from __future__ import annotations

import signal
from typing import Any

from scenarios.framework import PROBE_ID, Rig
from scenarios.processes import CoreProcess, ProbeProcess


class IdentityWatch:
    """Reads the halt state of a probe and the Core's count of what it received from it."""

    def __init__(self, rig: Rig, probe: ProbeProcess, core: CoreProcess) -> None:
        self.rig = rig
        self.probe = probe
        self.core = core

    def metric(self, name: str, **labels: str) -> float | None:
        m = self.probe.metrics()
        return m.get(name, **labels) if m is not None else None

    def halted(self) -> bool:
        return self.metric("probe_transmission_halted") == 1.0

    def received(self) -> int:
        """Event records the Core received from the probe (stored, duplicate or rejected)."""
        account = self.core.account(PROBE_ID)
        return account.received if account else 0

    def stored(self) -> int:
        account = self.core.account(PROBE_ID)
        return account.stored if account else 0

    def wait_halt(self, since: float, timeout: float) -> float | None:
        return self.rig.wait_for("transmission halted", self.halted, timeout, since=since)

    def hold_halted(self, seconds: float, reason: str, label: str) -> None:
        """Stay halted ``seconds``; check what a halt promises, with figures.

        "Not one more event frame" is checked on both sides: the probe's count of events
        sent does not move, and the Core never receives more than was sent before the
        halt (frames already on the wire when it struck are still taken in by the Core).
        """
        rig = self.rig
        sent0 = self.metric("probe_events_sent_total")
        packets0, pending0, created0 = self.metric("probe_packets_captured_total"), self.metric("probe_events_pending"), self.created()
        rig.sleep(seconds)
        sent1 = self.metric("probe_events_sent_total")
        received = self.received()
        packets1, pending1, created1 = self.metric("probe_packets_captured_total"), self.metric("probe_events_pending"), self.created()
        rig.expect(f"{label}: not one event is sent while halted",
                   sent0 is not None and sent1 == sent0, f"events sent {sent0} at the halt, {sent1} {seconds:g} s later", sent_at_halt=sent0, sent_after=sent1)
        rig.expect(f"{label}: the Core received nothing sent after the halt",
                   sent0 is not None and received <= sent0, f"Core received {received} records in all, {sent0} were sent before the halt",
                   core_received=received)
        rig.expect(f"{label}: capture and dissection go on",
                   packets0 is not None and packets1 is not None and packets1 > packets0,
                   f"packets captured {packets0:.0f} -> {packets1:.0f}" if packets0 is not None and packets1 is not None else "probe not answering")
        rig.expect(f"{label}: signing and buffering go on",
                   None not in (pending0, pending1, created0, created1) and pending1 > pending0 and created1 > created0,
                   f"events created {created0:.0f} -> {created1:.0f}, pending {pending0:.0f} -> {pending1:.0f}" if None not in (pending0, pending1) else "probe not answering")
        failures = self.metric("probe_identity_failures_total", reason=reason)
        rig.expect(f"{label}: the failure is counted by reason ({reason})", bool(failures), f"identity_failures_total{{reason={reason}}} = {failures}")
        alert = self.metric("probe_alerts_active", alert="identity")
        rig.expect(f"{label}: the identity alert is raised", alert == 1.0, f"alerts_active{{alert=identity}} = {alert}")
        code, line = self.probe.health_check()
        rig.expect(f"{label}: probe health says halted (exit 1)", code == 1 and "halted" in line, line)

    def created(self) -> float | None:
        m = self.probe.metrics()
        return m.total("probe_events_created_total") if m is not None else None

    def reload(self, label: str, kind: str = "restore") -> float:
        """SIGHUP: the documented reload."""
        t = self.rig.mark(f"SIGHUP: {label}", kind)
        self.probe.signal(signal.SIGHUP)
        return t

    def refused_reload(self, label: str, reason: str) -> None:
        """A reload with bad files is refused and changes nothing."""
        before = self.metric("probe_identity_reload_failures_total", reason=reason) or 0.0
        sent = self.metric("probe_events_sent_total")
        t = self.reload(label, kind="step")
        seconds = self.rig.wait_for(f"reload refused ({reason})",
                                    lambda: (self.metric("probe_identity_reload_failures_total", reason=reason) or 0.0) > before, 10, since=t)
        self.rig.sleep(0.5)
        self.rig.expect(f"{label}: the reload is refused with the reason ({reason}) and changes nothing",
                        seconds is not None and self.halted() and self.metric("probe_events_sent_total") == sent,
                        f"refused after {seconds} s; still halted: {self.halted()}; events sent {sent} -> {self.metric('probe_events_sent_total')}")

    def wait_resumed(self, since: float, timeout: float) -> float | None:
        """Transmission resumed and the Core stores events again."""
        stored = self.stored()
        return self.rig.wait_for("transmission resumed, the Core stores again",
                                 lambda: not self.halted() and self.stored() > stored, timeout, since=since, kind="recovered")

    def wait_backlog(self, since: float, timeout: float, created_before: float) -> float | None:
        """Everything created before ``since`` is at the Core (the backlog was delivered)."""
        return self.rig.wait_for("the backlog is delivered", lambda: self.stored() >= created_before, timeout, since=since, kind="recovered")


def notices(core: CoreProcess) -> list[tuple[Any, Any]]:
    return [(e.get("note"), e.get("state")) for e in core.export("notice")]
