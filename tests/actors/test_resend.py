"""Refused events: held back from the buffer's acknowledgement, re-sent once, then dropped."""

from __future__ import annotations

from actors.resend import RejectedResends


def test_a_bad_signature_is_held_for_one_resend_and_released_when_its_copy_is_taken():
    r = RejectedResends()
    assert r.on_ack(1, [(5, "bad_signature")]) == [5]
    assert r.ack_point(10) == 4  # the buffer keeps 5 and everything above it
    r.sent(5, 2)  # the re-send is the second frame of the connection
    assert r.on_ack(2, []) == []  # its ack refuses nothing: stored
    assert r.ack_point(10) == 10 and r.take_final(10) == () and not r


def test_refused_again_it_is_dropped_with_the_reason():
    r = RejectedResends()
    r.on_ack(1, [(5, "bad_signature")])
    r.sent(5, 3)
    assert r.on_ack(2, []) == []  # the ack of an earlier frame does not answer the re-send
    assert r.ack_point(10) == 4
    assert r.on_ack(3, [(5, "bad_signature")]) == []
    assert r.ack_point(10) == 10
    assert r.take_final(10) == ((5, "rejected_bad_signature"),)
    assert r.take_final(10) == ()


def test_other_refusals_are_final_at_once_and_unknown_sequences_are_ignored():
    r = RejectedResends()
    assert r.on_ack(1, [(7, "replayed_sequence"), (-1, "bad_event")]) == []
    assert r.ack_point(20) == 20
    assert r.take_final(6) == ()  # not yet within the acknowledged range
    assert r.take_final(20) == ((7, "rejected_replayed_sequence"),)


def test_a_reconnection_sends_held_events_again_and_a_missing_copy_is_final():
    r = RejectedResends()
    r.on_ack(1, [(5, "bad_signature"), (9, "bad_event")])
    r.sent(5, 2)
    assert r.reconnected() == [5, 9]  # the answer to 5's re-send was lost with the connection
    assert r.ack_point(100) == 4
    r.missing(5)
    assert r.ack_point(100) == 8
    assert r.take_final(100) == ((5, "rejected_bad_signature"),)
