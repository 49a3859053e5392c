"""Certificate checks on bytes, with the time passed in: each refusal has its reason."""

from __future__ import annotations

import ssl
import time

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from protocols import identity
from protocols.identity import CertificateRejected, load_revocation_list, verify_certificate
from tests.certs import DAY, der, ec_key, make_ca, make_crl, pem, raw_public
from tests.certs import make_cert as _make_cert

NOW = time.time()
CA = make_ca("probe-ca", NOW - 20 * DAY)
OTHER_CA = make_ca("probe-ca", NOW - 20 * DAY)  # same name, another key: only the signature tells them apart


def make_cert(ca, cn, key=None, **kwargs):
    """A certificate valid from a minute before NOW (the time every check here is made at)."""
    kwargs.setdefault("start", NOW - 60)
    return _make_cert(ca, cn, key, **kwargs)


CERT, KEY = make_cert(CA, "probe-1")


def refusal(cert_pem: bytes, ca_pem: bytes = CA.pem, now: float = NOW, **kwargs) -> str:
    with pytest.raises(CertificateRejected) as caught:
        verify_certificate(cert_pem, ca_pem, now, **kwargs)
    return caught.value.reason


def test_a_good_certificate_gives_its_probe_id_serial_and_key():
    info = verify_certificate(pem(CERT), CA.pem, NOW, probe_id="probe-1", public_key=raw_public(KEY))
    assert info.subject == "probe-1"
    assert info.serial == CERT.serial_number
    assert info.public_key == raw_public(KEY)
    assert info.purposes == ("client",) and not info.is_ca
    assert verify_certificate(der(CERT), CA.pem, NOW).der == der(CERT)  # DER in, same certificate


def test_a_certificate_of_another_ca_is_refused_even_with_the_same_issuer_name():
    cert, _ = make_cert(OTHER_CA, "probe-1")
    assert refusal(pem(cert)) == identity.UNKNOWN_CA


def test_a_bundle_of_cas_accepts_a_certificate_of_either():
    cert, _ = make_cert(OTHER_CA, "probe-1")
    assert verify_certificate(pem(cert), CA.pem + OTHER_CA.pem, NOW).subject == "probe-1"


def test_validity_window_is_checked_at_the_time_given():
    cert, _ = make_cert(CA, "probe-1", start=NOW - 10 * DAY, days=1)
    assert refusal(pem(cert)) == identity.EXPIRED
    assert verify_certificate(pem(cert), CA.pem, NOW - 9.5 * DAY).subject == "probe-1"
    future, _ = make_cert(CA, "probe-1", start=NOW + DAY)
    assert refusal(pem(future)) == identity.NOT_YET_VALID


def test_an_expired_ca_makes_its_certificates_unusable():
    old_ca = make_ca("old", NOW - 10 * DAY, days=1)
    cert, _ = make_cert(old_ca, "probe-1", start=NOW - 60)
    assert refusal(pem(cert), old_ca.pem) == identity.EXPIRED


def test_probe_id_and_key_must_match():
    assert refusal(pem(CERT), probe_id="probe-2") == identity.PROBE_ID_MISMATCH
    _, other = make_cert(CA, "probe-1")
    assert refusal(pem(CERT), public_key=raw_public(other)) == identity.KEY_MISMATCH


def test_a_revoked_serial_is_refused_before_anything_else():
    expired, _ = make_cert(CA, "probe-1", start=NOW - 10 * DAY, days=1)
    crl = load_revocation_list(make_crl(CA, [CERT.serial_number, expired.serial_number]), CA.pem)
    assert CERT.serial_number in crl.serials and not crl.stale(NOW)
    assert refusal(pem(CERT), revocations=crl) == identity.REVOKED
    assert refusal(pem(expired), revocations=crl) == identity.REVOKED


def test_a_revocation_list_signed_by_another_ca_is_not_used():
    with pytest.raises(CertificateRejected) as caught:
        load_revocation_list(make_crl(OTHER_CA, [CERT.serial_number]), CA.pem)
    assert caught.value.reason == identity.UNKNOWN_CA
    with pytest.raises(CertificateRejected):
        load_revocation_list(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", CA.pem)


def test_certificates_for_other_uses_are_not_probe_certificates():
    core, _ = make_cert(CA, "core", usage=ExtendedKeyUsageOID.SERVER_AUTH)
    assert refusal(pem(core)) == identity.WRONG_PURPOSE
    assert verify_certificate(pem(core), CA.pem, NOW, purpose=identity.CORE).subject == "core"
    assert refusal(CA.pem, CA.pem) == identity.WRONG_PURPOSE  # the CA itself
    ec_cert, _ = make_cert(CA, "probe-1", ec_key())
    assert refusal(pem(ec_cert)) == identity.WRONG_PURPOSE  # events are signed with Ed25519 only


@pytest.mark.parametrize("data", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", der(CERT)[:-20]])
def test_bytes_that_are_not_a_certificate_are_refused_with_a_reason(data):
    assert refusal(data) == identity.BAD_CERTIFICATE


def test_two_certificates_where_one_is_expected_are_refused():
    assert refusal(pem(CERT) + pem(CERT)) == identity.BAD_CERTIFICATE


def _alert(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] alert")
    exc.reason = reason
    return exc


def test_tls_alerts_about_our_certificate_map_to_identity_reasons_through_the_cause_chain():
    wrapper = ConnectionError("did not receive a valid HTTP response")
    wrapper.__cause__ = _alert("TLSV1_ALERT_UNKNOWN_CA")
    assert identity.tls_refusal_reason(wrapper) == identity.UNKNOWN_CA
    assert identity.tls_refusal_reason(_alert("SSLV3_ALERT_CERTIFICATE_REVOKED")) == identity.REVOKED
    assert identity.tls_refusal_reason(_alert("SSLV3_ALERT_CERTIFICATE_EXPIRED")) == identity.EXPIRED
    assert identity.tls_refusal_reason(_alert("WRONG_VERSION_NUMBER")) is None
    assert identity.tls_refusal_reason(ConnectionRefusedError()) is None


def test_our_own_check_of_the_peer_is_not_taken_for_a_refusal_of_us():
    own = ssl.SSLCertVerificationError(1, "certificate verify failed")
    own.verify_message = "unable to get local issuer certificate"
    own.reason = "CERTIFICATE_VERIFY_FAILED"
    assert identity.tls_refusal_reason(own) is None
    assert identity.tls_peer_verify_failure(own) == "unable to get local issuer certificate"
    assert identity.verify_code_reason(20) == identity.UNKNOWN_CA
    assert identity.verify_code_reason(10) == identity.EXPIRED
