"""The console of a real running probe (``python -m probe run`` on a long synthetic capture).

The probe is paused through its console as soon as the socket answers; each test resumes
capture only while it needs packets and leaves it paused. Tests run in file order.
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from probe import console_client
from probe.console_client import ConsoleClient, ConsoleError
from tests.console.running_probe import REPO, RunningProbe, wait_for
from tests.console.traffic import TCP_FLOWS
from tests.console.users import NOBODY, NOGROUP, as_user

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def probe(open_dir: Path, long_capture: Path) -> Iterator[RunningProbe]:
    running = RunningProbe(open_dir, long_capture)
    try:
        with running.wait_ready() as client:
            client.call("pause")
            with capturing(client):  # some flows open and events made before the first test
                wait_for(lambda: client.call("status")["events"]["created"] > 2000)
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(probe: RunningProbe) -> Iterator[ConsoleClient]:
    with probe.client() as c:
        yield c
        assert c.call("status")["capture"]["paused"], "a test left capture running"


@contextmanager
def capturing(client: ConsoleClient) -> Iterator[None]:
    client.call("resume")
    try:
        yield
    finally:
        client.call("pause")


def packets(client: ConsoleClient) -> int:
    return client.call("status")["capture"]["packets"]


def settle(client: ConsoleClient) -> None:
    """Wait until everything created is delivered and nothing new came for half a second."""
    last = -1
    while True:
        events = client.call("status")["events"]
        if events["created"] == last and events["pending"] == 0:
            return
        last = events["created"]
        time.sleep(0.5)


def measure_rate(client: ConsoleClient, seconds: float) -> float:
    """Packets a second, timed from the first to the last change of the count seen in ``seconds``."""
    first = packets(client)
    while (now := packets(client)) == first:
        time.sleep(0.02)
    t0, p0 = time.monotonic(), now
    t1, p1 = t0, p0
    while time.monotonic() - t0 < seconds:
        time.sleep(0.02)
        value = packets(client)
        assert value >= p1, f"the packet count went down from {p1} to {value}"
        if value != p1:
            t1, p1 = time.monotonic(), value
    assert t1 > t0, "the packet count did not move"
    return (p1 - p0) / (t1 - t0)


# --- the socket ------------------------------------------------------------------------------


def test_socket_is_private_to_the_probes_user_and_greets(probe: RunningProbe, client: ConsoleClient) -> None:
    st = os.stat(probe.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    greeting = client.greeting
    assert greeting["console"] == "probe" and greeting["version"] == 1
    assert greeting["pid"] == probe.proc.pid and greeting["capture"]["kind"] == "file"


def test_another_user_cannot_reach_the_socket(probe: RunningProbe) -> None:
    outcome = as_user(NOBODY, NOGROUP, lambda: str(ConsoleClient(probe.socket, timeout=5).call("status")["state"]))
    assert outcome.startswith("ConsoleUnavailable: permission denied")


def test_another_user_is_refused_by_credentials_even_if_the_file_mode_lets_it_in(probe: RunningProbe) -> None:
    os.chmod(probe.socket, 0o666)  # an administrator's mistake: the peer check still keeps others out
    try:
        outcome = as_user(NOBODY, NOGROUP, lambda: str(ConsoleClient(probe.socket, timeout=5).call("status")["state"]))
    finally:
        os.chmod(probe.socket, 0o600)
    assert outcome == "ConsoleError: forbidden: user nobody (uid 65534) may not use this console"
    refusals = [json.loads(line) for line in probe.log().splitlines() if '"event": "refused"' in line]
    assert refusals and refusals[-1]["uid"] == NOBODY and refusals[-1]["level"] == "warning"
    with probe.client() as c:
        assert c.call("status")["console"]["refused"] >= 1


def test_help_describes_every_command(client: ConsoleClient) -> None:
    names = {c["name"] for c in client.call("help")["commands"]}
    assert names == {
        "help", "status", "metrics", "alerts", "flows", "tail", "untail", "pause", "resume",
        "flush", "shed", "reload-identity", "loglevel", "shutdown",
    }
    (flows,) = client.call("help", command="flows")["commands"]
    assert flows["params"][0]["name"] == "n" and flows["params"][0]["type"] == "int"


# --- seeing ----------------------------------------------------------------------------------


def test_pause_stops_the_packet_count_and_resume_restarts_it(client: ConsoleClient) -> None:
    paused = client.call("pause")
    status = client.call("status")
    assert paused["paused"] and status["capture"]["paused"] and status["state"] == "paused"
    assert status["capture"]["packets"] == paused["packets"]
    worker = next(a for a in status["actors"] if a["name"] == "worker-0")
    assert worker["state"] == "paused" and worker["alive"]
    time.sleep(1.5)
    assert packets(client) == paused["packets"]

    resumed = client.call("resume")
    assert not resumed["paused"] and client.call("status")["state"] == "running"
    moved = wait_for(lambda: (n := packets(client)) > paused["packets"] and n)
    again = client.call("pause")
    assert again["packets"] >= moved
    time.sleep(1.5)
    assert packets(client) == again["packets"]


def test_status_shows_actors_capture_buffer_uplink_identity_and_alerts(probe: RunningProbe, long_capture: Path, client: ConsoleClient) -> None:
    s = client.call("status")
    actors = {a["name"]: a for a in s["actors"]}
    assert set(actors) == {"supervisor", "buffer", "signer", "uplink", "console", "resources", "alerts", "worker-0"}
    assert all(a["alive"] for a in actors.values()) and all(a["restarts"] == 0 for a in actors.values())
    assert actors["uplink"]["state"] == s["uplink"]["state"] == "connected"
    assert s["capture"]["path"] == str(long_capture) and s["capture"]["workers"] == 1
    assert s["capture"]["packets"] > 0 and s["capture"]["flows"] > 0
    events = s["events"]
    assert events["created"] > 0 and events["balanced"]
    assert events["created"] == events["delivered"] + events["dropped_total"] + events["pending"]
    assert s["buffer"]["disk"]["quota_bytes"] == 1024 << 20 and s["buffer"]["memory"]["max_events"] == 100_000
    identity = s["identity"]
    assert identity["state"] == "ok" and identity["key_path"] == str(probe.data / "identity" / "probe.key")
    assert len(identity["public_key"]) == 64 and not identity["transmission"]["halted"]
    assert s["alerts"] == [] and s["health"] == "ok"
    assert s["uptime"] > 0 and s["log_level"] == "info"
    assert set(s["rates"]) >= {"packets_per_second", "events_per_second", "drops_per_second"}
    assert s["console"]["clients"] >= 1


def test_metrics_and_alerts(client: ConsoleClient) -> None:
    every = client.call("metrics")["metrics"]
    assert every["events_signed_total"] > 0 and every["console_connections_total"] >= 1
    some = client.call("metrics", match="events_created")["metrics"]
    assert some and all("events_created" in k for k in some)
    assert sum(some.values()) == client.call("status")["events"]["created"]
    text = client.call("metrics", format="prometheus", match="events_signed")["text"]
    samples = [line.split() for line in text.splitlines() if not line.startswith("#")]
    assert samples and samples[0][0] == "probe_events_signed_total" and float(samples[0][1]) == every["events_signed_total"]
    assert client.call("alerts", history=0) == {"alerts": [], "history": []}


def test_flows_lists_the_open_flows_that_carried_most_bytes(client: ConsoleClient) -> None:
    result = client.call("flows", n=3)
    top = result["flows"]
    assert [f["orig_p"] for f in top] == [port for port, _ in TCP_FLOWS[:3]]
    assert [f["bytes"] for f in top] == sorted((f["bytes"] for f in top), reverse=True)
    assert all(f["proto"] == "tcp" and f["resp_h"] == "10.0.0.2" and f["uid"].startswith("C") for f in top)
    assert result["open"] > len(TCP_FLOWS)
    with pytest.raises(ConsoleError) as err:
        client.call("flows", n=0)
    assert err.value.code == "bad_argument"


def test_tail_streams_events_of_the_asked_kinds_and_ends_cleanly(client: ConsoleClient) -> None:
    events = []
    with capturing(client):
        for event in client.tail(kinds="dns"):
            events.append(event)
            if len(events) == 20:
                break
        summary = client.untail()
    assert all(e["kind"] == "dns" and e["query"].endswith(".example.com") for e in events)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20
    assert summary["sent"] >= 20 and summary["reason"] == "untail"
    assert client.call("status")["console"]["tailing"] == 0  # the same connection goes on

    with capturing(client):
        conns = list(client.tail(kinds=["conn"], limit=5))
    assert len(conns) == 5 and all(e["kind"] == "conn" for e in conns)
    assert client.tail_summary == {"sent": 5, "dropped": 0, "reason": "limit"}
    with pytest.raises(ConsoleError) as err:
        client.call("untail")
    assert err.value.code == "bad_request"


# --- steering --------------------------------------------------------------------------------


def test_flush_ends_idle_flows_now(client: ConsoleClient) -> None:
    first = client.call("flush")  # by each protocol's timeout: flows active at the packet clock stay
    assert first["open_flows"] > len(TCP_FLOWS) and first["uplink"] == "connected"
    created = client.call("status")["events"]["created"]
    everything = client.call("flush", idle=0)
    assert everything["flows_ended"] == first["open_flows"] and everything["open_flows"] == 0
    assert everything["events"] >= everything["flows_ended"]  # a conn each, and what their parsers had left
    assert client.call("flows")["open"] == 0 and client.call("flows")["flows"] == []
    wait_for(lambda: client.call("status")["events"]["created"] >= created + everything["events"])
    with pytest.raises(ConsoleError) as err:
        client.call("flush", idle=-1)
    assert err.value.code == "bad_argument"
    with capturing(client):  # later packets start new flows
        wait_for(lambda: client.call("flows", n=1)["open"] > 0)


def test_loglevel_shows_and_sets_the_level_of_every_process(probe: RunningProbe, client: ConsoleClient) -> None:
    assert client.call("loglevel") == {"level": "info"}
    changed = client.call("loglevel", level="debug")
    assert changed["previous"] == "info" and changed["workers"] == [{"worker": 0, "level": "debug"}]
    assert client.call("status")["log_level"] == "debug"
    assert client.call("loglevel", level="info")["previous"] == "debug"
    with pytest.raises(ConsoleError) as err:
        client.call("loglevel", level="loud")
    assert err.value.code == "bad_argument" and "debug, info, warning, error" in err.value.message


def test_reload_identity_revalidates_the_key(probe: RunningProbe, client: ConsoleClient) -> None:
    key = probe.data / "identity" / "probe.key"
    good = key.read_bytes()
    settle(client)  # batches dissected before the pause have reached the signer
    ok = client.call("reload-identity")
    assert ok["ok"] and not ok["resumed"] and ok["identity"]["state"] == "ok" and ok["identity"]["reloads"] == 1

    key.write_text("probe-ed25519-key-v1\nnot-a-seed\n")
    try:
        refused = client.call("reload-identity")  # re-validated and refused: the running identity stays
        assert not refused["ok"] and refused["reason"] == "key_corrupt" and "corrupt" in refused["message"]
        assert refused["identity"]["state"] == "ok" and not refused["identity"]["transmission"]["halted"]
        before = client.call("status")["events"]
        with capturing(client):  # the signer finds the bad key file: transmission halts, capture goes on
            wait_for(lambda: client.call("status")["identity"]["transmission"]["halted"])
            wait_for(lambda: client.call("status")["events"]["created"] > before["created"] + 200)
        assert client.call("status")["uplink"]["state"] == "halted"
        wait_for(lambda: "identity" in [a["name"] for a in client.call("alerts")["alerts"]])
        assert client.call("status")["health"] == "halted"
        time.sleep(0.5)  # acks for frames sent before the halt
        halted = client.call("status")["events"]
        time.sleep(1.0)
        assert client.call("status")["events"]["delivered"] == halted["delivered"]  # halt means halt
        assert halted["pending"] > 0
    finally:
        key.write_bytes(good)
        os.chmod(key, 0o600)
    again = client.call("reload-identity")
    assert again["ok"] and again["resumed"] and again["identity"]["state"] == "ok"
    assert not again["identity"]["transmission"]["halted"]
    wait_for(lambda: (e := client.call("status")["events"])["pending"] == 0 and e["delivered"] == e["created"])
    wait_for(lambda: client.call("alerts")["alerts"] == [])
    transitions = [(a["name"], a["state"]) for a in client.call("alerts")["history"]]
    assert transitions[-2:] == [("identity", "raised"), ("identity", "cleared")]


# --- bad input -------------------------------------------------------------------------------


class RawClient:
    """A bare socket to the console, to send what a well-behaved client never would."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(path)
        self.buf = b""
        self.greeting = self.read()

    def read(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def ask(self, raw: bytes) -> dict[str, Any]:
        self.sock.sendall(raw)
        return self.read()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    "raw, code",
    [
        (b'{"cmd": "nosuch", "id": 1}\n', "unknown_command"),
        (b"not json at all\n", "bad_json"),
        (b"\xff\xfe\x00garbage\n", "bad_json"),
        (b"[1, 2, 3]\n", "bad_request"),
        (b'{"cmd": 5}\n', "bad_request"),
        (b'{"args": {}}\n', "bad_request"),
        (b'{"cmd": "status", "id": {"nested": 1}}\n', "bad_request"),
        (b'{"cmd": "flows", "args": {"n": "many"}, "id": "a"}\n', "bad_argument"),
        (b'{"cmd": "flows", "args": [5]}\n', "bad_argument"),
        (b'{"cmd": "status", "args": {"verbose": true}}\n', "bad_argument"),
    ],
)
def test_bad_requests_get_a_clear_error_and_the_connection_stays_up(probe: RunningProbe, raw: bytes, code: str) -> None:
    c = RawClient(probe.socket)
    try:
        answer = c.ask(raw)
        assert answer["ok"] is False and answer["error"]["code"] == code and answer["error"]["message"]
        fine = c.ask(b'{"cmd": "status", "id": 7}\n')
        assert fine["ok"] and fine["id"] == 7
    finally:
        c.close()


def test_oversized_lines_are_refused_and_discarded(probe: RunningProbe) -> None:
    c = RawClient(probe.socket)
    try:
        whole = b'{"cmd": "status", "pad": "' + b"x" * 70_000 + b'"}\n'  # one send, newline included
        answer = c.ask(whole)
        assert answer["error"]["code"] == "line_too_long"
        assert c.ask(b'{"cmd": "status", "id": 1}\n')["id"] == 1
        c.sock.sendall(b"y" * (3 << 20))  # no newline for 3 MB: one error, the bytes thrown away
        c.sock.sendall(b'tail of the long line\n{"cmd": "status", "id": 2}\n')
        assert c.read()["error"]["code"] == "line_too_long"
        answer = c.read()
        assert answer["ok"] and answer["id"] == 2
    finally:
        c.close()


def test_random_bytes_never_hurt_the_probe(probe: RunningProbe, client: ConsoleClient) -> None:
    before = client.call("status")
    answers: list[dict[str, Any]] = []

    def drain(c: RawClient) -> None:
        try:
            while True:
                answers.append(c.read())
        except (ConnectionError, OSError, ValueError):
            return

    for _ in range(10):  # garbage from clients that read the answers, then vanish
        c = RawClient(probe.socket)
        reader = threading.Thread(target=drain, args=(c,))
        reader.start()
        c.sock.sendall(os.urandom(64 << 10))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.05)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        reader.join(10)
    assert answers and all(a["ok"] is False for a in answers)
    assert {a["error"]["code"] for a in answers} <= {"bad_json", "bad_request", "line_too_long", "unknown_command", "bad_argument"}

    flood = RawClient(probe.socket)  # garbage from a client that never reads: disconnected as slow
    try:
        with pytest.raises(OSError):
            for _ in range(64):
                flood.sock.sendall(os.urandom(256 << 10))
    finally:
        flood.close()

    after = client.call("status")
    assert after["console"]["disconnected_slow"] > before["console"]["disconnected_slow"]
    assert after["console"]["errors"] > before["console"]["errors"] + len(answers) // 2
    restarts = {a["name"]: a["restarts"] for a in before["actors"]}
    assert all(a["alive"] and a["restarts"] == restarts[a["name"]] for a in after["actors"]), after["actors"]
    assert probe.proc.poll() is None


# --- many clients (each test on a probe of its own, with the whole capture ahead of it) ------


@pytest.fixture
def fresh_probe(tmp_path: Path, long_capture: Path) -> Iterator[RunningProbe]:
    # paced (10,000 packets/s at most) so that a fast machine cannot finish the replay, and
    # end the probe, while the crowd test still talks to it
    running = RunningProbe(tmp_path, long_capture, args=("--pace", "100"))
    try:
        with running.wait_ready() as client:
            client.call("pause")
        yield running
    finally:
        running.stop()


def test_many_clients_and_vanishing_tailers_leave_the_probe_unharmed(fresh_probe: RunningProbe) -> None:
    """100 clients, 50 of them tailing without reading, then half vanishing mid-stream.

    The packet rate is checked loosely (other load on this machine moves it by tens of
    percent from one second to the next); what the crowd costs is checked exactly: the
    console thread's own CPU time while the crowd is there.
    """
    probe = fresh_probe
    with probe.client() as client, capturing(client):
        alone = measure_rate(client, 2.0)
        crowd = [RawClient(probe.socket) for _ in range(100)]
        assert client.call("status")["console"]["clients"] == 101
        for i, c in enumerate(crowd):
            c.sock.sendall(b'{"cmd": "status", "id": 1}\n' + (b'{"cmd": "tail", "id": 2}\n' if i % 2 else b""))
        for c in crowd:
            while (m := c.read()).get("id") != 1:
                pass
            assert m["ok"] and m["result"]["probe_id"] == client.greeting["probe_id"]
        time.sleep(1.5)  # the tails fill their buffers and the kernel's, then only count what they miss
        before = client.call("status")["console"]
        started = time.monotonic()
        crowded = measure_rate(client, 2.0)
        during = client.call("status")["console"]
        seconds = time.monotonic() - started
        for i, c in enumerate(crowd):
            if i % 2:  # vanish mid-stream: reset, unread events in the buffers
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        wait_for(lambda: client.call("status")["console"]["clients"] == 1)
        after = measure_rate(client, 2.0)
        status = client.call("status")
    assert before["tailing"] == 50
    console_share = (during["cpu_seconds"] - before["cpu_seconds"]) / seconds
    assert console_share < 0.05, f"the console thread used {console_share:.1%} of a core for 50 stalled tails"
    assert crowded > 0.3 * max(alone, after), (alone, crowded, after)
    assert all(a["alive"] and a["restarts"] == 0 for a in status["actors"]), status["actors"]
    assert status["console"]["tailing"] == 0 and status["state"] == "running", status["state"]
    assert status["console"]["disconnected_gone"] >= 100
    assert status["events"]["balanced"]


def test_too_many_clients_are_refused_busy_and_the_rest_served(probe: RunningProbe, client: ConsoleClient) -> None:
    crowd = []
    try:
        for _ in range(127):  # 128 at once by default; this test's own client is the 128th
            crowd.append(RawClient(probe.socket))
        with pytest.raises(ConsoleError) as err:
            probe.client()
        assert err.value.code == "busy"
        assert crowd[-1].ask(b'{"cmd": "status", "id": 1}\n')["ok"]
    finally:
        for c in crowd:
            c.close()
    wait_for(lambda: client.call("status")["console"]["clients"] == 1)


# --- the command line and the prompt ---------------------------------------------------------


def run_cli(probe: RunningProbe, *words: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "probe", "console", "--data-dir", str(probe.data), *words],
        cwd=REPO, input=stdin, capture_output=True, text=True, timeout=60,
    )


def test_cli_prints_tables_or_json_and_exits_by_outcome(probe: RunningProbe) -> None:
    status = run_cli(probe, "status")
    assert status.returncode == 0 and "PAUSED" in status.stdout
    assert "ACTOR" in status.stdout and "worker-0" in status.stdout and "identity  ok" in status.stdout
    for words in (("--json", "flows", "2"), ("flows", "n=2", "--json")):
        flows = run_cli(probe, *words)
        assert flows.returncode == 0 and [f["orig_p"] for f in json.loads(flows.stdout)["flows"]] == [40001, 40002]
    table = run_cli(probe, "flows", "2").stdout.splitlines()
    assert table[1].split() == ["ORIG", "RESP", "PROTO", "SERVICE", "BYTES", "PKTS", "SECONDS", "UID"]
    assert table[2].startswith("10.0.0.1:40001") and len(table) == 4

    bad = run_cli(probe, "flows", "n=zero")
    assert bad.returncode == 2 and "flows: argument 'n' must be an integer" in bad.stderr
    unknown = run_cli(probe, "nosuch")
    assert unknown.returncode == 2 and "unknown command 'nosuch'" in unknown.stderr
    gone = subprocess.run([sys.executable, "-m", "probe", "console", "--socket", str(probe.root / "nothing.sock"), "status"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "no probe console at" in gone.stderr and not gone.stdout


def test_cli_reads_commands_from_a_pipe_watches_and_tails(probe: RunningProbe, client: ConsoleClient) -> None:
    piped = run_cli(probe, stdin="loglevel\n# a comment\nalerts history=0\n")
    assert piped.returncode == 0 and piped.stdout.splitlines() == ["log level info", "no active alerts"]
    watched = run_cli(probe, "watch", "interval=0.1", "count=3")
    assert watched.returncode == 0 and watched.stdout.count(f"pid {probe.proc.pid}  PAUSED") == 3
    with capturing(client):
        tail = run_cli(probe, "tail", "kinds=dns", "limit=3")
    assert tail.returncode == 0 and "tail ended (limit): 3 events, 0 dropped" in tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == 3 and all(line.split()[1] == "dns" and "query=host" in line for line in lines)


def test_the_prompt_runs_commands_with_help_and_completion(probe: RunningProbe, client: ConsoleClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_client, "HISTORY_FILE", str(tmp_path / "history"))
    out = io.StringIO()
    shell = console_client.ConsoleShell(client, stdout=out)
    shell.use_rawinput = False
    shell.stdin = io.StringIO("status\nhelp flows\nflows n=x\nloglevel\n\nquit\nstatus\n")
    shell.cmdloop()
    text = out.getvalue()
    assert "PAUSED" in text and "flows [n=]" in text and "the open flows that carried the most bytes" in text
    assert "error: flows: argument 'n' must be an integer" in text and "log level info" in text
    assert text.count(f"pid {probe.proc.pid}  PAUSED") == 1  # nothing after quit
    assert shell.completenames("re") == ["reload-identity", "resume"]
    assert shell.completedefault("l", "loglevel l", 9, 10) == ["level="]
    assert shell.completedefault("level=d", "loglevel level=d", 9, 16) == ["level=debug"]
    assert shell.completedefault("", "help ", 5, 5)[:2] == ["alerts", "flows"]
