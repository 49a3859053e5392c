"""A private network for live-capture tests: a namespace and a veth pair, made with pyroute2.

    root namespace                         namespace probe-lab-<token>
    lab.capture (no address)  <== veth ==>  lab.inner 10.77.0.2/24 --> 10.77.0.1 = 02:00:00:00:00:01

The probe captures ``lab.capture``. Traffic is made inside the namespace with real
sockets (a small sender run by ``ip netns exec``) or with tcpreplay there. The next hop's
MAC is not the capture side's, so the root namespace never takes the packets in (nothing
is answered or forwarded: they end on the veth). IPv6 is off on both ends so the kernel
adds no traffic of its own (router solicitations, DAD). Everything is removed on exit,
also when the test fails.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from typing import Any

from pyroute2 import IPRoute, NetNS, netns

SUBNET = "10.77.0"
NEXT_HOP = f"{SUBNET}.1"
NEXT_HOP_MAC = "02:00:00:00:00:01"
INNER_ADDRESS = f"{SUBNET}.2"

#: sends UDP flows from inside the namespace: FLOWS sockets, PACKETS datagrams each, at RATE/s
SENDER = r"""
import socket, sys, time
flows, packets, rate, dport, size = (int(a) for a in sys.argv[1:6])
first_sport = int(sys.argv[6]) if len(sys.argv) > 6 else 40000
payload = b"x" * size
socks = []
for i in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("%(src)s", first_sport + i))
    socks.append(s)
gap = 1.0 / rate if rate else 0.0
start = time.monotonic()
n = 0
for p in range(packets):
    for s in socks:
        s.sendto(payload, ("%(dst)s", dport))
        n += 1
        if gap:
            delay = start + n * gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)
print(n)
""" % {"src": INNER_ADDRESS, "dst": NEXT_HOP}


def _sysctl_off_ipv6(path_prefix: str, interface: str) -> None:
    with open(f"{path_prefix}/proc/sys/net/ipv6/conf/{interface}/disable_ipv6", "w") as fh:
        fh.write("1")


class NetLab:
    """One namespace + veth pair; use as a context manager."""

    def __init__(self) -> None:
        token = f"{os.getpid() % 100000:05d}{secrets.token_hex(2)}"
        self.namespace = f"probe-lab-{token}"
        self.capture = f"pc{token}"[:15]
        self.inner = f"pi{token}"[:15]
        self._created_ns = False
        self._created_link = False

    # --- setup / teardown ---------------------------------------------------------------

    def __enter__(self) -> "NetLab":
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _setup(self) -> None:
        netns.create(self.namespace)
        self._created_ns = True
        self._make_link()

    def _make_link(self) -> None:
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.capture, kind="veth", peer=self.inner)
            self._created_link = True
            for name in (self.capture, self.inner):  # room for the jumbo (offloaded) frames some captures hold
                ipr.link("set", index=ipr.link_lookup(ifname=name)[0], mtu=9000)
            _sysctl_off_ipv6("", self.capture)
            inner = ipr.link_lookup(ifname=self.inner)[0]
            ipr.link("set", index=inner, net_ns_fd=self.namespace)
        self.ns_exec(["sh", "-c", f"echo 1 > /proc/sys/net/ipv6/conf/{self.inner}/disable_ipv6"])
        with NetNS(self.namespace) as ns:
            inner = ns.link_lookup(ifname=self.inner)[0]
            ns.addr("add", index=inner, address=INNER_ADDRESS, prefixlen=24)
            ns.link("set", index=inner, state="up")
            ns.neigh("add", dst=NEXT_HOP, lladdr=NEXT_HOP_MAC, ifindex=inner, state=0x80)  # NUD_PERMANENT
        self.set_capture_up(True)

    def remove_link(self) -> None:
        """Delete the veth pair (the capture interface vanishes)."""
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.capture)
            if found:
                ipr.link("del", index=found[0])
        self._created_link = False

    def recreate_link(self) -> None:
        """A new veth pair under the same names (new interface indexes)."""
        self._make_link()

    def close(self) -> None:
        if self._created_link:
            self.remove_link()  # the peer goes with it
        if self._created_ns:
            try:
                netns.remove(self.namespace)
            except OSError:
                pass
            self._created_ns = False

    # --- actions ------------------------------------------------------------------------

    def set_capture_up(self, up: bool) -> None:
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.capture)[0]
            ipr.link("set", index=index, state="up" if up else "down")
        if up:  # the peer's carrier follows; wait until a frame can pass
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with IPRoute() as ipr:
                    link = ipr.get_links(ipr.link_lookup(ifname=self.capture)[0])[0]
                if link.get("operstate") == "UP":
                    return
                time.sleep(0.02)

    def ns_exec(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.namespace, *argv], check=True, capture_output=True, timeout=120, **kwargs)

    def send_udp(self, flows: int, packets: int, *, rate: int = 0, dport: int = 9999, size: int = 64, first_sport: int = 40000) -> int:
        """``flows`` UDP flows of ``packets`` datagrams each, sent from the namespace; returns the count."""
        out = self.ns_exec([sys.executable, "-c", SENDER, str(flows), str(packets), str(rate), str(dport), str(size), str(first_sport)])
        return int(out.stdout.decode().strip())

    def promiscuity(self) -> int:
        with IPRoute() as ipr:
            link = ipr.get_links(ipr.link_lookup(ifname=self.capture)[0])[0]
        return link.get("promiscuity") or 0


def namespaces_left() -> list[str]:
    """Lab namespaces of this process still present (for cleanup checks)."""
    prefix = f"probe-lab-{os.getpid() % 100000:05d}"
    return [n for n in netns.listnetns() if n.startswith(prefix)]
