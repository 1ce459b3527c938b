"""OAuth2 authorization-code pairing with Sage X3 (``x3sd x3 connect``).

1. build the authorise URL (``client_id``, ``redirect_uri``, ``scope``, a random ``state``);
2. listen on the loopback ``redirect_uri`` for exactly one callback (a one-shot HTTP server on a thread);
3. hand the URL to a "browser" (the operator's, or a scripted one in tests) where an X3 user approves;
4. check that the callback carries our ``state`` (a forged or stale callback is refused), take its
   ``authorizationCode`` (X3 Cloud's name; ``code`` is accepted too) and exchange it with ``redirect_uri``;
5. the token pair is persisted through the ``TokenStore`` by ``OAuth2Auth.exchange_code``.

The callback server never logs the request line (it carries the code) and answers with a short page.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from x3_shopify_dagster.netloc import is_loopback_host
from x3_shopify_dagster.redaction import register_secret
from x3_shopify_dagster.x3.auth import OAuth2Auth
from x3_shopify_dagster.x3.config import check_transport_security
from x3_shopify_dagster.x3.errors import X3Error


class PairingError(X3Error):
    """The pairing did not complete: refused, timed out, or a callback that is not ours."""


@dataclass(frozen=True)
class PairingResult:
    redirect_uri: str
    refresh_expires_at: str | None  # ISO timestamp, or None when X3 does not say


def authorisation_url(
    authorise_endpoint: str, *, client_id: str, redirect_uri: str, state: str, scope: str = ""
) -> str:
    parts = urlsplit(authorise_endpoint)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": state}
    if scope:
        params["scope"] = scope
    query = "&".join(part for part in (parts.query, urlencode(params)) if part)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


_PAGE = "<!doctype html><title>x3sd</title><p>{message}</p>"


class _CallbackServer:
    """A loopback HTTP server that accepts one request on the callback path, then stops."""

    def __init__(self, redirect_uri: str) -> None:
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http" or not parts.hostname or not is_loopback_host(parts.hostname):
            raise PairingError(f"the pairing callback must be a plain http loopback URL, got {redirect_uri!r}")
        self.path = parts.path or "/"
        self._done = threading.Event()
        self.params: dict[str, str] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != outer.path or outer._done.is_set():
                    self._answer(404, "Not the x3sd pairing callback.")
                    return
                outer.params = {key: values[0] for key, values in parse_qs(url.query).items() if values}
                register_secret(outer.params.get("authorizationCode"), outer.params.get("code"))
                if "error" in outer.params:
                    self._answer(400, "Sage X3 refused the pairing; see the terminal.")
                else:
                    self._answer(200, "Sage X3 answered: return to the terminal (you can close this window).")
                outer._done.set()

            def _answer(self, status: int, message: str) -> None:
                body = _PAGE.format(message=message).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the request line carries the authorization code: never logged

        try:
            self._server = HTTPServer((parts.hostname, parts.port if parts.port is not None else 80), Handler)
        except OSError as exc:
            raise PairingError(
                f"cannot listen on {redirect_uri} ({exc.strerror or exc}): free that port or set "
                "X3SD_X3__REDIRECT_URI to another loopback port (and register it with the X3 client)"
            ) from None
        self._server.timeout = 0.2
        bound_port = self._server.server_address[1]
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self.redirect_uri = urlunsplit(("http", f"{host}:{bound_port}", self.path, parts.query, ""))
        self._thread = threading.Thread(target=self._serve, name="x3sd-pairing-callback", daemon=True)
        self._stop = threading.Event()

    def _serve(self) -> None:
        while not self._done.is_set() and not self._stop.is_set():
            self._server.handle_request()

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout_s: float) -> dict[str, str] | None:
        return self.params if self._done.wait(timeout_s) else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._server.server_close()


def pair(
    auth: OAuth2Auth,
    *,
    authorise_endpoint: str,
    redirect_uri: str,
    open_browser: Callable[[str], object],
    scope: str = "",
    timeout_s: float = 300.0,
    state: str | None = None,
) -> PairingResult:
    """Run the whole pairing; on success the token pair is in ``auth.store``. Raises ``PairingError``."""
    check_transport_security(authorise_endpoint, what="X3 authorise URL")
    state = state or secrets.token_urlsafe(24)
    server = _CallbackServer(redirect_uri)
    try:
        server.start()
        url = authorisation_url(authorise_endpoint, client_id=auth.client_id, redirect_uri=server.redirect_uri,
                                state=state, scope=scope)
        open_browser(url)
        params = server.wait(timeout_s)
    finally:
        server.close()
    if params is None:
        raise PairingError(
            f"no answer from Sage X3 on {server.redirect_uri} within {timeout_s:g} s: approve the connector in the "
            "browser, and check that the X3 client's redirect URI is exactly this address (X3SD_X3__REDIRECT_URI)"
        )
    if not secrets.compare_digest(params.get("state", ""), state):
        raise PairingError("the callback's state does not match this pairing (a stale or forged callback): "
                           "nothing was stored; run `x3sd x3 connect` again")
    if "error" in params:
        description = params.get("error_description", "")
        raise PairingError(f"Sage X3 refused the pairing ({params['error']}{': ' + description if description else ''})"
                           "; check the client id and that the approving X3 user may authorise third parties")
    code = params.get("authorizationCode") or params.get("code")
    if not code:
        raise PairingError("the callback carries no authorizationCode; nothing was stored")
    auth.exchange_code(code, redirect_uri=server.redirect_uri)
    expires = auth.refresh_token_expires_at
    return PairingResult(server.redirect_uri, expires.isoformat() if expires else None)
