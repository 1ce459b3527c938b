"""``x3sd shopify connect <store>``: the authorization-code grant with a one-shot callback server on loopback.

1. A random ``state`` and the install URL (``/admin/oauth/authorize`` with the scopes and a loopback
   ``redirect_uri``) are made; the caller shows the URL to the merchant (the CLI prints it).
2. A tiny HTTP server on the loopback address waits for Shopify's redirect to ``redirect_uri``.
3. The callback is verified (hex HMAC-SHA256 of the sorted query, constant-time compare; ``state``; shop
   domain), the code is exchanged at ``/admin/oauth/access_token`` (``expiring=1``: an expiring offline token
   with a refresh token) and the tokens are saved in the token store (the vault) before anything uses them.

Any failed check ends the attempt (the browser is told why; nothing is stored): run the command again.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qsl, urlsplit

import httpx
from pydantic import SecretStr

from x3_shopify_dagster.netloc import is_loopback_host
from x3_shopify_dagster.redaction import scrub
from x3_shopify_dagster.shopify.errors import ShopifyOAuthError
from x3_shopify_dagster.shopify.oauth import (
    REQUESTED_SCOPES,
    ShopifyTokenEndpoint,
    ShopifyTokens,
    ShopifyTokenStore,
    TokenEndpointRefusal,
    authorize_url,
    new_state,
    verify_callback,
)

log = logging.getLogger(__name__)

DEFAULT_CALLBACK_HOST = "127.0.0.1"
DEFAULT_CALLBACK_PORT = 8765
CALLBACK_PATH = "/shopify/callback"


@dataclass
class _Outcome:
    tokens: ShopifyTokens | None = None
    error: Exception | None = None


class _CallbackServer(HTTPServer):
    """Serves until one request reaches the callback path; other paths (favicon...) get a 404."""

    outcome: _Outcome | None = None
    handle_callback: Callable[[dict[str, str]], ShopifyTokens]


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH or self.server.outcome is not None:
            self._reply(404, "Not found")
            return
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        outcome = _Outcome()
        try:
            outcome.tokens = self.server.handle_callback(params)
        except Exception as exc:  # reported to the caller of connect(); the browser gets the reason
            outcome.error = exc
        self.server.outcome = outcome
        if outcome.error is None:
            self._reply(200, "The connector is authorized. You can close this window.")
        else:
            self._reply(400, f"Authorization failed: {outcome.error}")

    def _reply(self, status: int, text: str) -> None:
        body = f"<!doctype html><title>x3-shopify-dagster</title><p>{html.escape(text)}</p>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # The default logs the request line, which holds the authorization code: never log it.
        return None


@dataclass(frozen=True)
class ConnectResult:
    tokens: ShopifyTokens
    redirect_uri: str


class ShopifyConnector:
    """One install attempt for one store. ``connect`` blocks until the callback arrives or ``timeout_s``."""

    def __init__(
        self,
        shop_url: str,
        client_id: str,
        client_secret: SecretStr | str,
        store: ShopifyTokenStore,
        *,
        store_key: str,
        scopes: Iterable[str] = REQUESTED_SCOPES,
        host: str = DEFAULT_CALLBACK_HOST,
        port: int = DEFAULT_CALLBACK_PORT,
        expiring: bool = True,
        transport: httpx.BaseTransport | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if not is_loopback_host(host):
            raise ValueError(f"the callback server listens on loopback only, not {host!r}")
        self.shop_url = shop_url.rstrip("/")
        self.store = store
        self.store_key = store_key
        self.scopes = tuple(scopes)
        self.host = host
        self.port = port
        self.expiring = expiring
        kwargs = {"now": now} if now is not None else {}
        self.endpoint = ShopifyTokenEndpoint(shop_url, client_id, client_secret, transport=transport, **kwargs)
        self.state = new_state()

    def connect(self, on_install_url: Callable[[str], None], *, timeout_s: float = 300.0) -> ConnectResult:
        server = _CallbackServer((self.host, self.port), _CallbackHandler)
        server.timeout = 0.5
        server.handle_callback = self._handle_callback
        try:
            bound_host, bound_port = server.server_address[:2]
            display = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
            redirect_uri = f"http://{display}:{bound_port}{CALLBACK_PATH}"
            url = authorize_url(self.shop_url, client_id=self.endpoint.client_id, scopes=self.scopes,
                                redirect_uri=redirect_uri, state=self.state)
            on_install_url(url)
            deadline = time.monotonic() + timeout_s
            while server.outcome is None:
                if time.monotonic() > deadline:
                    raise ShopifyOAuthError(
                        f"no callback from Shopify within {timeout_s:g}s; run `x3sd shopify connect "
                        f"{self.store_key}` again and approve the app in the browser"
                    )
                server.handle_request()
        finally:
            server.server_close()
            self.endpoint.close()
        outcome = server.outcome
        if outcome.error is not None:
            raise outcome.error
        assert outcome.tokens is not None
        return ConnectResult(outcome.tokens, redirect_uri)

    def _handle_callback(self, params: dict[str, str]) -> ShopifyTokens:
        if "error" in params:
            raise ShopifyOAuthError(
                f"Shopify did not authorize the app: {params.get('error')} {params.get('error_description', '')}"
                .strip()
            )
        code = verify_callback(params, client_secret=self.endpoint.client_secret, expected_state=self.state,
                               shop_url=self.shop_url)
        try:
            tokens = self.endpoint.authorization_code(code, expiring=self.expiring)
        except TokenEndpointRefusal as refusal:
            raise ShopifyOAuthError(
                f"Shopify refused the authorization code ({scrub(str(refusal), (code,))}); run "
                f"`x3sd shopify connect {self.store_key}` again"
            ) from None
        self.store.save(tokens)  # persisted before anything uses it
        log.info("store %s connected: scopes %s", self.store_key, ",".join(tokens.scopes))
        return tokens


def run_in_thread(target: Callable[[], None]) -> threading.Thread:
    """Start ``target`` in a daemon thread (a scripted browser in tests, ``webbrowser.open`` in the CLI)."""
    thread = threading.Thread(target=target, daemon=True, name="x3sd-oauth-browser")
    thread.start()
    return thread
