"""Fidelity: compare the events the probe produced with other tools' answers.

Per kind, a comparator module turns ``NAME.truth.json`` (tshark's view of
../shared/pcaps) or ``NAME.expected.json`` (Zeek, Suricata and Arkime baselines in
../shared/corpus) and the probe's exported events into :class:`KindReport` rows.
"""

from probe.fidelity.report import KindReport

__all__ = ["KindReport"]
