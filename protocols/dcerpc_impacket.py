"""DCE/RPC interface and operation names from impacket, for interfaces Zeek's table lacks.

impacket's DCE/RPC modules carry each interface's UUID as a constant (``MSRPC_UUID_*``,
and ``IID_*`` for the DCOM interfaces) and, per module, the request structure of every
opnum (``OPNUMS``). Zeek's names (:mod:`protocols.dcerpc_names`) win where both exist;
these fill in the rest: mimikatz's RPC interface (``MSRPC_UUID_MIMIKATZ`` -> ``mimikatz``),
the Group Key Distribution service (``gkdi``, used to read gMSA keys), DHCP and event log
management, the volume shadow copy interfaces (``IVssSnapshotMgmt``) ransomware uses to
delete snapshots, and so on. An ``MSRPC_UUID_X`` interface is named ``x``, an ``IID_X``
one ``X``; operations are named after impacket's request structure (``MimiCommand``),
only where the module defines a single interface (else an opnum could belong to either).

The table is built once, on the first lookup of a UUID Zeek does not know (importing the
modules takes about 0.4 s), never on the per-packet path of known interfaces.
"""

from __future__ import annotations

import importlib

#: impacket modules that define interface constants (the DCE/RPC interfaces and DCOM)
MODULES = (
    "atsvc", "bkrp", "dcomrt", "dhcpm", "drsuapi", "dssp", "epm", "even", "even6", "gkdi", "icpr", "iphlp",
    "lsad", "lsat", "mgmt", "mimilib", "nrpc", "nspi", "oxabref", "par", "rprn", "rrp", "samr", "sasec", "scmr",
    "srvs", "tsch", "tsts", "wkst", "dcom.comev", "dcom.oaut", "dcom.scmp", "dcom.vds", "dcom.wmi",
)

_NULL_UUID = "00000000-0000-0000-0000-000000000000"

_endpoints: dict[str, str] | None = None
_operations: dict[str, dict[int, str]] = {}


def _uuid_text(raw: bytes) -> str:
    """The text form of a 16-byte little-endian (DCE) UUID, lower case."""
    d1 = int.from_bytes(raw[0:4], "little")
    d2 = int.from_bytes(raw[4:6], "little")
    d3 = int.from_bytes(raw[6:8], "little")
    return f"{d1:08x}-{d2:04x}-{d3:04x}-{raw[8:10].hex()}-{raw[10:16].hex()}"


def _load() -> dict[str, str]:
    global _endpoints
    endpoints: dict[str, str] = {}
    for name in MODULES:
        module = importlib.import_module("impacket.dcerpc.v5." + name)
        interfaces = []
        for constant, value in vars(module).items():
            if not isinstance(value, bytes) or len(value) not in (16, 20):
                continue
            if constant.startswith("MSRPC_UUID_"):
                label = constant[len("MSRPC_UUID_"):].lower()
            elif constant.startswith("IID_"):
                label = constant[len("IID_"):]
            else:
                continue
            uuid = _uuid_text(value[:16])
            if uuid == _NULL_UUID:
                continue
            endpoints.setdefault(uuid, label)
            interfaces.append(uuid)
        opnums = getattr(module, "OPNUMS", None)
        if len(set(interfaces)) == 1 and opnums:
            _operations.setdefault(interfaces[0], {n: request.__name__ for n, (request, *_rest) in opnums.items()})
    _endpoints = endpoints
    return endpoints


def interface_name(uuid: str) -> str | None:
    """impacket's name for an interface UUID (lower-case text form), or None."""
    endpoints = _endpoints if _endpoints is not None else _load()
    return endpoints.get(uuid)


def operation_name(uuid: str, opnum: int) -> str | None:
    """The name of impacket's request structure for ``opnum`` of ``uuid``, or None."""
    if _endpoints is None:
        _load()
    ops = _operations.get(uuid)
    return None if ops is None else ops.get(opnum)
