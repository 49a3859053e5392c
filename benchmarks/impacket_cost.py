"""What decoding the rare messages costs with impacket's structures, against our own decoders.

    python3 benchmarks/impacket_cost.py [--repeat N]

The messages are the real ones the parsers meet in ../shared/pcaps and a few corpus
captures (NTLMSSP AUTHENTICATE, Kerberos AS-REQ and AP-REQ, DCE/RPC bind, SMB2
SESSION_SETUP request); both sides decode the same bytes (see
``probe.fidelity.impacket_check.parse_cost`` for what each side includes). Prints
microseconds per message and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("PROBE_SHARED_DIR", REPO.parent / "shared"))
CORPUS = ("zeek-krb-spnego-smb.pcapng", "zeek-krb-tcp-tso.pcapng", "sv-smb2-psexec.pcap", "zeek-dcerpc-mapi-ntlm.pcap")


def main() -> int:
    from probe.fidelity.impacket_check import check, collect, parse_cost

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200, help="decodes of each message per round (ours)")
    args = parser.parse_args()
    paths = sorted((SHARED / "pcaps").glob("*.pcap")) + [SHARED / "corpus" / name for name in CORPUS]
    messages = collect(paths)
    agree = ", ".join(f"{r.kind} {r.matched}/{r.expected}" for r in check(messages))
    print(f"decodes agreeing with impacket: {agree}")
    print(f"{'message':<30}{'samples':>8}{'ours us':>10}{'impacket us':>13}{'ratio':>8}")
    for label, samples, ours, theirs in parse_cost(messages, repeat=args.repeat):
        print(f"{label:<30}{samples:>8}{ours:>10.1f}{theirs:>13.1f}{theirs / ours:>7.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
