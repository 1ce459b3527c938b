"""``connection_check`` job: the same checks as ``x3sd check``, launched from the Dagster UI.

The result is the op's output metadata (a table with one row per check and its fix, redacted); any failed check
fails the run, with the failures in the failure's metadata, so a schedule or an alert can watch it.
"""

from collections.abc import Sequence

import dagster as dg

from x3_shopify_dagster.checks import CheckResult, run_checks
from x3_shopify_dagster.defs.metadata import redact_metadata
from x3_shopify_dagster.defs.resources import ConnectorRuntime

CONNECTION_CHECK_JOB = "connection_check"
_COLUMNS = ("system", "check", "status", "detail", "fix")


def _table(results: Sequence[CheckResult]) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({"system": r.system, "check": r.name, "status": "OK" if r.ok else "FAIL",
                            "detail": r.detail, "fix": r.fix or ""})
            for r in results
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in _COLUMNS]),
    )


def check_metadata(results: Sequence[CheckResult]) -> dict[str, object]:
    failures = [r for r in results if not r.ok]
    fixes = "\n".join(f"- **{r.system} / {r.name}**: {r.detail}. Fix: {r.fix}" for r in failures)
    return redact_metadata({
        "checks_total": len(results),
        "checks_failed": len(failures),
        "checks": _table(results),
        "fixes": dg.MetadataValue.md(fixes or "All checks passed."),
    })


@dg.op(
    name="run_connection_checks",
    description="Pings every Shopify store and Sage X3 with the connector's clients and checks the mapping against "
    "X3 (accounts, cost centres, sites, invoice types, tax codes, items): what `x3sd check` prints.",
)
def run_connection_checks(context: dg.OpExecutionContext, connector: dg.ResourceParam[ConnectorRuntime]) -> dg.Output:
    results = run_checks(connector)
    metadata = check_metadata(results)
    failed = [r for r in results if not r.ok]
    for row in failed:
        context.log.warning("%s / %s failed: %s. Fix: %s", row.system, row.name, row.detail, row.fix)
    if failed:
        raise dg.Failure(description=f"{len(failed)} of {len(results)} connection checks failed; see the fixes",
                         metadata=metadata, allow_retries=False)
    return dg.Output(len(results), metadata=metadata)


@dg.job(name=CONNECTION_CHECK_JOB, description="`x3sd check` from the UI: both systems and the mapping, with fixes.")
def connection_check() -> None:
    run_connection_checks()
