"""Configuration: one TOML file with every setting; command-line flags override it.

Every setting is a typed attrs field with a default and a one-line help text. An unknown
key, a wrong type or a bad value raises :class:`ConfigError` naming the dotted key; the
CLI prints it on one line and exits 2. docs/configuration.md is generated from this
schema (``python -m probe config-docs``) and a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
import types
import typing
import urllib.parse
from typing import Any, Callable, Mapping

import attrs


class ConfigError(ValueError):
    """A bad configuration value; ``key`` is the dotted name of the setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


def setting(default: Any, help: str, *, flag: str | None = None, check: Callable[[Any], str | None] | None = None) -> Any:
    """Declare one setting: its default, help text, optional CLI flag and value check."""
    return attrs.field(default=default, metadata={"help": help, "flag": flag, "check": check})


def positive(value: Any) -> str | None:
    return None if value is None or value > 0 else "must be greater than 0"


def non_negative(value: Any) -> str | None:
    return None if value is None or value >= 0 else "must not be negative"


def one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value is None or value in choices else f"must be one of {', '.join(choices)}"

    return check


def pace_value(value: Any) -> str | None:
    if value in ("fast", "realtime"):
        return None
    try:
        factor = float(value)
    except ValueError:
        return "must be fast, realtime or a positive speed factor"
    return None if factor > 0 else "must be fast, realtime or a positive speed factor"


def fraction(value: Any) -> str | None:
    return None if value is None or 0 < value <= 1 else "must be in (0, 1]"


def existing_group(value: Any) -> str | None:
    import grp

    if value is None:
        return None
    try:
        grp.getgrgid(int(value)) if str(value).isdigit() else grp.getgrnam(value)
    except KeyError:
        return f"no group {value} on this host"
    return None


def host_port(value: Any) -> str | None:
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be HOST:PORT"
    return None


@attrs.frozen
class ProbeSection:
    id: str = setting("", "probe id the Core knows this probe by; empty means probe-<hostname>")
    data_dir: str = setting("probe-data", "directory for the spool, identity, console socket and embedded Core", flag="--data-dir")


@attrs.frozen
class CaptureSection:
    pcap: str | None = setting(None, "capture file (pcap or pcapng) to replay", flag="--pcap")
    interface: str | None = setting(None, "interface to capture live from; default: that of the default route", flag="--interface")
    filter: str | None = setting(None, "tcpdump-syntax capture filter", flag="--filter")
    pace: str = setting("fast", "file replay speed: fast, realtime or a speed factor", flag="--pace", check=pace_value)
    workers: int = setting(1, "dissection processes (live capture shares the interface with PACKET_FANOUT)", flag="--workers", check=positive)
    snaplen: int = setting(65535, "bytes kept per live packet", check=positive)
    promiscuous: bool = setting(True, "put the interface in promiscuous mode while capturing")
    ring_block_size: int = setting(1 << 22, "TPACKET_V3 ring block size in bytes (a multiple of the page size)", check=positive)
    ring_block_count: int = setting(64, "TPACKET_V3 ring blocks", check=positive)
    ring_block_timeout_ms: int = setting(100, "TPACKET_V3 block retire timeout in milliseconds", check=positive)
    batch_packets: int = setting(2048, "packets per batch handed from capture to dissection", check=positive)
    window_batches: int = setting(8, "batches a stage may have outstanding downstream (credit window)", check=positive)
    stop_timeout: float = setting(30.0, "seconds a stop request waits for the sources to flush their open flows", check=positive)


@attrs.frozen
class DissectSection:
    max_flows: int = setting(100_000, "flows tracked at once (about 2.4 KB each); beyond it the least recently active are evicted (counted)", check=positive)
    tcp_idle_timeout: float = setting(300.0, "seconds of silence after which a TCP flow ends", check=positive)
    udp_idle_timeout: float = setting(60.0, "seconds of silence after which a UDP flow ends", check=positive)
    icmp_idle_timeout: float = setting(60.0, "seconds of silence after which an ICMP flow ends", check=positive)
    other_idle_timeout: float = setting(60.0, "seconds of silence after which a flow of another IP protocol ends", check=positive)
    tcp_close_delay: float = setting(5.0, "seconds a TCP flow lingers after FIN/RST before it is logged", check=non_negative)
    reassembly_flow_bytes: int = setting(1 << 20, "out-of-order bytes held per TCP direction", check=positive)
    reassembly_total_bytes: int = setting(64 << 20, "out-of-order bytes held over all flows", check=positive)
    local_nets: list[str] = setting([], "CIDR prefixes that count as local for conn's local_orig/local_resp")
    weirds_per_second: int = setting(100, "weird events of one name per second before they are only counted", check=non_negative)
    weird_sampling_threshold: int = setting(1000, "weirds of one name per connection (or outside connections) that all become events, as Zeek's", check=non_negative)
    weird_sampling_rate: int = setting(1000, "beyond the threshold, one weird in this many becomes an event (0: none), as Zeek's", check=non_negative)
    weird_sampling_duration: float = setting(600.0, "seconds after which the sampling counts of weirds outside connections restart, as Zeek's", check=positive)
    tcp_attempt_timeout: float = setting(5.0, "seconds an unanswered SYN keeps its flow open (Zeek's tcp_attempt_delay)", check=positive)
    verify_ip_checksum: bool = setting(True, "drop IPv4 packets with a bad header checksum (weird bad_IP_checksum), as Zeek does")
    verify_transport_checksums: bool = setting(False, "check TCP/UDP/ICMP checksums (Zeek parity; costs ~4 us a packet, wrong under checksum offload)")
    fragment_timeout: float = setting(30.0, "seconds IP fragments wait for the rest of their datagram", check=positive)
    fragment_bytes: int = setting(4 << 20, "bytes of IP fragments held for reassembly at most", check=positive)
    flip_by_server_port: bool = setting(True, "for flows first seen mid-way, make the well-known-port side the responder (Zeek's likely_server_ports)")


@attrs.frozen
class IdentitySection:
    key: str = setting("", "Ed25519 signing key file (mode 0600); empty means DATA_DIR/identity/probe.key, created on first run when no cert is set")
    cert: str | None = setting(None, "the probe's X.509 certificate issued by the Core's CA (python -m probe pki issue)")
    ca: str | None = setting(None, "CA certificate that issued the probe's certificate (and, unless core_ca is set, the Core's)")
    core_ca: str | None = setting(None, "CA certificate to verify the Core's TLS certificate with; default: ca")
    crl: str | None = setting(None, "revocation list the embedded Core checks probe certificates against (reloaded when it changes)")


@attrs.frozen
class BufferSection:
    memory_events: int = setting(100_000, "events the memory tier holds at most", check=positive)
    memory_bytes: int = setting(64 << 20, "bytes the memory tier holds at most", check=positive)
    disk_quota_mb: int = setting(1024, "megabytes the LMDB spool's data file may take (records fill 80 %, LMDB's pages the rest)", check=positive)
    map_size_mb: int = setting(0, "LMDB map size in megabytes; 0 means the quota (the file can never grow past it)", check=non_negative)


@attrs.frozen
class UplinkSection:
    core_url: str | None = setting(None, "ws:// or wss:// URL of the Core; none starts an embedded Core on loopback", flag="--core")
    batch_events: int = setting(1000, "events per event frame at most", check=positive)
    connect_timeout: float = setting(5.0, "seconds to open the WebSocket and finish the handshake", check=positive)
    ack_timeout: float = setting(30.0, "seconds without an ack while events are in flight before reconnecting", check=positive)
    backoff_initial: float = setting(0.1, "first reconnection delay in seconds", check=positive)
    backoff_max: float = setting(30.0, "largest reconnection delay in seconds", check=positive)
    backoff_jitter: float = setting(0.2, "relative jitter applied to each delay (0.2 = +/-20 %)", check=non_negative)
    stable_after: float = setting(10.0, "seconds a connection must last before the backoff resets", check=positive)
    drain_timeout: float = setting(60.0, "seconds a finished replay waits for the Core to take the backlog", check=non_negative)
    compression: bool = setting(False, "permessage-deflate on the uplink (only for slow links)")


@attrs.frozen
class CoreSection:
    listen: str = setting("127.0.0.1:0", "HOST:PORT the embedded Core listens on (port 0: any free port)", check=host_port)


@attrs.frozen
class ConsoleSection:
    socket: str = setting("", "console Unix socket; empty means DATA_DIR/console.sock")
    group: str | None = setting(None, "group allowed to use the console (socket mode 0660)", check=existing_group)
    allow_users: list[str] = setting([], "users allowed besides root and the probe's own user")
    max_clients: int = setting(128, "console connections at once; more are refused with a busy error", check=positive)
    max_line_bytes: int = setting(65536, "longest request line; a longer one is answered with an error and discarded", check=positive)
    client_buffer_bytes: int = setting(1 << 20, "output buffered per client; a client that lets more pile up is disconnected", check=positive)
    tail_events_per_second: int = setting(2000, "events a second the live tail decodes at most; the rest are counted as dropped", check=positive)


def port_number(value: Any) -> str | None:
    return None if value is None or 0 <= value <= 65535 else "must be a port number (0 picks a free one)"


@attrs.frozen
class MetricsSection:
    port: int | None = setting(None, "serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any free port, written to health.json)", flag="--metrics-port", check=port_number)


@attrs.frozen
class AlertsSection:
    connection_failures_per_min: float = setting(10.0, "alert when Core connection failures exceed this per minute", check=non_negative)
    backpressure_seconds: float = setting(300.0, "alert when the Core has held backpressure on this long", check=non_negative)
    buffer_utilization: float = setting(0.8, "alert when a buffer tier is fuller than this fraction", check=fraction)
    drops_per_second: float = setting(100.0, "alert when events are dropped faster than this", check=non_negative)
    signature_failures_per_min: float = setting(10.0, "alert when signing fails more often than this per minute", check=non_negative)
    resource_utilization: float = setting(0.9, "alert when any resource is used beyond this fraction of its budget", check=fraction)
    connection_failures_window: float = setting(60.0, "seconds of the sliding window connection failures are counted over", check=positive)
    drops_window: float = setting(10.0, "seconds of the sliding window dropped events are counted over", check=positive)
    signature_failures_window: float = setting(60.0, "seconds of the sliding window signature failures are counted over", check=positive)
    evaluate_interval: float = setting(1.0, "seconds between alert evaluations (and rewrites of DATA_DIR/health.json)", check=positive)


@attrs.frozen
class ResourcesSection:
    memory_mb: int = setting(1024, "resident memory budget in megabytes: anonymous resident memory of the delivery process and its dissection processes together", check=positive)
    shed_at: float = setting(0.85, "fraction of the memory budget at which load is shed, so that use stays under the budget", check=fraction)
    min_free_disk_mb: int = setting(256, "free disk below which the spool stops growing (new events go to the memory tier)", check=non_negative)
    cpu_cores: float = setting(0.0, "CPU budget in cores for the alert on CPU use; 0 means every core of the machine", check=non_negative)
    check_interval: float = setting(1.0, "seconds between resource checks", check=positive)


@attrs.frozen
class SupervisorSection:
    max_restarts: int = setting(5, "restarts of one child allowed within restart_window before escalating", check=positive)
    restart_window: float = setting(60.0, "seconds over which restarts are counted", check=positive)
    restart_backoff_initial: float = setting(0.1, "first delay before restarting a failed child", check=non_negative)
    restart_backoff_max: float = setting(5.0, "largest delay before restarting a failed child", check=non_negative)
    max_tree_restarts: int = setting(1, "tree restarts allowed within restart_window before the probe exits", check=non_negative)


@attrs.frozen
class LoggingSection:
    level: str = setting("info", "log level", flag="--log-level", check=one_of("debug", "info", "warning", "error"))
    file: str | None = setting(None, "log file (JSON lines); default standard error")
    repeat_window: float = setting(10.0, "seconds over which repeated messages are suppressed", check=positive)


@attrs.frozen
class FaultsSection:
    sign_fail_file: str = setting(
        "",
        "test hook for scenarios/signature_failure.py: while this file exists and holds a number N, the signer fails "
        "one event in N (dropped with reason signature, as any unsignable event); empty: off. Leave empty in production",
    )


@attrs.frozen
class Config:
    probe: ProbeSection = ProbeSection()
    capture: CaptureSection = CaptureSection()
    dissect: DissectSection = DissectSection()
    identity: IdentitySection = IdentitySection()
    buffer: BufferSection = BufferSection()
    uplink: UplinkSection = UplinkSection()
    core: CoreSection = CoreSection()
    console: ConsoleSection = ConsoleSection()
    metrics: MetricsSection = MetricsSection()
    alerts: AlertsSection = AlertsSection()
    resources: ResourcesSection = ResourcesSection()
    supervisor: SupervisorSection = SupervisorSection()
    logging: LoggingSection = LoggingSection()
    faults: FaultsSection = FaultsSection()

    @property
    def probe_id(self) -> str:
        return self.probe.id or f"probe-{socket.gethostname()}"

    def data_path(self, *parts: str) -> str:
        return os.path.join(self.probe.data_dir, *parts)

    @property
    def console_socket(self) -> str:
        """Where the console listens (and where ``probe console`` looks)."""
        return self.console.socket or self.data_path("console.sock")


def _sections() -> dict[str, type]:
    return {f.name: f.type for f in attrs.fields(Config)}


attrs.resolve_types(Config)
for _cls in _sections().values():
    attrs.resolve_types(_cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against annotation ``tp``; ints are accepted where floats are."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, inner[0], value)
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {_describe(value)}")
        return [_coerce(f"{key}[{i}]", args[0], v) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {_describe(value)}")
        return value
    raise ConfigError(key, f"unsupported setting type {_type_name(tp)}")


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return f"{kind.get(type(value), type(value).__name__)} ({value!r})"


def _build_section(name: str, cls: type, table: Mapping[str, Any]) -> Any:
    fields = attrs.fields_dict(cls)
    values: dict[str, Any] = {}
    for key, raw in table.items():
        dotted = f"{name}.{key}"
        if key not in fields:
            raise ConfigError(dotted, f"unknown setting (known: {', '.join(fields)})")
        value = _coerce(dotted, fields[key].type, raw)
        check = fields[key].metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(dotted, problem)
        values[key] = value
    return cls(**values)


def build_config(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Config:
    """Validate a parsed TOML document plus dotted-key overrides into a :class:`Config`."""
    sections = _sections()
    merged: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if name not in sections:
            raise ConfigError(name, f"unknown section (known: {', '.join(sections)})")
        if not isinstance(table, dict):
            raise ConfigError(name, f"expected a table, got {_describe(table)}")
        merged[name] = dict(table)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        merged.setdefault(section, {})[key] = value
    built = {name: _build_section(name, cls, merged.get(name, {})) for name, cls in sections.items()}
    config = Config(**built)
    _check_across(config)
    return config


def _check_across(config: Config) -> None:
    if config.capture.pcap and config.capture.interface:
        raise ConfigError("capture.pcap", "give either a capture file or an interface, not both")
    if config.uplink.backoff_initial > config.uplink.backoff_max:
        raise ConfigError("uplink.backoff_initial", "must not exceed uplink.backoff_max")
    socket_path = config.console.socket or config.data_path("console.sock")
    if len(os.fsencode(os.path.abspath(socket_path))) > 107:
        raise ConfigError("console.socket", f"{socket_path} is too long for a Unix socket (107 bytes at most)")
    url = config.uplink.core_url
    if url is not None and not (url.startswith("ws://") or url.startswith("wss://")):
        raise ConfigError("uplink.core_url", "must start with ws:// or wss://")
    _check_identity(config)


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback address (names are not resolved: only these count)."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_identity(config: Config) -> None:
    ident = config.identity
    if ident.cert and not ident.ca:
        raise ConfigError("identity.ca", "needed to check identity.cert: the CA certificate that issued it")
    if (ident.ca or ident.core_ca or ident.crl) and not ident.cert:
        key = "identity.ca" if ident.ca else ("identity.core_ca" if ident.core_ca else "identity.crl")
        raise ConfigError(key, "only means something with identity.cert (the probe's certificate)")
    url = config.uplink.core_url
    if url is None:
        return
    try:
        host = urllib.parse.urlsplit(url).hostname
    except ValueError as exc:
        raise ConfigError("uplink.core_url", f"not a URL: {exc}") from None
    if url.startswith("ws://") and not is_loopback_host(host):
        raise ConfigError(
            "uplink.core_url",
            f"plain ws:// is only allowed to a Core on loopback, not {host!r}: use wss:// with identity.cert, identity.key and identity.ca (mutual TLS)",
        )
    if url.startswith("wss://") and not ident.cert:
        raise ConfigError("uplink.core_url", "wss:// needs identity.cert and identity.ca: the probe authenticates with its certificate (mutual TLS)")


def load_config(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read the TOML file at ``path`` (if any) and apply ``overrides``."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("", f"config file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
    return build_config(data, overrides)


def flag_settings() -> list[tuple[str, str, Any]]:
    """(flag, dotted key, type) for every setting that has a command-line flag."""
    out = []
    for name, cls in _sections().items():
        for field in attrs.fields(cls):
            if field.metadata.get("flag"):
                out.append((field.metadata["flag"], f"{name}.{field.name}", field.type))
    return out


def reference_markdown() -> str:
    """docs/configuration.md, generated from the schema."""
    lines = [
        "# Configuration reference",
        "",
        "One TOML file (`--config FILE`) holds every setting; a flag given on the command line",
        "overrides the file. An unknown key, a value of the wrong type or a bad value stops the",
        "probe with a one-line message naming the key, and exit code 2.",
        "",
        "This page is generated from `probe/config.py` by `python -m probe config-docs`;",
        "a test fails when the two differ.",
        "",
    ]
    for name, cls in _sections().items():
        lines += [f"## [{name}]", "", "| key | type | default | flag | meaning |", "|---|---|---|---|---|"]
        for field in attrs.fields(cls):
            default = field.default
            shown = "none" if default is None else repr(default).replace("'", '"')
            if isinstance(default, bool):
                shown = str(default).lower()
            flag = field.metadata.get("flag") or ""
            tp = _type_name(field.type) if isinstance(field.type, type) else str(field.type).replace(" | None", " (optional)")
            lines.append(
                f"| `{field.name}` | {tp} | `{shown}` | {('`' + flag + '`') if flag else ''} | {field.metadata['help']} |"
            )
        lines.append("")
    return "\n".join(lines)
