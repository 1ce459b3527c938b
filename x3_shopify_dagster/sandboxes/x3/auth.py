"""Authentication as the wire contract describes it: HTTP Basic, and OAuth2 bearer tokens from
`POST /auth/oauth2/token` (authorization code, then refresh-token rotation).

Tokens are opaque random strings kept in memory; the sandbox never logs them.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import SecretStr

from x3_shopify_dagster.sandboxes.x3.clock import Clock

BASIC_CHALLENGE = 'Basic realm="Syracuse"'


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int

    def as_json(self) -> dict[str, object]:
        return {"access_token": self.access_token, "token_type": "Bearer", "expires_in": self.expires_in,
                "refresh_token": self.refresh_token, "refresh_expires_in": self.refresh_expires_in}

    def __repr__(self) -> str:  # tokens are secrets
        return f"TokenPair(expires_in={self.expires_in}, refresh_expires_in={self.refresh_expires_in})"


class OAuthError(Exception):
    """An RFC 6749 error answer of the token endpoint."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description


AuthOutcome = Literal["ok", "missing", "bad_basic", "bad_bearer", "expired_bearer"]


class Authenticator:
    """Checks `Authorization` headers and runs the token endpoint's grants. Thread-safe."""

    def __init__(self, *, user: str, password: SecretStr, client_id: str, client_secret: SecretStr, clock: Clock,
                 access_ttl_s: int, refresh_ttl_s: int, code_ttl_s: int) -> None:
        self._user = user
        self._password = password
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._access_ttl = access_ttl_s
        self._refresh_ttl = refresh_ttl_s
        self._code_ttl = code_ttl_s
        self._lock = threading.Lock()
        self._codes: dict[str, datetime] = {}
        self._access_tokens: dict[str, datetime] = {}
        self._refresh_tokens: dict[str, datetime] = {}

    # ------------------------------------------------------------------------------------------ requests
    def check(self, authorization: str | None) -> AuthOutcome:
        if not authorization:
            return "missing"
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            return "ok" if self._basic_ok(credentials.strip()) else "bad_basic"
        if scheme == "bearer":
            with self._lock:
                expires_at = self._access_tokens.get(credentials.strip())
            if expires_at is None:
                return "bad_bearer"
            return "ok" if self._clock() < expires_at else "expired_bearer"
        return "missing"

    def _basic_ok(self, encoded: str) -> bool:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        return bool(sep) and secrets.compare_digest(user.encode(), self._user.encode()) and secrets.compare_digest(
            password.encode(), self._password.get_secret_value().encode())

    def client_ok(self, client_id: str, client_secret: str) -> bool:
        return secrets.compare_digest(client_id.encode(), self._client_id.encode()) and secrets.compare_digest(
            client_secret.encode(), self._client_secret.get_secret_value().encode())

    # ------------------------------------------------------------------------------------------ grants
    def issue_authorization_code(self) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = self._clock() + timedelta(seconds=self._code_ttl)
        return code

    def exchange_code(self, code: str) -> TokenPair:
        with self._lock:
            expires_at = self._codes.pop(code, None)  # single use, even when expired
            if expires_at is None or self._clock() >= expires_at:
                raise OAuthError(400, "invalid_grant", "authorization code is invalid, used or expired")
            return self._issue_pair()

    def refresh(self, refresh_token: str) -> TokenPair:
        with self._lock:
            expires_at = self._refresh_tokens.pop(refresh_token, None)  # rotation: the old one dies here
            if expires_at is None or self._clock() >= expires_at:
                raise OAuthError(400, "invalid_grant", "refresh token is invalid, already used or expired")
            return self._issue_pair()

    def _issue_pair(self) -> TokenPair:
        now = self._clock()
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._access_tokens[access] = now + timedelta(seconds=self._access_ttl)
        self._refresh_tokens[refresh] = now + timedelta(seconds=self._refresh_ttl)
        return TokenPair(access, refresh, self._access_ttl, self._refresh_ttl)

    def expire_access_tokens(self) -> int:
        """Make every issued access token expired now (refresh tokens stay valid)."""
        with self._lock:
            now = self._clock()
            for token in self._access_tokens:
                self._access_tokens[token] = now
            return len(self._access_tokens)

    def reset(self) -> None:
        with self._lock:
            self._codes.clear()
            self._access_tokens.clear()
            self._refresh_tokens.clear()
