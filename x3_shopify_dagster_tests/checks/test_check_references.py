"""`x3sd check`, the rows added for issue 5: invoice types, tax codes (existence, activity and rate) and the items
the mapping names, against the X3 sandbox; JWT and OAuth2 authentication lines; the `connection_check` job."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.defs.connection_check import CONNECTION_CHECK_JOB
from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings, X3Settings
from x3_shopify_dagster.x3 import EncryptedFileTokenStore, OAuth2Auth
from x3_shopify_dagster_tests.checks.conftest import DEMO_MAPPING, sandbox_env


def mapping_variant(tmp_path: Path, *replacements: tuple[str, str]) -> str:
    text = DEMO_MAPPING.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_working_setup_passes_the_new_rows(shopify_sandbox, x3_sandbox, run_check) -> None:
    run = run_check(sandbox_env(shopify_sandbox, x3_sandbox))
    assert run.code == 0, run.out
    for name in ("invoice types", "tax codes", "items"):
        assert run.status("mapping", name) == "OK", name
    assert "2 named" in run.rows("mapping", "invoice types")[0][3]  # INV and CRN
    assert "3 named" in run.rows("mapping", "tax codes")[0][3]  # FRN, US825, EXO
    for name in ("representation tax_codes", "representation invoice_types"):
        assert run.status("x3", name) == "OK"


def test_missing_inactive_and_miscategorised_invoice_types(shopify_sandbox, fresh_x3_sandbox, run_check,
                                                          tmp_path: Path) -> None:
    env = sandbox_env(shopify_sandbox, fresh_x3_sandbox)
    path = mapping_variant(tmp_path, ("invoice_type: INV", "invoice_type: NOPE"), ("credit_memo_type: CRN",
                                                                                  "credit_memo_type: INV"))
    run = run_check({**env, "X3SD_MAPPING_PATH": path})
    assert run.code == 1
    details = sorted(row[3] for row in run.rows("mapping", "invoice types"))
    assert details == ["sales invoice type INV (credit_memo_type) has category 'invoice' in X3, not 'credit memo'",
                       "sales invoice type NOPE (invoice_type) does not exist in X3"]
    fixes = [fix for fix in run.fixes() if "invoice types" in fix]
    assert "create invoice type NOPE in X3 or set `invoice_type` in the mapping" in " ".join(fixes)
    assert "set `credit_memo_type` in the mapping to a credit memo type" in " ".join(fixes)

    fresh_x3_sandbox.state.set_invoice_type_active("INV", False)
    run = run_check({"X3SD_MAPPING_PATH": str(DEMO_MAPPING)})
    assert [row[2:] for row in run.rows("mapping", "invoice types")] == [
        ["FAIL", "sales invoice type INV (invoice_type) is inactive in X3"]]


def test_tax_codes_inactive_missing_or_at_another_rate(shopify_sandbox, fresh_x3_sandbox, run_check,
                                                      tmp_path: Path) -> None:
    fresh_x3_sandbox.state.set_tax_code_active("EXO", False)
    path = mapping_variant(tmp_path, ('{title: VAT, rate: "0.20", code: FRN}', '{title: VAT, rate: "0.20", code: FRR}'),
                           ("code: US825", "code: US999"))
    run = run_check({**sandbox_env(shopify_sandbox, fresh_x3_sandbox), "X3SD_MAPPING_PATH": path})
    assert run.code == 1
    details = sorted(row[3] for row in run.rows("mapping", "tax codes"))
    assert details == [
        "tax code EXO is inactive in X3",
        "tax code FRR is inactive in X3",
        "tax code US999 does not exist in X3",
    ]
    fresh_x3_sandbox.state.set_tax_code_active("FRR", True)  # active now, but X3 applies 5.5 %, not 20 %
    run = run_check({})
    assert "tax code FRR applies 5.5 % in X3, the mapping expects 20 %" in [
        row[3] for row in run.rows("mapping", "tax codes")]
    assert any("map the Shopify rate to an X3 tax code of 20 %" in fix for fix in run.fixes())


def test_items_the_mapping_names_must_exist_and_be_sellable(shopify_sandbox, fresh_x3_sandbox, run_check,
                                                           tmp_path: Path) -> None:
    fresh_x3_sandbox.state.set_item_active("ESP-GRINDER-01", False)
    path = mapping_variant(tmp_path, ("GIFT-WRAP: null", "GIFT-WRAP: WRAP-SERVICE"),
                           ("without_sku: null", "without_sku: ESP-GRINDER-01"))
    run = run_check({**sandbox_env(shopify_sandbox, fresh_x3_sandbox), "X3SD_MAPPING_PATH": path})
    assert run.code == 1
    details = sorted(row[3] for row in run.rows("mapping", "items"))
    assert details == [
        "item ESP-GRINDER-01 (items.without_sku) has status 6 in X3 (not sellable)",
        "item WRAP-SERVICE (items.overrides.GIFT-WRAP) does not exist in X3",
    ]
    assert any("create item WRAP-SERVICE in X3 or change items.overrides.GIFT-WRAP" in f for f in run.fixes())


def test_jwt_mode_passes_and_a_wrong_secret_names_the_connected_application(shopify_sandbox, x3_sandbox,
                                                                           run_check) -> None:
    client_id, secret = x3_sandbox.oauth_client
    env = {**sandbox_env(shopify_sandbox, x3_sandbox), "X3SD_X3__AUTH_MODE": "jwt", "X3SD_X3__CLIENT_ID": client_id,
           "X3SD_X3__CLIENT_SECRET": secret, "X3SD_X3__PASSWORD": None}
    run = run_check(env)
    assert run.code == 0, run.out
    assert run.rows("x3", "authentication")[0][3].startswith("jwt (connected application)")

    run = run_check({"X3SD_X3__CLIENT_SECRET": "wrong-connected-app-secret"})
    assert run.status("x3", "authentication") == "FAIL"
    (fix,) = [f for f in run.fixes() if "[x3 / authentication]" in f]
    assert "Connected applications" in fix
    assert "X3SD_X3__JWT_CLOCK_SKEW_SECONDS" in fix
    assert "wrong-connected-app-secret" not in run.out


def test_oauth2_without_a_pairing_says_run_x3sd_x3_connect(shopify_sandbox, x3_sandbox, run_check,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client_id, secret = x3_sandbox.oauth_client
    key = EncryptedFileTokenStore.generate_key()
    env = {**sandbox_env(shopify_sandbox, x3_sandbox), "X3SD_X3__AUTH_MODE": "oauth2", "X3SD_X3__CLIENT_ID": client_id,
           "X3SD_X3__CLIENT_SECRET": secret, "X3SD_X3__TOKEN_STORE_PATH": str(tmp_path / "t.enc"),
           "X3SD_X3_TOKEN_KEY": key}
    run = run_check(env)
    assert run.status("x3", "authentication") == "FAIL"
    assert any("run `x3sd x3 connect`" in fix for fix in run.fixes())

    # Paired: the same settings pass.
    store = EncryptedFileTokenStore(tmp_path / "t.enc", environ={"X3SD_X3_TOKEN_KEY": key})
    auth = OAuth2Auth(x3_sandbox.token_url, client_id, secret, store)
    auth.exchange_code(x3_sandbox.issue_authorization_code())
    auth.close()
    run = run_check({})
    assert run.code == 0, run.out
    assert key not in run.out


def _settings(shopify_sandbox, x3_sandbox, **x3: object) -> ConnectorSettings:
    user, password = x3_sandbox.basic_credentials
    stores = {key: StoreSettings(shop_url=shopify_sandbox.shop_url(key), access_token=shopify_sandbox.access_token(key))
              for key in ("eu", "us")}
    values = {"server_url": x3_sandbox.base_url, "folder": x3_sandbox.folder, "user": user, "password": password,
              **x3}
    return ConnectorSettings(_env_file=None, stores=stores, x3=X3Settings(**values),  # type: ignore[call-arg, arg-type]
                             mapping_path=str(DEMO_MAPPING), database_url="sqlite:///:memory:")


def test_the_connection_check_job_reports_rows_as_metadata(shopify_sandbox, x3_sandbox) -> None:
    runtime = ConnectorRuntime(_settings(shopify_sandbox, x3_sandbox))
    job = build_definitions(runtime.settings, runtime=runtime).resolve_job_def(CONNECTION_CHECK_JOB)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance)
    assert result.success
    (output,) = [e for e in result.all_node_events if e.is_successful_output]
    metadata = output.step_output_data.metadata
    assert metadata["checks_failed"].value == 0
    rows = metadata["checks"].value.records
    assert {(r.data["system"], r.data["check"]) for r in rows} >= {("x3", "authentication"), ("mapping", "tax codes")}
    runtime.close()


def test_the_connection_check_job_fails_with_the_fixes(shopify_sandbox, x3_sandbox) -> None:
    runtime = ConnectorRuntime(_settings(shopify_sandbox, x3_sandbox, password="a-wrong-x3-password"))
    job = build_definitions(runtime.settings, runtime=runtime).resolve_job_def(CONNECTION_CHECK_JOB)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        (failure,) = [e for e in result.all_node_events if e.is_step_failure]
        text = str(failure.step_failure_data.user_failure_data.metadata["fixes"].value)
        assert "replace X3SD_X3__PASSWORD" in text
        logs = " ".join(entry.message for entry in instance.all_logs(result.run_id))
    assert "a-wrong-x3-password" not in text + logs
    runtime.close()
