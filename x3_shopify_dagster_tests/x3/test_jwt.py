"""Connected-application JWT auth (X3SD_X3__AUTH_MODE=jwt): our tokens, and the sandbox verifying them over HTTP.

The sandbox checks signature, known client (iss) and user (sub), exp, the application's tokens validity, and an
iat in its future beyond a small tolerance (X3's error 21). Our default clock-skew allowance avoids the last one
when the X3 server's clock is a little behind ours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from x3_shopify_dagster.sandboxes.x3 import ManualClock, X3Sandbox, X3SandboxConfig
from x3_shopify_dagster.x3 import JwtAuth, RetryPolicy, X3AuthenticationError, X3Client
from x3_shopify_dagster.x3.auth import encode_hs256
from x3_shopify_dagster_tests.x3._support import sandbox_config

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def decode(token: str) -> tuple[dict, dict, bytes]:
    def part(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    header, payload, signature = token.split(".")
    return json.loads(part(header)), json.loads(part(payload)), part(signature)


# ------------------------------------------------------------------------------------------------ unit
def test_claims_signature_and_skew() -> None:
    auth = JwtAuth("my-app", "app-secret-123", "WSCONNECT", audience="", lifetime_s=300, clock_skew_s=30,
                   now=lambda: NOW)
    header, claims, signature = decode(auth.mint())
    assert header == {"alg": "HS256", "typ": "JWT"}
    iat = int((NOW - timedelta(seconds=30)).timestamp())
    assert claims == {"iss": "my-app", "sub": "WSCONNECT", "aud": "", "iat": iat, "exp": iat + 300}
    token = auth.mint()
    signing_input = token.rsplit(".", 1)[0].encode()
    assert hmac.compare_digest(signature, hmac.new(b"app-secret-123", signing_input, hashlib.sha256).digest())


def test_a_token_is_reused_until_close_to_expiry_then_reminted() -> None:
    now = [NOW]
    auth = JwtAuth("my-app", "app-secret-123", "WSCONNECT", lifetime_s=300, clock_skew_s=30,
                   remint_margin_s=60, now=lambda: now[0])
    headers = []
    for advance in (0, 100, 100, 20):  # exp is NOW + 270 s; re-mint from NOW + 210 s
        now[0] += timedelta(seconds=advance)
        request = httpx.Request("GET", "https://x3.example.com/api1")
        auth.apply(request)
        headers.append(request.headers["Authorization"])
    assert headers[0] == headers[1] == headers[2]  # t = 0, 100, 200
    assert headers[3] != headers[2]  # t = 220: within the margin
    assert auth.minted == 2


def test_a_lifetime_not_above_the_skew_is_refused() -> None:
    with pytest.raises(ValueError, match="must exceed"):
        JwtAuth("my-app", "s3cret", "WS", lifetime_s=30, clock_skew_s=30)


# ------------------------------------------------------------------------------------------------ sandbox
@pytest.fixture(scope="module")
def _jwt_sandbox() -> Iterator[X3Sandbox]:
    sandbox = X3Sandbox(X3SandboxConfig(clock=ManualClock(NOW), jwt_iat_tolerance_s=5,
                                        jwt_max_validity_s=600)).start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def jwt_sandbox(_jwt_sandbox: X3Sandbox) -> X3Sandbox:
    clock = _jwt_sandbox.config.clock
    assert isinstance(clock, ManualClock)
    clock.set(NOW)
    return _jwt_sandbox


@pytest.fixture
def jwt_client(jwt_sandbox: X3Sandbox) -> Iterator[Callable[..., X3Client]]:
    created: list[X3Client] = []

    def make(*, secret: str | None = None, our_clock_ahead_s: float = 0.0,
             now: Callable[[], datetime] | None = None, **kwargs: object) -> X3Client:
        client_id, client_secret = jwt_sandbox.oauth_client
        auth = JwtAuth(client_id, secret or client_secret, jwt_sandbox.config.user,  # type: ignore[arg-type]
                       now=now or (lambda: NOW + timedelta(seconds=our_clock_ahead_s)), **kwargs)
        client = X3Client(sandbox_config(jwt_sandbox, retry=RetryPolicy(max_attempts=1)), auth)
        created.append(client)
        return client

    yield make
    for client in created:
        client.close()


def soap_read(client: X3Client) -> object:
    return client.read(client.config.publications.sales_invoice, {"NUM": "NO-SUCH-INVOICE"})


def test_a_good_jwt_is_accepted_on_api1_and_soap(jwt_sandbox: X3Sandbox, jwt_client) -> None:
    client = jwt_client()
    assert client.details("BPCUSTOMER", "BPCUSTOMER", "FR0001") is not None
    soap_read(client)  # no exception: authenticated (the record simply does not exist)
    assert jwt_sandbox.count_calls("api1", status=401) == 0
    assert jwt_sandbox.count_calls("soap", "unauthenticated") == 0


def test_a_bad_signature_is_refused(jwt_client) -> None:
    client = jwt_client(secret="not-the-client-secret")
    with pytest.raises(X3AuthenticationError, match="HTTP 401"):
        client.details("BPCUSTOMER", "BPCUSTOMER", "FR0001")
    with pytest.raises(X3AuthenticationError):
        soap_read(client)


def raw_get(sandbox: X3Sandbox, token: str) -> httpx.Response:
    return httpx.get(f"{sandbox.api1_url}/BPCUSTOMER('FR0001')", params={"representation": "BPCUSTOMER.$details"},
                     headers={"Authorization": f"Bearer {token}"})


def claims(sandbox: X3Sandbox, **overrides: object) -> dict[str, object]:
    iat = int(NOW.timestamp()) - 30
    return {"iss": sandbox.oauth_client[0], "sub": sandbox.config.user, "aud": "", "iat": iat, "exp": iat + 300,
            **overrides}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"exp": int(NOW.timestamp()) - 1}, "Token expired"),
    ({"iat": int(NOW.timestamp()) + 60, "exp": int(NOW.timestamp()) + 360}, "Error 21"),
    ({"iss": "someone-else"}, "Unknown connected application"),
    ({"sub": "ADMIN"}, "user not allowed"),
    ({"exp": int(NOW.timestamp()) + 3600}, "tokens validity"),
])
def test_the_sandbox_refuses_broken_tokens(jwt_sandbox: X3Sandbox, overrides: dict, message: str) -> None:
    good = encode_hs256(claims(jwt_sandbox), jwt_sandbox.oauth_client[1])
    assert raw_get(jwt_sandbox, good).status_code == 200  # control: the same recipe, unbroken, passes
    bad = encode_hs256(claims(jwt_sandbox, **overrides), jwt_sandbox.oauth_client[1])
    response = raw_get(jwt_sandbox, bad)
    assert response.status_code == 401
    assert message in response.text


def test_alg_none_is_refused(jwt_sandbox: X3Sandbox) -> None:
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(jwt_sandbox))}."
    assert raw_get(jwt_sandbox, unsigned).status_code == 401


def test_a_token_expired_at_the_server_is_reminted_after_the_401(jwt_sandbox: X3Sandbox, jwt_client) -> None:
    ours = ManualClock(NOW)
    client = jwt_client(lifetime_s=120, clock_skew_s=30, now=ours)  # exp = NOW + 90 s, re-mint from NOW + 67.5 s
    assert client.details("BPCUSTOMER", "BPCUSTOMER", "FR0001") is not None
    server = jwt_sandbox.config.clock
    assert isinstance(server, ManualClock)
    server.advance(100)  # X3 is past exp...
    ours.advance(50)  # ...while our token still looks fresh to us: one 401, one new token, one retry
    assert client.details("BPCUSTOMER", "BPCUSTOMER", "FR0002") is not None
    assert client.metrics.unauthorized_retries == 1


def test_the_default_skew_tolerates_a_server_clock_behind_ours(jwt_client) -> None:
    """Our clock 20 s ahead of X3's: iat = our now - 30 s is still in X3's past. Without the allowance the
    token's iat is 20 s in X3's future (beyond its 5 s tolerance) and X3 answers error 21."""
    assert jwt_client(our_clock_ahead_s=20).details("BPCUSTOMER", "BPCUSTOMER", "FR0001") is not None
    with pytest.raises(X3AuthenticationError):
        jwt_client(our_clock_ahead_s=20, clock_skew_s=0).details("BPCUSTOMER", "BPCUSTOMER", "FR0001")
