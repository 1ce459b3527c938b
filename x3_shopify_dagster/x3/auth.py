"""Authentication strategies for X3 calls, and where OAuth2 tokens are kept.

`X3Auth.apply` decorates each outgoing request; `on_unauthorized` is called once after a 401 and says
whether a retry can help. OAuth2 uses refresh-token rotation: every refresh returns a new refresh token and
invalidates the old one, so the new pair is persisted before the new access token is used. If the process dies
between the two, the stored pair is still the valid one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from x3_shopify_dagster.redaction import register_basic_credentials, register_secret, scrub
from x3_shopify_dagster.x3.config import X3Config, check_transport_security
from x3_shopify_dagster.x3.errors import (
    TokenStoreError,
    X3AuthenticationError,
    X3ProtocolError,
    X3ReauthorizationRequired,
    X3TransportError,
)

log = logging.getLogger(__name__)

DEFAULT_REPAIR_HINT = (
    "re-pair the connector with Sage X3: run `x3sd x3 connect` and have an X3 user approve the connector in the "
    "browser (it obtains a new authorization code and stores the new token pair; in code: "
    "OAuth2Auth.exchange_code(code))"
)


@runtime_checkable
class X3Auth(Protocol):
    def apply(self, request: httpx.Request) -> None:
        """Add credentials to `request` (may refresh tokens first)."""

    def on_unauthorized(self, request: httpx.Request | None = None) -> bool:
        """Called after a 401 to `request`; True if retrying the call once may now succeed."""


class BasicAuth:
    """HTTP Basic with a Syracuse user (on-premises api1 and SOAP)."""

    def __init__(self, user: str, password: SecretStr | str) -> None:
        if not user or ":" in user:
            raise ValueError("basic auth user must be non-empty and contain no ':'")
        self.user = user
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        register_basic_credentials(user, self._password)

    def apply(self, request: httpx.Request) -> None:
        raw = f"{self.user}:{self._password.get_secret_value()}".encode()
        request.headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")

    def on_unauthorized(self, request: httpx.Request | None = None) -> bool:
        return False  # the same password will be refused again

    def __repr__(self) -> str:
        return f"BasicAuth(user={self.user!r}, password=**********)"


class StoredTokens(BaseModel):
    """An OAuth2 token pair with absolute, timezone-aware expiry times."""

    model_config = ConfigDict(frozen=True)

    access_token: SecretStr
    refresh_token: SecretStr
    access_expires_at: datetime
    refresh_expires_at: datetime | None = None
    obtained_at: datetime

    @field_validator("access_expires_at", "refresh_expires_at", "obtained_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValueError("token times must be timezone-aware")
        return value

    def to_plain(self) -> dict[str, Any]:
        """Serialisable form *with* secret values: only for an encrypted store."""
        return {
            "access_token": self.access_token.get_secret_value(),
            "refresh_token": self.refresh_token.get_secret_value(),
            "access_expires_at": self.access_expires_at.isoformat(),
            "refresh_expires_at": self.refresh_expires_at.isoformat() if self.refresh_expires_at else None,
            "obtained_at": self.obtained_at.isoformat(),
        }

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> StoredTokens:
        return cls.model_validate(dict(data))


class TokenStore(Protocol):
    def load(self) -> StoredTokens | None: ...

    def save(self, tokens: StoredTokens) -> None: ...


class MemoryTokenStore:
    """In-process store (tests, short-lived tools)."""

    def __init__(self, tokens: StoredTokens | None = None) -> None:
        self._tokens = tokens
        self._lock = threading.Lock()
        self.saves = 0

    def load(self) -> StoredTokens | None:
        with self._lock:
            return self._tokens

    def save(self, tokens: StoredTokens) -> None:
        with self._lock:
            self._tokens = tokens
            self.saves += 1

    def __repr__(self) -> str:
        return f"MemoryTokenStore(saves={self.saves})"


class EncryptedFileTokenStore:
    """Tokens in a Fernet-encrypted file (mode 0600), key from an environment variable, atomic replace.

    A missing or wrong key is a clear error and the file is never touched by a failed load.
    """

    DEFAULT_KEY_ENV = "X3SD_X3_TOKEN_KEY"

    def __init__(
        self, path: Path | str, *, key_env: str = DEFAULT_KEY_ENV, environ: Mapping[str, str] | None = None
    ) -> None:
        self.path = Path(path)
        self.key_env = key_env
        self._environ = environ if environ is not None else os.environ
        self._lock = threading.Lock()

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode("ascii")

    def _fernet(self) -> Fernet:
        key = self._environ.get(self.key_env)
        if not key:
            raise TokenStoreError(
                f"environment variable {self.key_env} is not set: it must hold the Fernet key that encrypts "
                f"{self.path} (create one with EncryptedFileTokenStore.generate_key()); nothing was changed"
            )
        try:
            return Fernet(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise TokenStoreError(
                f"environment variable {self.key_env} does not hold a valid Fernet key (32 url-safe base64 "
                "bytes); nothing was changed"
            ) from None

    def load(self) -> StoredTokens | None:
        with self._lock:
            fernet = self._fernet()
            try:
                blob = self.path.read_bytes()
            except FileNotFoundError:
                return None
            try:
                plain = fernet.decrypt(blob)
            except InvalidToken:
                raise TokenStoreError(
                    f"cannot decrypt {self.path} with the key in {self.key_env} (wrong key, or the file is "
                    "damaged); the file was left untouched — restore the original key"
                ) from None
            try:
                return StoredTokens.from_plain(json.loads(plain))
            except ValueError:
                raise TokenStoreError(f"{self.path} decrypts but does not hold X3 tokens") from None

    def save(self, tokens: StoredTokens) -> None:
        with self._lock:
            blob = self._fernet().encrypt(json.dumps(tokens.to_plain()).encode())
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # mkstemp creates the file 0600 in the same directory, so os.replace is atomic on one filesystem.
            fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(blob)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(tmp_name, 0o600)
                os.replace(tmp_name, self.path)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
            _fsync_directory(self.path.parent)

    def __repr__(self) -> str:
        return f"EncryptedFileTokenStore(path={str(self.path)!r}, key_env={self.key_env!r})"


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform/filesystem
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OAuth2Auth:
    """OAuth2 bearer tokens with proactive refresh and refresh-token rotation.

    - before a call, refreshes when the access token expires within `skew_s` (capped at half the token's
      lifetime, so very short-lived tokens are not refreshed on every call);
    - after a 401, refreshes once (unless another thread already did) and lets the client retry once;
    - persists the new pair with `store.save` before the new access token is used;
    - a refused refresh raises `X3ReauthorizationRequired` naming how to re-pair.
    Thread-safe: concurrent callers share one refresh.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: SecretStr | str,
        store: TokenStore,
        *,
        skew_s: float = 30.0,
        now: Callable[[], datetime] = _utcnow,
        transport: httpx.BaseTransport | None = None,
        verify: Any = True,
        timeout_s: float = 30.0,
        repair_hint: str = DEFAULT_REPAIR_HINT,
    ) -> None:
        check_transport_security(token_url, what="OAuth2 token URL")
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = (
            client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        )
        register_secret(self._client_secret)
        self.store = store
        self.skew = timedelta(seconds=skew_s)
        self._now = now
        self._repair_hint = repair_hint
        self._http = httpx.Client(
            transport=transport, verify=verify, timeout=timeout_s, follow_redirects=False
        )
        self._lock = threading.RLock()
        self._tokens: StoredTokens | None = None
        self._listeners: list[Callable[[], None]] = []
        self.refresh_count = 0

    @classmethod
    def for_config(cls, config: X3Config, client_id: str, client_secret: SecretStr | str, store: TokenStore,
                   *, token_url: str | None = None, **kwargs: Any) -> OAuth2Auth:
        """Token endpoint on the X3 server itself (unless `token_url` is given), same TLS trust as the client."""
        return cls(token_url or config.token_url, client_id, client_secret, store, verify=config.tls_verify(),
                   **kwargs)

    # -- X3Auth -------------------------------------------------------------------------------------------
    def apply(self, request: httpx.Request) -> None:
        with self._lock:
            tokens = self._current()
            if self._needs_refresh(tokens):
                tokens = self._refresh(tokens)
            request.headers["Authorization"] = f"Bearer {tokens.access_token.get_secret_value()}"

    def on_unauthorized(self, request: httpx.Request | None = None) -> bool:
        with self._lock:
            tokens = self._current()
            sent = request.headers.get("Authorization", "") if request is not None else ""
            if sent and sent != f"Bearer {tokens.access_token.get_secret_value()}":
                return True  # another caller refreshed since this request was sent: just retry
            self._refresh(tokens)
            return True

    # -- pairing and monitoring ---------------------------------------------------------------------------
    def exchange_code(self, code: str, *, redirect_uri: str | None = None) -> None:
        """First pairing: trade an authorization code for a token pair and persist it."""
        form = {"grant_type": "authorization_code", "code": code}
        if redirect_uri:
            form["redirect_uri"] = redirect_uri
        with self._lock:
            self._persist(self._token_request(form, secrets=(code,), grant="authorization_code"))

    def refresh_token_expires_soon(self, within: timedelta = timedelta(days=7)) -> bool:
        """True if the refresh token expires within `within` (time to plan a re-pairing), or is gone."""
        with self._lock:
            tokens = self._tokens or self.store.load()
        if tokens is None:
            return True
        if tokens.refresh_expires_at is None:
            return False
        return tokens.refresh_expires_at - self._now() <= within

    @property
    def refresh_token_expires_at(self) -> datetime | None:
        with self._lock:
            tokens = self._tokens or self.store.load()
        return tokens.refresh_expires_at if tokens else None

    def add_refresh_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return (
            f"OAuth2Auth(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"client_secret=**********, store={self.store!r})"
        )

    # -- internals ----------------------------------------------------------------------------------------
    def _current(self) -> StoredTokens:
        if self._tokens is None:
            self._tokens = self.store.load()
            if self._tokens is not None:
                register_secret(self._tokens.access_token, self._tokens.refresh_token)
        if self._tokens is None:
            raise X3ReauthorizationRequired(f"no X3 OAuth2 tokens are stored; {self._repair_hint}")
        return self._tokens

    def _needs_refresh(self, tokens: StoredTokens) -> bool:
        lifetime = tokens.access_expires_at - tokens.obtained_at
        skew = min(self.skew, lifetime / 2) if lifetime > timedelta(0) else self.skew
        return self._now() >= tokens.access_expires_at - skew

    def _refresh(self, tokens: StoredTokens) -> StoredTokens:
        refresh_token = tokens.refresh_token.get_secret_value()
        if tokens.refresh_expires_at is not None and self._now() >= tokens.refresh_expires_at:
            raise X3ReauthorizationRequired(
                f"the X3 refresh token expired on "
                f"{tokens.refresh_expires_at.isoformat()}; {self._repair_hint}"
            )
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        new = self._token_request(form, secrets=(refresh_token,), grant="refresh_token")
        self._persist(new)
        self.refresh_count += 1
        for listener in self._listeners:
            listener()
        log.info("refreshed the X3 access token (valid until %s)", new.access_expires_at.isoformat())
        return new

    def _persist(self, tokens: StoredTokens) -> None:
        # Rotation: the old refresh token is already dead, so the new pair must be durable before use.
        # If saving fails we do not use the new access token and the error propagates.
        register_secret(tokens.access_token, tokens.refresh_token)
        self.store.save(tokens)
        self._tokens = tokens

    def _token_request(self, form: dict[str, str], *, secrets: tuple[str, ...], grant: str) -> StoredTokens:
        client_secret = self._client_secret.get_secret_value()
        body = {**form, "client_id": self.client_id, "client_secret": client_secret}
        all_secrets = (*secrets, client_secret)
        issued_at = self._now()  # before the call: expiry computed conservatively
        try:
            response = self._http.post(self.token_url, data=body, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise X3TransportError(f"X3 token endpoint unreachable ({type(exc).__name__})") from None
        if response.status_code >= 500:
            raise X3TransportError(f"X3 token endpoint answered HTTP {response.status_code}")
        payload = _json_object(response)
        if response.status_code != 200 or "access_token" not in payload:
            error = scrub(str(payload.get("error", "")), all_secrets)
            description = scrub(str(payload.get("error_description", "")), all_secrets)
            reason = f"HTTP {response.status_code} {error} {description}".strip()
            if grant == "refresh_token" or response.status_code in {400, 401}:
                raise X3ReauthorizationRequired(
                    f"X3 refused the OAuth2 {grant} grant ({reason}); {self._repair_hint}"
                )
            raise X3AuthenticationError(f"X3 token endpoint failed ({reason})")
        try:
            expires_in = float(payload.get("expires_in", 300))
            refresh_in = payload.get("refresh_expires_in")
            return StoredTokens(
                access_token=SecretStr(str(payload["access_token"])),
                refresh_token=SecretStr(str(payload["refresh_token"])),
                access_expires_at=issued_at + timedelta(seconds=expires_in),
                refresh_expires_at=issued_at + timedelta(seconds=float(refresh_in)) if refresh_in else None,
                obtained_at=issued_at,
            )
        except (KeyError, TypeError, ValueError):
            raise X3ProtocolError("X3 token endpoint answered without a usable token pair") from None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# ============================================================================================== JWT
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_hs256(claims: Mapping[str, Any], secret: str) -> str:
    """A compact JWS (RFC 7515) signed HS256, with the stdlib: header.payload.signature, base64url unpadded."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(dict(claims), separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


class JwtAuth:
    """Syracuse "connected application": a self-signed HS256 JWT per call, no token endpoint, no refresh token.

    Claims: ``iss`` = client id, ``sub`` = the X3 user, ``aud`` (default ""), ``iat``, ``exp = iat + lifetime``.
    X3 refuses a token whose ``iat`` lies in its future (error 21), so ``iat`` is set ``clock_skew_s`` in the past:
    a server clock a little behind ours still accepts it. A token is reused until it is within
    ``remint_margin_s`` of its expiry (capped at a quarter of the lifetime), then a new one is minted.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: SecretStr | str,
        user: str,
        *,
        audience: str = "",
        lifetime_s: int = 300,
        clock_skew_s: int = 30,
        remint_margin_s: int = 60,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not client_id or not user:
            raise ValueError("a connected-application JWT needs the client id (iss) and the X3 user (sub)")
        if lifetime_s <= clock_skew_s:
            raise ValueError(
                f"JWT lifetime ({lifetime_s} s) must exceed the clock skew allowance ({clock_skew_s} s): "
                "iat is set that far in the past, so the token would already be expired"
            )
        self.client_id = client_id
        self.user = user
        self.audience = audience
        self.lifetime = timedelta(seconds=lifetime_s)
        self.clock_skew = timedelta(seconds=clock_skew_s)
        self._margin = min(timedelta(seconds=remint_margin_s), (self.lifetime - self.clock_skew) / 4)
        self._client_secret = client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        if not self._client_secret.get_secret_value():
            raise ValueError("the connected application's client secret is empty")
        register_secret(self._client_secret)
        self._now = now
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at: datetime | None = None
        self.minted = 0

    def mint(self) -> str:
        """A new signed token (also the one `apply` uses from now on)."""
        with self._lock:
            return self._mint()

    def _mint(self) -> str:
        issued_at = self._now() - self.clock_skew
        expires_at = issued_at + self.lifetime
        claims = {"iss": self.client_id, "sub": self.user, "aud": self.audience,
                  "iat": int(issued_at.timestamp()), "exp": int(expires_at.timestamp())}
        self._token = encode_hs256(claims, self._client_secret.get_secret_value())
        self._expires_at = expires_at
        self.minted += 1
        return self._token

    def apply(self, request: httpx.Request) -> None:
        with self._lock:
            token = self._token
            if token is None or self._expires_at is None or self._now() >= self._expires_at - self._margin:
                token = self._mint()
            request.headers["Authorization"] = f"Bearer {token}"

    def on_unauthorized(self, request: httpx.Request | None = None) -> bool:
        # A fresh token helps only if the refused one was stale (expired in transit, server clock ahead);
        # a wrong secret or unknown client fails the single retry and becomes X3AuthenticationError.
        with self._lock:
            sent = request.headers.get("Authorization", "") if request is not None else ""
            if self._token is not None and sent and sent != f"Bearer {self._token}":
                return True
            self._mint()
            return True

    def __repr__(self) -> str:
        return (f"JwtAuth(client_id={self.client_id!r}, user={self.user!r}, audience={self.audience!r}, "
                f"lifetime_s={int(self.lifetime.total_seconds())}, client_secret=**********)")
