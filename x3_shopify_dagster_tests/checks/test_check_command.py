"""`x3sd check` over HTTP against the sandboxes: a good set-up passes, each broken one fails with a fix."""

from __future__ import annotations

import socket
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from x3_shopify_dagster.checks import CheckResult, check_shopify_store, exit_code, render_report, run_checks
from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings, X3Settings
from x3_shopify_dagster.shopify import RetryPolicy, ShopifyClient
from x3_shopify_dagster_tests.checks.conftest import DEMO_MAPPING, sandbox_env

REPRESENTATIONS = ("customers", "customer_addresses", "gl_accounts", "dimensions", "items", "sites",
                   "sales_invoices", "deliveries", "stock_journal", "stock_by_item_site", "gl_entries")


def secrets_of(env: dict[str, str]) -> list[str]:
    return [value for name, value in env.items() if name.endswith(("ACCESS_TOKEN", "PASSWORD"))]


def assert_no_secret(run, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in run.out
        assert secret not in run.err


def test_a_working_setup_passes_every_check(shopify_sandbox, x3_sandbox, run_check) -> None:
    env = sandbox_env(shopify_sandbox, x3_sandbox)
    run = run_check(env)

    assert run.code == 0, run.out
    assert run.fixes() == []
    for store in ("shopify eu", "shopify us"):
        for name in ("connection", "API version", "rate-limit plan", "currency / timezone"):
            assert run.status(store, name) == "OK"
    assert "Standard: bucket 2000 points, restores 100/s" in run.rows("shopify eu", "rate-limit plan")[0][3]
    assert run.rows("shopify us", "currency / timezone")[0][3].startswith("USD, America/Chicago")
    publications = ("publication sales_invoice", "publication delivery")
    for name in ("connection", "authentication", "folder", *publications,
                 *(f"representation {rep}" for rep in REPRESENTATIONS)):
        assert run.status("x3", name) == "OK", name
    for name in ("file", "stores", "stock SKUs", "GL accounts", "cost centres", "sites"):
        assert run.status("mapping", name) == "OK", name
    assert "5 named" in run.rows("mapping", "GL accounts")[0][3]
    assert run.out.rstrip().endswith("all OK")
    assert_no_secret(run, *secrets_of(env))


def test_a_wrong_shopify_token_fails_that_store_and_names_its_variable(shopify_sandbox, x3_sandbox,
                                                                       run_check) -> None:
    env = sandbox_env(shopify_sandbox, x3_sandbox)
    wrong = "shpat_wrong_token_0123456789abcdef"
    run = run_check({**env, "X3SD_STORES__EU__ACCESS_TOKEN": wrong})

    assert run.code == 1
    assert run.status("shopify eu", "connection") == "FAIL"
    assert run.rows("shopify eu", "API version") == []  # nothing more to learn without a token
    assert run.status("shopify us", "connection") == "OK"
    assert run.fixes() == [
        "Fix: [shopify eu / connection] replace X3SD_STORES__EU__ACCESS_TOKEN with the app's Admin API "
        f"access token for {shopify_sandbox.shop_url('eu')}"
    ]
    assert_no_secret(run, wrong, *secrets_of(env))


def test_a_wrong_x3_password_fails_authentication(shopify_sandbox, x3_sandbox, run_check) -> None:
    env = sandbox_env(shopify_sandbox, x3_sandbox)
    wrong = "not-the-password-42"
    run = run_check({**env, "X3SD_X3__PASSWORD": wrong})

    assert run.code == 1
    assert run.status("x3", "connection") == "OK"
    assert run.status("x3", "authentication") == "FAIL"
    assert run.rows("x3", "folder") == []
    assert run.status("mapping", "X3 references") == "FAIL"  # not checked: said so, not silently skipped
    fixes = run.fixes()
    assert fixes[0].startswith("Fix: [x3 / authentication] replace X3SD_X3__PASSWORD (and check X3SD_X3__")
    assert_no_secret(run, wrong, *secrets_of(env))


def test_a_wrong_folder_fails_the_folder_check(shopify_sandbox, x3_sandbox, run_check) -> None:
    run = run_check({**sandbox_env(shopify_sandbox, x3_sandbox), "X3SD_X3__FOLDER": "NOSUCHFOLDER"})

    assert run.code == 1
    assert run.status("x3", "authentication") == "OK"
    assert run.status("x3", "folder") == "FAIL"
    assert "NOSUCHFOLDER" in run.rows("x3", "folder")[0][3]
    assert run.fixes()[0].startswith("Fix: [x3 / folder] set X3SD_X3__FOLDER to an existing X3 endpoint")


@pytest.mark.parametrize(("field", "value", "variable"), [
    ("REPRESENTATION", "ZGACCNOPE", "X3SD_X3__REPRESENTATIONS__GL_ACCOUNTS__REPRESENTATION"),
    ("CLS", "GACCNOPE", "X3SD_X3__REPRESENTATIONS__GL_ACCOUNTS__CLS"),
])
def test_an_unknown_representation_names_its_variable(shopify_sandbox, x3_sandbox, run_check, field, value,
                                                      variable) -> None:
    env = sandbox_env(shopify_sandbox, x3_sandbox)
    other = "ZGACCOUNT" if field == "CLS" else "GACCOUNT"
    other_field = "REPRESENTATION" if field == "CLS" else "CLS"
    run = run_check({**env, f"X3SD_X3__REPRESENTATIONS__GL_ACCOUNTS__{field}": value,
                     f"X3SD_X3__REPRESENTATIONS__GL_ACCOUNTS__{other_field}": other})

    assert run.code == 1
    assert run.status("x3", "representation gl_accounts") == "FAIL"
    assert run.status("x3", "representation dimensions") == "OK"
    fix = next(line for line in run.fixes() if line.startswith("Fix: [x3 / representation gl_accounts]"))
    assert f"set {variable} " in fix
    assert value in run.rows("x3", "representation gl_accounts")[0][3]


def test_an_inactive_mapped_gl_account_fails_with_the_account(shopify_sandbox, fresh_x3_sandbox,
                                                              run_check) -> None:
    fresh_x3_sandbox.state.set_account_active("CHART1", "709000", False)
    run = run_check(sandbox_env(shopify_sandbox, fresh_x3_sandbox))

    assert run.code == 1
    rows = run.rows("mapping", "GL accounts")
    assert [row[2:] for row in rows] == [["FAIL", "GL account CHART1/709000 is inactive in X3"]]
    assert run.fixes() == ["Fix: [mapping / GL accounts] activate CHART1/709000 in X3 or map another account "
                           "in the mapping (docs/mapping.md)"]


def test_an_unpublished_publication_and_a_wrong_pool_alias(shopify_sandbox, x3_sandbox, run_check) -> None:
    env = sandbox_env(shopify_sandbox, x3_sandbox)
    run = run_check({**env, "X3SD_X3__PUBLICATIONS__DELIVERY": "YNOPE"})
    assert run.code == 1
    assert run.status("x3", "publication sales_invoice") == "OK"
    assert run.status("x3", "publication delivery") == "FAIL"
    assert run.fixes() == ["Fix: [x3 / publication delivery] publish YNOPE in X3 (GESAWE) or set "
                           "X3SD_X3__PUBLICATIONS__DELIVERY to the published name"]

    run = run_check({"X3SD_X3__PUBLICATIONS__DELIVERY": None, "X3SD_X3__POOL_ALIAS": "seed"})
    assert run.status("x3", "publication delivery") == "FAIL"
    assert all("X3SD_X3__POOL_ALIAS" in fix for fix in run.fixes())
    assert len(run.fixes()) == 2


def test_mapping_problems_are_listed_with_their_yaml_paths(shopify_sandbox, x3_sandbox, run_check,
                                                           tmp_path: Path) -> None:
    text = DEMO_MAPPING.read_text(encoding="utf-8")
    broken = tmp_path / "mapping.yaml"
    broken.write_text(text.replace('goods: "706000"', 'goods: "706 000"').replace("  us:", "  usa:"),
                      encoding="utf-8")
    run = run_check({**sandbox_env(shopify_sandbox, x3_sandbox), "X3SD_MAPPING_PATH": str(broken)})

    assert run.code == 1
    rows = run.rows("mapping", "file")
    assert rows
    assert all(row[2] == "FAIL" for row in rows)
    assert any("defaults.accounts.goods" in row[3] for row in rows)
    expected_fix = "Fix: [mapping / file] mapping.yaml defaults.accounts.goods:"
    assert any(fix.startswith(expected_fix) for fix in run.fixes())

    broken.write_text(text.replace("  us:", "  usa:"), encoding="utf-8")
    run = run_check({})
    assert run.status("mapping", "file") == "OK"
    assert run.status("mapping", "stores") == "FAIL"
    assert "usa" in run.rows("mapping", "stores")[0][3]


def test_a_reduced_rate_limit_fails_and_plans_are_named(shopify_sandbox, x3_sandbox, run_check) -> None:
    shopify_sandbox.set_rate_limit("eu", bucket_size=500.0, restore_rate=25.0)
    shopify_sandbox.set_rate_limit("us", bucket_size=20_000.0, restore_rate=1_000.0)
    run = run_check(sandbox_env(shopify_sandbox, x3_sandbox))

    assert run.code == 1
    assert run.status("shopify eu", "rate-limit plan") == "FAIL"
    plus = ["OK", "Plus: bucket 20000 points, restores 1000/s"]
    assert run.rows("shopify us", "rate-limit plan")[0][2:] == plus
    assert run.fixes()[0].startswith("Fix: [shopify eu / rate-limit plan] Shopify reduced this store's limit")


def test_a_settings_error_exits_2(run_check) -> None:
    run = run_check({"X3SD_X3__FOLDER": "SEED"})
    assert run.code == 2
    assert "X3SD_STORES" in run.err


def check_settings(shopify_sandbox, x3_sandbox) -> ConnectorSettings:
    user, password = x3_sandbox.basic_credentials
    stores = {"eu": StoreSettings(shop_url=shopify_sandbox.shop_url("eu"),
                                  access_token=shopify_sandbox.access_token("eu"), api_version="2026-01")}
    x3 = X3Settings(server_url=x3_sandbox.base_url, folder=x3_sandbox.folder, user=user, password=password)
    return ConnectorSettings(_env_file=None, stores=stores, x3=x3,  # type: ignore[call-arg]
                             mapping_path=str(DEMO_MAPPING))


def test_an_api_version_past_its_support_fails_on_the_runtime_clock(shopify_sandbox, x3_sandbox) -> None:
    settings = check_settings(shopify_sandbox, x3_sandbox)
    supported = ConnectorRuntime(settings, clock=lambda: datetime(2026, 12, 31, tzinfo=UTC))
    expired = ConnectorRuntime(settings, clock=lambda: datetime(2027, 1, 1, tzinfo=UTC))

    (before,) = [r for r in run_checks(supported) if r.name == "API version"]
    (after,) = [r for r in run_checks(expired) if r.name == "API version"]

    assert before.ok
    assert "2026-01 answered, supported until about 2027-01-01" in before.detail
    assert not after.ok
    assert after.fix == "set X3SD_STORES__EU__API_VERSION to 2026-07 (the version the queries are checked on)"


def test_an_unreachable_store_fails_the_connection(shopify_sandbox) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ShopifyClient(f"http://127.0.0.1:{port}", "shpat_unused", retry=RetryPolicy(max_attempts=1))
    with client:
        (result,) = check_shopify_store("eu", client, today=date(2026, 11, 27))

    assert not result.ok
    assert result.detail.startswith("Shopify ShopInfo: ConnectError")
    assert result.fix is not None
    assert result.fix.startswith("check X3SD_STORES__EU__SHOP_URL")


def test_the_report_is_aligned_and_scrubs_echoed_secrets() -> None:
    results = [
        CheckResult("shopify eu", "connection", True, "Acme EU"),
        CheckResult("x3", "authentication", False, "X3 said: password hunter2-secret is wrong", "replace it"),
    ]
    report = render_report(results, secrets=["hunter2-secret"])
    table = report.splitlines()[:3]

    assert len({line.index("STATUS") if i == 0 else line.index("OK" if i == 1 else "FAIL")
                for i, line in enumerate(table)}) == 1
    assert "hunter2-secret" not in report
    assert "password ********** is wrong" in report
    assert "Fix: [x3 / authentication] replace it" in report.splitlines()
    assert exit_code(results) == 1
    assert exit_code(results[:1]) == 0
