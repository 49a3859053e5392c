"""Signed events per second on one core, against PyNaCl's raw signing ceiling.

Measures, for events whose canonical envelope is about 300 bytes:
  raw ceiling   libsodium ``crypto_sign`` (PyNaCl's binding) over a ready 300-byte message
  pynacl API    ``SigningKey.sign`` over the same message (what naive code would call)
  sign_batch    protocols.signing.sign_batch: envelope encoding + signing, batches of 1000
  + body        encode_body (the event's canonical body) + sign_batch
  + key check   sign_batch plus the signer's per-batch key-file check (one stat)
Times are CPU time of this process (what one core spends, whatever else the machine
runs), interleaved batch by batch so that every case sees the same conditions, summed
over all rounds.

    python3 benchmarks/signing.py [--events 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nacl.bindings  # noqa: E402
import nacl.signing  # noqa: E402

from probe.identity import ProbeIdentity  # noqa: E402
from protocols.events import EnvelopeHeader, Weird, encode_body  # noqa: E402
from protocols.events.envelope import canonical_bytes  # noqa: E402
from protocols.signing import secret_key, sign_batch  # noqa: E402

BATCH = 1000


def make_events(n: int) -> tuple[list, list]:
    """Weird events sized so that the canonical envelope is about 300 bytes."""
    raw = [Weird(1_700_000_000.0 + i * 0.001, "x" * 150 + f"{i:08d}", addl="y" * 20) for i in range(n)]
    return raw, [encode_body(e) for e in raw]




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=0, help="core to pin to")
    args = parser.parse_args()
    try:
        os.sched_setaffinity(0, {args.cpu})
    except (AttributeError, OSError):
        pass
    n = args.events
    header = EnvelopeHeader("probe-bench-01", "0123456789abcdef")
    raw_events, encoded = make_events(n)
    size = len(canonical_bytes(header, 123_456, encoded[0].ts, encoded[0].kind, encoded[0].body))
    key = nacl.signing.SigningKey.generate()
    secret = secret_key(key)
    message = os.urandom(size)
    batches = [encoded[i : i + BATCH] for i in range(0, n, BATCH)]
    raw_batches = [raw_events[i : i + BATCH] for i in range(0, n, BATCH)]
    tmp = tempfile.mkdtemp()
    identity = ProbeIdentity("probe-bench-01", os.path.join(tmp, "probe.key"))

    def raw_ceiling(i: int) -> None:
        sign = nacl.bindings.crypto_sign
        for _ in range(len(batches[i])):
            sign(message, secret)

    def pynacl_api(i: int) -> None:
        sign = key.sign
        for _ in range(len(batches[i])):
            sign(message)

    def batched(i: int) -> None:
        sign_batch(key, header, batches[i], 1 + i * BATCH)

    def with_body(i: int) -> None:
        sign_batch(key, header, [encode_body(e) for e in raw_batches[i]], 1 + i * BATCH)

    def with_key_check(i: int) -> None:
        identity.check_key_file()
        sign_batch(identity.signing_key(), header, batches[i], 1 + i * BATCH)

    cases = {"raw ceiling": raw_ceiling, "pynacl API": pynacl_api, "sign_batch": batched, "+ body": with_body, "+ key check": with_key_check}
    spent = {name: 0.0 for name in cases}
    clock = time.process_time
    for _ in range(args.rounds):
        for i in range(len(batches)):
            for name, fn in cases.items():
                start = clock()
                fn(i)
                spent[name] += clock() - start
    best = {name: n * args.rounds / seconds for name, seconds in spent.items()}
    ceiling = best["raw ceiling"]
    print(f"signed events per CPU-second on one core ({n} events x {args.rounds} rounds, envelope {size} bytes, batches of {BATCH})")
    for name, value in best.items():
        print(f"  {name:13s} {value:10,.0f}/s   {value / ceiling:6.1%} of the raw ceiling")


if __name__ == "__main__":
    main()
