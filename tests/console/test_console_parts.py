"""The console's parts on their own: argument checking, the tail's kind peek and tap, the
access policy, and the client's request building and tables (fast, no probe needed)."""

from __future__ import annotations

import os
from pathlib import Path

import nacl.signing
import pytest

from actors.console import AccessPolicy, Command, CommandError, EventTap, Param, TokenBucket, parse_args, peek_kind
from actors.messages import SignedEvents
from probe.console_client import ConsoleError, build_request, render, render_event, table
from protocols.events import Weird, encode_body
from protocols.events.envelope import EnvelopeHeader
from protocols.signing import sign_batch

FLOWS = Command("flows", "top flows", lambda args: args, (Param("n", "int", 10, "how many", minimum=1, maximum=1000),))
TAIL = Command("tail", "stream", lambda args: args, (Param("kinds", "kinds", (), "kinds"), Param("limit", "int", 0, "limit", minimum=0)))
LEVEL = Command("loglevel", "level", lambda args: args, (Param("level", "str", None, "level", choices=("debug", "info")),))


def test_arguments_get_defaults_and_typed_values() -> None:
    assert parse_args(FLOWS, None) == {"n": 10}
    assert parse_args(FLOWS, {"n": 3}) == {"n": 3}
    assert parse_args(FLOWS, {"n": "7"}) == {"n": 7}  # typed by hand on a prompt
    assert parse_args(TAIL, {"kinds": "dns, conn,dns"}) == {"kinds": ("conn", "dns"), "limit": 0}
    assert parse_args(TAIL, {"kinds": ["http"]}) == {"kinds": ("http",), "limit": 0}
    assert parse_args(LEVEL, {}) == {"level": None}


@pytest.mark.parametrize(
    "command, args, fragment",
    [
        (FLOWS, {"n": "abc"}, "must be an integer"),
        (FLOWS, {"n": True}, "must be an integer"),
        (FLOWS, {"n": 1.5}, "must be an integer"),
        (FLOWS, {"n": 0}, "at least 1"),
        (FLOWS, {"n": 10**9}, "at most 1000"),
        (FLOWS, {"m": 1}, "unknown argument 'm'"),
        (FLOWS, [1, 2], "args must be a JSON object"),
        (TAIL, {"kinds": 5}, "list of event kinds"),
        (LEVEL, {"level": "loud"}, "must be one of debug, info"),
        (LEVEL, {"level": ["debug"]}, "must be a string"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(command: Command, args: object, fragment: str) -> None:
    with pytest.raises(CommandError) as err:
        parse_args(command, args)
    assert err.value.code == "bad_argument" and fragment in err.value.message


def _records(kinds: list[str]) -> list[tuple[int, bytes]]:
    key = nacl.signing.SigningKey.generate()
    events = [encode_body(Weird(1_700_000_000.0 + i, f"w{i}")) for i in range(len(kinds))]
    events = [type(e)(e.ts, kind, e.body) for e, kind in zip(events, kinds)]
    return sign_batch(key, EnvelopeHeader("probe-" + "x" * 40, "b" * 16), events, 2**40).records


def test_peek_kind_reads_the_kind_of_real_signed_records() -> None:
    kinds = ["dns", "conn", "a" * 31, "b" * 40]  # fixstr and str8 kinds, a 64-bit sequence number
    assert [peek_kind(record) for _, record in _records(kinds)] == kinds


def test_peek_kind_gives_none_for_damaged_records() -> None:
    _, record = _records(["dns"])[0]
    assert peek_kind(record[:70]) is None
    assert peek_kind(b"") is None
    assert peek_kind(record[:64] + b"\x93\x01") is None
    for size in range(0, 300, 7):  # random bytes never raise out of the peek
        kind = peek_kind(os.urandom(size))
        assert kind is None or isinstance(kind, str)


def test_the_tap_costs_nothing_while_nobody_listens_and_is_bounded_when_someone_does() -> None:
    tap = EventTap(max_batches=4)
    batch = SignedEvents(_records(["dns", "dns"]), None, {"dns": 2})
    tap.publish(batch)
    assert tap.take() == []
    woken = []
    tap.wake = lambda: woken.append(1)
    tap.active = True
    for _ in range(10):
        tap.publish(batch)
    assert len(tap.take()) == 4 and tap.dropped_events == 12 and len(woken) == 10


def test_token_bucket_limits_a_burst_to_its_rate() -> None:
    bucket = TokenBucket(100)
    taken = sum(bucket.take() for _ in range(1000))
    assert 100 <= taken <= 102


def test_access_policy_allows_root_own_user_and_listed_users_only() -> None:
    policy = AccessPolicy(own_uid=1234)
    assert policy.allows(1, 0, 0) and policy.allows(1, 1234, 1234)
    assert not policy.allows(1, 65534, 65534)
    listed = AccessPolicy(["nobody", "4321"], own_uid=1234)
    assert listed.allows(1, 65534, 65534) and listed.allows(1, 4321, 4321) and not listed.allows(1, 1000, 1000)


def test_access_policy_with_a_group_allows_its_members() -> None:
    policy = AccessPolicy(group="nogroup", own_uid=1234)
    assert policy.allows(os.getpid(), 65534, 65534)  # nobody's primary group is nogroup
    assert not policy.allows(os.getpid(), 1000, 1000)
    with pytest.raises(LookupError, match="no group"):
        AccessPolicy(group="no-such-group-here")


def test_unknown_allowed_users_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    policy = AccessPolicy(["no-such-user-here"], own_uid=1234)
    assert policy.uids == {0, 1234}
    assert "no-such-user-here" in caplog.text


HELP = [
    {"name": "flows", "params": [{"name": "n"}]},
    {"name": "tail", "params": [{"name": "kinds"}, {"name": "limit"}]},
    {"name": "status", "params": []},
]


def test_words_become_requests_positionally_or_by_name() -> None:
    assert build_request(["flows", "5"], HELP) == ("flows", {"n": "5"})
    assert build_request(["flows", "n=5"], HELP) == ("flows", {"n": "5"})
    assert build_request(["tail", "dns,conn", "limit=3"], HELP) == ("tail", {"kinds": "dns,conn", "limit": "3"})
    assert build_request(["nosuch", "x=1"], HELP) == ("nosuch", {"x": "1"})  # the probe says it is unknown
    with pytest.raises(ConsoleError, match="status takes no arguments"):
        build_request(["status", "extra"], HELP)


def test_tables_align_numbers_right_and_text_left() -> None:
    text = table(["NAME", "VALUE"], [["a", 1], ["longer", 12345], ["c", None]])
    assert text.splitlines() == ["NAME     VALUE", "a            1", "longer  12,345", "c            -"]


def test_readable_output_of_results() -> None:
    assert render("pause", {"paused": True, "packets": 1234, "workers": [{"worker": 0, "packets": 1234}]}) == "capture paused at 1,234 packets"
    refused = render("reload-identity", {"ok": False, "reason": "key_corrupt", "message": "key x is corrupt", "resumed": False,
                                         "identity": {"transmission": {"halted": True}}})
    assert refused == "identity reload REFUSED (key_corrupt): key x is corrupt\nthe running identity is unchanged; transmission stays HALTED"
    flows = render("flows", {"open": 2, "workers": [{"worker": 0}], "flows": [
        {"orig_h": "10.0.0.1", "orig_p": 1, "resp_h": "10.0.0.2", "resp_p": 80, "proto": "tcp", "service": "http",
         "bytes": 5000, "orig_pkts": 3, "resp_pkts": 2, "duration": 1.25, "uid": "Cabc"}]})
    assert "10.0.0.1:1" in flows and "5,000" in flows and flows.startswith("2 open flows")
    line = render_event({"ts": 1_700_000_000.5, "kind": "dns", "uid": "Cx", "id.orig_h": "10.0.0.1", "id.orig_p": 5,
                         "id.resp_h": "10.0.0.53", "id.resp_p": 53, "query": "a.example", "answers": ["1.2.3.4"], "rcode": None})
    assert line == "2023-11-14T22:13:20.500Z dns          Cx 10.0.0.1:5 -> 10.0.0.53:53 query=a.example answers=1.2.3.4"


def test_console_settings_are_checked_when_the_configuration_loads() -> None:
    from probe.config import ConfigError, build_config

    with pytest.raises(ConfigError, match="console.group: no group no-such-group-here"):
        build_config({"console": {"group": "no-such-group-here"}})
    with pytest.raises(ConfigError, match="too long for a Unix socket"):
        build_config({"probe": {"data_dir": "/tmp/" + "d" * 100}})
    config = build_config({"probe": {"data_dir": "/var/lib/probe"}})
    assert config.console_socket == "/var/lib/probe/console.sock"
    assert build_config({"console": {"socket": "/run/probe.sock"}}).console_socket == "/run/probe.sock"


def test_a_socket_left_by_a_killed_probe_is_replaced_and_nothing_else_is_touched(tmp_path: Path) -> None:
    import socket

    from actors.console import ConsoleServer

    stale = str(tmp_path / "stale.sock")
    left = socket.socket(socket.AF_UNIX)
    left.bind(stale)
    left.close()  # the file stays, nobody listens
    ConsoleServer._clear_stale(stale)
    assert not os.path.exists(stale)

    regular = tmp_path / "not-a-socket"
    regular.write_text("keep me")
    with pytest.raises(OSError, match="exists and is not a socket"):
        ConsoleServer._clear_stale(str(regular))
    assert regular.read_text() == "keep me"

    live = socket.socket(socket.AF_UNIX)
    live.bind(str(tmp_path / "live.sock"))
    live.listen(1)
    try:
        with pytest.raises(OSError, match="another process serves a console"):
            ConsoleServer._clear_stale(str(tmp_path / "live.sock"))
    finally:
        live.close()
