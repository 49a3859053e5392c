"""Fidelity: compare the events the probe produced with other tools' answers.

Per kind, a comparator module (``conn``, ``dns``, ``http``, ``ssl``, ``kerberos``,
``smb``, ``ntlm``, ``dcerpc``) turns ``NAME.truth.json`` (tshark's view of
../shared/pcaps) or ``NAME.expected.json`` (Zeek, Suricata and Arkime baselines in
../shared/corpus) and the probe's exported events into :class:`KindReport` rows. They
share one module per concept: :mod:`~probe.fidelity.flow_keys` (which event belongs to
which record), :mod:`~probe.fidelity.zeek_log` (Zeek logs), :mod:`~probe.fidelity.eve`
(Suricata EVE checks), :mod:`~probe.fidelity.arkime` (Arkime sessions) and
:mod:`~probe.fidelity.report` (rows and value comparison). :mod:`~probe.fidelity.tool`
replays captures through the real pipeline and runs them all.
"""

from probe.fidelity.report import KindReport

__all__ = ["KindReport"]
