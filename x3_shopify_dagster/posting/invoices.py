"""Staged Shopify orders → Sage X3 sales invoices (flows.md §2, §3, §5).

For each order whose latest staged version falls in a (store, business day) partition:

    staged ─► matched (X3 customer by e-mail) ─► validated (mapping, GL, totals) ─► invoiced ─► posted

Every arrow is a ledger transition with its event; every X3 write goes through ``run_exactly_once`` with a
deterministic key and the invoice reference written to X3's searchable reference field, so a crash, a re-run,
a replay or two concurrent runs never create or post an invoice twice. Failures are values on the record
(reason, message naming the field and the fix) and stay replayable: re-materializing the partition replays them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from x3_shopify_dagster.domain.customers import (
    CustomerCandidate,
    CustomerMatch,
    CustomerMatchFailure,
    match_customer,
    normalise_email,
)
from x3_shopify_dagster.domain.invoicing import InvoiceDraft, build_invoice
from x3_shopify_dagster.domain.mapping import Mapping as ConnectorMapping
from x3_shopify_dagster.domain.outcomes import FailureReason as MappingReason
from x3_shopify_dagster.domain.outcomes import MappingFailure, Skip
from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder
from x3_shopify_dagster.domain.windows import Window
from x3_shopify_dagster.posting.x3_errors import classify_x3_error, invoice_found, invoice_result, ledger_gl_lines
from x3_shopify_dagster.storage.exactly_once import (
    ExactlyOnceError,
    LeaseHeld,
    OperationInDoubt,
    OperationOutcome,
    OutcomeStatus,
    RemoteResult,
    run_exactly_once,
)
from x3_shopify_dagster.storage.ledger import (
    FailureReason,
    InvalidTransition,
    LedgerRecord,
    PostingLedger,
    RecordKind,
    RecordState,
    SourceVersion,
    StaleRecord,
)
from x3_shopify_dagster.storage.order_staging import OrderStaging
from x3_shopify_dagster.storage.x3_snapshots import X3SnapshotStore
from x3_shopify_dagster.x3 import X3Client, X3Error

log = logging.getLogger(__name__)

CUSTOMERS = "customers"
GL_ACCOUNTS = "gl_accounts"
DIMENSIONS = "dimensions"
_POSTED = 3  # SINVOICE.STA / INVSTA: 1 not posted, 3 posted


def gl_account_key(chart: str, account: str) -> str:
    return f"{chart}~{account}"


def dimension_key(dimension_type: str, code: str) -> str:
    return f"{dimension_type}~{code}"


@dataclass(frozen=True)
class RecordOutcome:
    """What one run did with one order (one row of the audit summary)."""

    order_id: str
    order_name: str
    outcome: str  # posted | invoiced | failed | skipped | unchanged | busy | in_doubt
    state: str
    customer: str | None = None
    invoice: str | None = None
    total: Decimal | None = None
    currency: str | None = None
    reason: str | None = None
    message: str | None = None
    gl_lines: tuple[tuple[str, str | None, Decimal, Decimal], ...] = ()  # account, cost centre, debit, credit


@dataclass
class PostingReport:
    outcomes: list[RecordOutcome] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    def counts(self) -> dict[str, int]:
        keys = ("posted", "invoiced", "failed", "skipped", "unchanged", "busy", "in_doubt")
        return {key: self.count(key) for key in keys}

    def posted_totals(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = {}
        for o in self.outcomes:
            if o.outcome == "posted" and o.total is not None and o.currency:
                totals[o.currency] = totals.get(o.currency, Decimal(0)) + o.total
        return totals


def mapping_reference_problems(mapping: ConnectorMapping, snapshots: X3SnapshotStore) -> list[str]:
    """Accounts and cost centres the mapping names that X3 does not have, or has inactive (blocks posting)."""
    index = _GlIndex(snapshots)
    problems = [index.account_problem(a.chart, a.account) for a in sorted(mapping.referenced_gl_accounts(), key=str)]
    problems += [index.dimension_problem(die, cce) for die, cce in sorted(mapping.referenced_dimensions())]
    return [problem for problem in problems if problem]


class _GlIndex:
    """GL accounts and cost centres from the snapshot, to validate a draft before anything is sent."""

    def __init__(self, snapshots: X3SnapshotStore) -> None:
        self.accounts = dict(snapshots.items(GL_ACCOUNTS))
        self.dimensions = dict(snapshots.items(DIMENSIONS))

    def account_problem(self, chart: str, account: str, on: date | None = None) -> str | None:
        data = self.accounts.get(gl_account_key(chart, account))
        label = f"GL account {chart}/{account}"
        if data is None:
            return f"{label} does not exist in X3"
        if not data["enabled"]:
            return f"{label} is inactive in X3"
        if on is not None and not _valid_on(data, on):
            return f"{label} is not valid on {on.isoformat()}"
        return None

    def dimension_problem(self, dimension_type: str, code: str) -> str | None:
        data = self.dimensions.get(dimension_key(dimension_type, code))
        label = f"cost centre {dimension_type}={code}"
        if data is None:
            return f"{label} does not exist in X3"
        if not data["enabled"]:
            return f"{label} is inactive in X3"
        return None

    def problems(self, draft: InvoiceDraft) -> list[str]:
        on = draft.header.accounting_date
        lines = draft.gl_lines()
        accounts = {(line.account.chart, line.account.account) for line in lines}
        dimensions = {item for line in lines for item in line.dimensions.items()}
        problems = [self.account_problem(chart, account, on) for chart, account in accounts]
        problems += [self.dimension_problem(die, cce) for die, cce in dimensions]
        return sorted(problem for problem in problems if problem)


def _valid_on(account: Mapping[str, Any], day: date) -> bool:
    start, end = account.get("valid_from"), account.get("valid_to")
    return (start is None or date.fromisoformat(start) <= day) and (end is None or day <= date.fromisoformat(end))


class InvoicePoster:
    """Posts one partition's orders. Thread-safe per record; one instance per run."""

    def __init__(
        self,
        *,
        ledger: PostingLedger,
        staging: OrderStaging,
        snapshots: X3SnapshotStore,
        x3: X3Client,
        mapping: ConnectorMapping,
        owner: str,
        business_timezone: str,
        lease_s: float = 900.0,
        workers: int = 4,
    ) -> None:
        self.ledger = ledger
        self.staging = staging
        self.snapshots = snapshots
        self.x3 = x3
        self.mapping = mapping
        self.owner = owner
        self.timezone = business_timezone
        self.lease_s = lease_s
        self.workers = max(1, workers)
        self._customers: dict[str, list[dict[str, Any]]] = {}
        self._orders: dict[tuple[str, str], ShopifyOrder] = {}
        self._invalid: dict[tuple[str, str], ValidationError] = {}
        self._gl: _GlIndex | None = None

    # -- the partition -------------------------------------------------------------------------------
    def post_partition(
        self, store: str, window: Window, partition: str, *, replay_failed: bool = True
    ) -> PostingReport:
        """Post the partition's orders. ``replay_failed``: also retry its failed orders (a re-materialization or
        a replay); routine change-driven runs leave them alone until something was fixed."""
        staged = list(self.staging.latest_changed_between(store, window.start, window.end))
        # Staging stores payloads unvalidated: each is validated once here, and _process reuses the model for
        # the version the ledger holds. One that does not validate is observed all the same, without its payload
        # (the ledger keeps only JSON-safe, Decimal-only input), and fails in _process with the fields named.
        self._orders = {}
        self._invalid = {}
        for version in staged:
            key = (version.order_id, version.content_hash)
            try:
                self._orders[key] = ShopifyOrder.model_validate(version.payload)
            except ValidationError as error:
                self._invalid[key] = error
        versions = [
            self._source_version(store, partition, s, self._orders.get((s.order_id, s.content_hash))) for s in staged
        ]
        observations = self.ledger.observe_many(versions, run_id=self.owner)
        self._customers = dict(self.snapshots.items(CUSTOMERS))
        self._gl = _GlIndex(self.snapshots)

        report = PostingReport()
        work: list[LedgerRecord] = []
        for observation in observations:
            record = observation.record
            if record.state is RecordState.FAILED and replay_failed:
                record = self.ledger.replay(record.id, run_id=self.owner)
            if record.state in {RecordState.STAGED, RecordState.MATCHED, RecordState.VALIDATED, RecordState.INVOICED}:
                work.append(record)
            else:
                report.outcomes.append(self._outcome(record, "unchanged"))
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="x3-post") as pool:
            report.outcomes.extend(pool.map(self._process_safely, work))
        return report

    @staticmethod
    def _source_version(store: str, partition: str, staged: Any, order: ShopifyOrder | None) -> SourceVersion:
        money = order.total_price_set.shop_money if order is not None else None
        return SourceVersion(
            store=store,
            kind=RecordKind.ORDER,
            source_id=staged.order_id,
            updated_at=staged.updated_at,
            content_hash=staged.content_hash,
            partition=partition,
            name=staged.order_name,
            amount=money.amount if money is not None else None,
            currency=money.currency_code if money is not None else None,
            payload=staged.payload if order is not None else None,
        )

    # -- one order -----------------------------------------------------------------------------------
    def _process_safely(self, record: LedgerRecord) -> RecordOutcome:
        try:
            return self._process(record)
        except LeaseHeld:
            return self._outcome(record, "busy", message="another run holds this order's X3 operation")
        except (InvalidTransition, StaleRecord):
            # Another run moved this order on between our read and our write: it owns the rest of it.
            return self._outcome(self.ledger.get_by_id(record.id), "busy", message="another run is posting this order")
        except OperationInDoubt as exc:
            return self._outcome(record, "in_doubt", message=f"X3 outcome unknown; the next run looks it up: {exc}")
        except (ExactlyOnceError, X3Error) as exc:
            # X3 unreachable or busy after retries: nothing was written (or it is recorded in doubt).
            current = self.ledger.get_by_id(record.id)
            failed = self.ledger.mark_failed(
                record.id, "x3_unavailable", f"Sage X3 did not answer: {exc}. Nothing was posted twice; "
                "re-materialize the partition once X3 is reachable.", run_id=self.owner,
                details={"state_before": current.state.value},
            ) if current.state is not RecordState.FAILED else current
            return self._outcome(failed, "failed")

    def _process(self, record: LedgerRecord) -> RecordOutcome:
        key = (record.source_id, record.source_hash)
        order = self._orders.get(key)
        if order is None:
            invalid = self._invalid.get(key)
            if invalid is None:
                try:
                    order = ShopifyOrder.model_validate(record.source_payload)
                except ValidationError as error:
                    invalid = error
            if invalid is not None:
                return self._invalid_order(record, invalid)
        store = record.store
        customer_code, match_failure = self._match(order) if record.x3_customer is None else (record.x3_customer, None)
        result = build_invoice(
            order, store=store, customer_code=customer_code, mapping=self.mapping, business_timezone=self.timezone
        )
        if isinstance(result, Skip):
            if record.state is RecordState.INVOICED:
                # e.g. cancelled after invoicing: the credit flow handles it; never post.
                return self._outcome(record, "invoiced", message=str(result))
            skipped = self.ledger.mark_skipped(record.id, result.reason.value, result.message, run_id=self.owner)
            return self._outcome(skipped, "skipped")
        if isinstance(result, MappingFailure):
            if record.state is RecordState.INVOICED:
                return self._fail(record, result.reason.value, str(result), _failure_details(result))
            if result.reason is MappingReason.CUSTOMER_NOT_MATCHED and match_failure is not None:
                return self._fail(record, match_failure.reason, f"{match_failure.message} Fix: {match_failure.hint}",
                                  {"field": match_failure.field})
            return self._fail(record, result.reason.value, str(result), _failure_details(result))
        draft = result

        if record.state is RecordState.STAGED:
            record = self.ledger.mark_matched(record.id, customer=draft.header.customer, run_id=self.owner)
        if record.state is RecordState.MATCHED:
            assert self._gl is not None
            problems = self._gl.problems(draft)
            if problems:
                return self._fail(record, "gl_invalid", "; ".join(problems) + ". Fix: activate or create them in X3 "
                                  "(or change the mapping), refresh x3_gl_accounts, then re-materialize.",
                                  {"problems": problems})
            record = self.ledger.mark_validated(
                record.id, run_id=self.owner, gl_lines=ledger_gl_lines(draft.gl_lines()),
                detail={"totals": draft.totals.model_dump(mode="json"), "reference": draft.header.reference},
            )
        if record.state is RecordState.VALIDATED:
            created = self._create(record, draft)
            if created.status is OutcomeStatus.REFUSED:
                return self._refused(record, created, "creating the invoice")
            number = created.operation.document or ""
            x3_total = (created.operation.result or {}).get("amount_incl_tax")
            if x3_total is not None and Decimal(str(x3_total)) != draft.totals.gross:
                return self._fail(
                    record, "amount_mismatch",
                    f"X3 computed {x3_total} {draft.header.currency} for invoice {number} but Shopify's total is "
                    f"{draft.totals.gross}; the invoice is left unposted. Fix: check the tax codes and rates in "
                    "the mapping against X3, then replay.",
                    {"x3_total": str(x3_total), "shopify_total": str(draft.totals.gross), "invoice": number},
                    x3_documents={"invoice": number},
                )
            record = self.ledger.mark_invoiced(record.id, invoice=number, run_id=self.owner,
                                               detail={"operation": created.status.value})
        if record.state is RecordState.INVOICED:
            if not draft.ready_to_post:
                return self._outcome(record, "invoiced", draft=draft, message="waiting for the posting moment")
            posted = self._post(record, draft)
            if posted.status is OutcomeStatus.REFUSED:
                return self._refused(record, posted, "posting the invoice")
            record = self.ledger.mark_posted(
                record.id, run_id=self.owner, gl_lines=ledger_gl_lines(draft.gl_lines()),
                x3_documents={"invoice": str(record.x3_documents.get("invoice"))},
                detail={"operation": posted.status.value},
            )
            return self._outcome(record, "posted", draft=draft)
        return self._outcome(record, "unchanged", draft=draft)

    def _match(self, order: ShopifyOrder) -> tuple[str | None, CustomerMatchFailure | None]:
        email = order.contact_email
        known = self._customers.get(normalise_email(email), [])
        candidates = [CustomerCandidate(c["code"], c["name"], c["active"]) for c in known]
        match = match_customer(email, candidates)
        if isinstance(match, CustomerMatch):
            return match.code, None
        return None, match

    # -- X3 writes, exactly once -----------------------------------------------------------------------
    def _create(self, record: LedgerRecord, draft: InvoiceDraft) -> OperationOutcome:
        reference = draft.header.reference
        publication = self.x3.config.publications.sales_invoice
        return self._exactly_once(
            f"x3:invoice:create:{record.store}:{record.source_id}", record, reference,
            send=lambda: invoice_result(self.x3.save(publication, draft.to_x3_payload())),
            lookup=lambda: invoice_found(self.x3.find_invoice_by_reference(reference)),
            summary={"customer": draft.header.customer, "gross": str(draft.totals.gross),
                     "currency": draft.header.currency, "lines": len(draft.lines)},
        )

    def _post(self, record: LedgerRecord, draft: InvoiceDraft) -> OperationOutcome:
        number = str(record.x3_documents.get("invoice"))
        publications = self.x3.config.publications
        reference = draft.header.reference

        def send() -> RemoteResult:
            self.x3.action(publications.sales_invoice, publications.invoice_validate_action, {"NUM": number})
            return RemoteResult(document=number, details={"status": _POSTED})

        return self._exactly_once(
            f"x3:invoice:post:{record.store}:{record.source_id}", record, reference, send=send,
            lookup=lambda: invoice_found(self.x3.find_invoice_by_reference(reference), posted_only=True),
            summary={"invoice": number},
        )

    def _exactly_once(
        self, key: str, record: LedgerRecord, reference: str, *, send: Callable[[], RemoteResult],
        lookup: Callable[[], RemoteResult | None], summary: Mapping[str, Any],
    ) -> OperationOutcome:
        return run_exactly_once(
            self.ledger, key, owner=self.owner, lease_s=self.lease_s, send=send, lookup=lookup,
            remote_reference=reference, request_summary=summary, record_id=record.id,
            classify_error=classify_x3_error,
        )

    # -- outcomes --------------------------------------------------------------------------------------
    def _refused(self, record: LedgerRecord, outcome: OperationOutcome, doing: str) -> RecordOutcome:
        error = outcome.operation.error or {}
        messages = error.get("messages") or [error.get("message") or str(outcome.exception or "refused")]
        text = "; ".join(str(m) for m in messages)
        reason = "period_closed" if "period" in text.lower() and "closed" in text.lower() else "x3_error"
        return self._fail(record, reason, f"X3 refused {doing}: {text}. Fix the data in X3 or the mapping, then "
                          "re-materialize this partition.", {"x3_messages": messages})

    def _invalid_order(self, record: LedgerRecord, error: ValidationError) -> RecordOutcome:
        # Input values are left out of the message and details: they may be personal data (e-mails).
        problems = [
            {"field": _field_path(problem["loc"]), "problem": problem["msg"], "got": type(problem["input"]).__name__}
            for problem in error.errors(include_url=False)
        ]
        listed = "; ".join(f"{p['field']}: {p['problem']} (got a {p['got']})" for p in problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        return self._fail(
            record, FailureReason.INVALID_ORDER.value,
            f"Shopify order {record.source_name or record.source_id} does not read as an order: {listed}{more}. "
            "Nothing was sent to X3. Fix: check these fields of the order in Shopify (an edit there brings a new "
            "version); if Shopify's data is right, the connector's order model must learn it, then replay.",
            {"fields": [p["field"] for p in problems], "problems": problems},
        )

    def _fail(self, record: LedgerRecord, reason: str, message: str, details: Mapping[str, Any] | None = None,
              x3_documents: Mapping[str, Any] | None = None) -> RecordOutcome:
        failed = self.ledger.mark_failed(record.id, reason, message, run_id=self.owner, details=details,
                                         x3_documents=x3_documents)
        return self._outcome(failed, "failed")

    @staticmethod
    def _outcome(record: LedgerRecord, outcome: str, *, draft: InvoiceDraft | None = None,
                 message: str | None = None) -> RecordOutcome:
        gl: tuple[tuple[str, str | None, Decimal, Decimal], ...] = ()
        if draft is not None and outcome == "posted":
            gl = tuple((g.account, g.cost_centre, g.debit, g.credit) for g in ledger_gl_lines(draft.gl_lines()))
        return RecordOutcome(
            order_id=record.source_id,
            order_name=record.source_name or record.source_id,
            outcome=outcome,
            state=record.state.value,
            customer=record.x3_customer,
            invoice=(record.x3_documents or {}).get("invoice"),
            total=record.amount,
            currency=record.currency,
            reason=record.reason_code if outcome in {"failed", "skipped"} else None,
            message=message or (record.reason_message if outcome in {"failed", "skipped"} else None),
            gl_lines=gl,
        )


def _field_path(location: tuple[int | str, ...]) -> str:
    """pydantic's error location as an order path, e.g. ``line_items[2].original_unit_price_set.shop_money``."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "order"


def _failure_details(failure: MappingFailure) -> dict[str, Any]:
    details: dict[str, Any] = {"field": failure.field, "hint": failure.hint}
    if failure.shopify_amount is not None:
        details.update(shopify_amount=str(failure.shopify_amount), invoice_amount=str(failure.invoice_amount),
                       currency=failure.currency, difference=str(failure.difference))
    return details


def failed_partitions(ledger: PostingLedger, stores: Iterable[str]) -> list[tuple[str, str]]:
    """(store, business day) pairs holding failed orders: what a replay re-requests."""
    wanted = set(stores)
    return [(p.store, p.partition) for p in ledger.partitions_with_failures()
            if p.store in wanted]
