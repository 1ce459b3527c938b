"""Authentication of the X3 sandbox: Basic, and OAuth2 code exchange, refresh rotation and expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest

from x3_shopify_dagster.sandboxes.x3 import ManualClock, X3Sandbox, X3SandboxConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from x3_shopify_dagster_tests.fixtures.x3_sandbox import X3RawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.x3_sandbox"]

QUERY = "/api1/x3/erp/SEED/BPCUSTOMER?representation=BPCUSTOMER.$query"
WSDL = "/soap-wsdl/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC?wsdl"
SOAP = "/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC"


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 27, 8, 0, tzinfo=UTC))


@pytest.fixture(scope="module")
def timed_sandbox(clock: ManualClock) -> Iterator[X3Sandbox]:
    """A sandbox on a manual clock, so that expiry needs no sleeping."""
    with X3Sandbox(X3SandboxConfig(clock=clock, access_token_ttl_s=300, refresh_token_ttl_s=3600)) as sandbox:
        yield sandbox


@pytest.fixture
def anonymous(timed_sandbox: X3Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=timed_sandbox.base_url) as client:
        yield client


def token_request(client: httpx.Client, sandbox: X3Sandbox, **form: str) -> httpx.Response:
    client_id, client_secret = sandbox.oauth_client
    return client.post("/auth/oauth2/token", data={"client_id": client_id, "client_secret": client_secret, **form})


def pair_tokens(client: httpx.Client, sandbox: X3Sandbox) -> dict[str, object]:
    response = token_request(client, sandbox, grant_type="authorization_code", code=sandbox.issue_authorization_code())
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------------------------- Basic
@pytest.mark.parametrize(("method", "path"), [("GET", QUERY), ("GET", WSDL), ("POST", SOAP), ("GET", "/nowhere")])
def test_every_route_needs_credentials(anonymous: httpx.Client, method: str, path: str) -> None:
    response = anonymous.request(method, path, content=b"<x/>" if method == "POST" else None)
    assert response.status_code == 401
    assert response.headers.get_list("WWW-Authenticate") == ['Basic realm="Syracuse"']


def test_basic_auth_accepts_only_the_configured_user(anonymous: httpx.Client, timed_sandbox: X3Sandbox) -> None:
    user, password = timed_sandbox.basic_credentials
    assert anonymous.get(QUERY, auth=(user, password)).status_code == 200
    assert anonymous.get(QUERY, auth=(user, password + "x")).status_code == 401
    assert anonymous.get(QUERY, auth=("ADMIN", password)).status_code == 401
    assert anonymous.get(QUERY, headers={"Authorization": "Basic !!!"}).status_code == 401


def test_secrets_stay_out_of_reprs(timed_sandbox: X3Sandbox) -> None:
    _, password = timed_sandbox.basic_credentials
    _, secret = timed_sandbox.oauth_client
    text = repr(timed_sandbox.config) + repr(timed_sandbox)
    assert password not in text
    assert secret not in text


# ---------------------------------------------------------------------------------------------- OAuth2
def test_code_exchange_gives_a_bearer_token_accepted_everywhere(anonymous: httpx.Client,
                                                                timed_sandbox: X3Sandbox) -> None:
    tokens = pair_tokens(anonymous, timed_sandbox)

    assert tokens["token_type"] == "Bearer"
    assert (tokens["expires_in"], tokens["refresh_expires_in"]) == (300, 3600)
    assert anonymous.get(QUERY, headers=bearer(tokens["access_token"])).status_code == 200
    assert anonymous.get(WSDL, headers=bearer(tokens["access_token"])).status_code == 200
    assert anonymous.get(QUERY, headers=bearer("forged")).status_code == 401


def test_an_authorization_code_is_single_use(anonymous: httpx.Client, timed_sandbox: X3Sandbox) -> None:
    code = timed_sandbox.issue_authorization_code()
    assert token_request(anonymous, timed_sandbox, grant_type="authorization_code", code=code).status_code == 200
    replay = token_request(anonymous, timed_sandbox, grant_type="authorization_code", code=code)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")


def test_refresh_rotates_and_the_old_refresh_token_dies(anonymous: httpx.Client, timed_sandbox: X3Sandbox) -> None:
    first = pair_tokens(anonymous, timed_sandbox)

    rotated = token_request(anonymous, timed_sandbox, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert rotated.headers["Cache-Control"] == "no-store"

    reused = token_request(anonymous, timed_sandbox, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    third = token_request(anonymous, timed_sandbox, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert third.status_code == 200


def test_token_endpoint_authenticates_the_client(anonymous: httpx.Client, timed_sandbox: X3Sandbox) -> None:
    client_id, _ = timed_sandbox.oauth_client
    wrong = anonymous.post("/auth/oauth2/token", data={
        "grant_type": "authorization_code", "code": timed_sandbox.issue_authorization_code(),
        "client_id": client_id, "client_secret": "guess"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    odd = token_request(anonymous, timed_sandbox, grant_type="password")
    assert (odd.status_code, odd.json()["error"]) == (400, "unsupported_grant_type")


def test_expired_access_tokens_get_401_even_mid_pagination(anonymous: httpx.Client, timed_sandbox: X3Sandbox,
                                                           clock: ManualClock) -> None:
    tokens = pair_tokens(anonymous, timed_sandbox)
    first_page = anonymous.get(QUERY + "&count=5", headers=bearer(tokens["access_token"]))
    assert first_page.status_code == 200

    clock.advance(301)
    next_page = anonymous.get(first_page.json()["$links"]["$next"]["$url"], headers=bearer(tokens["access_token"]))

    assert next_page.status_code == 401
    challenges = next_page.headers.get_list("WWW-Authenticate")
    assert challenges[0] == 'Basic realm="Syracuse"'
    assert 'error="invalid_token"' in challenges[1]
    assert next_page.json()["$diagnoses"][0]["$message"] == "Access token expired"
    refreshed = token_request(anonymous, timed_sandbox, grant_type="refresh_token",
                              refresh_token=tokens["refresh_token"]).json()
    assert anonymous.get(first_page.json()["$links"]["$next"]["$url"],
                         headers=bearer(refreshed["access_token"])).status_code == 200


def test_refresh_tokens_and_codes_expire(anonymous: httpx.Client, timed_sandbox: X3Sandbox,
                                         clock: ManualClock) -> None:
    tokens = pair_tokens(anonymous, timed_sandbox)
    code = timed_sandbox.issue_authorization_code()
    clock.advance(3601)
    late_refresh = token_request(anonymous, timed_sandbox, grant_type="refresh_token",
                                 refresh_token=tokens["refresh_token"])
    late_code = token_request(anonymous, timed_sandbox, grant_type="authorization_code", code=code)
    assert (late_refresh.status_code, late_code.status_code) == (400, 400)


def test_soap_accepts_a_bearer_token(x3_raw_factory: Callable[..., X3RawClient], timed_sandbox: X3Sandbox,
                                     anonymous: httpx.Client) -> None:
    tokens = pair_tokens(anonymous, timed_sandbox)
    client = x3_raw_factory(timed_sandbox, headers=bearer(tokens["access_token"]))
    assert client.soap("read", "YSIH", keys={"NUM": "NONE"}).status == 0  # authenticated; the record is missing
