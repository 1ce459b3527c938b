"""Authentication as the wire contract describes it: HTTP Basic; OAuth2 bearer tokens from
`POST /auth/oauth2/token` (authorization code from `GET /auth/oauth2/authorise`, then refresh-token rotation);
and connected-application JWTs (HS256, signed by the client with its secret, verified here).

OAuth2 tokens are opaque random strings kept in memory; the sandbox never logs them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
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


AuthOutcome = Literal["ok", "missing", "bad_basic", "bad_bearer", "expired_bearer", "bad_jwt", "jwt_unknown_client",
                      "jwt_bad_signature", "jwt_expired", "jwt_iat_future", "jwt_too_long"]


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class Authenticator:
    """Checks `Authorization` headers and runs the token endpoint's grants. Thread-safe."""

    def __init__(self, *, user: str, password: SecretStr, client_id: str, client_secret: SecretStr, clock: Clock,
                 access_ttl_s: int, refresh_ttl_s: int, code_ttl_s: int, jwt_iat_tolerance_s: int = 5,
                 jwt_max_validity_s: int = 600) -> None:
        self._user = user
        self._password = password
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._access_ttl = access_ttl_s
        self._refresh_ttl = refresh_ttl_s
        self._code_ttl = code_ttl_s
        self._jwt_iat_tolerance = jwt_iat_tolerance_s
        self._jwt_max_validity = jwt_max_validity_s
        self._lock = threading.Lock()
        self._codes: dict[str, tuple[datetime, str | None]] = {}
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
        if scheme == "bearer" and credentials.strip().count(".") == 2:
            return self.check_jwt(credentials.strip())
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

    def check_jwt(self, token: str) -> AuthOutcome:
        """A connected-application JWT: known client (iss), HS256 signature with its secret, the allowed user
        (sub), not expired, validity not longer than the application's "Tokens validity", and an iat not in our
        future beyond a small tolerance (X3's error 21: the client clock is ahead)."""
        try:
            header_part, payload_part, signature_part = token.split(".")
            header = json.loads(_b64url_decode(header_part))
            claims = json.loads(_b64url_decode(payload_part))
            signature = _b64url_decode(signature_part)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return "bad_jwt"
        if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "HS256":
            return "bad_jwt"  # never "none", never another algorithm
        if not secrets.compare_digest(str(claims.get("iss", "")).encode(), self._client_id.encode()):
            return "jwt_unknown_client"
        expected = hmac.new(self._client_secret.get_secret_value().encode(),
                            f"{header_part}.{payload_part}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            return "jwt_bad_signature"
        if claims.get("sub") != self._user:
            return "jwt_unknown_client"
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float) or exp <= iat:
            return "bad_jwt"
        now = self._clock().timestamp()
        if iat > now + self._jwt_iat_tolerance:
            return "jwt_iat_future"
        if now >= exp:
            return "jwt_expired"
        if exp - iat > self._jwt_max_validity:
            return "jwt_too_long"
        return "ok"

    def client_ok(self, client_id: str, client_secret: str) -> bool:
        return secrets.compare_digest(client_id.encode(), self._client_id.encode()) and secrets.compare_digest(
            client_secret.encode(), self._client_secret.get_secret_value().encode())

    # ------------------------------------------------------------------------------------------ grants
    def client_id_ok(self, client_id: str) -> bool:
        return secrets.compare_digest(client_id.encode(), self._client_id.encode())

    def issue_authorization_code(self, redirect_uri: str | None = None) -> str:
        """A single-use code; when issued for a `redirect_uri`, the exchange must name the same one."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = (self._clock() + timedelta(seconds=self._code_ttl), redirect_uri)
        return code

    def exchange_code(self, code: str, redirect_uri: str | None = None) -> TokenPair:
        with self._lock:
            issued = self._codes.pop(code, None)  # single use, even when expired
            if issued is None or self._clock() >= issued[0]:
                raise OAuthError(400, "invalid_grant", "authorization code is invalid, used or expired")
            if issued[1] is not None and redirect_uri != issued[1]:
                raise OAuthError(400, "invalid_grant", "redirect_uri does not match the authorization request")
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

    def revoke_refresh_tokens(self) -> int:
        """Delete every refresh token (an X3 administrator removing the pairing)."""
        with self._lock:
            count = len(self._refresh_tokens)
            self._refresh_tokens.clear()
            return count

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
