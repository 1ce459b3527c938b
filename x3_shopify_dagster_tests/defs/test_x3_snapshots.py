"""x3_customers and x3_gl_accounts against the X3 sandbox over HTTP: snapshots the posting flow reads."""

from __future__ import annotations

import dagster as dg

from x3_shopify_dagster.definitions import build_definitions
from x3_shopify_dagster.defs.x3.snapshots import CUSTOMERS_KIND, DIMENSIONS_KIND, GL_ACCOUNTS_KIND


def _materialize(runtime, name: str) -> dict:
    defs = build_definitions(runtime.settings, runtime=runtime)
    with dg.instance_for_test() as instance:
        result = dg.materialize([defs.resolve_assets_def(name)], instance=instance)
        assert result.success
        event = result.asset_materializations_for_node(name)[0]
        return {key: value.value for key, value in event.metadata.items()}


def test_customers_snapshot_is_keyed_by_normalised_email_and_keeps_ambiguity(
    shopify_sandbox, fresh_x3_sandbox, runtime_factory
):
    runtime = runtime_factory(shopify_sandbox, x3_sandbox=fresh_x3_sandbox)
    fresh_x3_sandbox.state.add_customer("FR0099", "Zoé Example", "  Zoe.Example@Mixed-Case.example ")
    metadata = _materialize(runtime, "x3_customers")
    assert metadata["ambiguous_emails"] == 1
    snapshots = runtime.snapshots()
    assert [c["code"] for c in snapshots.get(CUSTOMERS_KIND, "orders@shared-kitchen.example")] == ["US0007", "US0008"]
    assert [c["code"] for c in snapshots.get(CUSTOMERS_KIND, "zoe.example@mixed-case.example")] == ["FR0099"]
    assert snapshots.get(CUSTOMERS_KIND, "new.buyer@fresh-start.example") is None
    assert metadata["emails"] == snapshots.count(CUSTOMERS_KIND)


def test_gl_snapshot_records_active_flags(shopify_sandbox, fresh_x3_sandbox, runtime_factory):
    runtime = runtime_factory(shopify_sandbox, x3_sandbox=fresh_x3_sandbox)
    metadata = _materialize(runtime, "x3_gl_accounts")
    snapshots = runtime.snapshots()
    assert snapshots.get(GL_ACCOUNTS_KIND, "CHART1~706000")["enabled"] is True
    assert snapshots.get(GL_ACCOUNTS_KIND, "CHART1~706900")["enabled"] is False
    assert snapshots.get(DIMENSIONS_KIND, "CCT~RETAIL-OLD")["enabled"] is False
    assert metadata["gl_accounts_inactive"] >= 1
    # A re-run replaces the snapshot whole: an account deactivated in X3 shows up as inactive.
    fresh_x3_sandbox.state.set_account_active("CHART1", "706000", False)
    _materialize(runtime, "x3_gl_accounts")
    assert snapshots.get(GL_ACCOUNTS_KIND, "CHART1~706000")["enabled"] is False
