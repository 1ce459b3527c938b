"""Leak test (issue 5): a full sandbox sync through Dagster — pairing with X3 over OAuth2, X3 snapshots, Shopify
orders pulled with the stores' tokens, posted as X3 invoices with an access token refreshed (and the refresh
token rotated) mid-run — and not one secret in anything it leaves behind: pytest's captured log records, the
process's stdout/stderr, and Dagster's event log (every entry serialised whole: messages, materialization and
check metadata, failures) plus each run's config and tags.

flows.md: secrets never in logs, metadata, exceptions or run config. The negative control shows the same search
finds a secret deliberately logged through Dagster with the redaction layer switched off.
"""

from __future__ import annotations

import base64
import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import httpx
import pytest
from dagster_shared.serdes import serialize_value

from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.defs.partitions import partition_key
from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.domain.windows import business_day
from x3_shopify_dagster.settings import X3Settings
from x3_shopify_dagster.x3 import EncryptedFileTokenStore, StoredTokens, TokenStore
from x3_shopify_dagster.x3.pairing import pair
from x3_shopify_dagster_tests.defs.conftest import make_settings

TZ = "Europe/Paris"
DEMO_MAPPING = Path(__file__).resolve().parents[2] / "x3_shopify_dagster" / "demo_mapping.yaml"


class RecordingStore:
    """The runtime's token store, remembering every token pair it saw (they are secrets the test hunts for)."""

    def __init__(self, inner: TokenStore, seen: list[StoredTokens]) -> None:
        self.inner, self.seen = inner, seen

    def load(self) -> StoredTokens | None:
        tokens = self.inner.load()
        if tokens is not None:
            self.seen.append(tokens)
        return tokens

    def save(self, tokens: StoredTokens) -> None:
        self.seen.append(tokens)
        self.inner.save(tokens)


class LeakRuntime(ConnectorRuntime):
    seen_tokens: list[StoredTokens]

    def x3_token_store(self) -> TokenStore:
        return RecordingStore(super().x3_token_store(), self.seen_tokens)


def basic_forms(user: str, secret: str) -> list[str]:
    raw = f"{user}:{secret}".encode()
    return [base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]


def leaks(haystacks: dict[str, str], secrets: list[str]) -> list[tuple[str, str]]:
    return [(where, secret[:6] + "…") for where, text in haystacks.items() for secret in secrets if secret in text]


def dagster_haystacks(instance: dg.DagsterInstance) -> dict[str, str]:
    found: dict[str, str] = {}
    for run in instance.get_runs():
        entries = instance.all_logs(run.run_id)
        found[f"event log {run.job_name} {run.run_id[:8]}"] = "\n".join(serialize_value(entry) for entry in entries)
        found[f"run config {run.run_id[:8]}"] = serialize_value(run.run_config) + serialize_value(dict(run.tags))
    return found


@contextmanager
def redaction_switched_off() -> Iterator[None]:
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)


@pytest.fixture
def oauth_runtime(fresh_shopify_sandbox, fresh_x3_sandbox, sqlite_database_url, sqlite_db, clock, tmp_path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[LeakRuntime]:
    for store in ("eu", "us"):
        fresh_shopify_sandbox.set_rate_limit(store, bucket_size=20_000.0, restore_rate=1_000.0)
    monkeypatch.setenv(EncryptedFileTokenStore.DEFAULT_KEY_ENV, EncryptedFileTokenStore.generate_key())
    client_id, client_secret = fresh_x3_sandbox.oauth_client
    x3 = X3Settings(server_url=fresh_x3_sandbox.base_url, folder=fresh_x3_sandbox.folder, auth_mode="oauth2",
                    client_id=client_id, client_secret=client_secret, token_store_path=str(tmp_path / "x3.enc"),
                    redirect_uri="http://127.0.0.1:0/x3sd/callback")
    settings = make_settings(fresh_shopify_sandbox, sqlite_database_url, x3=x3, mapping_path=str(DEMO_MAPPING))
    runtime = LeakRuntime(settings, clock=clock)
    runtime.seen_tokens = []
    yield runtime
    runtime.close()


def test_a_full_sync_leaks_no_secret(oauth_runtime: LeakRuntime, fresh_shopify_sandbox, fresh_x3_sandbox,
                                     caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    runtime = oauth_runtime
    caplog.set_level(logging.DEBUG)
    codes: list[str] = []

    def browser(url: str) -> None:  # the X3 user approves; remember the code the callback carried
        response = httpx.get(url, follow_redirects=True, timeout=10)
        codes.extend(r.headers["location"].split("authorizationCode=")[1].split("&")[0] for r in response.history)

    auth = runtime.x3_oauth2()
    pair(auth, authorise_endpoint=fresh_x3_sandbox.authorise_url, redirect_uri=runtime.settings.x3.redirect_uri,
         open_browser=browser, timeout_s=10)
    auth.close()

    days = Counter(business_day(o.updated_at, TZ) for o in fresh_shopify_sandbox.state.orders("eu"))
    day = days.most_common(1)[0][0]
    defs = build_definitions(runtime.settings, runtime=runtime)
    with dg.instance_for_test() as instance:
        snapshots = [defs.resolve_assets_def(name) for name in ("x3_customers", "x3_gl_accounts")]
        assert dg.materialize(snapshots, instance=instance).success
        fresh_x3_sandbox.expire_access_tokens()  # the next X3 call refreshes: a new pair, the old refresh token dies
        posting = [defs.resolve_assets_def(name) for name in ("shopify_orders", "x3_sales_invoices")]
        result = dg.materialize(posting, instance=instance, partition_key=partition_key(day, "eu"))
        assert result.success
        metadata = result.asset_materializations_for_node("x3_sales_invoices")[0].metadata
        assert metadata["orders_posted"].value > 0  # a real sync happened
        haystacks = dagster_haystacks(instance)

    # The run really exercised every secret: tokens were refreshed and rotated, both stores were called.
    assert fresh_x3_sandbox.count_calls("oauth", "token/refresh_token", 200) >= 1
    assert len({t.refresh_token.get_secret_value() for t in runtime.seen_tokens}) >= 2
    assert codes

    settings = runtime.settings
    secrets = [store.access_token.get_secret_value() for store in settings.stores.values()]
    client_id, client_secret = fresh_x3_sandbox.oauth_client
    user, password = fresh_x3_sandbox.basic_credentials
    secrets += [client_secret, password, *basic_forms(user, password), *basic_forms(client_id, client_secret)]
    secrets += [token.get_secret_value() for pair_ in runtime.seen_tokens
                for token in (pair_.access_token, pair_.refresh_token)]
    secrets += [*codes, os.environ[EncryptedFileTokenStore.DEFAULT_KEY_ENV]]  # pairing codes, the token-file key
    assert all(len(secret) >= 8 for secret in secrets)

    out, err = capfd.readouterr()
    haystacks |= {"caplog": caplog.text + "\n".join(r.getMessage() for r in caplog.records),
                  "stdout": out, "stderr": err}
    assert sum(len(text) for text in haystacks.values()) > 10_000  # the search had material to look at
    assert leaks(haystacks, secrets) == []


def test_negative_control_the_search_finds_a_secret_logged_without_redaction(oauth_runtime: LeakRuntime) -> None:
    secret = oauth_runtime.settings.stores["eu"].access_token.get_secret_value()

    @dg.asset(name="careless_asset")
    def careless_asset(context) -> None:  # unannotated: this module uses postponed annotations
        context.log.info("about to call Shopify with token %s", secret)

    with dg.instance_for_test() as instance:
        with redaction_switched_off():
            assert dg.materialize([careless_asset], instance=instance).success
        assert leaks(dagster_haystacks(instance), [secret]) != []  # found: the search works

    with dg.instance_for_test() as instance:  # the same asset with the redaction layer on: nothing found
        assert dg.materialize([careless_asset], instance=instance).success
        haystacks = dagster_haystacks(instance)
        assert leaks(haystacks, [secret]) == []
        assert "about to call Shopify with token **********" in "".join(haystacks.values())
