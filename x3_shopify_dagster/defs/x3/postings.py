"""``x3_sales_invoices``: each staged order of a (day, store) partition posted as an X3 sales invoice.

The heavy lifting is in ``x3_shopify_dagster.posting``; this module wires it to Dagster and turns the run's
report and the ledger summary into readable, small materialization metadata (the audit summary; the full trail
is the ledger).
"""

import dagster as dg

from x3_shopify_dagster.defs.metadata import redact_metadata
from x3_shopify_dagster.defs.partitions import split_partition_key
from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.defs.x3.snapshots import (
    take_customer_snapshot,
    take_gl_snapshot,
)
from x3_shopify_dagster.domain.mapping import MappingError
from x3_shopify_dagster.domain.windows import day_window
from x3_shopify_dagster.posting.invoices import (
    CUSTOMERS,
    GL_ACCOUNTS,
    InvoicePoster,
    PostingReport,
    mapping_reference_problems,
)
from x3_shopify_dagster.posting.stock import RestockRecorder
from x3_shopify_dagster.storage.ledger import RecordKind

INVOICES_ASSET_NAME = "x3_sales_invoices"
_MAX_POSTING_WORKERS = 10  # the connector database's connection pool (5 + 5 overflow on PostgreSQL)


def posting_workers(pool_size: int) -> int:
    return min(2 * pool_size, _MAX_POSTING_WORKERS)
_TABLE_LIMIT = 20


def _postings_table(report: PostingReport) -> dg.MetadataValue:
    rows = [o for o in report.orders if o.outcome in {"posted", "invoiced"}][:_TABLE_LIMIT]
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({
                "order": o.order_name,
                "x3_invoice": o.invoice or "",
                "customer": o.customer or "",
                "total": f"{o.total} {o.currency}" if o.total is not None else "",
                "state": o.state,
                "gl_lines": "; ".join(
                    f"{account}{'/' + cc if cc else ''} D{debit} C{credit}" for account, cc, debit, credit in o.gl_lines
                ),
            })
            for o in rows
        ],
        schema=dg.TableSchema(columns=[
            dg.TableColumn(name, "string") for name in ("order", "x3_invoice", "customer", "total", "state", "gl_lines")
        ]),
    )


def _credit_memos_table(report: PostingReport) -> dg.MetadataValue:
    """Refunds and cancellations of posted orders, as X3 credit memos (or why not)."""
    rows = [o for o in report.credits if o.outcome != "unchanged"][:_TABLE_LIMIT]
    columns = ("source", "kind", "credit_memo", "total", "outcome", "restock", "gl_lines", "reason")
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({
                "source": o.order_name,
                "kind": o.kind,
                "credit_memo": o.credit_memo or "",
                "total": f"{o.total} {o.currency}" if o.total is not None else "",
                "outcome": o.outcome,
                "restock": o.restock,
                "gl_lines": "; ".join(
                    f"{account}{'/' + cc if cc else ''} D{debit} C{credit}" for account, cc, debit, credit in o.gl_lines
                ),
                "reason": f"{o.reason}: {(o.message or '')[:200]}" if o.reason else "",
            })
            for o in rows
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in columns]),
    )


def _failures_table(report: PostingReport) -> dg.MetadataValue:
    rows = [o for o in report.orders if o.outcome == "failed"][:_TABLE_LIMIT]
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({"order": o.order_name, "reason": o.reason or "", "message": (o.message or "")[:300]})
            for o in rows
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(n, "string") for n in ("order", "reason", "message")]),
    )


def build_x3_sales_invoices_asset(
    partitions_def: dg.PartitionsDefinition, orders_asset: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        name=INVOICES_ASSET_NAME,
        partitions_def=partitions_def,
        group_name="x3",
        kinds={"sage_x3"},
        deps=[orders_asset, dg.AssetKey("x3_customers"), dg.AssetKey("x3_gl_accounts")],
        retry_policy=dg.RetryPolicy(max_retries=2, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
        description=(
            "Shopify orders of the partition posted as Sage X3 sales invoices, exactly once, through the posting "
            "ledger; their refunds and cancellations after posting as credit memos, unposted invoices of cancelled "
            "orders deleted. Re-materializing a partition replays its failed records and never posts anything twice."
        ),
    )
    def x3_sales_invoices(
        context: dg.AssetExecutionContext, connector: dg.ResourceParam[ConnectorRuntime]
    ) -> dg.MaterializeResult:
        settings = connector.settings
        day, store = split_partition_key(context.partition_key)
        try:
            mapping = connector.mapping()
        except (MappingError, ValueError, OSError) as exc:
            raise dg.Failure(description=f"The mapping cannot be used: {exc}", allow_retries=False) from exc
        snapshots = connector.snapshots()
        with connector.x3_client() as x3:
            expires_soon = getattr(x3.auth, "refresh_token_expires_soon", None)
            if expires_soon is not None and expires_soon():
                context.log.warning(
                    "The X3 OAuth2 refresh token expires within 7 days (or is missing): run `x3sd x3 connect` to "
                    "pair the connector with X3 again before it does, or postings will stop."
                )
            # First run on a fresh database: take the snapshots the posting checks against.
            if snapshots.info(CUSTOMERS) is None:
                take_customer_snapshot(x3, snapshots, run_id=context.run.run_id)
            if snapshots.info(GL_ACCOUNTS) is None:
                take_gl_snapshot(x3, snapshots, run_id=context.run.run_id)
            problems = mapping_reference_problems(mapping, snapshots)
            if problems:
                raise dg.Failure(
                    description="Posting is blocked: the mapping names GL accounts or cost centres X3 does not "
                    "accept: " + "; ".join(problems) + ". Fix them in X3 or in the mapping, refresh x3_gl_accounts "
                    "and re-materialize.",
                    allow_retries=False,
                )
            poster = InvoicePoster(
                ledger=connector.ledger(), staging=connector.order_staging(), snapshots=snapshots, x3=x3,
                mapping=mapping, owner=context.run.run_id, business_timezone=settings.partition_timezone,
                # Twice the pool: while one order is in the ledger (about 12 short transactions) another holds its
                # X3 slot; the X3 client's pool semaphore still caps concurrent SOAP calls at pool_size
                # (bench/bench_posting.py: 0.80 -> 0.89 of the bound on SQLite, 0.62 -> 0.89 on PostgreSQL).
                lease_s=settings.posting_lease_seconds, workers=posting_workers(settings.x3.pool_size),
                # Refund lines Shopify restocked: marked for the stock sync, which pushes X3's figure again.
                # A restock of SKU A overridden to X3 item B marks B (store-level item mapping, like the stock sync).
                restocks=RestockRecorder(connector.stock_store(), {store: settings.stores[store].locations},
                                         clock=connector.clock, business_timezone=settings.partition_timezone,
                                         items={store: mapping.for_customer(None, store).items}),
            )
            # Change-driven runs post what changed; a re-materialization from the UI, a backfill or the replay
            # sensor also retries the partition's failed orders.
            replay_failed = context.run.tags.get("x3sd/trigger") != "shopify_orders_sensor"
            report = poster.post_partition(
                store, day_window(day, settings.partition_timezone), day.isoformat(), replay_failed=replay_failed
            )
            x3_metrics = x3.metrics.snapshot()
        summary = connector.ledger().summary(store, day.isoformat())
        credit_summary = connector.ledger().summary(store, day.isoformat(), kind=RecordKind.REFUND)
        counts = report.counts()
        credit_counts = report.credit_counts()
        context.log.info("Posting %s %s: %s; credit memos: %s", store, day, counts, credit_counts)
        totals = report.posted_totals()
        credited = report.credited_totals()
        return dg.MaterializeResult(
            metadata=redact_metadata({
                **{f"orders_{key}": value for key, value in counts.items()},
                "posted_total": ", ".join(f"{amount} {currency}" for currency, amount in sorted(totals.items())) or "0",
                **{f"credit_memos_{key}": value for key, value in credit_counts.items()},
                "credited_total": ", ".join(f"{a} {c}" for c, a in sorted(credited.items())) or "0",
                "shopify_restocks_recorded": report.restocks_recorded,
                "postings": _postings_table(report),
                "credit_memos": _credit_memos_table(report),
                "failures": _failures_table(report),
                "ledger": dg.MetadataValue.json(summary.as_metadata()),
                "ledger_credit_memos": dg.MetadataValue.json(credit_summary.as_metadata()),
                "x3_calls": x3_metrics["total_calls"],
                "x3_retries": x3_metrics["total_retries"],
                "x3_pool_wait_seconds": dg.MetadataValue.float(float(x3_metrics["pool_wait_seconds"])),
            })
        )

    return x3_sales_invoices

