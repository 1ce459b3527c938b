"""Auth decisions: Basic, OAuth2 refresh timing, rotation order, 401 handling, re-pairing, token stores."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from x3_shopify_dagster.x3 import (
    BasicAuth,
    EncryptedFileTokenStore,
    MemoryTokenStore,
    OAuth2Auth,
    StoredTokens,
    TokenStoreError,
    X3AuthenticationError,
    X3Client,
    X3ReauthorizationRequired,
)
from x3_shopify_dagster_tests.x3._support import feed, json_response, make_config

CLIENT_SECRET = "client-secret-0123456789"
TOKEN_URL = "https://x3.example.com:8124/auth/oauth2/token"
T0 = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class TokenServer:
    """Issues rotating token pairs; a used or unknown refresh token is refused with invalid_grant."""

    def __init__(self, events: list[tuple[str, str]], *, access_ttl_s: int = 300) -> None:
        self.events = events
        self.access_ttl_s = access_ttl_s
        self.valid_refresh = {"refresh-0"}
        self.issued = 0
        self.fail_with: httpx.Response | None = None
        self.failures_left = 1_000_000  # how many calls fail_with answers
        self.codes = {"pairing-code-1"}
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert form["client_id"] == "connector"
        assert form["client_secret"] == CLIENT_SECRET
        if self.fail_with is not None and self.failures_left > 0:
            self.failures_left -= 1
            return self.fail_with
        with self._lock:
            if form["grant_type"] == "refresh_token" and form["refresh_token"] in self.valid_refresh:
                self.valid_refresh.discard(form["refresh_token"])  # rotation: the old one is dead
            elif form["grant_type"] == "authorization_code" and form.get("code") in self.codes:
                self.codes.discard(form["code"])
            else:
                return json_response({"error": "invalid_grant", "error_description": "token not valid"}, 400)
            self.issued += 1
            access, refresh = f"access-{self.issued}", f"refresh-{self.issued}"
            self.valid_refresh.add(refresh)
        self.events.append(("issued", access))
        return json_response({"access_token": access, "token_type": "Bearer", "expires_in": self.access_ttl_s,
                              "refresh_token": refresh, "refresh_expires_in": 2_592_000})


class RecordingStore(MemoryTokenStore):
    def __init__(self, events: list[tuple[str, str]], tokens: StoredTokens | None, *,
                 fail: bool = False) -> None:
        super().__init__(tokens)
        self.events = events
        self.fail = fail

    def save(self, tokens: StoredTokens) -> None:
        if self.fail:
            raise OSError("disk full")
        super().save(tokens)
        self.events.append(("saved", tokens.access_token.get_secret_value()))


def initial_tokens(lifetime_s: float = 300, refresh_lifetime: timedelta | None = timedelta(days=30)) -> StoredTokens:
    return StoredTokens(access_token=SecretStr("access-0"), refresh_token=SecretStr("refresh-0"),
                        access_expires_at=T0 + timedelta(seconds=lifetime_s),
                        refresh_expires_at=T0 + refresh_lifetime if refresh_lifetime else None, obtained_at=T0)


@pytest.fixture
def events() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def token_server(events: list[tuple[str, str]]) -> TokenServer:
    return TokenServer(events)


@pytest.fixture
def make_auth(token_server: TokenServer, clock: FakeClock, events: list[tuple[str, str]]
              ) -> Callable[..., OAuth2Auth]:
    def factory(tokens: StoredTokens | None = None, *, empty: bool = False, fail_store: bool = False,
                **kwargs: object) -> OAuth2Auth:
        store = RecordingStore(events, None if empty else tokens or initial_tokens(), fail=fail_store)
        return OAuth2Auth(TOKEN_URL, "connector", SecretStr(CLIENT_SECRET), store, now=clock,
                          transport=httpx.MockTransport(token_server), **kwargs)  # type: ignore[arg-type]

    return factory


def bearer_of(auth: OAuth2Auth) -> str:
    request = httpx.Request("GET", "https://x3.example.com:8124/api1/x3/erp/SEED/BPCUSTOMER")
    auth.apply(request)
    return request.headers["Authorization"]


def api_recording(events: list[tuple[str, str]], answer: Callable[[httpx.Request], httpx.Response]
                  ) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        events.append(("used", request.headers.get("Authorization", "").removeprefix("Bearer ")))
        return answer(request)

    return handler


def test_basic_auth_header_and_repr_hide_the_password() -> None:
    auth = BasicAuth("WSUSER", "s3cret-basic-pw")
    request = httpx.Request("GET", "https://x3.example.com/")
    auth.apply(request)
    assert request.headers["Authorization"] == "Basic V1NVU0VSOnMzY3JldC1iYXNpYy1wdw=="
    assert "s3cret" not in repr(auth)
    assert auth.on_unauthorized(request) is False


def test_fresh_token_is_used_without_refresh(make_auth: Callable[..., OAuth2Auth], clock: FakeClock,
                                             token_server: TokenServer) -> None:
    auth = make_auth()
    clock.advance(269)  # 31 s before expiry, outside the 30 s skew
    assert bearer_of(auth) == "Bearer access-0"
    assert token_server.issued == 0


def test_refreshes_before_a_call_within_the_skew(make_auth: Callable[..., OAuth2Auth], clock: FakeClock,
                                                 token_server: TokenServer) -> None:
    auth = make_auth()
    clock.advance(271)  # 29 s before expiry
    assert bearer_of(auth) == "Bearer access-1"
    assert token_server.issued == 1
    assert auth.refresh_count == 1
    stored = auth.store.load()
    assert stored is not None
    assert stored.refresh_token.get_secret_value() == "refresh-1"
    assert stored.access_expires_at == clock.now + timedelta(seconds=300)
    assert bearer_of(auth) == "Bearer access-1"  # and not again
    assert token_server.issued == 1


def test_skew_is_capped_for_very_short_lived_tokens(make_auth: Callable[..., OAuth2Auth], clock: FakeClock,
                                                    token_server: TokenServer) -> None:
    auth = make_auth(initial_tokens(lifetime_s=2))
    clock.advance(0.9)
    assert bearer_of(auth) == "Bearer access-0"  # a 30 s skew would refresh on every call
    clock.advance(0.2)
    assert bearer_of(auth) == "Bearer access-1"


def test_rotation_is_persisted_before_the_new_token_is_used(
        make_auth: Callable[..., OAuth2Auth], clock: FakeClock, events: list[tuple[str, str]],
        client_factory: Callable[..., X3Client]) -> None:
    auth = make_auth()
    client = client_factory(api_recording(events, lambda r: feed([])), auth=auth)
    clock.advance(290)
    assert list(client.query("BPCUSTOMER", "BPCUSTOMER")) == []
    assert events == [("issued", "access-1"), ("saved", "access-1"), ("used", "access-1")]
    assert client.metrics.token_refreshes == 1


def test_failed_persist_means_the_new_token_is_never_used(
        make_auth: Callable[..., OAuth2Auth], clock: FakeClock, events: list[tuple[str, str]],
        client_factory: Callable[..., X3Client]) -> None:
    auth = make_auth(fail_store=True)
    client = client_factory(api_recording(events, lambda r: feed([])), auth=auth)
    clock.advance(290)
    with pytest.raises(OSError, match="disk full"):
        list(client.query("BPCUSTOMER", "BPCUSTOMER"))
    assert events == [("issued", "access-1")]  # never sent to X3


def test_one_refresh_and_one_retry_after_401(make_auth: Callable[..., OAuth2Auth], events: list[tuple[str, str]],
                                             client_factory: Callable[..., X3Client], sleeps: list[float]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer access-0":
            return httpx.Response(401, headers={"WWW-Authenticate": "Bearer"})
        return feed([{"BPCNUM": "FR0001"}])

    auth = make_auth()
    client = client_factory(api_recording(events, answer), auth=auth)
    assert [r["BPCNUM"] for r in client.query("BPCUSTOMER", "BPCUSTOMER")] == ["FR0001"]
    assert events == [("used", "access-0"), ("issued", "access-1"), ("saved", "access-1"), ("used", "access-1")]
    assert client.metrics.unauthorized_retries == 1
    assert sleeps == []


def test_a_second_401_is_an_authentication_error(make_auth: Callable[..., OAuth2Auth],
                                                  events: list[tuple[str, str]],
                                                  client_factory: Callable[..., X3Client]) -> None:
    auth = make_auth()
    client = client_factory(api_recording(events, lambda r: httpx.Response(401)), auth=auth)
    with pytest.raises(X3AuthenticationError, match="401"):
        list(client.query("BPCUSTOMER", "BPCUSTOMER"))
    assert [e for e in events if e[0] == "used"] == [("used", "access-0"), ("used", "access-1")]


def test_basic_auth_401_is_not_retried(client_factory: Callable[..., X3Client]) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="Syracuse"'})

    client = client_factory(handler)
    with pytest.raises(X3AuthenticationError) as caught:
        client.details("BPCUSTOMER", "BPCUSTOMER", "FR0001")
    assert len(calls) == 1
    assert "s3cret-basic-pw" not in str(caught.value)


def test_concurrent_401s_share_one_refresh(make_auth: Callable[..., OAuth2Auth], token_server: TokenServer) -> None:
    auth = make_auth()
    stale = [httpx.Request("GET", "https://x3.example.com:8124/a") for _ in range(3)]
    for request in stale:
        auth.apply(request)
    assert all(auth.on_unauthorized(request) for request in stale)
    # The first 401 refreshed; the others saw a newer token and did not burn the rotated refresh token.
    assert token_server.issued == 1
    assert bearer_of(auth) == "Bearer access-1"


def test_refused_refresh_says_how_to_re_pair_and_leaks_nothing(
        make_auth: Callable[..., OAuth2Auth], clock: FakeClock, token_server: TokenServer) -> None:
    token_server.fail_with = json_response(
        {"error": "invalid_grant", "error_description": f"refresh token refresh-0 / {CLIENT_SECRET} unknown"}, 400)
    auth = make_auth(repair_hint="run `x3sd x3 pair` to re-pair")
    clock.advance(299)
    with pytest.raises(X3ReauthorizationRequired) as caught:
        bearer_of(auth)
    text = str(caught.value) + repr(caught.value) + repr(auth)
    assert "x3sd x3 pair" in text
    assert "invalid_grant" in text
    for secret in ("refresh-0", "access-0", CLIENT_SECRET):
        assert secret not in text


def test_nothing_stored_names_the_pairing_call(make_auth: Callable[..., OAuth2Auth]) -> None:
    with pytest.raises(X3ReauthorizationRequired, match="exchange_code"):
        bearer_of(make_auth(empty=True))


def test_expired_refresh_token_fails_without_calling_x3(make_auth: Callable[..., OAuth2Auth], clock: FakeClock,
                                                         token_server: TokenServer) -> None:
    auth = make_auth(initial_tokens(refresh_lifetime=timedelta(days=1)))
    clock.advance(2 * 86_400)
    with pytest.raises(X3ReauthorizationRequired, match="expired"):
        bearer_of(auth)
    assert token_server.issued == 0


def test_refresh_token_expiry_warning(make_auth: Callable[..., OAuth2Auth], clock: FakeClock) -> None:
    auth = make_auth()
    assert auth.refresh_token_expires_soon() is False
    clock.advance(23 * 86_400 + 1)  # 30-day token, less than 7 days left
    assert auth.refresh_token_expires_soon() is True
    assert auth.refresh_token_expires_soon(within=timedelta(days=3)) is False
    assert auth.refresh_token_expires_at == T0 + timedelta(days=30)
    assert make_auth(initial_tokens(refresh_lifetime=None)).refresh_token_expires_soon() is False


def test_exchange_code_pairs_and_persists(make_auth: Callable[..., OAuth2Auth], events: list[tuple[str, str]]
                                          ) -> None:
    auth = make_auth(empty=True)
    auth.exchange_code("pairing-code-1")
    assert events == [("issued", "access-1"), ("saved", "access-1")]
    assert bearer_of(auth) == "Bearer access-1"
    with pytest.raises(X3ReauthorizationRequired) as caught:
        auth.exchange_code("pairing-code-1")  # single use
    assert "pairing-code-1" not in str(caught.value)


def test_token_endpoint_outage_is_retried_by_the_client(
        make_auth: Callable[..., OAuth2Auth], clock: FakeClock, token_server: TokenServer,
        client_factory: Callable[..., X3Client], sleeps: list[float]) -> None:
    token_server.fail_with, token_server.failures_left = httpx.Response(503), 1
    api_calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        api_calls.append(request)
        return feed([])

    client = client_factory(api, auth=make_auth())
    clock.advance(299)
    assert list(client.query("BPCUSTOMER", "BPCUSTOMER")) == []
    # The X3 call waited for the token endpoint: one backoff, then one refresh and one api1 call.
    assert len(sleeps) == 1
    assert token_server.issued == 1
    assert len(api_calls) == 1


# -------------------------------------------------------------------------------------------- token stores
@pytest.fixture
def key_env() -> dict[str, str]:
    return {"X3SD_X3_TOKEN_KEY": Fernet.generate_key().decode()}


def test_encrypted_store_round_trip_private_and_encrypted(tmp_path: Path, key_env: dict[str, str]) -> None:
    path = tmp_path / "state" / "x3-tokens.enc"
    store = EncryptedFileTokenStore(path, environ=key_env)
    assert store.load() is None
    store.save(initial_tokens())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert b"refresh-0" not in raw
    assert b"access-0" not in raw
    loaded = store.load()
    assert loaded == initial_tokens()
    assert [p.name for p in path.parent.iterdir()] == ["x3-tokens.enc"]  # no temp file left behind
    assert key_env["X3SD_X3_TOKEN_KEY"] not in repr(store)


def test_missing_key_is_a_clear_error_and_nothing_is_lost(tmp_path: Path, key_env: dict[str, str]) -> None:
    path = tmp_path / "x3-tokens.enc"
    EncryptedFileTokenStore(path, environ=key_env).save(initial_tokens())
    before = path.read_bytes()
    keyless = EncryptedFileTokenStore(path, environ={})
    with pytest.raises(TokenStoreError, match="X3SD_X3_TOKEN_KEY is not set"):
        keyless.load()
    with pytest.raises(TokenStoreError, match="X3SD_X3_TOKEN_KEY"):
        keyless.save(initial_tokens(lifetime_s=5))
    assert path.read_bytes() == before


@pytest.mark.parametrize("bad_key", ["not-a-fernet-key", Fernet.generate_key().decode()])
def test_wrong_key_is_a_clear_error_and_the_file_is_untouched(tmp_path: Path, key_env: dict[str, str],
                                                              bad_key: str) -> None:
    path = tmp_path / "x3-tokens.enc"
    EncryptedFileTokenStore(path, environ=key_env).save(initial_tokens())
    before = path.read_bytes()
    with pytest.raises(TokenStoreError) as caught:
        EncryptedFileTokenStore(path, environ={"X3SD_X3_TOKEN_KEY": bad_key}).load()
    assert "X3SD_X3_TOKEN_KEY" in str(caught.value)
    assert bad_key not in str(caught.value)
    assert path.read_bytes() == before
    assert EncryptedFileTokenStore(path, environ=key_env).load() == initial_tokens()


def test_failed_write_keeps_the_previous_file(tmp_path: Path, key_env: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x3-tokens.enc"
    store = EncryptedFileTokenStore(path, environ=key_env)
    store.save(initial_tokens())

    def crash(src: str, dst: str) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        store.save(initial_tokens(lifetime_s=5))
    monkeypatch.undo()
    assert store.load() == initial_tokens()
    assert [p.name for p in tmp_path.iterdir()] == ["x3-tokens.enc"]


def test_oauth_refuses_plain_http_token_url_to_remote_host() -> None:
    from x3_shopify_dagster.x3 import X3ConfigError

    with pytest.raises(X3ConfigError, match="https"):
        OAuth2Auth("http://x3.example.com/auth/oauth2/token", "c", "s", MemoryTokenStore())


def test_client_repr_hides_credentials() -> None:
    client = X3Client(make_config(), BasicAuth("WSUSER", "s3cret-basic-pw"))
    try:
        assert "s3cret" not in repr(client)
    finally:
        client.close()


def test_no_secret_reaches_the_logs(make_auth: Callable[..., OAuth2Auth], clock: FakeClock,
                                    events: list[tuple[str, str]], client_factory: Callable[..., X3Client],
                                    caplog: pytest.LogCaptureFixture) -> None:
    answers = iter([httpx.Response(503, text="busy"), httpx.Response(401), feed([])])
    client = client_factory(api_recording(events, lambda r: next(answers)), auth=make_auth())
    clock.advance(299)
    with caplog.at_level("DEBUG"):
        assert list(client.query("BPCUSTOMER", "BPCUSTOMER")) == []
    assert "retrying" in caplog.text
    assert "refreshed" in caplog.text
    for secret in (CLIENT_SECRET, "access-0", "access-1", "access-2", "refresh-0", "refresh-1", "refresh-2"):
        assert secret not in caplog.text
