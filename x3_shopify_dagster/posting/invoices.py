"""Staged Shopify orders → Sage X3 sales invoices (flows.md §2, §3, §5).

For each order whose latest staged version falls in a (store, business day) partition:

    staged ─► matched (X3 customer by e-mail) ─► validated (mapping, GL, totals) ─► invoiced ─► posted

Every arrow is a ledger transition with its event; every X3 write goes through ``run_exactly_once`` with a
deterministic key and the invoice reference written to X3's searchable reference field, so a crash, a re-run,
a replay or two concurrent runs never create or post an invoice twice. Failures are values on the record
(reason, message naming the field and the fix) and stay replayable: re-materializing the partition replays them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
from pydantic import ValidationError

from x3_shopify_dagster.domain.credit_memos import (
    CreditMemoDraft,
    build_cancellation_credit,
    build_refund_credit,
)
from x3_shopify_dagster.domain.customers import (
    CustomerCandidate,
    CustomerMatch,
    CustomerMatchFailure,
    match_customer,
    normalise_email,
)
from x3_shopify_dagster.domain.fulfillments import delivery_extent
from x3_shopify_dagster.domain.invoicing import InvoiceDraft, build_invoice, invoice_reference
from x3_shopify_dagster.domain.mapping import Mapping as ConnectorMapping
from x3_shopify_dagster.domain.outcomes import FailureReason as MappingReason
from x3_shopify_dagster.domain.outcomes import MappingFailure, Skip, SkipReason
from x3_shopify_dagster.domain.shopify_orders import Refund, ShopifyOrder
from x3_shopify_dagster.domain.windows import Window
from x3_shopify_dagster.posting.stock import RestockRecorder
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
    GlLine,
    InvalidTransition,
    LedgerEventType,
    LedgerRecord,
    PostingLedger,
    RecordKind,
    RecordState,
    SourceVersion,
    StaleRecord,
    check_balanced,
)
from x3_shopify_dagster.storage.ledger import SkipReason as LedgerSkipReason
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
    kind: str = "order"  # order | refund | cancellation (the last two are credit memos)
    credit_memo: str | None = None
    restock: str = ""  # refunded units and their Shopify restock type, e.g. "2 x TAMPER-58 RETURN"


@dataclass
class PostingReport:
    outcomes: list[RecordOutcome] = field(default_factory=list)
    restocks_recorded: int = 0  # Shopify restock markers new in this run (the stock sync pushes X3's figure again)

    @property
    def orders(self) -> list[RecordOutcome]:
        return [o for o in self.outcomes if o.kind == "order"]

    @property
    def credits(self) -> list[RecordOutcome]:
        """Credit memo outcomes (refunds and cancellations after posting)."""
        return [o for o in self.outcomes if o.kind != "order"]

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.orders if o.outcome == outcome)

    def counts(self) -> dict[str, int]:
        keys = ("posted", "invoiced", "failed", "skipped", "unchanged", "busy", "in_doubt")
        return {key: self.count(key) for key in keys}

    def credit_counts(self) -> dict[str, int]:
        keys = ("credited", "failed", "skipped", "busy", "in_doubt")
        return {key: sum(1 for o in self.credits if o.outcome == key) for key in keys}

    def posted_totals(self) -> dict[str, Decimal]:
        return _totals(self.orders, "posted")

    def credited_totals(self) -> dict[str, Decimal]:
        return _totals(self.credits, "credited")


def _totals(outcomes: Iterable[RecordOutcome], outcome: str) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for o in outcomes:
        if o.outcome == outcome and o.total is not None and o.currency:
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
        restocks: RestockRecorder | None = None,
    ) -> None:
        self.ledger = ledger
        self.restocks = restocks
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
        self._replay_failed = True

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
        report = PostingReport()
        if self.restocks is not None:
            # Whatever becomes of the order in X3 (posted, failed, skipped), Shopify has already put restocked units
            # back on hand: mark them so the stock sync pushes X3's figure again (flows.md §4).
            refunded = [order for order in self._orders.values() if order.refunds]
            report.restocks_recorded = self.restocks.record(store, refunded, run_id=self.owner).new
        self._customers = dict(self.snapshots.items(CUSTOMERS))
        self._gl = _GlIndex(self.snapshots)

        work: list[LedgerRecord] = []
        for observation in observations:
            record = observation.record
            if record.state is RecordState.FAILED and replay_failed:
                record = self.ledger.replay(record.id, run_id=self.owner)
            in_progress = record.state in _CREDIT_WORK  # staged .. invoiced: the order's own invoice
            if in_progress or (record.state in _CREDITABLE and self._may_need_credit(record)):
                work.append(record)
            else:
                report.outcomes.append(self._outcome(record, "unchanged"))
        self._replay_failed = replay_failed
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="x3-post") as pool:
            for outcomes in pool.map(self._process_safely, work):
                report.outcomes.extend(outcomes)
        return report

    def _may_need_credit(self, record: LedgerRecord) -> bool:
        """A posted order whose staged version carries refunds or a cancellation (checked without a query)."""
        order = self._orders.get((record.source_id, record.source_hash))
        return order is not None and (bool(order.refunds) or order.cancelled_at is not None)

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
    def _process_safely(self, record: LedgerRecord) -> list[RecordOutcome]:
        outcome = self._guarded(record, "order", lambda: self._process(record))
        if outcome.state not in {state.value for state in _CREDITABLE}:
            return [outcome]
        # The invoice is posted: refunds and a cancellation become credit memos (after the posting, if any).
        order = self._orders.get((record.source_id, record.source_hash))
        if order is None or not (order.refunds or order.cancelled_at):
            return [outcome]
        return [outcome, *self._credits(self.ledger.get_by_id(record.id), order)]

    def _guarded(self, record: LedgerRecord, kind: str, step: Callable[[], RecordOutcome]) -> RecordOutcome:
        """Run one record's step; what X3 or a concurrent run did to it becomes the record's outcome."""
        try:
            return step()
        except LeaseHeld:
            return self._outcome(record, "busy", kind=kind, message="another run holds this record's X3 operation")
        except (InvalidTransition, StaleRecord):
            # Another run moved this record on between our read and our write: it owns the rest of it.
            return self._outcome(self.ledger.get_by_id(record.id), "busy", kind=kind,
                                 message="another run is posting this record")
        except OperationInDoubt as exc:
            return self._outcome(record, "in_doubt", kind=kind,
                                 message=f"X3 outcome unknown; the next run looks it up: {exc}")
        except (ExactlyOnceError, X3Error) as exc:
            # X3 unreachable or busy after retries: nothing was written (or it is recorded in doubt).
            current = self.ledger.get_by_id(record.id)
            failed = self.ledger.mark_failed(
                record.id, "x3_unavailable", f"Sage X3 did not answer: {exc}. Nothing was posted twice; "
                "re-materialize the partition once X3 is reachable.", run_id=self.owner,
                details={"state_before": current.state.value},
            ) if current.state is not RecordState.FAILED else current
            return self._outcome(failed, "failed", kind=kind)

    def _process(self, record: LedgerRecord) -> RecordOutcome:
        if record.state in _CREDITABLE:
            return self._outcome(record, "unchanged")
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
            if result.reason is SkipReason.CANCELLED and _live_invoice(record):
                # Also when an earlier failure left the unposted invoice behind (a replayed record).
                return self._delete_cancelled(record, order, str(result))
            if record.state is RecordState.INVOICED:
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

        if record.state is RecordState.INVOICED:
            invoiced_lines = self._invoiced_gl_lines(record)
            if invoiced_lines is not None and _gl_key(invoiced_lines) != _gl_key(ledger_gl_lines(draft.gl_lines())):
                # Edited after invoicing (a line added, a price changed): the unposted invoice no longer matches
                # the order. Delete it and invoice the new content; a posted invoice would never be edited.
                record = self._delete_edited(record, draft, invoiced_lines)
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
        invoiced_now = False
        if record.state is RecordState.VALIDATED:
            invoiced_now = True
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
            # The lines the X3 invoice was created from: what posting records, whatever the order becomes.
            record = self.ledger.mark_invoiced(
                record.id, invoice=number, run_id=self.owner, gl_lines=ledger_gl_lines(draft.gl_lines()),
                detail={"operation": created.status.value, "gross": str(draft.totals.gross)},
            )
        if record.state is RecordState.INVOICED:
            if not draft.ready_to_post:
                return self._outcome(record, "invoiced", draft=draft, message="waiting for the posting moment")
            posted = self._post(record, draft)
            if posted.status is OutcomeStatus.REFUSED:
                return self._refused(record, posted, "posting the invoice")
            record = self.ledger.mark_posted(
                record.id, run_id=self.owner,
                gl_lines=(None if invoiced_now else self._invoiced_gl_lines(record))
                or ledger_gl_lines(draft.gl_lines()),
                x3_documents={"invoice": str(record.x3_documents.get("invoice"))},
                detail={"operation": posted.status.value},
            )
            return self._outcome(self._delivered_before_posting(record), "posted", draft=draft)
        return self._outcome(record, "unchanged", draft=draft)

    def _delivered_before_posting(self, record: LedgerRecord) -> LedgerRecord:
        """A posted order whose fulfilments were delivered while its invoice waited (the deliveries flow lists
        them on the order): it moves on to `delivered`, partly or fully, like an order delivered after posting."""
        deliveries = record.x3_documents.get("deliveries") or []
        if not deliveries:
            return record
        extent = delivery_extent(record.source_payload, deliveries)
        try:
            return self.ledger.transition(
                record.id, RecordState.DELIVERED, run_id=self.owner, event="delivered",
                detail={"delivered": extent, "deliveries": [d.get("delivery") for d in deliveries],
                        "listed_before_posting": True},
                expected_revision=record.revision,
            )
        except (StaleRecord, InvalidTransition):
            return self.ledger.get_by_id(record.id)  # a delivery run moved it on meanwhile: it lists its own

    # -- invoices deleted before posting ---------------------------------------------------------------
    def _invoiced_gl_lines(self, record: LedgerRecord) -> list[GlLine] | None:
        """The GL lines of the invoice as created in X3 (its last `invoiced` event); None for records invoiced
        before the lines were kept there."""
        invoiced = [event for event in self.ledger.history(record.id) if event.event == LedgerEventType.INVOICED]
        return (invoiced[-1].gl_lines or None) if invoiced else None

    def _delete_invoice(self, record: LedgerRecord, reference: str) -> OperationOutcome:
        number = str(record.x3_documents.get("invoice"))
        publication = self.x3.config.publications.sales_invoice

        def send() -> RemoteResult:
            self.x3.delete(publication, {"NUM": number})
            return RemoteResult(document=number, details={"deleted": True})

        def lookup() -> RemoteResult | None:
            found = self.x3.find_invoice_by_reference(reference)
            gone = found is None or found.number != number
            return RemoteResult(document=number, details={"deleted": True}) if gone else None

        return self._exactly_once(
            f"x3:invoice:delete:{record.store}:{record.source_id}:{number}", record, reference, send=send,
            lookup=lookup, summary={"invoice": number},
        )

    def _delete_cancelled(self, record: LedgerRecord, order: ShopifyOrder, why: str) -> RecordOutcome:
        """Cancelled before posting (flows.md §2): the unposted invoice is deleted in X3, the order skipped."""
        number = str(record.x3_documents.get("invoice"))
        deleted = self._delete_invoice(record, invoice_reference(record.store, order))
        if deleted.status is OutcomeStatus.REFUSED:
            return self._refused(record, deleted, f"deleting the unposted invoice {number} of a cancelled order")
        skipped = self.ledger.transition(
            record.id, RecordState.SKIPPED, run_id=self.owner, event=LedgerEventType.INVOICE_DELETED,
            reason=(LedgerSkipReason.CANCELLED_BEFORE_POSTING, f"{why}; its unposted X3 invoice {number} was "
                    "deleted, nothing reached the general ledger", {"deleted_invoice": number}),
            x3_documents={"deleted_invoices": [*record.x3_documents.get("deleted_invoices", ()), number]},
            detail={"operation": deleted.status.value},
        )
        return self._outcome(skipped, "skipped")

    def _delete_edited(self, record: LedgerRecord, draft: InvoiceDraft, invoiced: list[GlLine]) -> LedgerRecord:
        number = str(record.x3_documents.get("invoice"))
        deleted = self._delete_invoice(record, draft.header.reference)
        if deleted.status is OutcomeStatus.REFUSED:
            error = deleted.operation.error or {}
            raise X3Error(f"X3 refused deleting the unposted invoice {number} of an edited order: "
                          f"{error.get('messages') or error.get('message')}")
        receivable = sum((line.debit for line in invoiced if line.debit), Decimal(0))
        return self.ledger.transition(
            record.id, RecordState.STAGED, run_id=self.owner, event=LedgerEventType.INVOICE_DELETED,
            x3_documents={"deleted_invoices": [*record.x3_documents.get("deleted_invoices", ()), number]},
            detail={"reason": "order_edited", "deleted_invoice": number, "invoiced_gl_debit": str(receivable),
                    "new_total": str(draft.totals.gross), "operation": deleted.status.value},
        )

    # -- credit memos ----------------------------------------------------------------------------------
    def _credits(self, order_record: LedgerRecord, order: ShopifyOrder) -> list[RecordOutcome]:
        """Credit memos for a posted order: its cancellation (when no refund credits it) and each refund.

        No double credit (docs/mapping.md): a cancellation of an order with refunds is credited by those
        refunds; a cancellation without refunds is credited in full, and refunds that come later are skipped.
        """
        outcomes: list[RecordOutcome] = []
        cancellation: LedgerRecord | None = None
        if order.cancelled_at is not None:
            cancellation = self._credit_record(order_record, order, None)
            if cancellation.state is RecordState.FAILED and self._replay_failed:
                cancellation = self.ledger.replay(cancellation.id, run_id=self.owner)
            if cancellation.state in _CREDIT_WORK:
                outcomes.append(self._guarded(cancellation, "cancellation",
                                              lambda c=cancellation: self._credit_one(c, order, None)))
                cancellation = self.ledger.get_by_id(cancellation.id)
        for refund in order.refunds:
            record = self._credit_record(self.ledger.get_by_id(order_record.id), order, refund)
            if record.state is RecordState.FAILED and self._replay_failed:
                record = self.ledger.replay(record.id, run_id=self.owner)
            if record.state not in _CREDIT_WORK:
                continue
            outcomes.append(self._guarded(record, "refund",
                                          lambda r=record, f=refund: self._credit_one(r, order, f, cancellation)))
        return outcomes

    def _credit_record(self, order_record: LedgerRecord, order: ShopifyOrder, refund: Refund | None) -> LedgerRecord:
        """The refund's own ledger record (kind refund), or the cancellation's (source id ``<order gid>#cancel``),
        in the order's partition so a replay of that partition replays it."""
        if refund is None:
            source_id, name, payload = f"{order.id}#cancel", f"{order.name} cancellation", {"order_id": order.id}
            updated_at, amount = order.cancelled_at or order.updated_at, order.total_price_set.shop_money
        else:
            source_id, name = refund.id, f"{order.name} refund {refund.id.rsplit('/', 1)[-1]}"
            payload = {"order_id": order.id, "refund": refund.model_dump(mode="json")}
            updated_at = refund.updated_at or refund.processed_at or refund.created_at or order.updated_at
            amount = refund.total_refunded_set.shop_money
        content = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
        version = SourceVersion(
            store=order_record.store, kind=RecordKind.REFUND, source_id=source_id, updated_at=updated_at,
            content_hash=content, partition=order_record.partition, name=name, amount=amount.amount,
            currency=amount.currency_code, payload=payload,
        )
        return self.ledger.observe(version, run_id=self.owner).record

    def _credit_one(self, record: LedgerRecord, order: ShopifyOrder, refund: Refund | None,
                    cancellation: LedgerRecord | None = None) -> RecordOutcome:
        kind = "refund" if refund is not None else "cancellation"
        order_record = self.ledger.get(record.store, RecordKind.ORDER, order.id)
        assert order_record is not None
        invoice = str(order_record.x3_documents.get("invoice") or "")
        customer = order_record.x3_customer or ""
        if record.state is RecordState.STAGED:
            skip = self._credit_skip(order, refund, cancellation)
            if skip is not None:
                return self._outcome(self.ledger.mark_skipped(record.id, skip[0], skip[1], run_id=self.owner),
                                     "skipped", kind=kind)
        if refund is not None:
            result = build_refund_credit(order, refund, store=record.store, customer_code=customer,
                                         origin_invoice=invoice, mapping=self.mapping, business_timezone=self.timezone)
        else:
            result = build_cancellation_credit(order, store=record.store, customer_code=customer,
                                               origin_invoice=invoice, mapping=self.mapping,
                                               business_timezone=self.timezone)
        if isinstance(result, Skip):
            if record.state is not RecordState.STAGED:  # already sent: finish what was started
                return self._fail(record, "x3_error", f"{result}; but a credit memo was already started for it. "
                                  "Check it in X3.", kind=kind)
            return self._outcome(self.ledger.mark_skipped(record.id, result.reason.value, result.message,
                                                          run_id=self.owner), "skipped", kind=kind)
        if isinstance(result, MappingFailure):
            return self._fail(record, result.reason.value, str(result), _failure_details(result), kind=kind)
        memo = result
        if refund is None:
            invoiced = self._invoiced_gl_lines(order_record)
            receivable = str(memo.document.receivable_account)
            invoice_gross = sum((line.debit for line in invoiced or () if line.account == receivable), Decimal(0))
            if invoiced is not None and invoice_gross != memo.gross:
                return self._fail(
                    record, "amount_mismatch",
                    f"the cancellation credit memo would total {memo.gross} {memo.document.header.currency} but "
                    f"invoice {invoice} totals {invoice_gross}: the order changed since it was invoiced. Fix: "
                    "credit the invoice by hand in X3.",
                    {"shopify_amount": str(memo.gross), "invoice_amount": str(invoice_gross), "invoice": invoice},
                    kind=kind,
                )
        if record.state is RecordState.STAGED:
            record = self.ledger.mark_matched(record.id, customer=customer, run_id=self.owner,
                                              detail={"origin_invoice": invoice})
        if record.state is RecordState.MATCHED:
            assert self._gl is not None
            problems = self._gl.problems(memo.document)
            if problems:
                return self._fail(record, "gl_invalid", "; ".join(problems) + ". Fix: activate or create them in "
                                  "X3 (or change the mapping), refresh x3_gl_accounts, then re-materialize.",
                                  {"problems": problems}, kind=kind)
            record = self.ledger.mark_validated(
                record.id, run_id=self.owner, gl_lines=ledger_gl_lines(memo.gl_lines()),
                detail={"totals": memo.document.totals.model_dump(mode="json"), "reference": memo.reference,
                        "origin_invoice": invoice, "restocks": [r.model_dump(mode="json") for r in memo.restocks]},
            )
        if record.state is RecordState.VALIDATED:
            created = self._create_credit(record, memo)
            if created.status is OutcomeStatus.REFUSED:
                return self._refused(record, created, "creating the credit memo", kind=kind)
            number = created.operation.document or ""
            x3_total = (created.operation.result or {}).get("amount_incl_tax")
            if x3_total is not None and Decimal(str(x3_total)) != memo.gross:
                return self._fail(
                    record, "amount_mismatch",
                    f"X3 computed {x3_total} {memo.document.header.currency} for credit memo {number} but "
                    f"Shopify's {kind} total is {memo.gross}; the credit memo is left unposted. Fix: check the tax "
                    "codes and rates in the mapping against X3, then replay.",
                    {"x3_total": str(x3_total), "shopify_total": str(memo.gross), "credit_memo": number},
                    x3_documents={"credit_memo": number}, kind=kind,
                )
            record = self.ledger.transition(
                record.id, RecordState.INVOICED, run_id=self.owner,
                x3_documents={"credit_memo": number, "origin_invoice": invoice},
                detail={"operation": created.status.value, "gl_lines": _gl_json(memo)},
            )
        if record.state is RecordState.INVOICED:
            posted = self._post_credit(record, memo)
            if posted.status is OutcomeStatus.REFUSED:
                return self._refused(record, posted, "posting the credit memo", kind=kind)
            number = str(record.x3_documents.get("credit_memo"))
            gl = ledger_gl_lines(memo.gl_lines())
            check_balanced(gl)
            record = self.ledger.transition(
                record.id, RecordState.CREDITED, run_id=self.owner, x3_documents={"credit_memo": number},
                detail={"operation": posted.status.value, "gl_lines": [line.as_json() for line in gl],
                        "origin_invoice": invoice},
            )
            # The order's own trail: which credit memo credited how much of its invoice.
            memos = sorted({*order_record.x3_documents.get("credit_memos", ()), number})
            self.ledger.transition(
                order_record.id, RecordState.CREDITED, run_id=self.owner, x3_documents={"credit_memos": memos},
                detail={"credit_memo": number, kind: record.source_id, "amount": str(memo.gross),
                        "gl_lines": [line.as_json() for line in gl]},
            )
            return self._outcome(record, "credited", kind=kind, memo=memo)
        return self._outcome(record, "unchanged", kind=kind)

    def _credit_skip(self, order: ShopifyOrder, refund: Refund | None,
                     cancellation: LedgerRecord | None) -> tuple[str, str] | None:
        """The no-double-credit rule between a cancellation and the order's refunds."""
        if refund is None and order.refunds:
            return (LedgerSkipReason.CREDITED_BY_REFUNDS, f"order {order.name} was cancelled with "
                    f"{len(order.refunds)} refund(s): each is credited by its own credit memo, the cancellation "
                    "adds none (what was not refunded stays invoiced)")
        if refund is not None and cancellation is not None and cancellation.state in _CANCELLATION_CREDITED:
            memo = cancellation.x3_documents.get("credit_memo") or "(in progress)"
            return (LedgerSkipReason.ALREADY_CREDITED, f"refund {refund.id} of order {order.name}: the order's "
                    f"cancellation already credited the whole invoice (credit memo {memo})")
        return None

    def _create_credit(self, record: LedgerRecord, memo: CreditMemoDraft) -> OperationOutcome:
        publication = self.x3.config.publications.sales_invoice
        return self._exactly_once(
            f"x3:credit:create:{record.store}:{record.source_id}", record, memo.reference,
            send=lambda: invoice_result(self.x3.save(publication, memo.to_x3_payload())),
            lookup=lambda: invoice_found(self.x3.find_invoice_by_reference(memo.reference)),
            summary={"origin_invoice": memo.origin_invoice, "gross": str(memo.gross),
                     "currency": memo.document.header.currency, "lines": len(memo.document.lines)},
        )

    def _post_credit(self, record: LedgerRecord, memo: CreditMemoDraft) -> OperationOutcome:
        number = str(record.x3_documents.get("credit_memo"))
        publications = self.x3.config.publications

        def send() -> RemoteResult:
            self.x3.action(publications.sales_invoice, publications.invoice_validate_action, {"NUM": number})
            return RemoteResult(document=number, details={"status": _POSTED})

        return self._exactly_once(
            f"x3:credit:post:{record.store}:{record.source_id}", record, memo.reference, send=send,
            lookup=lambda: invoice_found(self.x3.find_invoice_by_reference(memo.reference), posted_only=True),
            summary={"credit_memo": number},
        )

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
        # One key per invoice the order has had: an unposted invoice deleted after an edit is invoiced anew.
        deleted = len(record.x3_documents.get("deleted_invoices") or ())
        generation = f":{deleted + 1}" if deleted else ""
        return self._exactly_once(
            f"x3:invoice:create:{record.store}:{record.source_id}{generation}", record, reference,
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
    def _refused(self, record: LedgerRecord, outcome: OperationOutcome, doing: str, *,
                 kind: str = "order") -> RecordOutcome:
        error = outcome.operation.error or {}
        messages = error.get("messages") or [error.get("message") or str(outcome.exception or "refused")]
        text = "; ".join(str(m) for m in messages)
        reason = "period_closed" if "period" in text.lower() and "closed" in text.lower() else "x3_error"
        return self._fail(record, reason, f"X3 refused {doing}: {text}. Fix the data in X3 or the mapping, then "
                          "re-materialize this partition.", {"x3_messages": messages}, kind=kind)

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
              x3_documents: Mapping[str, Any] | None = None, *, kind: str = "order") -> RecordOutcome:
        failed = self.ledger.mark_failed(record.id, reason, message, run_id=self.owner, details=details,
                                         x3_documents=x3_documents)
        return self._outcome(failed, "failed", kind=kind)

    @staticmethod
    def _outcome(record: LedgerRecord, outcome: str, *, draft: InvoiceDraft | None = None,
                 message: str | None = None, kind: str = "order", memo: CreditMemoDraft | None = None) -> RecordOutcome:
        gl: tuple[tuple[str, str | None, Decimal, Decimal], ...] = ()
        if draft is not None and outcome == "posted":
            gl = tuple((g.account, g.cost_centre, g.debit, g.credit) for g in ledger_gl_lines(draft.gl_lines()))
        if memo is not None:
            gl = tuple((g.account, g.cost_centre, g.debit, g.credit) for g in ledger_gl_lines(memo.gl_lines()))
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
            kind=kind,
            credit_memo=(record.x3_documents or {}).get("credit_memo"),
            restock="; ".join(f"{r.quantity} x {r.item} {r.restock_type}" for r in memo.restocks) if memo else "",
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
    """(store, business day) pairs holding failed orders or credit memos: what a replay re-requests."""
    wanted = set(stores)
    found = {(p.store, p.partition) for kind in (RecordKind.ORDER, RecordKind.REFUND)
             for p in ledger.partitions_with_failures(kind=kind) if p.store in wanted}
    return sorted(found)


def _live_invoice(record: LedgerRecord) -> str | None:
    """The order's X3 invoice unless the connector deleted it."""
    invoice = record.x3_documents.get("invoice")
    return invoice if invoice and invoice not in (record.x3_documents.get("deleted_invoices") or ()) else None


def _gl_key(lines: Iterable[GlLine]) -> list[tuple[str, str | None, Decimal, Decimal]]:
    """GL lines compared by what reaches the general ledger (descriptions aside)."""
    return sorted((line.account, line.cost_centre, line.debit, line.credit) for line in lines)


def _gl_json(memo: CreditMemoDraft) -> list[dict[str, Any]]:
    return [line.as_json() for line in ledger_gl_lines(memo.gl_lines())]


# Order states whose invoice is posted: refunds and cancellations become credit memos.
_CREDITABLE = frozenset({RecordState.POSTED, RecordState.DELIVERED, RecordState.CREDITED})
_CREDIT_WORK = frozenset({RecordState.STAGED, RecordState.MATCHED, RecordState.VALIDATED, RecordState.INVOICED})
# A cancellation credit memo that may exist in X3 (validated: it may have been sent): refunds are not credited.
_CANCELLATION_CREDITED = frozenset({RecordState.VALIDATED, RecordState.INVOICED, RecordState.CREDITED})
