"""Network namespaces, veth pairs and tmpfs mounts for the scenarios, made with pyroute2 and mount(8).

Every object is registered with the rig's cleanup as soon as it exists, so a scenario
that fails half-way leaves no namespace, link or mount behind.

    root namespace                           namespace psc-<token>
    <outer> 10.<a>.<b>.1/30  <== veth ==>  <inner> 10.<a>.<b>.2/30   (the Core listens here)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

from pyroute2 import IPRoute, NetNS, netns

from scenarios.framework import Rig


def token() -> str:
    return f"{os.getpid() % 10000:04d}{secrets.token_hex(2)}"


class VethLink:
    """A namespace reached from the root namespace over one veth pair (a point-to-point /30)."""

    def __init__(self, rig: Rig, prefix: str = "psc") -> None:
        tok = token()
        self.namespace = f"{prefix}-{tok}"
        self.outer = f"{prefix}o{tok}"[:15]
        self.inner = f"{prefix}i{tok}"[:15]
        octet = int(tok[-3:], 16) % 250 + 1
        self.outer_address = f"10.213.{octet}.1"
        self.inner_address = f"10.213.{octet}.2"
        netns.create(self.namespace)
        rig.defer(f"remove network namespace {self.namespace}", lambda: netns.remove(self.namespace))
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.outer, kind="veth", peer=self.inner)
            rig.defer(f"remove veth pair {self.outer}/{self.inner}", self._remove_link)
            outer = ipr.link_lookup(ifname=self.outer)[0]
            ipr.link("set", index=ipr.link_lookup(ifname=self.inner)[0], net_ns_fd=self.namespace)
            ipr.addr("add", index=outer, address=self.outer_address, prefixlen=30)
            ipr.link("set", index=outer, state="up")
        with NetNS(self.namespace) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            inner = ns.link_lookup(ifname=self.inner)[0]
            ns.addr("add", index=inner, address=self.inner_address, prefixlen=30)
            ns.link("set", index=inner, state="up")
        self.wait_reachable()

    def _remove_link(self) -> None:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.outer)
            if found:
                ipr.link("del", index=found[0])  # the peer in the namespace goes with it

    def set_up(self, up: bool) -> None:
        """Cut (down) or restore (up) the link, both ends."""
        state = "up" if up else "down"
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=self.outer)[0], state=state)
        with NetNS(self.namespace) as ns:
            ns.link("set", index=ns.link_lookup(ifname=self.inner)[0], state=state)
        if up:
            self.wait_reachable()

    def wait_reachable(self, timeout: float = 10.0) -> None:
        """Until both ends report carrier (a veth comes up at once, but not within the same call)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with IPRoute() as ipr:
                link = ipr.get_links(ipr.link_lookup(ifname=self.outer)[0])[0]
            if link.get("operstate") == "UP":
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.outer} did not come up")

    def link_state(self) -> str:
        with IPRoute() as ipr:
            return ipr.get_links(ipr.link_lookup(ifname=self.outer)[0])[0].get("operstate") or "?"


def namespaces_with_prefix(prefix: str = "psc-") -> list[str]:
    return [n for n in netns.listnetns() if n.startswith(prefix)]


class TmpfsMount:
    """A tmpfs of ``size_mb`` mounted on ``path`` (created if needed), unmounted at cleanup."""

    def __init__(self, rig: Rig, path: Path, size_mb: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)], check=True,
                       capture_output=True, timeout=30)
        rig.defer(f"unmount tmpfs {path}", self.unmount)

    def unmount(self) -> None:
        done = subprocess.run(["umount", str(self.path)], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:  # still busy (a process of ours not yet reaped): detach it now, freed when idle
            subprocess.run(["umount", "-l", str(self.path)], check=True, capture_output=True, timeout=30)

    def usage(self) -> tuple[int, int]:
        """(used, total) bytes."""
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize
