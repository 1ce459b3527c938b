"""``x3_customers`` and ``x3_gl_accounts``: snapshots of X3 master data the posting flow checks against."""

from collections import defaultdict

import dagster as dg

from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.domain.customers import normalise_email

CUSTOMERS_KIND = "customers"
GL_ACCOUNTS_KIND = "gl_accounts"
DIMENSIONS_KIND = "dimensions"
_TABLE_LIMIT = 20  # rows shown in metadata tables: the audit summary stays a few KB


def gl_account_key(chart: str, account: str) -> str:
    return f"{chart}~{account}"


def dimension_key(dimension_type: str, code: str) -> str:
    return f"{dimension_type}~{code}"


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
    by_email: dict[str, dict[str, dict]] = defaultdict(dict)
    with connector.x3_client() as client:
        for customer in client.customer_directory():
            email = normalise_email(customer.email)
            by_email[email][customer.code] = {"code": customer.code, "name": customer.name, "active": customer.active}
        metrics = client.metrics.snapshot()
    rows = [(email, sorted(codes.values(), key=lambda c: c["code"])) for email, codes in sorted(by_email.items())]
    info = connector.snapshots().replace(CUSTOMERS_KIND, rows, run_id=context.run_id)
    ambiguous = [(email, codes) for email, codes in rows if len(codes) > 1]
    context.log.info("Snapshot of %s e-mails (%s ambiguous)", info.row_count, len(ambiguous))
    return dg.MaterializeResult(
        metadata={
            "emails": info.row_count,
            "customers": len({c["code"] for _, codes in rows for c in codes}),
            "ambiguous_emails": len(ambiguous),
            "ambiguous": dg.MetadataValue.table(
                records=[
                    dg.TableRecord({"email": email, "customers": ", ".join(c["code"] for c in codes)})
                    for email, codes in ambiguous[:_TABLE_LIMIT]
                ],
                schema=dg.TableSchema(columns=[dg.TableColumn("email", "string"),
                                               dg.TableColumn("customers", "string")]),
            ),
            "x3_calls": metrics["total_calls"],
        }
    )


@dg.asset(
    name="x3_gl_accounts",
    group_name="x3",
    kinds={"sage_x3"},
    description="X3 GL accounts (chart + account, active flag, validity) and analytical dimensions (type + code, "
    "active flag). Checks that every account and cost centre the mapping names exists and is active.",
)
def x3_gl_accounts(
    context: dg.AssetExecutionContext, connector: dg.ResourceParam[ConnectorRuntime]
) -> dg.MaterializeResult:
    with connector.x3_client() as client:
        accounts = [
            (gl_account_key(a.chart, a.account),
             {"description": a.description, "enabled": a.enabled,
              "valid_from": a.valid_from.isoformat() if a.valid_from else None,
              "valid_to": a.valid_to.isoformat() if a.valid_to else None})
            for a in client.gl_accounts()
        ]
        dimensions = [
            (dimension_key(d.dimension_type, d.code),
             {"description": d.description, "enabled": d.enabled, "site": d.site})
            for d in client.dimensions()
        ]
    snapshots = connector.snapshots()
    account_info = snapshots.replace(GL_ACCOUNTS_KIND, accounts, run_id=context.run_id)
    dimension_info = snapshots.replace(DIMENSIONS_KIND, dimensions, run_id=context.run_id)
    return dg.MaterializeResult(
        metadata={
            "gl_accounts": account_info.row_count,
            "gl_accounts_inactive": sum(1 for _, a in accounts if not a["enabled"]),
            "dimensions": dimension_info.row_count,
            "dimensions_inactive": sum(1 for _, d in dimensions if not d["enabled"]),
        }
    )
