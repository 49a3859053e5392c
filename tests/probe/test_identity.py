"""The probe's identity on disk: key files, certificate checks at start, on reload and per batch."""

from __future__ import annotations

import os
import time

import pytest

from probe import pki
from probe.config import ConfigError, build_config
from probe.identity import ProbeIdentity, create_key, read_private_key
from protocols.errors import IdentityError

DAY = 86400.0


@pytest.fixture
def ca(tmp_path):
    path = str(tmp_path / "ca")
    pki.init_ca(path, now=time.time() - 30 * DAY)
    return path


def ca_pem(ca: str) -> str:
    return pki.ca_paths(ca)[1]


def reason(action) -> str:
    with pytest.raises(IdentityError) as caught:
        action()
    return caught.value.reason


def test_without_a_certificate_a_key_is_created_0600_and_read_back(tmp_path):
    path = str(tmp_path / "id" / "probe.key")
    first = ProbeIdentity("p1", path)
    assert first.created and os.stat(path).st_mode & 0o777 == 0o600
    again = ProbeIdentity("p1", path)
    assert not again.created and again.public_key_hex == first.public_key_hex
    assert again.problem is None and again.certificate() is None and again.client_ssl_context() is None


def test_bad_key_files_are_identity_errors_naming_the_cause(tmp_path):
    path = str(tmp_path / "k")
    assert reason(lambda: read_private_key(path)) == "key_missing"
    create_key(path)
    os.chmod(path, 0o644)
    assert reason(lambda: read_private_key(path)) == "key_permissions"
    os.chmod(path, 0o600)
    with open(path, "r+b") as fh:
        fh.seek(40)
        fh.write(b"#@!")
    assert reason(lambda: read_private_key(path)) == "key_corrupt"
    with open(path, "wb") as fh:
        fh.write(b"probe-ed25519-key-v1\n" + b"zz" * 32 + b"\n")
    assert reason(lambda: read_private_key(path)) == "key_corrupt"


def test_the_first_key_format_is_still_read(tmp_path):
    path = str(tmp_path / "old.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"probe-ed25519-key-v1\n" + b"ab" * 32 + b"\n")
    os.close(fd)
    assert bytes(read_private_key(path)) == bytes.fromhex("ab" * 32)


def test_a_good_certificate_is_checked_at_start(ca, tmp_path):
    issued = pki.issue_probe(ca, "p1", 30, str(tmp_path / "c"))
    ident = ProbeIdentity("p1", issued.key_path, cert_path=issued.cert_path, ca_path=ca_pem(ca))
    assert ident.problem is None
    assert ident.status()["certificate"]["serial"] == f"{issued.info.serial:x}"
    assert ident.client_ssl_context() is not None


@pytest.mark.parametrize(
    "case, expected",
    [("expired", "cert_expired"), ("other_probe", "probe_id_mismatch"), ("other_key", "key_mismatch"), ("other_ca", "unknown_ca")],
)
def test_a_bad_certificate_at_start_is_a_problem_but_the_key_still_signs(ca, tmp_path, case, expected):
    out = str(tmp_path / "c")
    issued = pki.issue_probe(ca, "p1", 30, out)
    cert = issued.cert_path
    if case == "expired":
        cert = pki.issue_probe(ca, "p1", 1, out, key_path=issued.key_path, replace=True, now=time.time() - 5 * DAY).cert_path
    elif case == "other_probe":
        cert = pki.issue_probe(ca, "p2", 30, out, key_path=issued.key_path).cert_path
    elif case == "other_key":
        cert = pki.issue_probe(ca, "p1", 30, str(tmp_path / "d")).cert_path
    elif case == "other_ca":
        other = str(tmp_path / "other-ca")
        pki.init_ca(other)
        cert = pki.issue_probe(other, "p1", 30, str(tmp_path / "e"), key_path=issued.key_path).cert_path
    ident = ProbeIdentity("p1", issued.key_path, cert_path=cert, ca_path=ca_pem(ca))
    assert ident.problem is not None and ident.problem.reason == expected
    assert ident.status()["state"] == "failed"
    assert ident.signing_key() is not None  # capture goes on: events are signed and spooled
    assert reason(ident.check_current) == expected


def test_a_reload_switches_only_to_a_complete_good_identity(ca, tmp_path):
    out = str(tmp_path / "c")
    issued = pki.issue_probe(ca, "p1", 1, out, now=time.time() - 5 * DAY)
    ident = ProbeIdentity("p1", issued.key_path, cert_path=issued.cert_path, ca_path=ca_pem(ca))
    assert ident.problem.reason == "cert_expired"
    assert reason(ident.reload) == "cert_expired"  # nothing changed on disk
    renewed = pki.issue_probe(ca, "p1", 30, out, key_path=issued.key_path, replace=True)
    status = ident.reload()
    assert status["state"] == "ok" and ident.problem is None
    assert status["certificate"]["serial"] == f"{renewed.info.serial:x}"
    # rotation to a new key: both files replaced, then reload
    rotated = pki.issue_probe(ca, "p1", 30, str(tmp_path / "new"))
    os.replace(rotated.key_path, issued.key_path)
    os.replace(rotated.cert_path, issued.cert_path)
    ident.reload()
    assert ident.public_key_hex == rotated.info.public_key.hex()
    # a bad certificate put in place: the reload is refused and the running identity stays
    with open(issued.cert_path, "wb") as fh:
        fh.write(b"garbage")
    assert reason(ident.reload) == "bad_certificate"
    assert ident.problem is None and ident.public_key_hex == rotated.info.public_key.hex()


def test_a_key_file_gone_bad_is_reported_once_and_signing_goes_on(tmp_path):
    path = str(tmp_path / "probe.key")
    ident = ProbeIdentity("p1", path)
    key = ident.signing_key()
    ident.check_key_file()  # unchanged: nothing
    with open(path, "r+b") as fh:
        fh.seek(30)
        fh.write(b"\x00\x00\x00")
    assert reason(ident.check_key_file) == "key_corrupt"
    assert ident.problem.reason == "key_corrupt"
    ident.check_key_file()  # the same change is not raised twice (the restarted signer goes on)
    assert ident.signing_key() is key
    os.chmod(path, 0o604)
    assert reason(ident.check_key_file) == "key_permissions"


def test_a_key_file_replaced_by_another_good_key_waits_for_the_reload(tmp_path):
    path = str(tmp_path / "probe.key")
    ident = ProbeIdentity("p1", path)
    before = ident.public_key_hex
    os.unlink(path)
    create_key(path)
    ident.check_key_file()  # a rotation in progress, not a failure
    assert ident.problem is None and ident.public_key_hex == before
    ident.reload()
    assert ident.public_key_hex != before


def test_config_refuses_plain_ws_to_a_remote_core_and_wss_without_a_certificate():
    with pytest.raises(ConfigError) as caught:
        build_config({"uplink": {"core_url": "ws://core.example:8765"}})
    assert caught.value.key == "uplink.core_url" and "loopback" in str(caught.value)
    with pytest.raises(ConfigError):
        build_config({"uplink": {"core_url": "ws://10.0.0.5:8765"}})
    for url in ("ws://127.0.0.1:1", "ws://localhost:1", "ws://[::1]:1"):
        assert build_config({"uplink": {"core_url": url}}).uplink.core_url == url
    with pytest.raises(ConfigError) as caught:
        build_config({"uplink": {"core_url": "wss://core.example:8765"}})
    assert "identity.cert" in str(caught.value)
    ok = build_config({"uplink": {"core_url": "wss://core.example:8765"}, "identity": {"cert": "p.pem", "ca": "ca.pem", "key": "p.key"}})
    assert ok.identity.cert == "p.pem"
    with pytest.raises(ConfigError) as caught:
        build_config({"identity": {"cert": "p.pem"}})
    assert caught.value.key == "identity.ca"
