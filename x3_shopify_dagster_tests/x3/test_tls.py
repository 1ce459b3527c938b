"""TLS to an on-premise X3 with a private CA: the X3 sandbox served over https (uvicorn, certificate generated
here with `cryptography`). Without the CA bundle every connection fails verification; with
X3SD_X3__CA_BUNDLE_PATH api1, SOAP and the OAuth2 token endpoint all work. No setting turns verification off."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from x3_shopify_dagster.sandboxes.x3 import X3Sandbox, X3SandboxConfig
from x3_shopify_dagster.settings import X3Settings
from x3_shopify_dagster.x3 import (
    BasicAuth,
    MemoryTokenStore,
    OAuth2Auth,
    RetryPolicy,
    X3Client,
    X3Config,
    X3TransportError,
)


@dataclass(frozen=True)
class Pki:
    ca_bundle: Path
    other_ca_bundle: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("Acme Private X3 CA")
    _, other_ca = _ca("Some Other CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    server_cert = (
        x509.CertificateBuilder().subject_name(_name("x3.acme.internal")).issuer_name(ca_cert.subject)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Pki(directory / "ca.pem", directory / "other-ca.pem", directory / "server.pem", directory / "server.key")
    paths.ca_bundle.write_bytes(_pem(ca_cert))
    paths.other_ca_bundle.write_bytes(_pem(other_ca))
    paths.cert.write_bytes(_pem(server_cert))
    paths.key.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def tls_sandbox(pki: Pki) -> Iterator[X3Sandbox]:
    sandbox = X3Sandbox(X3SandboxConfig()).start(ssl_certfile=str(pki.cert), ssl_keyfile=str(pki.key))
    try:
        yield sandbox
    finally:
        sandbox.stop()


def config(sandbox: X3Sandbox, ca_bundle: Path | None) -> X3Config:
    return X3Config(server_url=sandbox.base_url, folder=sandbox.folder, pool_alias=sandbox.pool_alias,
                    ca_bundle_path=ca_bundle, retry=RetryPolicy(max_attempts=1))


def test_the_sandbox_really_serves_https(tls_sandbox: X3Sandbox) -> None:
    assert tls_sandbox.base_url.startswith("https://127.0.0.1:")


@pytest.mark.parametrize("bundle", ["none", "other"])
def test_without_the_private_ca_every_call_fails_verification(tls_sandbox: X3Sandbox, pki: Pki,
                                                               bundle: str) -> None:
    ca = None if bundle == "none" else pki.other_ca_bundle
    with X3Client(config(tls_sandbox, ca), BasicAuth(*tls_sandbox.basic_credentials)) as x3:
        with pytest.raises(X3TransportError, match="cannot reach X3"):
            x3.details("BPCUSTOMER", "BPCUSTOMER", "FR0001")
        with pytest.raises(X3TransportError):
            x3.read("YSIH", {"NUM": "NONE"})
    client_id, secret = tls_sandbox.oauth_client
    auth = OAuth2Auth.for_config(config(tls_sandbox, ca), client_id, secret, MemoryTokenStore())
    with pytest.raises(X3TransportError, match="token endpoint unreachable"):
        auth.exchange_code(tls_sandbox.issue_authorization_code())
    auth.close()


def test_with_the_ca_bundle_api1_soap_and_the_token_endpoint_work(tls_sandbox: X3Sandbox, pki: Pki) -> None:
    with X3Client(config(tls_sandbox, pki.ca_bundle), BasicAuth(*tls_sandbox.basic_credentials)) as x3:
        assert x3.details("BPCUSTOMER", "BPCUSTOMER", "FR0001") is not None
        assert x3.read("YSIH", {"NUM": "NONE"}) is None  # SOAP answered "does not exist"
    client_id, secret = tls_sandbox.oauth_client
    store = MemoryTokenStore()
    auth = OAuth2Auth.for_config(config(tls_sandbox, pki.ca_bundle), client_id, secret, store)
    auth.exchange_code(tls_sandbox.issue_authorization_code())
    with X3Client(config(tls_sandbox, pki.ca_bundle), auth) as x3:
        assert x3.details("BPCUSTOMER", "BPCUSTOMER", "FR0002") is not None
    assert store.saves == 1


def test_the_runtime_uses_the_bundle_from_the_settings(tls_sandbox: X3Sandbox, pki: Pki) -> None:
    from x3_shopify_dagster.defs.resources import ConnectorRuntime
    from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings

    user, password = tls_sandbox.basic_credentials
    settings = ConnectorSettings(  # type: ignore[call-arg]
        _env_file=None, stores={"eu": StoreSettings(shop_url="https://acme-eu.myshopify.com", access_token="tok1")},
        x3=X3Settings(server_url=tls_sandbox.base_url, folder=tls_sandbox.folder, user=user, password=password,
                      ca_bundle_path=str(pki.ca_bundle)),
    )
    with ConnectorRuntime(settings).x3_client() as x3:
        assert x3.details("BPCUSTOMER", "BPCUSTOMER", "FR0001") is not None


def test_verification_stays_on_with_a_bundle(pki: Pki) -> None:
    context = X3Config(server_url="https://x3.example.com", folder="SEED", ca_bundle_path=pki.ca_bundle).tls_verify()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


@pytest.mark.parametrize("name", ["tls_verify", "verify", "insecure", "ssl_verify"])
def test_no_setting_turns_verification_off(name: str) -> None:
    with pytest.raises(ValueError, match="TLS verification is always on"):
        X3Settings(server_url="https://x3.example.com", folder="SEED", user="WS", password="pw",
                   **{name: False})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        X3Config(server_url="https://x3.example.com", folder="SEED", **{name: False})  # type: ignore[arg-type]


def test_plain_http_only_to_loopback_and_a_missing_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must use https"):  # pydantic wraps the X3ConfigError
        X3Config(server_url="http://x3.acme.internal", folder="SEED")
    with pytest.raises(ValueError, match="must use https"):
        X3Settings(server_url="http://x3.acme.internal", folder="SEED", user="WS", password="pw")
    assert X3Config(server_url="http://127.0.0.1:8124", folder="SEED").base_url == "http://127.0.0.1:8124"
    with pytest.raises(ValueError, match=r"CA bundle .* does not exist"):
        X3Settings(server_url="https://x3.example.com", folder="SEED", user="WS", password="pw",
                   ca_bundle_path=str(tmp_path / "missing.pem"))
