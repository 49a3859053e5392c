"""``python -m probe interfaces``: the interfaces a live capture can use, from netlink."""

from __future__ import annotations

import argparse
import json


def cmd_interfaces(args: argparse.Namespace) -> int:
    from probe.interfaces import list_interfaces

    infos = list_interfaces()
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], sort_keys=True))
        return 0
    rows = [("", "INDEX", "NAME", "STATE", "MTU", "PROMISC", "MAC", "ADDRESSES")]
    for i in infos:
        promisc = "yes" if i.promisc else ("sockets" if i.promiscuity else "no")
        if i.promiscuity:
            promisc += f" ({i.promiscuity})"
        state = i.state if i.admin_up else "DOWN (admin)"
        rows.append(("*" if i.default_route else "", str(i.index), i.name, state, str(i.mtu), promisc, i.mac or "-", " ".join(i.addresses) or "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print("* the default route's interface: what `python -m probe run` captures without --interface or --pcap")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interfaces", help="list network interfaces: index, state, addresses, MTU, promiscuous mode")
    p.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    p.set_defaults(func=cmd_interfaces)
