"""Shopify access tokens: where they come from, where they are kept, and how each request gets one.

Three ways a store is authorized (``auth_mode`` in the settings):

- ``token``: a static Admin API token (legacy custom app): :class:`StaticTokenAuth`.
- ``oauth``: the authorization-code grant (``x3sd shopify connect <store>``, see :mod:`oauth_connect`) gives an
  *expiring offline token* with a refresh token that rotates on every use: :class:`OAuthTokenAuth`.
- ``client_credentials``: a merchant-owned app asks for a ~24 h token with its client id and secret, and asks
  again shortly before it expires (there is no refresh token): :class:`ClientCredentialsAuth`.

Each auth object is an ``httpx.Auth``: it puts ``X-Shopify-Access-Token`` on the request, renews the token
shortly before it expires and once after a 401, and persists a new token (pair) in its
:class:`ShopifyTokenStore` *before* using it, inside the store's read-modify-write lock, so two processes never
burn the same refresh token and a crash never loses the only valid one. Tokens never reach logs or exceptions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from urllib.parse import urlencode, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from x3_shopify_dagster.netloc import is_loopback_host
from x3_shopify_dagster.redaction import register_secret, scrub
from x3_shopify_dagster.shopify.errors import (
    ShopifyOAuthError,
    ShopifyProtocolError,
    ShopifyReauthorizationRequired,
    ShopifyTransportError,
)

log = logging.getLogger(__name__)

ACCESS_TOKEN_HEADER = "X-Shopify-Access-Token"  # noqa: S105 (a header name)
SHOP_DOMAIN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com$")
_MASK = "**********"

Grant = Literal["static", "authorization_code", "refresh_token", "client_credentials"]


# ============================================================================================== scopes
@dataclass(frozen=True)
class ScopeNeed:
    """One scope the flows need; any of ``alternatives`` satisfies it (a write scope implies its read)."""

    alternatives: tuple[str, ...]
    needed_for: str

    @property
    def label(self) -> str:
        return " or ".join(self.alternatives)


REQUIRED_SCOPES: tuple[ScopeNeed, ...] = (
    ScopeNeed(("read_orders",), "pulling orders"),
    ScopeNeed(("read_all_orders",), "orders and refunds older than 60 days (backfills, late refunds)"),
    ScopeNeed(("read_products",), "SKU lookups of product variants"),
    ScopeNeed(("read_inventory",), "reading stock levels"),
    ScopeNeed(("write_inventory",), "pushing X3 stock to Shopify"),
    ScopeNeed(("read_locations",), "mapping Shopify locations to X3 sites"),
    ScopeNeed(("read_merchant_managed_fulfillment_orders", "read_fulfillments"), "fulfilments to X3 deliveries"),
)
# What ``x3sd shopify connect`` asks the merchant for: every scope above (both fulfilment ones).
REQUESTED_SCOPES: tuple[str, ...] = (
    "read_orders",
    "read_all_orders",
    "read_products",
    "read_inventory",
    "write_inventory",
    "read_locations",
    "read_fulfillments",
    "read_merchant_managed_fulfillment_orders",
)


def effective_scopes(granted: Iterable[str]) -> set[str]:
    """Granted handles plus the read scopes their write scopes imply (``write_inventory`` → ``read_inventory``)."""
    scopes = {s.strip() for s in granted if s and s.strip()}
    scopes |= {"read_" + s.removeprefix("write_") for s in scopes if s.startswith("write_")}
    return scopes


def missing_scopes(granted: Iterable[str], needs: Iterable[ScopeNeed] = REQUIRED_SCOPES) -> list[ScopeNeed]:
    have = effective_scopes(granted)
    return [need for need in needs if not any(option in have for option in need.alternatives)]


def parse_scope_list(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(sorted({item.strip() for item in items if item and item.strip()}))


# ============================================================================================== tokens
class ShopifyTokens(BaseModel):
    """An access token, what it may do and until when; with its refresh token when it has one."""

    model_config = ConfigDict(frozen=True)

    access_token: SecretStr
    scopes: tuple[str, ...] = ()
    expires_at: datetime | None = None  # None: a non-expiring offline token
    refresh_token: SecretStr | None = None
    refresh_expires_at: datetime | None = None
    obtained_at: datetime
    grant: Grant

    @field_validator("expires_at", "refresh_expires_at", "obtained_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValueError("token times must be timezone-aware")
        return value

    def to_plain(self) -> dict[str, Any]:
        """Serialisable form *with* the secret values: only for an encrypted store."""
        return {
            "access_token": self.access_token.get_secret_value(),
            "scopes": list(self.scopes),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "refresh_token": self.refresh_token.get_secret_value() if self.refresh_token else None,
            "refresh_expires_at": self.refresh_expires_at.isoformat() if self.refresh_expires_at else None,
            "obtained_at": self.obtained_at.isoformat(),
            "grant": self.grant,
        }

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> ShopifyTokens:
        return cls.model_validate(dict(data))

    def same_access_token(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.access_token.get_secret_value(), token)

    def __repr__(self) -> str:
        expiry = self.expires_at.isoformat() if self.expires_at else "never"
        return f"ShopifyTokens(grant={self.grant!r}, scopes={self.scopes!r}, expires_at={expiry!r})"


class ShopifyTokenStore(Protocol):
    """Where one store's token (pair) is kept. ``update`` is an atomic read-modify-write: ``change`` gets
    the stored tokens and returns the replacement (persisted before ``update`` returns) or None to keep them."""

    def load(self) -> ShopifyTokens | None: ...

    def save(self, tokens: ShopifyTokens) -> None: ...

    def update(self, change: Callable[[ShopifyTokens | None], ShopifyTokens | None]) -> ShopifyTokens | None: ...


class MemoryShopifyTokenStore:
    """In-process store (tests, short-lived tools)."""

    def __init__(self, tokens: ShopifyTokens | None = None) -> None:
        self._tokens = tokens
        self._lock = threading.RLock()
        self.saves = 0

    def load(self) -> ShopifyTokens | None:
        with self._lock:
            return self._tokens

    def save(self, tokens: ShopifyTokens) -> None:
        with self._lock:
            self._tokens = tokens
            self.saves += 1

    def update(self, change: Callable[[ShopifyTokens | None], ShopifyTokens | None]) -> ShopifyTokens | None:
        with self._lock:
            new = change(self._tokens)
            if new is not None:
                self.save(new)
            return self._tokens

    def __repr__(self) -> str:
        return f"MemoryShopifyTokenStore(saves={self.saves})"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# ============================================================================================== token endpoint
class TokenEndpointRefusal(Exception):
    """The token endpoint answered 4xx: the grant was refused (message already redacted)."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"HTTP {status_code} {reason}".strip())
        self.status_code = status_code
        self.reason = reason


def token_endpoint_url(shop_url: str) -> str:
    return f"{shop_url.rstrip('/')}/admin/oauth/access_token"


class ShopifyTokenEndpoint:
    """``POST {shop}/admin/oauth/access_token`` for the three grants; answers become :class:`ShopifyTokens`."""

    def __init__(
        self,
        shop_url: str,
        client_id: str,
        client_secret: SecretStr | str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 30.0,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        from x3_shopify_dagster.shopify.client import require_tls_or_loopback  # no import cycle at load time

        require_tls_or_loopback(shop_url, what="shop_url")
        if not client_id:
            raise ValueError("client_id is empty")
        self.url = token_endpoint_url(shop_url)
        self.client_id = client_id
        self._client_secret = client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        if not self._client_secret.get_secret_value():
            raise ValueError("client_secret is empty")
        register_secret(self._client_secret)
        self._now = now
        # No redirects: a redirected POST would carry the client secret to wherever it points.
        self._http = httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=False)

    def __repr__(self) -> str:
        return f"ShopifyTokenEndpoint(url={self.url!r}, client_id={self.client_id!r}, client_secret={_MASK})"

    def close(self) -> None:
        self._http.close()

    @property
    def client_secret(self) -> str:
        return self._client_secret.get_secret_value()

    def authorization_code(self, code: str, *, expiring: bool = True) -> ShopifyTokens:
        form = {"code": code}
        if expiring:
            form["expiring"] = "1"  # ask for an expiring offline token with a refresh token
        return self._request(form, grant="authorization_code", secrets=(code,))

    def refresh(self, refresh_token: str) -> ShopifyTokens:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._request(form, grant="refresh_token", secrets=(refresh_token,))

    def client_credentials(self) -> ShopifyTokens:
        return self._request({"grant_type": "client_credentials"}, grant="client_credentials", secrets=())

    def _request(self, form: dict[str, str], *, grant: Grant, secrets: tuple[str, ...]) -> ShopifyTokens:
        body = {**form, "client_id": self.client_id, "client_secret": self.client_secret}
        all_secrets = (*secrets, self.client_secret)
        issued_at = self._now()  # taken before the call: expiry is computed conservatively
        try:
            response = self._http.post(self.url, data=body, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise ShopifyTransportError(
                f"Shopify token endpoint unreachable ({type(exc).__name__})", operation=f"oauth:{grant}"
            ) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise ShopifyTransportError(
                f"Shopify token endpoint answered HTTP {response.status_code}", operation=f"oauth:{grant}"
            )
        payload = _json_object(response)
        if response.status_code != 200 or "access_token" not in payload:
            error = scrub(str(payload.get("error", "")), all_secrets)
            description = scrub(str(payload.get("error_description", "")), all_secrets)
            raise TokenEndpointRefusal(response.status_code, f"{error} {description}".strip())
        try:
            expires_in = payload.get("expires_in")
            refresh_in = payload.get("refresh_token_expires_in")
            refresh = payload.get("refresh_token")
            return ShopifyTokens(
                access_token=SecretStr(str(payload["access_token"])),
                scopes=parse_scope_list(payload.get("scope")),
                expires_at=issued_at + timedelta(seconds=float(expires_in)) if expires_in else None,
                refresh_token=SecretStr(str(refresh)) if refresh else None,
                refresh_expires_at=issued_at + timedelta(seconds=float(refresh_in)) if refresh_in else None,
                obtained_at=issued_at,
                grant=grant,
            )
        except (TypeError, ValueError):
            raise ShopifyProtocolError(
                "Shopify token endpoint answered without a usable token", operation=f"oauth:{grant}"
            ) from None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# ============================================================================================== auth objects
class ShopifyAuth(httpx.Auth):
    """Base: set the token header; after a 401, ask :meth:`on_unauthorized` once whether a retry may help."""

    def access_token(self) -> str:
        raise NotImplementedError

    def on_unauthorized(self, sent_token: str) -> bool:
        """Called after a 401 for a request carrying ``sent_token``; True if one retry may now succeed."""
        return False

    def secrets(self) -> tuple[str, ...]:
        """Values to scrub from any text a server echoes back."""
        return ()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.access_token()
        request.headers[ACCESS_TOKEN_HEADER] = token
        response = yield request
        if response.status_code == 401 and self.on_unauthorized(token):
            request.headers[ACCESS_TOKEN_HEADER] = self.access_token()
            yield request

    def close(self) -> None:
        return None


class StaticTokenAuth(ShopifyAuth):
    """A fixed Admin API token (``auth_mode: token``). A 401 is final: the same token is refused again."""

    def __init__(self, token: SecretStr | str) -> None:
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        if not self._token.get_secret_value().strip():
            raise ValueError("access_token is empty")
        register_secret(self._token)

    def access_token(self) -> str:
        return self._token.get_secret_value()

    def secrets(self) -> tuple[str, ...]:
        return (self._token.get_secret_value(),)

    def __repr__(self) -> str:
        return f"StaticTokenAuth(token={_MASK})"


class _StoredTokenAuth(ShopifyAuth):
    """Tokens from a store, renewed ``skew`` before expiry (at most half the lifetime) and once after a 401."""

    mode = "stored"

    def __init__(
        self,
        endpoint: ShopifyTokenEndpoint,
        store: ShopifyTokenStore,
        *,
        store_key: str,
        fix_hint: str | None = None,
        skew_s: float = 300.0,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.endpoint = endpoint
        self.store = store
        self.store_key = store_key
        self.fix_hint = fix_hint or self.default_fix_hint(store_key)
        self.skew = timedelta(seconds=skew_s)
        self._now = now
        self._lock = threading.RLock()
        self._tokens: ShopifyTokens | None = None
        self.renewals = 0

    @staticmethod
    def default_fix_hint(store_key: str) -> str:
        raise NotImplementedError

    # -- ShopifyAuth ----------------------------------------------------------------------------------------
    def access_token(self) -> str:
        with self._lock:
            tokens = self._tokens or self.store.load()
            if tokens is None or self._due(tokens):
                tokens = self._renew(sent=None)
            self._tokens = tokens
            register_secret(tokens.access_token, tokens.refresh_token)  # masked in every log line from now on
            return tokens.access_token.get_secret_value()

    def on_unauthorized(self, sent_token: str) -> bool:
        with self._lock:
            self._tokens = self._renew(sent=sent_token)
            register_secret(self._tokens.access_token, self._tokens.refresh_token)
            return True

    def secrets(self) -> tuple[str, ...]:
        values = [self.endpoint.client_secret]
        tokens = self._tokens
        if tokens is not None:
            values.append(tokens.access_token.get_secret_value())
            if tokens.refresh_token is not None:
                values.append(tokens.refresh_token.get_secret_value())
        return tuple(values)

    def close(self) -> None:
        self.endpoint.close()

    @property
    def tokens(self) -> ShopifyTokens | None:
        """The tokens in use (for monitoring: scopes, expiry); None before the first request."""
        with self._lock:
            return self._tokens or self.store.load()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(store={self.store_key!r}, endpoint={self.endpoint!r})"

    # -- renewal ----------------------------------------------------------------------------------------------
    def _due(self, tokens: ShopifyTokens) -> bool:
        if tokens.expires_at is None:
            return False
        lifetime = tokens.expires_at - tokens.obtained_at
        skew = min(self.skew, lifetime / 2) if lifetime > timedelta(0) else self.skew
        return self._now() >= tokens.expires_at - skew

    def _renew(self, *, sent: str | None) -> ShopifyTokens:
        """Under the store's lock: keep what another process already renewed, else get and persist new tokens.

        ``sent`` is the token a 401 came back for (None: proactive renewal before expiry).
        """

        def change(stored: ShopifyTokens | None) -> ShopifyTokens | None:
            if stored is not None and not self._due(stored) and (sent is None or not stored.same_access_token(sent)):
                return None  # still good, or someone else renewed since the 401: use it
            return self._obtain(stored)

        result = self.store.update(change)
        if result is None:  # pragma: no cover - change() either returns tokens or raises
            raise ShopifyReauthorizationRequired(f"no Shopify token is stored for store {self.store_key}",
                                                 fix=self.fix_hint)
        return result

    def _obtain(self, stored: ShopifyTokens | None) -> ShopifyTokens:
        raise NotImplementedError


class OAuthTokenAuth(_StoredTokenAuth):
    """``auth_mode: oauth``: the token ``x3sd shopify connect`` stored; refresh-token rotation.

    Every refresh returns a new refresh token; the new pair is saved in the store's transaction before the new
    access token is used. A refused refresh (revoked, uninstalled, refresh token expired), a non-expiring token
    refused with 401, or no token at all raise :class:`ShopifyReauthorizationRequired` naming the command.
    """

    mode = "oauth"

    @staticmethod
    def default_fix_hint(store_key: str) -> str:
        return f"run `x3sd shopify connect {store_key}` to authorize the app again"

    def _obtain(self, stored: ShopifyTokens | None) -> ShopifyTokens:
        if stored is None:
            raise ShopifyReauthorizationRequired(
                f"no Shopify token is stored for store {self.store_key} (auth_mode oauth)", fix=self.fix_hint
            )
        if stored.refresh_token is None:
            raise ShopifyReauthorizationRequired(
                f"Shopify refused the stored access token of store {self.store_key} and it has no refresh token "
                "(revoked, or the app was uninstalled)",
                fix=self.fix_hint,
            )
        if stored.refresh_expires_at is not None and self._now() >= stored.refresh_expires_at:
            raise ShopifyReauthorizationRequired(
                f"the refresh token of store {self.store_key} expired on {stored.refresh_expires_at.isoformat()}",
                fix=self.fix_hint,
            )
        try:
            new = self.endpoint.refresh(stored.refresh_token.get_secret_value())
        except TokenEndpointRefusal as refusal:
            raise ShopifyReauthorizationRequired(
                f"Shopify refused to refresh the access token of store {self.store_key} ({refusal}): the "
                "authorization was revoked or has expired",
                fix=self.fix_hint,
                status_code=refusal.status_code,
            ) from None
        if not new.scopes:
            new = new.model_copy(update={"scopes": stored.scopes})
        self.renewals += 1
        log.info("refreshed the Shopify access token of store %s (valid until %s)", self.store_key,
                 new.expires_at.isoformat() if new.expires_at else "no expiry")
        return new


class ClientCredentialsAuth(_StoredTokenAuth):
    """``auth_mode: client_credentials``: a ~24 h token for a merchant-owned app, re-requested near expiry.

    The token is cached in the store (the vault) so processes share it instead of each asking for one.
    """

    mode = "client_credentials"

    @staticmethod
    def default_fix_hint(store_key: str) -> str:
        return (
            f"check the client id and secret of store {store_key} and that the app (created by the store's own "
            "organization in the Dev Dashboard) is installed on the store"
        )

    def _obtain(self, stored: ShopifyTokens | None) -> ShopifyTokens:
        try:
            new = self.endpoint.client_credentials()
        except TokenEndpointRefusal as refusal:
            raise ShopifyReauthorizationRequired(
                f"Shopify refused the client-credentials grant of store {self.store_key} ({refusal})",
                fix=self.fix_hint,
                status_code=refusal.status_code,
            ) from None
        self.renewals += 1
        log.info("obtained a client-credentials token for store %s (valid until %s)", self.store_key,
                 new.expires_at.isoformat() if new.expires_at else "no expiry")
        return new


# ============================================================================================== install + callback
def new_state() -> str:
    """A random nonce for the ``state`` parameter (128 bits)."""
    import secrets

    return secrets.token_urlsafe(24)


def authorize_url(shop_url: str, *, client_id: str, scopes: Iterable[str], redirect_uri: str, state: str) -> str:
    """Where the merchant approves the app: ``{shop}/admin/oauth/authorize?client_id&scope&redirect_uri&state``.

    No ``grant_options[]=per-user``: the connector needs an offline token.
    """
    query = urlencode({"client_id": client_id, "scope": ",".join(scopes), "redirect_uri": redirect_uri,
                       "state": state})
    return f"{shop_url.rstrip('/')}/admin/oauth/authorize?{query}"


def callback_hmac(params: Mapping[str, str], client_secret: str) -> str:
    """Hex HMAC-SHA256, keyed with the client secret, of the query without ``hmac`` sorted and joined ``k=v&…``."""
    message = "&".join(f"{key}={params[key]}" for key in sorted(params) if key not in {"hmac", "signature"})
    return hmac.new(client_secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def validate_shop_domain(shop: str, shop_url: str) -> str:
    """``shop`` must be a myshopify.com domain and, for a real store, the configured one.

    A loopback ``shop_url`` (the sandbox, path-addressed) cannot be compared to a domain, so any well-formed
    myshopify domain is accepted for it, as the settings accept loopback shop URLs only on loopback.
    """
    if not SHOP_DOMAIN.match(shop or ""):
        raise ShopifyOAuthError(f"the callback's shop {shop!r} is not a {{shop}}.myshopify.com domain; refused")
    parts = urlsplit(shop_url)
    if parts.scheme == "http" and is_loopback_host(parts.hostname or ""):
        return shop
    if (parts.hostname or "").lower() != shop.lower():
        raise ShopifyOAuthError(
            f"the callback is for shop {shop!r} but this store is {parts.hostname!r}; refused"
        )
    return shop


def verify_callback(params: Mapping[str, str], *, client_secret: str, expected_state: str, shop_url: str) -> str:
    """Check the callback (HMAC, state, shop) and return its authorization code; raise ShopifyOAuthError."""
    received = params.get("hmac", "")
    if not received or not hmac.compare_digest(callback_hmac(params, client_secret), received.lower()):
        raise ShopifyOAuthError("the callback's HMAC does not match (not signed with this app's secret); refused")
    if not hmac.compare_digest(params.get("state", ""), expected_state):
        raise ShopifyOAuthError("the callback's state does not match this install attempt; refused")
    validate_shop_domain(params.get("shop", ""), shop_url)
    code = params.get("code", "")
    if not code:
        raise ShopifyOAuthError("the callback carries no authorization code; refused")
    return code
