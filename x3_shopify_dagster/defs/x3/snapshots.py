"""``x3_customers`` and ``x3_gl_accounts``: snapshots of X3 master data the posting flow checks against."""

from collections import defaultdict
from typing import Any

import dagster as dg

from x3_shopify_dagster.defs.metadata import redact_metadata
from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.domain.customers import normalise_email
from x3_shopify_dagster.posting.invoices import (
    CUSTOMERS,
    DIMENSIONS,
    GL_ACCOUNTS,
    dimension_key,
    gl_account_key,
    mapping_reference_problems,
)
from x3_shopify_dagster.storage import X3SnapshotStore
from x3_shopify_dagster.x3 import X3Client

CUSTOMERS_KIND = CUSTOMERS
GL_ACCOUNTS_KIND = GL_ACCOUNTS
DIMENSIONS_KIND = DIMENSIONS
_TABLE_LIMIT = 20  # rows shown in metadata tables: the audit summary stays a few KB


def take_customer_snapshot(x3: X3Client, snapshots: X3SnapshotStore, *, run_id: str | None) -> dict[str, Any]:
    by_email: dict[str, dict[str, dict]] = defaultdict(dict)
    for customer in x3.customer_directory():
        email = normalise_email(customer.email)
        by_email[email][customer.code] = {"code": customer.code, "name": customer.name, "active": customer.active}
    rows = [(email, sorted(codes.values(), key=lambda c: c["code"])) for email, codes in sorted(by_email.items())]
    info = snapshots.replace(CUSTOMERS_KIND, rows, run_id=run_id)
    ambiguous = [(email, codes) for email, codes in rows if len(codes) > 1]
    return {
        "emails": info.row_count,
        "customers": len({c["code"] for _, codes in rows for c in codes}),
        "ambiguous_emails": len(ambiguous),
        "ambiguous": dg.MetadataValue.table(
            records=[
                dg.TableRecord({"email": email, "customers": ", ".join(c["code"] for c in codes)})
                for email, codes in ambiguous[:_TABLE_LIMIT]
            ],
            schema=dg.TableSchema(columns=[dg.TableColumn("email", "string"), dg.TableColumn("customers", "string")]),
        ),
    }


def take_gl_snapshot(x3: X3Client, snapshots: X3SnapshotStore, *, run_id: str | None) -> dict[str, Any]:
    accounts = [
        (gl_account_key(a.chart, a.account),
         {"description": a.description, "enabled": a.enabled,
          "valid_from": a.valid_from.isoformat() if a.valid_from else None,
          "valid_to": a.valid_to.isoformat() if a.valid_to else None})
        for a in x3.gl_accounts()
    ]
    dimensions = [
        (dimension_key(d.dimension_type, d.code), {"description": d.description, "enabled": d.enabled, "site": d.site})
        for d in x3.dimensions()
    ]
    account_info = snapshots.replace(GL_ACCOUNTS_KIND, accounts, run_id=run_id)
    dimension_info = snapshots.replace(DIMENSIONS_KIND, dimensions, run_id=run_id)
    return {
        "gl_accounts": account_info.row_count,
        "gl_accounts_inactive": sum(1 for _, a in accounts if not a["enabled"]),
        "dimensions": dimension_info.row_count,
        "dimensions_inactive": sum(1 for _, d in dimensions if not d["enabled"]),
    }


@dg.asset(
    name="x3_customers",
    group_name="x3",
    kinds={"sage_x3"},
    description="X3 customers keyed by normalised e-mail (trimmed, case-folded), from customer addresses "
    "(BPADDRESS.WEB). An e-mail held by several customers is kept as an explicit ambiguity.",
)
def x3_customers(
    context: dg.AssetExecutionContext, connector: dg.ResourceParam[ConnectorRuntime]
) -> dg.MaterializeResult:
    with connector.x3_client() as x3:
        metadata = take_customer_snapshot(x3, connector.snapshots(), run_id=context.run.run_id)
        metadata["x3_calls"] = x3.metrics.snapshot()["total_calls"]
    context.log.info("Snapshot of %s e-mails (%s ambiguous)", metadata["emails"], metadata["ambiguous_emails"])
    return dg.MaterializeResult(metadata=redact_metadata(metadata))


MAPPING_CHECK_NAME = "mapping_accounts_and_cost_centres_active"


@dg.asset(
    name="x3_gl_accounts",
    group_name="x3",
    kinds={"sage_x3"},
    check_specs=[dg.AssetCheckSpec(MAPPING_CHECK_NAME, asset="x3_gl_accounts", blocking=True,
                                   description="Every GL account and cost centre the mapping names exists in X3 "
                                   "and is active; a failure blocks posting.")],
    description="X3 GL accounts (chart + account, active flag, validity) and analytical dimensions (type + code, "
    "active flag). Checks that every account and cost centre the mapping names exists and is active.",
)
def x3_gl_accounts(
    context: dg.AssetExecutionContext, connector: dg.ResourceParam[ConnectorRuntime]
) -> dg.MaterializeResult:
    snapshots = connector.snapshots()
    with connector.x3_client() as x3:
        metadata = take_gl_snapshot(x3, snapshots, run_id=context.run.run_id)
    problems = mapping_reference_problems(connector.mapping(), snapshots) if connector.settings.mapping_path else []
    return dg.MaterializeResult(
        metadata=redact_metadata(metadata),
        check_results=[
            dg.AssetCheckResult(
                check_name=MAPPING_CHECK_NAME,
                passed=not problems,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata=redact_metadata(
                    {"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")}),
                description="; ".join(problems) or "All accounts and cost centres of the mapping are active in X3.",
            )
        ],
    )
