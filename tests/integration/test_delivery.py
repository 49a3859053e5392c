"""The delivery path with real actors, a real LMDB spool and a real Core process."""

from __future__ import annotations

import pytest

from protocols.events.envelope import decode_canonical, split_signed
from tests.integration.delivery_rig import DeliveryRig, weird_events


def test_events_reach_the_core_signed_once_and_in_order(tmp_path):
    with DeliveryRig(str(tmp_path)) as rig:
        rig.feed("test:a", 0, weird_events(2500))
        rig.feed("test:a", 2500, weird_events(500, 2500))
        assert rig.wait_delivered()
        stored = rig.core_events()
        accounts = rig.buffer.accounts()
    seqs = [seq for _, seq, _ in stored]
    assert len(stored) == 3000
    assert seqs == sorted(seqs) and len(set(seqs)) == 3000
    names = [decode_canonical(split_signed(rec)[1]).body["name"] for _, _, rec in stored]
    assert names == [f"test_{i}" for i in range(3000)]
    assert accounts.created == 3000 and accounts.delivered == 3000 and accounts.pending == 0 and accounts.balanced


def test_a_batch_replayed_again_is_not_signed_twice(tmp_path):
    with DeliveryRig(str(tmp_path)) as rig:
        rig.feed("test:b", 0, weird_events(100))
        rig.feed("test:b", 0, weird_events(150))  # the same source from the start, 50 more
        assert rig.wait_delivered()
        stored = rig.core_events()
        skipped = rig.metrics.total("events_replayed_skipped_total")
    assert len(stored) == 150
    assert skipped == 100
