"""The sandbox's OAuth: install approval, code exchange, expiring tokens with rotation, client credentials.

Routes (per store, like ``https://{shop}.myshopify.com``):
    GET  /stores/{store}/admin/oauth/authorize      auto-approves and redirects to ``redirect_uri`` with
                                                    code, hmac, host, shop, state, timestamp (HMAC-SHA256 hex of
                                                    the sorted query, keyed with the app's client secret)
    POST /stores/{store}/admin/oauth/access_token   authorization_code (``expiring=1`` for an expiring token +
                                                    refresh token), refresh_token (rotation; the previous refresh
                                                    token stays valid until the new one is used),
                                                    client_credentials (~24 h, no refresh token)
    POST /_sandbox/oauth/revoke                     {"store"}: revoke every token issued for the store (uninstall)

Token lifetimes follow the store clock (``SandboxState.now``), so tests advance time without sleeping.
The static demo token (``ShopifySandbox.access_token``) keeps working with every scope.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

# Every scope the sandbox knows; the static demo token and, by default, client-credentials tokens have them all.
ALL_SCOPES: tuple[str, ...] = (
    "read_orders", "read_all_orders", "read_products", "read_inventory", "write_inventory", "read_locations",
    "read_fulfillments", "read_merchant_managed_fulfillment_orders", "read_customers",
)
ACCESS_TOKEN_TTL_S = 3600  # expiring offline tokens (Shopify changelog 2025-12-10)
REFRESH_TOKEN_TTL_S = 90 * 24 * 3600
CLIENT_CREDENTIALS_TTL_S = 86_399
AUTH_CODE_TTL_S = 600


def app_credentials_for(seed: int) -> tuple[str, str]:
    """The sandbox app's client id and secret (stable for a seed, like the demo tokens)."""
    digest = hashlib.sha256(f"x3-shopify-sandbox-app:{seed}".encode()).hexdigest()
    return f"sandbox-app-{digest[:12]}", f"shpss_{digest[12:44]}"


def effective_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """A write scope implies its read scope, as on Shopify."""
    granted = {s for s in scopes if s}
    return frozenset(granted | {"read_" + s.removeprefix("write_") for s in granted if s.startswith("write_")})


def sign_query(params: Mapping[str, str], client_secret: str) -> str:
    message = "&".join(f"{key}={params[key]}" for key in sorted(params) if key not in {"hmac", "signature"})
    return hmac.new(client_secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass
class AccessGrant:
    store: str
    scopes: frozenset[str]
    expires_at: datetime | None
    revoked: bool = False


@dataclass
class RefreshGrant:
    store: str
    scopes: frozenset[str]
    expires_at: datetime
    predecessor: str | None = None
    revoked: bool = False


@dataclass
class AuthorizationCode:
    store: str
    scopes: frozenset[str]
    expires_at: datetime
    used: bool = False


@dataclass
class OAuthResult:
    status_code: int
    body: dict[str, object] = field(default_factory=dict)
    location: str | None = None


class OAuthAuthority:
    """Issues and checks the tokens of one sandbox (every store). Thread-safe."""

    def __init__(self, client_id: str, client_secret: str, clock: Callable[[], datetime],
                 shop_domains: Mapping[str, str], app_scopes: Iterable[str] = ALL_SCOPES) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._clock = clock
        self._shop_domains = dict(shop_domains)
        self.app_scopes = tuple(app_scopes)
        self._lock = threading.Lock()
        self._access: dict[str, AccessGrant] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self.counts = {"authorization_code": 0, "refresh_token": 0, "client_credentials": 0}

    # -- authorize -------------------------------------------------------------------------------------------
    def authorize(self, store: str, query: Mapping[str, str]) -> OAuthResult:
        if query.get("client_id") != self.client_id:
            return OAuthResult(400, {"error": "invalid_request", "error_description": "unknown client_id"})
        redirect_uri = query.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            return OAuthResult(400, {"error": "invalid_request",
                                     "error_description": "redirect_uri must be an absolute http(s) URL"})
        scopes = frozenset(s.strip() for s in query.get("scope", "").split(",") if s.strip())
        code = secrets.token_hex(16)
        now = self._clock()
        with self._lock:
            self._codes[code] = AuthorizationCode(store, scopes, now + timedelta(seconds=AUTH_CODE_TTL_S))
        shop = self._shop_domains[store]
        params = {"code": code, "host": base64.b64encode(f"admin.shopify.com/store/{shop.split('.')[0]}".encode())
                  .decode().rstrip("="), "shop": shop, "state": query.get("state", ""),
                  "timestamp": str(int(now.timestamp()))}
        params["hmac"] = sign_query(params, self.client_secret)
        separator = "&" if parts.query else "?"
        return OAuthResult(302, location=f"{redirect_uri}{separator}{urlencode(params)}")

    # -- token endpoint ---------------------------------------------------------------------------------------
    def token(self, store: str, form: Mapping[str, str]) -> OAuthResult:
        if form.get("client_id") != self.client_id or not hmac.compare_digest(
                form.get("client_secret", "").encode(), self.client_secret.encode()):
            return _refused(401, "invalid_client", "client_id or client_secret is wrong")
        grant = form.get("grant_type") or ("authorization_code" if "code" in form else "")
        with self._lock:
            if grant == "authorization_code":
                return self._exchange_code(store, form.get("code", ""), expiring=form.get("expiring") == "1")
            if grant == "refresh_token":
                return self._refresh_grant(store, form.get("refresh_token", ""))
            if grant == "client_credentials":
                self.counts["client_credentials"] += 1
                return self._issue(store, frozenset(self.app_scopes), CLIENT_CREDENTIALS_TTL_S, refresh=False)
        return _refused(400, "unsupported_grant_type", f"grant_type {grant!r} is not supported")

    def _exchange_code(self, store: str, code: str, *, expiring: bool) -> OAuthResult:
        entry = self._codes.get(code)
        if entry is None or entry.used or entry.store != store or self._clock() >= entry.expires_at:
            return _refused(400, "invalid_grant", "the authorization code is invalid, used or expired")
        entry.used = True
        self.counts["authorization_code"] += 1
        if expiring:
            return self._issue(store, entry.scopes, ACCESS_TOKEN_TTL_S, refresh=True)
        return self._issue(store, entry.scopes, None, refresh=False)

    def _refresh_grant(self, store: str, token: str) -> OAuthResult:
        entry = self._refresh.get(token)
        if entry is None or entry.revoked or entry.store != store or self._clock() >= entry.expires_at:
            return _refused(400, "invalid_grant", "the refresh token is invalid, revoked or expired")
        # Using this token ends the grace of the one it replaced (Shopify, 2026-08-28).
        if entry.predecessor is not None and entry.predecessor in self._refresh:
            self._refresh[entry.predecessor].revoked = True
        self.counts["refresh_token"] += 1
        return self._issue(store, entry.scopes, ACCESS_TOKEN_TTL_S, refresh=True, predecessor=token)

    def _issue(self, store: str, scopes: frozenset[str], ttl_s: int | None, *, refresh: bool,
               predecessor: str | None = None) -> OAuthResult:
        now = self._clock()
        access = "shpat_" + secrets.token_hex(16)
        self._access[access] = AccessGrant(store, scopes, now + timedelta(seconds=ttl_s) if ttl_s else None)
        body: dict[str, object] = {"access_token": access, "scope": ",".join(sorted(scopes))}
        if ttl_s:
            body["expires_in"] = ttl_s
        if refresh:
            refresh_token = "shprt_" + secrets.token_hex(16)
            self._refresh[refresh_token] = RefreshGrant(store, scopes, now + timedelta(seconds=REFRESH_TOKEN_TTL_S),
                                                        predecessor=predecessor)
            body["refresh_token"] = refresh_token
            body["refresh_token_expires_in"] = REFRESH_TOKEN_TTL_S
        return OAuthResult(200, body)

    # -- GraphQL auth and admin ---------------------------------------------------------------------------------
    def scopes_of(self, store: str, token: str) -> frozenset[str] | None:
        """The token's scopes if it is valid for ``store`` now; None when unknown, expired or revoked."""
        with self._lock:
            entry = self._access.get(token)
            if entry is None or entry.revoked or entry.store != store:
                return None
            if entry.expires_at is not None and self._clock() >= entry.expires_at:
                return None
            return entry.scopes

    def revoke(self, store: str) -> int:
        """Revoke every access and refresh token issued for ``store`` (as an uninstall does)."""
        with self._lock:
            grants: list[AccessGrant | RefreshGrant] = [*self._access.values(), *self._refresh.values()]
            revoked = [g for g in grants if g.store == store and not g.revoked]
            for grant in revoked:
                grant.revoked = True
            return len(revoked)

    def set_app_scopes(self, scopes: Iterable[str]) -> None:
        """Scopes the app is configured with (what client-credentials tokens get from now on)."""
        self.app_scopes = tuple(scopes)

    def summary(self) -> dict[str, object]:
        with self._lock:
            live = sum(not grant.revoked for grant in self._access.values())
            return {"grants": dict(self.counts), "live_access_tokens": live}


def _refused(status: int, error: str, description: str) -> OAuthResult:
    return OAuthResult(status, {"error": error, "error_description": description})
