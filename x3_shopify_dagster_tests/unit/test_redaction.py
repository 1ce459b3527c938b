"""The redaction layer: known secrets and secret-shaped strings never reach logs, errors, reports or repr()."""

from __future__ import annotations

import base64
import logging

import pytest
from pydantic import SecretStr

from x3_shopify_dagster import redaction
from x3_shopify_dagster.redaction import (
    MASK,
    RedactingFilter,
    install_log_redaction,
    register_basic_credentials,
    register_secret,
    scrub,
    scrub_value,
)
from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings, X3Settings
from x3_shopify_dagster.shopify import ShopifyClient
from x3_shopify_dagster.shopify.errors import ShopifyHTTPError
from x3_shopify_dagster.x3 import BasicAuth, JwtAuth, MemoryTokenStore, OAuth2Auth, X3Client, X3Config
from x3_shopify_dagster.x3.errors import X3HttpError


def test_registered_values_and_their_basic_form_are_masked() -> None:
    register_basic_credentials("WSUSER", SecretStr("registered-pass-0042"))
    basic = base64.b64encode(b"WSUSER:registered-pass-0042").decode()
    text = f"pw registered-pass-0042 header {basic} done"
    assert scrub(text) == f"pw {MASK} header {MASK} done"


@pytest.mark.parametrize(("text", "secret"), [
    ("Authorization: Basic V1NDT05ORUNUOng4c2VjcmV0", "V1NDT05ORUNUOng4c2VjcmV0"),
    ("Authorization: Bearer 9f8e7d6c5b4a3f2e1d0c", "9f8e7d6c5b4a3f2e1d0c"),
    ("X-Shopify-Access-Token: unregistered-value-77", "unregistered-value-77"),
    ("grant_type=refresh_token&refresh_token=abcDEF123xyz&client_secret=topsecret9", "abcDEF123xyz"),
    ("grant_type=refresh_token&refresh_token=abcDEF123xyz&client_secret=topsecret9", "topsecret9"),
    ('{"access_token": "a-token-never-registered", "expires_in": 300}', "a-token-never-registered"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJjbGllbnQifQ.c2lnbmF0dXJl in text", "eyJhbGciOiJIUzI1NiJ9"),
    ("token shpat_0123456789abcdef0123 leaked", "shpat_0123456789abcdef0123"),
])
def test_secret_shapes_are_masked_without_registration(text: str, secret: str) -> None:
    cleaned = scrub(text)
    assert secret not in cleaned
    assert MASK in cleaned


@pytest.mark.parametrize("text", [
    "basic authentication, user WSCONNECT",
    'WWW-Authenticate: Bearer realm="Syracuse"',
    "the access token was refused (HTTP 401)",
    "GL account CHART1/709000 is inactive in X3",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub(text) == text


def test_nested_values_are_scrubbed() -> None:
    register_secret("nested-secret-value-1")
    value = {"a": ["x nested-secret-value-1 y", 3], "b": ("nested-secret-value-1",), "c": 1.5}
    assert scrub_value(value) == {"a": [f"x {MASK} y", 3], "b": (MASK,), "c": 1.5}


def test_the_record_factory_scrubs_child_loggers_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    register_secret("child-logger-secret-9")
    child = logging.getLogger("x3_shopify_dagster.some.deep.child")
    with caplog.at_level(logging.INFO):
        child.info("token is %s", "child-logger-secret-9")
        try:
            raise RuntimeError("boom child-logger-secret-9")
        except RuntimeError:
            logging.getLogger("elsewhere.entirely").exception("failed with child-logger-secret-9")
    assert "child-logger-secret-9" not in caplog.text
    assert caplog.text.count(MASK) >= 3
    assert redaction.log_redaction_installed()


def test_negative_control_without_redaction_the_secret_is_visible() -> None:
    """The assertions above can fail: a record built without the factory/filter keeps the secret."""
    register_secret("control-secret-value-5")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "value %s", ("control-secret-value-5",), None)
    assert "control-secret-value-5" in record.getMessage()
    RedactingFilter().filter(record)
    assert "control-secret-value-5" not in record.getMessage()


def test_client_errors_are_scrubbed_when_created() -> None:
    register_secret("echoed-secret-value-3")
    assert "echoed-secret-value-3" not in str(X3HttpError(500, "server said echoed-secret-value-3"))
    error = ShopifyHTTPError("body: echoed-secret-value-3", status_code=500)
    assert "echoed-secret-value-3" not in str(error)


def test_no_secret_in_the_repr_of_settings_auths_and_clients() -> None:
    secrets = ["shpat_repr_token_0123456789", "repr-x3-password-1", "repr-client-secret-2"]
    settings = ConnectorSettings(  # type: ignore[call-arg]
        _env_file=None,
        stores={"eu": StoreSettings(shop_url="https://acme-eu.myshopify.com", access_token=secrets[0])},
        x3=X3Settings(server_url="https://x3.example.com", folder="SEED", user="WS", password=secrets[1],
                      client_id="cid", client_secret=secrets[2]),
    )
    config = X3Config(server_url="https://x3.example.com", folder="SEED")
    oauth = OAuth2Auth.for_config(config, "cid", secrets[2], MemoryTokenStore())
    objects = [
        settings, settings.x3, settings.model_dump(), BasicAuth("WS", secrets[1]), oauth,
        JwtAuth("cid", secrets[2], "WS"), ShopifyClient("https://acme-eu.myshopify.com", secrets[0]),
        X3Client(config, BasicAuth("WS", secrets[1])),
    ]
    for obj in objects:
        text = repr(obj) + str(obj)
        assert not [s for s in secrets if s in text], type(obj).__name__
    oauth.close()
