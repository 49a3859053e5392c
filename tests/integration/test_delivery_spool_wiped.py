"""A spool wiped (or restored from a backup) while the probe keeps its key.

The new spool numbers events from 1 again, but the Core already holds those numbers from
the earlier life of the sequence space. Whatever the probe signed before it could reach
the Core reuses taken numbers: it can never be stored, and must be counted dropped
(``sequence_reused``), not taken for delivered; new events continue above the Core's point.
"""

from __future__ import annotations

import os
import time

import pytest

from probe.core.embedded import EmbeddedCore
from probe.identity import ProbeIdentity
from storage.core_store import CoreStore
from tests.integration.delivery_rig import DeliveryRig, free_port, weird_events

QUICK = {"backoff_initial": 0.05, "backoff_max": 0.2, "connect_timeout": 2.0}


def rig_on_spool(root: str, url: str, spool: str) -> DeliveryRig:
    rig = DeliveryRig(root, core_url=url, spool_path=spool, uplink=QUICK)
    rig.identity.boot_seq = rig.spool.next_seq  # as the probe announces each boot's first number
    return rig


def wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.mark.timeout(120)
def test_events_signed_on_a_wiped_spool_before_the_core_is_reached_are_dropped_as_reused(tmp_path):
    root = str(tmp_path)
    port = free_port()
    core = EmbeddedCore(os.path.join(root, "core"), f"127.0.0.1:{port}")
    identity = ProbeIdentity("rig-probe", os.path.join(root, "probe.key"))
    core.enroll(identity.probe_id, identity.public_key_hex)
    url = core.start()
    try:
        first = rig_on_spool(root, url, os.path.join(root, "spool-1"))
        try:
            first.feed("before", 0, weird_events(300))
            assert first.wait_delivered(30)
        finally:
            first.stop()
        core.stop()

        # the spool is gone; the key stays. The Core is down while the new spool fills.
        second = rig_on_spool(root, url, os.path.join(root, "spool-2"))
        try:
            second.feed("after", 0, weird_events(200, start=1000))
            wait(lambda: second.buffer.pending == 200)
            core.start()
            wait(lambda: second.buffer.pending == 0)
            second.feed("after", 200, weird_events(50, start=2000))
            assert second.wait_delivered(30)
            accounts = second.buffer.accounts()
            assert accounts.dropped == {"sequence_reused": 200}
            assert accounts.delivered == 50
            assert second.metrics.total("uplink_sequence_reused_total") == 1
            # a later reconnection of the same boot takes nothing more for reused
            core.stop()
            second.feed("after", 250, weird_events(20, start=3000))
            wait(lambda: second.buffer.pending == 20)
            core.start()
            assert second.wait_delivered(30)
            assert second.buffer.accounts().dropped == {"sequence_reused": 200}
            assert second.buffer.accounts().delivered == 70
            assert second.metrics.total("uplink_sequence_reused_total") == 1
        finally:
            second.stop()
    finally:
        core.stop()
    store = CoreStore(os.path.join(root, "core", "store"))
    try:
        seqs = sorted(seq for _, seq, _ in store.events())
        account = store.account(identity.probe_id)
    finally:
        store.close()
    assert seqs == list(range(1, 371)), "the Core holds the first life's 300 and the 70 numbered after them"
    assert account.stored == 370 and account.gaps == 0
