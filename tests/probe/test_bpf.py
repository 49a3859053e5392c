"""Capture filters compiled by the system's libpcap (ctypes): programs and clear errors."""

from __future__ import annotations

import pytest

from probe.bpf import FilterError, compile_filter
from protocols import linktypes

BPF_RET_K = 0x06


def test_an_expression_compiles_to_a_program_that_returns_the_snaplen():
    program = compile_filter("udp dst port 9999", linktypes.ETHERNET, 4096)
    assert len(program) > 3
    assert (BPF_RET_K, 0, 0, 4096) in program and program[-1] == (BPF_RET_K, 0, 0, 0)
    assert program[0] == (0x28, 0, 0, 12)  # ldh [12]: the Ethernet type


def test_no_expression_accepts_everything_cut_to_the_snaplen():
    assert compile_filter(None, linktypes.ETHERNET, 1500) == [(BPF_RET_K, 0, 0, 1500)]
    assert compile_filter("   ", linktypes.ETHERNET, 1500) == [(BPF_RET_K, 0, 0, 1500)]


def test_the_link_type_changes_the_offsets():
    raw = compile_filter("ip", linktypes.RAW, 1500)
    eth = compile_filter("ip", linktypes.ETHERNET, 1500)
    assert raw != eth


@pytest.mark.parametrize(
    "expression,message",
    [
        ("tcp prt 80", "syntax error"),
        ("host 1.2.3.4 and", "syntax error"),
        ("port 99999", "illegal port number"),
        ("ether host zz:zz", ""),
    ],
)
def test_a_bad_expression_is_refused_with_libpcaps_reason(expression, message):
    with pytest.raises(FilterError) as err:
        compile_filter(expression, linktypes.ETHERNET, 1500)
    text = str(err.value)
    assert text.startswith(f"invalid capture filter {expression!r}: ") and message in text and "\n" not in text


def test_non_ascii_is_refused():
    with pytest.raises(FilterError, match="only ASCII"):
        compile_filter("host ümlaut", linktypes.ETHERNET, 1500)
