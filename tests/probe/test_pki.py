"""The pki commands on real files: a CA, probe and Core certificates, revocation, show, verify."""

from __future__ import annotations

import os
import stat
import time

import pytest

from probe import pki
from probe.cli import main
from probe.identity import read_private_key
from protocols.identity import CORE, CertificateRejected, load_revocation_list, verify_certificate


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def ca_dir(tmp_path):
    path = str(tmp_path / "ca")
    assert main(["pki", "init-ca", "--out", path]) == 0
    return path


def test_init_ca_writes_a_private_key_a_certificate_and_an_empty_revocation_list(ca_dir):
    key, cert, crl = pki.ca_paths(ca_dir)
    assert mode(key) == 0o600 and mode(ca_dir) == 0o700
    with open(cert, "rb") as fh:
        ca_pem = fh.read()
    with open(crl, "rb") as fh:
        assert load_revocation_list(fh.read(), ca_pem).serials == frozenset()
    assert main(["pki", "init-ca", "--out", ca_dir]) == 2  # never overwrites a CA


def test_issue_binds_the_probe_id_to_a_new_key_that_checks(ca_dir, tmp_path, capsys):
    out = str(tmp_path / "certs")
    assert main(["pki", "issue", "--ca", ca_dir, "--probe-id", "sensor-7", "--days", "30", "--out", out]) == 0
    key_path, cert_path = os.path.join(out, "sensor-7.key"), os.path.join(out, "sensor-7.pem")
    assert mode(key_path) == 0o600
    with open(cert_path, "rb") as fh, open(pki.ca_paths(ca_dir)[1], "rb") as ca:
        info = verify_certificate(fh.read(), ca.read(), time.time(), probe_id="sensor-7", public_key=bytes(read_private_key(key_path).verify_key))
    assert 29 * 86400 < info.not_after - time.time() <= 30 * 86400
    capsys.readouterr()
    assert main(["pki", "verify", "--ca", pki.ca_paths(ca_dir)[1], "--cert", cert_path, "--probe-id", "sensor-7", "--key", key_path, "--crl", pki.ca_paths(ca_dir)[2]]) == 0
    assert capsys.readouterr().out.startswith("OK: sensor-7")
    assert main(["pki", "verify", "--ca", pki.ca_paths(ca_dir)[1], "--cert", cert_path, "--probe-id", "sensor-8"]) == 1
    assert "REFUSED (probe_id_mismatch)" in capsys.readouterr().out
    assert main(["pki", "verify", "--ca", pki.ca_paths(ca_dir)[1], "--cert", cert_path, "--at", str(time.time() + 31 * 86400)]) == 1
    assert "REFUSED (cert_expired)" in capsys.readouterr().out


def test_renewal_certifies_the_existing_key_and_replaces_the_certificate_only_when_asked(ca_dir, tmp_path):
    out = str(tmp_path / "certs")
    first = pki.issue_probe(ca_dir, "p1", 1, out)
    with pytest.raises(pki.PkiError):
        pki.issue_probe(ca_dir, "p1", 1, out)  # the key is there: renew with --key
    with pytest.raises(pki.PkiError):
        pki.issue_probe(ca_dir, "p1", 30, out, key_path=first.key_path)  # the certificate is there
    renewed = pki.issue_probe(ca_dir, "p1", 30, out, key_path=first.key_path, replace=True)
    assert renewed.info.public_key == first.info.public_key and renewed.info.serial != first.info.serial


def test_a_key_readable_by_others_is_refused(ca_dir, tmp_path, capsys):
    issued = pki.issue_probe(ca_dir, "p1", 30, str(tmp_path / "certs"))
    os.chmod(issued.key_path, 0o640)
    assert main(["pki", "issue", "--ca", ca_dir, "--probe-id", "p1", "--out", str(tmp_path / "c2"), "--key", issued.key_path]) == 2
    assert "readable by group or others" in capsys.readouterr().err
    os.chmod(pki.ca_paths(ca_dir)[0], 0o644)
    assert main(["pki", "issue", "--ca", ca_dir, "--probe-id", "p2", "--out", str(tmp_path / "c3")]) == 2


def test_a_core_certificate_names_its_hosts_and_is_not_a_probe_certificate(ca_dir, tmp_path):
    issued = pki.issue_core(ca_dir, "core", ["127.0.0.1", "core.example"], 30, str(tmp_path / "core"))
    assert set(issued.info.hosts) == {"127.0.0.1", "core.example"} and issued.info.purposes == ("server",)
    with open(issued.cert_path, "rb") as fh, open(pki.ca_paths(ca_dir)[1], "rb") as ca:
        cert, ca_pem = fh.read(), ca.read()
    verify_certificate(cert, ca_pem, time.time(), purpose=CORE)
    with pytest.raises(CertificateRejected):
        verify_certificate(cert, ca_pem, time.time())


def test_revoke_adds_serials_to_the_signed_list_and_keeps_earlier_ones(ca_dir, tmp_path, capsys):
    a = pki.issue_probe(ca_dir, "a", 30, str(tmp_path / "c"))
    b = pki.issue_probe(ca_dir, "b", 30, str(tmp_path / "c"))
    assert main(["pki", "revoke", "--ca", ca_dir, "--cert", a.cert_path]) == 0
    assert main(["pki", "revoke", "--ca", ca_dir, "--serial", f"{b.info.serial:x}"]) == 0
    with open(pki.ca_paths(ca_dir)[2], "rb") as fh, open(pki.ca_paths(ca_dir)[1], "rb") as ca:
        assert load_revocation_list(fh.read(), ca.read()).serials == {a.info.serial, b.info.serial}
    capsys.readouterr()
    assert main(["pki", "show", pki.ca_paths(ca_dir)[2]]) == 0
    assert f"{a.info.serial:x}" in capsys.readouterr().out
    assert main(["pki", "revoke", "--ca", ca_dir, "--serial", "zz"]) == 2


def test_show_prints_certificates_and_only_the_public_half_of_a_key(ca_dir, tmp_path, capsys):
    issued = pki.issue_probe(ca_dir, "p1", 30, str(tmp_path / "c"))
    capsys.readouterr()
    assert main(["pki", "show", issued.cert_path]) == 0
    out = capsys.readouterr().out
    assert "certificate (probe): p1" in out and f"{issued.info.serial:x}" in out
    assert main(["pki", "show", issued.key_path]) == 0
    out = capsys.readouterr().out
    assert issued.info.public_key.hex() in out
    with open(issued.key_path, "rb") as fh:
        assert fh.read().decode().splitlines()[1] not in out
    assert main(["pki", "show", str(tmp_path / "absent.pem")]) == 2
