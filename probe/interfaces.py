"""Network interfaces through netlink (pyroute2): list them, find the default route's, watch one.

The capture actor takes a :class:`LinkWatcher` to learn, without polling, when its
interface goes down or disappears (a transient failure) and when it is back.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import attrs
from pyroute2 import IPRoute
from pyroute2.netlink import rtnl
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

log = logging.getLogger("probe.interfaces")

IFF_UP = 0x1
IFF_PROMISC = 0x100
IFF_LOWER_UP = 0x10000

UP = "up"
DOWN = "down"
ABSENT = "absent"


@attrs.frozen
class InterfaceInfo:
    """One interface as ``python -m probe interfaces`` shows it."""

    name: str
    index: int
    state: str  # the kernel's operational state: UP, DOWN, LOWERLAYERDOWN, UNKNOWN ...
    admin_up: bool
    carrier: bool
    addresses: tuple[str, ...]
    mtu: int
    promisc: bool  # IFF_PROMISC set by a user (ip link set ... promisc on)
    promiscuity: int  # promiscuous holders, packet sockets included
    hw_type: int  # ARPHRD_*
    mac: str | None
    default_route: bool = False

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self, value_serializer=lambda _, __, v: list(v) if isinstance(v, tuple) else v)


def _info(link: Any, addresses: dict[int, list[str]], default: set[int]) -> InterfaceInfo:
    flags = link["flags"]
    index = link["index"]
    return InterfaceInfo(
        name=link.get("ifname"),
        index=index,
        state=link.get("operstate") or "UNKNOWN",
        admin_up=bool(flags & IFF_UP),
        carrier=bool(flags & IFF_LOWER_UP),
        addresses=tuple(addresses.get(index, ())),
        mtu=link.get("mtu") or 0,
        promisc=bool(flags & IFF_PROMISC),
        promiscuity=link.get("promiscuity") or 0,
        hw_type=link["ifi_type"],
        mac=link.get("address"),
        default_route=index in default,
    )


def _default_indexes(ipr: IPRoute) -> list[int]:
    """Output interfaces of the default routes, IPv4 first, best metric first."""
    out: list[int] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        routes = sorted(ipr.get_default_routes(family=family), key=lambda r: r.get("RTA_PRIORITY") or 0)
        for route in routes:
            oif = route.get("RTA_OIF")
            if oif is None:
                for hop in route.get("RTA_MULTIPATH") or ():
                    oif = hop.get("oif")
                    break
            if oif is not None and oif not in out:
                out.append(oif)
    return out


def list_interfaces() -> list[InterfaceInfo]:
    """Every interface of this network namespace, by index."""
    with IPRoute() as ipr:
        addresses: dict[int, list[str]] = {}
        for addr in ipr.get_addr():
            addresses.setdefault(addr["index"], []).append(f"{addr.get('IFA_ADDRESS')}/{addr['prefixlen']}")
        default = set(_default_indexes(ipr))
        return [_info(link, addresses, default) for link in sorted(ipr.get_links(), key=lambda l: l["index"])]


def lookup(name: str) -> InterfaceInfo | None:
    """The interface called ``name``, or None."""
    for info in list_interfaces():
        if info.name == name:
            return info
    return None


def default_interface() -> str | None:
    """The interface of the default route (IPv4 first), or None when there is none."""
    with IPRoute() as ipr:
        for index in _default_indexes(ipr):
            links = ipr.get_links(index)
            if links:
                return links[0].get("ifname")
    return None


def _link_state(link: Any) -> str:
    return UP if link["flags"] & IFF_UP else DOWN


class LinkWatcher:
    """Follows one interface (by name) over netlink's link group: up, down or absent.

    Not a thread: its owner polls :meth:`fileno` with its own descriptors and calls
    :meth:`drain` when it is readable, so that a state change wakes the capture at once.
    A plain netlink socket (parsed by pyroute2's marshal) rather than an ``IPRoute``, so
    that any thread may drain it: the capture actor's replacement runs in a new thread.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.index: int | None = None
        self.carrier = False
        self.state = ABSENT
        self.changes = 0
        self._marshal = MarshalRtnl()
        self._events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._events.bind((0, rtnl.RTMGRP_LINK))
        self._events.setblocking(False)
        self.refresh()

    def fileno(self) -> int:
        return self._events.fileno()

    def refresh(self) -> str:
        """Ask the kernel for the interface's state now (after a socket error, at start)."""
        try:
            with IPRoute() as ipr:
                links = [l for l in ipr.get_links() if l.get("ifname") == self.name]
        except NetlinkError as exc:
            log.warning("cannot read the state of %s: %s", self.name, exc)
            return self.state
        if links:
            self._update(links[0])
        else:
            self._set(ABSENT, None, False)
        return self.state

    def drain(self) -> str:
        """Read the pending link messages (call when :meth:`fileno` is readable)."""
        while True:
            try:
                data = self._events.recv(1 << 16)
            except BlockingIOError:
                return self.state
            except OSError as exc:  # ENOBUFS: we fell behind; ask for the state instead
                log.warning("netlink link monitor for %s: %s; re-reading the state", self.name, exc)
                return self.refresh()
            for message in self._marshal.parse(data):
                self._on_message(message)

    def _on_message(self, message: Any) -> None:
        event = message.get("event")
        if event not in ("RTM_NEWLINK", "RTM_DELLINK"):
            return
        name = message.get("ifname")
        if name != self.name and message.get("index") != self.index:
            return
        if event == "RTM_DELLINK" or name != self.name:  # deleted, or renamed away
            self._set(ABSENT, None, False)
        else:
            self._update(message)

    def _update(self, link: Any) -> None:
        self._set(_link_state(link), link["index"], bool(link["flags"] & IFF_LOWER_UP))

    def _set(self, state: str, index: int | None, carrier: bool) -> None:
        if state != self.state:
            self.changes += 1
            log.info(
                "interface %s is %s",
                self.name,
                state,
                extra={"component": "capture", "event": "link_state", "interface": self.name, "state": state},
            )
        self.state = state
        self.index = index
        self.carrier = carrier

    def close(self) -> None:
        self._events.close()


# --- planning a live capture ---------------------------------------------------------


class LiveCaptureError(ValueError):
    """A live capture cannot start: no such interface, no default route, bad filter, no rights."""


@attrs.frozen
class LivePlan:
    """The resolved interface of a live capture and its compiled filter."""

    interface: str
    index: int
    hw_type: int
    program: tuple[tuple[int, int, int, int], ...]


def plan_live_capture(config: Any) -> LivePlan:
    """Resolve ``capture.interface`` (or the default route's), check it, compile the filter.

    Everything that can make a live capture refuse to start is checked here, before
    anything starts, so the CLI can print one line and exit 2.
    """
    from probe.bpf import FilterError, compile_filter
    from protocols.tpacket import link_mode

    capture = config.capture
    name = capture.interface
    if not name:
        name = default_interface()
        if name is None:
            raise LiveCaptureError("there is no default route to take the interface from: give --interface NAME")
    info = lookup(name)
    if info is None:
        known = ", ".join(i.name for i in list_interfaces())
        raise LiveCaptureError(f"no interface named {name!r} (known: {known})")
    mode = link_mode(info.hw_type)
    try:
        program = compile_filter(capture.filter, mode.filter_linktype, capture.snaplen)
    except FilterError as exc:
        raise LiveCaptureError(str(exc)) from None
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        raise LiveCaptureError("live capture needs CAP_NET_RAW (run as root or grant the capability)") from None
    return LivePlan(info.name, info.index, info.hw_type, tuple(program))
