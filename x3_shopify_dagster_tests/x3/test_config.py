"""X3Config: addresses, transport security, SOAP request configuration."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from x3_shopify_dagster.x3 import X3Config


def test_addresses_from_server_port_and_folder() -> None:
    config = X3Config(server_url="https://x3.example.com", port=8124, folder="SEED")
    assert config.base_url == "https://x3.example.com:8124"
    assert config.api1_url == "https://x3.example.com:8124/api1/x3/erp/SEED"
    assert config.soap_url == (
        "https://x3.example.com:8124/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC")
    assert config.token_url == "https://x3.example.com:8124/auth/oauth2/token"
    assert X3Config(server_url="https://x3.example.com:9000", folder="SEED").base_url == "https://x3.example.com:9000"


@pytest.mark.parametrize("url", ["http://x3.example.com", "http://10.0.0.5:8124", "ftp://x3.example.com",
                                 "https://user:pw@x3.example.com", "https://x3.example.com/syracuse"])
def test_refuses_insecure_or_malformed_server_urls(url: str) -> None:
    with pytest.raises(ValidationError):
        X3Config(server_url=url, folder="SEED")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8124", "http://localhost", "http://[::1]:9000"])
def test_plain_http_allowed_on_loopback(url: str) -> None:
    assert X3Config(server_url=url, folder="SEED").base_url.startswith("http://")


def test_port_conflict_is_refused() -> None:
    with pytest.raises(ValidationError, match="port"):
        X3Config(server_url="https://x3.example.com:8124", port=9000, folder="SEED")


def test_folder_and_reference_field_are_codes() -> None:
    with pytest.raises(ValidationError):
        X3Config(server_url="https://x3.example.com", folder="SEED/../X")
    with pytest.raises(ValidationError):
        X3Config(server_url="https://x3.example.com", folder="SEED", reference_field="BPRVCR eq")


def test_request_config_asks_for_json_or_xml() -> None:
    assert X3Config(server_url="https://x3.example.com", folder="SEED").soap_request_config == (
        "adxwss.optreturn=JSON&adxwss.beautify=false")
    assert X3Config(server_url="https://x3.example.com", folder="SEED", soap_json=False,
                    soap_extra_request_config="").soap_request_config == "adxwss.optreturn=XML"


def test_tls_verification_stays_on_with_a_custom_ca(tmp_path: Path) -> None:
    assert X3Config(server_url="https://x3.example.com", folder="SEED").tls_verify() is True
    missing = X3Config(server_url="https://x3.example.com", folder="SEED", ca_bundle_path=tmp_path / "none.pem")
    with pytest.raises(FileNotFoundError):
        missing.tls_verify()
    ca = tmp_path / "private-ca.pem"
    ca.write_bytes(_self_signed_ca_pem())
    context = X3Config(server_url="https://x3.example.com", folder="SEED", ca_bundle_path=ca).tls_verify()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert any(c["subject"] == ((("commonName", "Private X3 CA"),),) for c in context.get_ca_certs())


def _self_signed_ca_pem() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Private X3 CA")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)
