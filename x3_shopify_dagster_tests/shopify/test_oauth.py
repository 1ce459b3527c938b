"""Shopify OAuth end to end against the sandbox over HTTP: connect (authorization code), callback checks,
expiring tokens with refresh-token rotation, revocation, client credentials, and the scopes check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from x3_shopify_dagster.checks.connection import check_shopify_scopes
from x3_shopify_dagster.sandboxes.shopify import ShopifySandbox
from x3_shopify_dagster.sandboxes.shopify.oauth import sign_query
from x3_shopify_dagster.shopify import ShopifyClient
from x3_shopify_dagster.shopify.errors import ShopifyOAuthError, ShopifyReauthorizationRequired
from x3_shopify_dagster.shopify.oauth import (
    REQUESTED_SCOPES,
    ClientCredentialsAuth,
    MemoryShopifyTokenStore,
    OAuthTokenAuth,
    ShopifyTokenEndpoint,
    ShopifyTokens,
    callback_hmac,
    missing_scopes,
    token_endpoint_url,
    validate_shop_domain,
    verify_callback,
)
from x3_shopify_dagster.shopify.oauth_connect import ShopifyConnector, run_in_thread
from x3_shopify_dagster.storage import ConnectorDatabase
from x3_shopify_dagster.storage.vault import Vault, VaultKeys, generate_key
from x3_shopify_dagster.storage.vault_token_stores import VaultShopifyTokenStore

STORE = "eu"


class MovableClock:
    """Real time plus an offset: one clock for the sandbox's token expiry and the connector's renewals."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


@pytest.fixture
def clock(fresh_shopify_sandbox: ShopifySandbox) -> Iterator[MovableClock]:
    clock = MovableClock()
    fresh_shopify_sandbox.state.set_clock(clock)
    yield clock
    fresh_shopify_sandbox.state.set_clock(None)


@pytest.fixture
def vault_store(sqlite_db: ConnectorDatabase) -> VaultShopifyTokenStore:
    return VaultShopifyTokenStore(Vault(sqlite_db, VaultKeys.from_values(generate_key())), STORE)


def browser(tamper: Callable[[dict[str, str]], dict[str, str]] | None = None) -> Callable[[str], None]:
    """A scripted browser: GET the install URL; the sandbox auto-approves and redirects to the callback server.

    ``tamper`` rewrites the callback query before it is followed (an attacker's or a broken redirect).
    """

    def open_url(url: str) -> None:
        with httpx.Client(timeout=10.0) as http:
            if tamper is None:
                http.get(url, follow_redirects=True)
                return
            redirect = http.get(url, follow_redirects=False)
            assert redirect.status_code == 302, redirect.text
            location = urlsplit(redirect.headers["location"])
            params = tamper(dict(parse_qsl(location.query)))
            http.get(location._replace(query=urlencode(params)).geturl())

    return lambda url: run_in_thread(lambda: open_url(url)) and None


def connector(sandbox: ShopifySandbox, store, clock: MovableClock | None = None, **kwargs) -> ShopifyConnector:
    return ShopifyConnector(sandbox.shop_url(STORE), sandbox.app_client_id, sandbox.app_client_secret, store,
                            store_key=STORE, port=0, now=clock, **kwargs)


def oauth_auth(sandbox: ShopifySandbox, store, clock: MovableClock) -> OAuthTokenAuth:
    endpoint = ShopifyTokenEndpoint(sandbox.shop_url(STORE), sandbox.app_client_id, sandbox.app_client_secret,
                                    now=clock)
    return OAuthTokenAuth(endpoint, store, store_key=STORE, now=clock)


def post_token(sandbox: ShopifySandbox, form: dict[str, str]) -> httpx.Response:
    body = {**form, "client_id": sandbox.app_client_id, "client_secret": sandbox.app_client_secret}
    return httpx.post(token_endpoint_url(sandbox.shop_url(STORE)), data=body, timeout=10.0)


# ---------------------------------------------------------------------------------------------- connect
def test_connect_stores_an_expiring_token_pair_in_the_vault_and_it_reads_orders(
        fresh_shopify_sandbox, clock, vault_store):
    result = connector(fresh_shopify_sandbox, vault_store, clock).connect(browser(), timeout_s=30)

    stored = vault_store.load()
    assert stored == result.tokens
    assert stored.grant == "authorization_code"
    assert stored.refresh_token is not None
    assert stored.expires_at is not None
    assert set(stored.scopes) == set(REQUESTED_SCOPES)
    auth = oauth_auth(fresh_shopify_sandbox, vault_store, clock)
    with ShopifyClient(fresh_shopify_sandbox.shop_url(STORE), auth=auth) as client:
        assert client.shop_info().domain == "acme-eu.myshopify.com"
        assert missing_scopes(client.access_scopes()) == []
    assert auth.renewals == 0


def test_connect_without_expiring_gets_a_non_expiring_token(fresh_shopify_sandbox, clock):
    store = MemoryShopifyTokenStore()
    tokens = connector(fresh_shopify_sandbox, store, clock, expiring=False).connect(browser(), timeout_s=30).tokens
    assert tokens.expires_at is None
    assert tokens.refresh_token is None


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        pytest.param(lambda q: {**q, "hmac": "0" * 64}, "HMAC", id="bad-hmac"),
        pytest.param(lambda q: {**q, "code": "attacker-code"}, "HMAC", id="code-swapped-after-signing"),
        pytest.param("state", "state", id="wrong-state"),
        pytest.param("shop", "myshopify.com", id="bad-shop-domain"),
    ],
)
def test_a_forged_or_mismatched_callback_is_refused_and_nothing_is_stored(
        fresh_shopify_sandbox, clock, tamper, reason):
    secret = fresh_shopify_sandbox.app_client_secret

    def resigned(**changes: str) -> Callable[[dict[str, str]], dict[str, str]]:
        # correctly signed with the app's secret: only the state / shop check can catch it
        def rewrite(query: dict[str, str]) -> dict[str, str]:
            query = {k: v for k, v in query.items() if k != "hmac"} | changes
            return {**query, "hmac": sign_query(query, secret)}
        return rewrite

    if tamper == "state":
        tamper = resigned(state="state-of-another-install")
    elif tamper == "shop":
        tamper = resigned(shop="evil.example.com")
    store = MemoryShopifyTokenStore()
    with pytest.raises(ShopifyOAuthError, match=reason):
        connector(fresh_shopify_sandbox, store, clock).connect(browser(tamper), timeout_s=30)
    assert store.load() is None
    assert fresh_shopify_sandbox.oauth.counts["authorization_code"] == 0  # the code was never exchanged


def test_callback_checks_match_shopifys_rules():
    params = {"code": "c0de", "shop": "acme-eu.myshopify.com", "state": "n0nce", "timestamp": "1700000000"}
    signed = {**params, "hmac": callback_hmac(params, "secret")}
    real = "https://acme-eu.myshopify.com"
    assert verify_callback(signed, client_secret="secret", expected_state="n0nce", shop_url=real) == "c0de"
    assert callback_hmac(params, "secret") == sign_query(params, "secret")  # the sandbox signs the same way
    with pytest.raises(ShopifyOAuthError, match="HMAC"):
        verify_callback(signed, client_secret="other", expected_state="n0nce", shop_url=real)
    # a well-formed domain that is not the configured store
    with pytest.raises(ShopifyOAuthError, match="acme-us"):
        validate_shop_domain("acme-us.myshopify.com", real)
    for bad in ("acme.myshopify.com.evil.example", "-acme.myshopify.com", "acme.myshopify.com/x", ""):
        with pytest.raises(ShopifyOAuthError):
            validate_shop_domain(bad, real)
    assert validate_shop_domain("ACME-EU.myshopify.com", real)
    assert validate_shop_domain("acme-eu.myshopify.com", "http://127.0.0.1:8701/stores/eu")  # sandbox, loopback


# ---------------------------------------------------------------------------------------------- expiring tokens
def test_refresh_rotates_the_pair_before_expiry_and_persists_it_before_use(fresh_shopify_sandbox, clock, vault_store):
    connector(fresh_shopify_sandbox, vault_store, clock).connect(browser(), timeout_s=30)
    first = vault_store.load()
    auth = oauth_auth(fresh_shopify_sandbox, vault_store, clock)
    with ShopifyClient(fresh_shopify_sandbox.shop_url(STORE), auth=auth) as client:
        client.shop_info()
        clock.advance(minutes=56)  # within 5 minutes of the 1 h expiry
        client.shop_info()
        second = vault_store.load()
        assert auth.renewals == 1
        assert second.access_token != first.access_token
        assert second.refresh_token != first.refresh_token
        assert second.scopes == first.scopes

        # The previous refresh token stays valid until its replacement is used...
        assert post_token(fresh_shopify_sandbox, {"grant_type": "refresh_token",
                                                  "refresh_token": first.refresh_token.get_secret_value()}
                          ).status_code == 200
        clock.advance(minutes=56)
        client.shop_info()  # ...which this refresh does
        assert auth.renewals == 2
    refused = post_token(fresh_shopify_sandbox, {"grant_type": "refresh_token",
                                                 "refresh_token": first.refresh_token.get_secret_value()})
    assert refused.status_code == 400
    assert refused.json()['error'] == 'invalid_grant'


def test_a_401_refreshes_once_and_retries(fresh_shopify_sandbox, clock):
    store = MemoryShopifyTokenStore()
    connector(fresh_shopify_sandbox, store, clock).connect(browser(), timeout_s=30)
    client_clock = MovableClock()  # the connector's clock lags: it believes the token is still fresh
    auth = oauth_auth(fresh_shopify_sandbox, store, client_clock)
    clock.advance(minutes=61)
    with ShopifyClient(fresh_shopify_sandbox.shop_url(STORE), auth=auth) as client:
        assert client.shop_info().domain == "acme-eu.myshopify.com"
    assert auth.renewals == 1
    statuses = [r.status for r in fresh_shopify_sandbox.requests_log]
    assert statuses == ["unauthorized", "ok"]


def test_a_revoked_authorization_names_the_command_that_fixes_it_and_never_the_token(
        fresh_shopify_sandbox, clock, vault_store):
    connector(fresh_shopify_sandbox, vault_store, clock).connect(browser(), timeout_s=30)
    tokens = vault_store.load()
    fresh_shopify_sandbox.revoke_tokens(STORE)
    auth = oauth_auth(fresh_shopify_sandbox, vault_store, clock)
    with ShopifyClient(fresh_shopify_sandbox.shop_url(STORE), auth=auth) as client, \
            pytest.raises(ShopifyReauthorizationRequired) as caught:
        client.shop_info()
    message = str(caught.value)
    assert 'x3sd shopify connect eu' in message
    assert caught.value.fix == auth.fix_hint
    for secret in (tokens.access_token, tokens.refresh_token):
        assert secret.get_secret_value() not in message
    assert fresh_shopify_sandbox.app_client_secret not in message
    assert vault_store.load() == tokens  # a refused refresh overwrites nothing


def test_an_expired_refresh_token_is_not_sent_and_names_the_command(fresh_shopify_sandbox, clock):
    now = clock()
    store = MemoryShopifyTokenStore(ShopifyTokens(
        access_token="shpat_old", refresh_token="shprt_old", expires_at=now - timedelta(hours=1),
        refresh_expires_at=now - timedelta(minutes=1), obtained_at=now - timedelta(days=91),
        grant="authorization_code"))
    auth = oauth_auth(fresh_shopify_sandbox, store, clock)
    with pytest.raises(ShopifyReauthorizationRequired, match="x3sd shopify connect eu"):
        auth.access_token()
    assert fresh_shopify_sandbox.oauth.counts["refresh_token"] == 0


def test_no_stored_token_names_the_command(fresh_shopify_sandbox, clock):
    auth = oauth_auth(fresh_shopify_sandbox, MemoryShopifyTokenStore(), clock)
    with pytest.raises(ShopifyReauthorizationRequired, match="run `x3sd shopify connect eu`"):
        auth.access_token()


# ---------------------------------------------------------------------------------------------- client credentials
def client_credentials_auth(sandbox: ShopifySandbox, store, clock) -> ClientCredentialsAuth:
    endpoint = ShopifyTokenEndpoint(sandbox.shop_url(STORE), sandbox.app_client_id, sandbox.app_client_secret,
                                    now=clock)
    return ClientCredentialsAuth(endpoint, store, store_key=STORE, now=clock)


def test_client_credentials_token_is_cached_and_re_requested_near_expiry(fresh_shopify_sandbox, clock, vault_store):
    auth = client_credentials_auth(fresh_shopify_sandbox, vault_store, clock)
    with ShopifyClient(fresh_shopify_sandbox.shop_url(STORE), auth=auth) as client:
        client.shop_info()
        first = vault_store.load()
        assert first.grant == 'client_credentials'
        assert first.refresh_token is None
        assert first.expires_at - first.obtained_at == timedelta(seconds=86_399)
        client.shop_info()
        assert fresh_shopify_sandbox.oauth.counts["client_credentials"] == 1
        # another process with the same vault reuses the cached token
        other = client_credentials_auth(fresh_shopify_sandbox, vault_store, clock)
        assert other.access_token() == first.access_token.get_secret_value()
        clock.advance(hours=23, minutes=56)
        client.shop_info()
    assert fresh_shopify_sandbox.oauth.counts["client_credentials"] == 2
    assert vault_store.load().access_token != first.access_token


def test_client_credentials_after_a_401_requests_a_new_token(fresh_shopify_sandbox, clock):
    store = MemoryShopifyTokenStore()
    auth = client_credentials_auth(fresh_shopify_sandbox, store, clock)
    with ShopifyClient(fresh_shopify_sandbox.shop_url(STORE), auth=auth) as client:
        client.shop_info()
        fresh_shopify_sandbox.revoke_tokens(STORE)
        client.shop_info()
    assert fresh_shopify_sandbox.oauth.counts["client_credentials"] == 2


def test_refused_client_credentials_is_a_clear_error_without_the_secret(fresh_shopify_sandbox, clock):
    endpoint = ShopifyTokenEndpoint(fresh_shopify_sandbox.shop_url(STORE), fresh_shopify_sandbox.app_client_id,
                                    "shpss_wrong_secret_value", now=clock)
    auth = ClientCredentialsAuth(endpoint, MemoryShopifyTokenStore(), store_key=STORE, now=clock)
    with pytest.raises(ShopifyReauthorizationRequired, match="client id and secret of store eu") as caught:
        auth.access_token()
    assert "shpss_wrong_secret_value" not in str(caught.value)


# ---------------------------------------------------------------------------------------------- scopes
def test_scopes_line_names_the_missing_scopes_and_how_to_grant_them(fresh_shopify_sandbox, clock):
    fresh_shopify_sandbox.oauth.set_app_scopes(["read_orders", "read_products", "write_inventory"])
    auth = client_credentials_auth(fresh_shopify_sandbox, MemoryShopifyTokenStore(), clock)
    with ShopifyClient(fresh_shopify_sandbox.shop_url(STORE), auth=auth) as client:
        row = check_shopify_scopes(STORE, client, auth_mode="client_credentials")
        # and the sandbox enforces them: no read_locations, no locations
        with pytest.raises(Exception, match="ACCESS_DENIED"):
            client.execute(_locations_document())
    assert not row.ok
    for scope in ("read_all_orders", "read_locations", "read_merchant_managed_fulfillment_orders"):
        assert scope in row.detail
    assert "read_inventory" not in row.detail  # implied by write_inventory
    assert "Dev Dashboard" in row.fix


def test_scopes_line_passes_for_a_full_token_and_points_oauth_stores_at_connect(fresh_shopify_sandbox, clock):
    with ShopifyClient(fresh_shopify_sandbox.shop_url(STORE), fresh_shopify_sandbox.access_token(STORE)) as client:
        assert check_shopify_scopes(STORE, client).ok
    store = MemoryShopifyTokenStore()
    connector(fresh_shopify_sandbox, store, clock, scopes=("read_orders",)).connect(browser(), timeout_s=30)
    with ShopifyClient(fresh_shopify_sandbox.shop_url(STORE), auth=oauth_auth(fresh_shopify_sandbox, store, clock)
                       ) as client:
        row = check_shopify_scopes(STORE, client, auth_mode="oauth")
    assert not row.ok
    assert 'x3sd shopify connect eu' in row.fix


def _locations_document():
    from x3_shopify_dagster.shopify.documents import GraphQLDocument

    return GraphQLDocument(name="test_locations", text="query Locations { locations(first: 1) { nodes { id } } }",
                           operation_name="Locations")
