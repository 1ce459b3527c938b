"""OAuth2 pairing (`x3sd x3 connect`) end to end over HTTP: a scripted browser opens the authorise URL, the X3
sandbox auto-approves and redirects to our one-shot loopback callback, the code is exchanged and the token pair
lands in the TokenStore. Then the pair refreshes with rotation, and a deleted pairing names `x3sd x3 connect`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from x3_shopify_dagster.cli import main
from x3_shopify_dagster.sandboxes.x3 import X3Sandbox
from x3_shopify_dagster.x3 import (
    EncryptedFileTokenStore,
    MemoryTokenStore,
    OAuth2Auth,
    X3Client,
    X3ReauthorizationRequired,
)
from x3_shopify_dagster.x3.pairing import PairingError, pair
from x3_shopify_dagster_tests.x3._support import sandbox_config

LOOPBACK_CALLBACK = "http://127.0.0.1:0/x3sd/callback"  # port 0: any free port


class ScriptedBrowser:
    """Follows the authorise URL and its redirect like a browser would (the X3 user approves at once)."""

    def __init__(self) -> None:
        self.visited: list[str] = []
        self.final: httpx.Response | None = None

    def __call__(self, url: str) -> None:
        self.visited.append(url)
        self.final = httpx.get(url, follow_redirects=True, timeout=10)


@pytest.fixture
def oauth_auth(fresh_x3_sandbox: X3Sandbox) -> Iterator[OAuth2Auth]:
    client_id, secret = fresh_x3_sandbox.oauth_client
    auth = OAuth2Auth.for_config(sandbox_config(fresh_x3_sandbox), client_id, secret, MemoryTokenStore())
    yield auth
    auth.close()


def test_pairing_end_to_end_stores_a_working_token_pair(fresh_x3_sandbox: X3Sandbox, oauth_auth: OAuth2Auth) -> None:
    browser = ScriptedBrowser()
    result = pair(oauth_auth, authorise_endpoint=fresh_x3_sandbox.authorise_url, redirect_uri=LOOPBACK_CALLBACK,
                  scope="api.dataDelivery", open_browser=browser, timeout_s=10)

    (url,) = browser.visited
    query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
    assert query["client_id"] == fresh_x3_sandbox.oauth_client[0]
    assert query["redirect_uri"] == result.redirect_uri
    assert query["scope"] == "api.dataDelivery"
    assert len(query["state"]) >= 20
    assert browser.final is not None
    assert browser.final.status_code == 200  # our callback page
    assert "return to the terminal" in browser.final.text
    tokens = oauth_auth.store.load()
    assert tokens is not None
    assert result.refresh_expires_at is not None  # 30 days, from the sandbox's refresh_expires_in
    assert fresh_x3_sandbox.count_calls("oauth", "authorise", 302) == 1
    assert fresh_x3_sandbox.count_calls("oauth", "token/authorization_code", 200) == 1

    with X3Client(sandbox_config(fresh_x3_sandbox), oauth_auth) as x3:
        assert x3.details("BPCUSTOMER", "BPCUSTOMER", "FR0001") is not None
        fresh_x3_sandbox.expire_access_tokens()  # 5 minutes later
        assert x3.details("BPCUSTOMER", "BPCUSTOMER", "FR0002") is not None
    rotated = oauth_auth.store.load()
    assert rotated is not None
    assert rotated.refresh_token.get_secret_value() != tokens.refresh_token.get_secret_value()  # rotation


def test_a_deleted_pairing_asks_for_x3sd_x3_connect(fresh_x3_sandbox: X3Sandbox, oauth_auth: OAuth2Auth) -> None:
    pair(oauth_auth, authorise_endpoint=fresh_x3_sandbox.authorise_url, redirect_uri=LOOPBACK_CALLBACK,
         open_browser=ScriptedBrowser(), timeout_s=10)
    fresh_x3_sandbox.revoke_refresh_tokens()
    fresh_x3_sandbox.expire_access_tokens()
    with X3Client(sandbox_config(fresh_x3_sandbox), oauth_auth) as x3, \
            pytest.raises(X3ReauthorizationRequired, match="x3sd x3 connect"):
        x3.details("BPCUSTOMER", "BPCUSTOMER", "FR0001")


def test_a_callback_with_another_state_is_refused(fresh_x3_sandbox: X3Sandbox, oauth_auth: OAuth2Auth) -> None:
    def forging_browser(url: str) -> None:
        # An attacker's link: same callback, a code of their own, a state we never issued.
        parts = urlsplit(url)
        callback = parse_qs(parts.query)["redirect_uri"][0]
        httpx.get(f"{callback}?authorizationCode=forged-code&state=not-ours", timeout=10)

    with pytest.raises(PairingError, match="state does not match"):
        pair(oauth_auth, authorise_endpoint=fresh_x3_sandbox.authorise_url, redirect_uri=LOOPBACK_CALLBACK,
             open_browser=forging_browser, timeout_s=10)
    assert oauth_auth.store.load() is None
    assert fresh_x3_sandbox.count_calls("oauth", "token/") == 0  # nothing was exchanged


def test_no_approval_times_out_with_the_address_to_register(fresh_x3_sandbox: X3Sandbox,
                                                            oauth_auth: OAuth2Auth) -> None:
    with pytest.raises(PairingError, match=r"no answer from Sage X3 on http://127\.0\.0\.1:\d+/x3sd/callback"):
        pair(oauth_auth, authorise_endpoint=fresh_x3_sandbox.authorise_url, redirect_uri=LOOPBACK_CALLBACK,
             open_browser=lambda url: None, timeout_s=0.3)


def test_a_busy_callback_port_is_a_clear_error(oauth_auth: OAuth2Auth) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PairingError, match="X3SD_X3__REDIRECT_URI to another loopback port"):
            pair(oauth_auth, authorise_endpoint="http://127.0.0.1:9/auth", redirect_uri=f"http://127.0.0.1:{port}/cb",
                 open_browser=lambda url: None, timeout_s=1)


def test_the_sandbox_authorise_endpoint_refuses_an_unknown_client(fresh_x3_sandbox: X3Sandbox) -> None:
    response = httpx.get(fresh_x3_sandbox.authorise_url, params={
        "client_id": "nobody", "redirect_uri": "http://127.0.0.1:9/cb", "state": "s"})
    assert response.status_code == 400
    assert "Unknown client_id" in response.text


def test_a_code_exchanged_with_another_redirect_uri_is_refused(fresh_x3_sandbox: X3Sandbox) -> None:
    code = fresh_x3_sandbox._auth.issue_authorization_code("http://127.0.0.1:1111/cb")
    client_id, secret = fresh_x3_sandbox.oauth_client
    form = {"grant_type": "authorization_code", "code": code, "client_id": client_id, "client_secret": secret,
            "redirect_uri": "http://127.0.0.1:2222/cb"}
    response = httpx.post(fresh_x3_sandbox.token_url, data=form)
    assert response.status_code == 400
    assert "redirect_uri" in response.json()["error_description"]


def test_the_cli_pairs_and_stores_encrypted_tokens(fresh_x3_sandbox: X3Sandbox, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("X3SD_"):
            monkeypatch.delenv(name)
    client_id, secret = fresh_x3_sandbox.oauth_client
    key = EncryptedFileTokenStore.generate_key()
    env = {
        "X3SD_STORES__EU__SHOP_URL": "http://127.0.0.1:9/eu", "X3SD_STORES__EU__ACCESS_TOKEN": "shpat_unused_here",
        "X3SD_X3__SERVER_URL": fresh_x3_sandbox.base_url, "X3SD_X3__FOLDER": fresh_x3_sandbox.folder,
        "X3SD_X3__AUTH_MODE": "oauth2", "X3SD_X3__CLIENT_ID": client_id, "X3SD_X3__CLIENT_SECRET": secret,
        "X3SD_X3__REDIRECT_URI": LOOPBACK_CALLBACK, "X3SD_X3__TOKEN_STORE_PATH": str(tmp_path / "tokens.enc"),
        "X3SD_X3_TOKEN_KEY": key,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    browser = ScriptedBrowser()
    monkeypatch.setattr("webbrowser.open", browser)

    assert main(["x3", "connect", "--timeout", "10"]) == 0
    out = capsys.readouterr().out
    assert "Paired with Sage X3" in out
    assert fresh_x3_sandbox.authorise_url in out  # the address is printed for a headless machine
    assert secret not in out
    stored = EncryptedFileTokenStore(tmp_path / "tokens.enc").load()
    assert stored is not None
    assert stored.refresh_token.get_secret_value() not in (tmp_path / "tokens.enc").read_text()

    monkeypatch.setenv("X3SD_X3__AUTH_MODE", "basic")
    monkeypatch.setenv("X3SD_X3__USER", "WS")
    monkeypatch.setenv("X3SD_X3__PASSWORD", "unused-password")
    assert main(["x3", "connect"]) == 2
    assert "X3SD_X3__AUTH_MODE=oauth2" in capsys.readouterr().err
