"""Capture filters: tcpdump expressions compiled to classic BPF by libpcap, through ctypes.

``pcap_compile`` on a ``pcap_open_dead`` handle needs no interface and no privileges, so
the delivery process compiles the expression once, before anything starts (a bad one is a
one-line error), and hands the instructions to each dissection process, whose ring capture attaches
them to its socket with SO_ATTACH_FILTER. The program always ends in ``ret #snaplen``
on a match, so the same attachment also applies the snap length.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

#: Debian's libpcap package name first, then whatever the loader finds
_LIBRARIES = ("libpcap.so.0.8", "libpcap.so.1", "libpcap.so")
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
#: a BPF program has at most this many instructions (BPF_MAXINSNS)
MAX_INSTRUCTIONS = 4096

Instruction = tuple[int, int, int, int]  # code, jt, jf, k

#: pcap_open_dead takes a DLT_ value; these LINKTYPE_ values differ from their DLT_ on Linux
_DLT_OF_LINKTYPE = {101: 12}  # LINKTYPE_RAW -> DLT_RAW


class FilterError(ValueError):
    """The expression does not compile (libpcap's message), or libpcap is missing."""


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


_lib: ctypes.CDLL | None = None
_lock = threading.Lock()  # old libpcap's parser is not re-entrant


def _libpcap() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    names = list(_LIBRARIES)
    found = ctypes.util.find_library("pcap")
    if found:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.restype = None
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
        lib.pcap_close.restype = None
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        _lib = lib
        return lib
    raise FilterError("libpcap is not installed (Debian: apt-get install libpcap0.8); it compiles capture filters")


def compile_filter(expression: str | None, linktype: int, snaplen: int) -> list[Instruction]:
    """The BPF instructions of a tcpdump ``expression`` for frames of ``linktype`` (LINKTYPE_*).

    An empty or missing expression accepts every packet (cut to ``snaplen``).
    """
    lib = _libpcap()
    text = (expression or "").strip()
    try:
        encoded = text.encode("ascii")
    except UnicodeEncodeError:
        raise FilterError(f"invalid capture filter {text!r}: only ASCII is allowed") from None
    with _lock:
        handle = lib.pcap_open_dead(_DLT_OF_LINKTYPE.get(linktype, linktype), snaplen)
        if not handle:
            raise FilterError(f"libpcap cannot open a handle for link type {linktype}")
        try:
            program = _Program()
            if lib.pcap_compile(handle, ctypes.byref(program), encoded, 1, PCAP_NETMASK_UNKNOWN) != 0:
                message = (lib.pcap_geterr(handle) or b"").decode("utf-8", "replace")
                raise FilterError(f"invalid capture filter {text!r}: {message}")
            try:
                out = [(i.code, i.jt, i.jf, i.k) for i in program.bf_insns[: program.bf_len]]
            finally:
                lib.pcap_freecode(ctypes.byref(program))
        finally:
            lib.pcap_close(handle)
    if not out or len(out) > MAX_INSTRUCTIONS:
        raise FilterError(f"capture filter {text!r} compiles to {len(out)} instructions (1..{MAX_INSTRUCTIONS} allowed)")
    return out

