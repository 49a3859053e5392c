"""The signer actor: numbers each event in the probe's sequence space and signs it.

Before each batch it asks the identity whether the key file changed (one ``stat``); a
key file gone corrupt, unreadable or exposed raises IdentityError, which the supervisor
turns into a halt of transmission within that batch. The restarted signer goes on
signing with the key in memory (the last validated one), so capture and buffering
continue while nothing is sent.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable, Protocol

import nacl.signing

from actors.base import SupervisedActor, handles
from actors.credit import Window
from actors.messages import EventBatch, EventsDropped, SignedEvents
from actors.metrics import Metrics
from actors.sequencer import Sequencer
from actors.supervisor import Directory
from protocols.events.envelope import EnvelopeHeader
from protocols.signing import sign_batch

log = logging.getLogger("probe.signer")


class KeyHolder(Protocol):
    """Gives the current signing key; raises IdentityError when there is no usable one."""

    def signing_key(self) -> nacl.signing.SigningKey: ...

    def check_key_file(self) -> None:
        """Raise IdentityError (once per change) when the key file went bad."""

    header: EnvelopeHeader


class SignerActor(SupervisedActor):
    """EventBatch in, SignedEvents out; a batch is skipped where its events were signed before."""

    name = "signer"
    DATA_MESSAGES = (EventBatch,)

    def __init__(
        self,
        supervisor: Any,
        *,
        identity: KeyHolder,
        sequencer: Sequencer,
        directory: Directory,
        inbox: Window,
        downstream: Window,
        metrics: Metrics,
        tap: Callable[[SignedEvents], None] | None = None,
    ) -> None:
        super().__init__(supervisor)
        self.tap = tap  # the console's live tail: sees each signed batch (cheap when nobody listens)
        self.identity = identity
        self.sequencer = sequencer
        self.directory = directory
        self.inbox = inbox
        self.downstream = downstream
        self.metrics = metrics

    @handles(EventBatch)
    def on_batch(self, batch: EventBatch) -> None:
        self.identity.check_key_file()
        total = len(batch.events)
        skip = self.sequencer.skip_count(batch.source, batch.first_ordinal, total)
        events = batch.events[skip:]
        encoded = [e for e in events if e is not None]
        unencodable = len(events) - len(encoded)
        if skip:
            self.metrics.inc("events_replayed_skipped_total", skip)
        if encoded or unencodable:
            key = self.identity.signing_key()
            signed = sign_batch(key, self.identity.header, encoded, self.sequencer.next_seq)
            if signed.records:
                self.sequencer.advance(signed.next_seq)
            kinds = collections.Counter(e.kind for e in encoded)
            for event, why in signed.failures:
                kinds[event.kind] -= 1
                log.warning("event of kind %s not signed: %s", event.kind, why, extra={"component": "signer", "event": "signature_failure", "reason": why})
            self.downstream.acquire()
            out = SignedEvents(signed.records, (batch.source, batch.first_ordinal + total), dict(kinds))
            self.directory.tell("buffer", out)
            if self.tap is not None and signed.records:
                self.tap(out)
            if signed.failures:
                self.metrics.inc("signature_failures_total", len(signed.failures))
                self.directory.tell("buffer", EventsDropped("signature", len(signed.failures)))
            if unencodable:
                self.directory.tell("buffer", EventsDropped("encoding", unencodable))
            self.metrics.inc("events_signed_total", len(signed.records))
        self.sequencer.signed_through(batch.source, batch.first_ordinal + total)
        self.metrics.inc("events_settled_in_signer_total", skip)
        self.inbox.release()
