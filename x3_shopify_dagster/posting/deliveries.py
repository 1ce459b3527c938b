"""Shopify fulfilments → validated Sage X3 deliveries (flows.md §2 "delivered / partly", §3).

Each fulfilment is one ledger record (kind ``fulfillment``) and becomes exactly one X3 delivery (YSDH) for its
lines and quantities, linked to the order's invoice and carrying its tracking numbers, then validated (action
VALID) so that X3 issues the stock and posts the cost of goods sold:

    staged ──(order invoiced? else waits, staying staged with a note)──► delivery created ──► validated ──► delivered

Both X3 writes go through ``run_exactly_once`` with keys ``x3:delivery:create|validate:{store}:{fulfilment GID}``
and the reference ``SHIP:{store}:{fulfilment id}`` in the delivery's searchable reference field, so a crash, a
re-run, a replay or two concurrent runs never create or validate a delivery twice. Failures (site not mapped,
item not mapped or unknown in X3, X3 refusal, closed period) are failed-with-reason on the record and replayable.
A fulfilment cancelled in Shopify before any delivery is skipped; after one, it is flagged
(``fulfillment_cancelled_after_delivery``) for a manual customer return in X3 (``fulfillment_cancel_action``).
The order's record gets a ``delivered`` event listing its deliveries, partly or fully.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from x3_shopify_dagster.domain.fulfillments import (
    CANCELLED,
    SUCCESS,
    DeliveryFailure,
    DeliveryPlan,
    ShopifyFulfillment,
    delivery_extent,
    plan_delivery,
)
from x3_shopify_dagster.domain.mapping import Mapping as ConnectorMapping
from x3_shopify_dagster.posting.x3_errors import classify_x3_error
from x3_shopify_dagster.storage.exactly_once import (
    ExactlyOnceError,
    LeaseHeld,
    OperationInDoubt,
    OperationOutcome,
    OperationState,
    OutcomeStatus,
    RemoteResult,
    get_operation,
    run_exactly_once,
)
from x3_shopify_dagster.storage.ledger import (
    InvalidTransition,
    LedgerRecord,
    Observation,
    PostingLedger,
    RecordKind,
    RecordState,
    SourceVersion,
    StaleRecord,
)
from x3_shopify_dagster.x3 import X3Client, X3DeliveryRef, X3Error

log = logging.getLogger(__name__)

WAITING_FOR_INVOICE = "waiting_for_invoice"
WAITING_FOR_SHIPMENT = "waiting_for_shipment"
_ORDER_DELIVERED_FROM = {RecordState.POSTED, RecordState.DELIVERED}  # an unposted invoice still has to be posted


def fulfillment_version(store: str, fulfillment: ShopifyFulfillment, business_timezone: str) -> SourceVersion:
    """The ledger's view of one fulfilment version; its partition is the day of its own ``updatedAt``."""
    payload = fulfillment.to_payload()
    day = fulfillment.updated_at.astimezone(ZoneInfo(business_timezone)).date()
    return SourceVersion(
        store=store,
        kind=RecordKind.FULFILLMENT,
        source_id=fulfillment.id,
        updated_at=fulfillment.updated_at,
        content_hash=fulfillment.content_hash(payload),
        partition=day.isoformat(),
        name=fulfillment.name,
        payload=payload,
    )


def observe_fulfillments(
    ledger: PostingLedger, store: str, fulfillments: Iterable[ShopifyFulfillment], *, business_timezone: str,
    run_id: str | None,
) -> list[Observation]:
    """Record every fetched fulfilment version (new, newer, unchanged or older) in the ledger."""
    versions = [fulfillment_version(store, f, business_timezone) for f in fulfillments]
    return ledger.observe_many(versions, run_id=run_id) if versions else []


def create_key(store: str, fulfillment_id: str) -> str:
    return f"x3:delivery:create:{store}:{fulfillment_id}"


def validate_key(store: str, fulfillment_id: str) -> str:
    return f"x3:delivery:validate:{store}:{fulfillment_id}"


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one run did with one fulfilment (one row of the audit summary)."""

    fulfillment_id: str
    fulfillment_name: str
    order_id: str
    order_name: str
    outcome: str  # delivered | waiting | failed | skipped | unchanged | busy | in_doubt
    state: str
    delivery: str | None = None
    invoice: str | None = None
    lines: tuple[tuple[str, int], ...] = ()  # (X3 item, quantity)
    tracking: str = ""
    reason: str | None = None
    message: str | None = None


@dataclass
class DeliveryReport:
    outcomes: list[DeliveryOutcome] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    def counts(self) -> dict[str, int]:
        keys = ("delivered", "waiting", "failed", "skipped", "unchanged", "busy", "in_doubt")
        return {key: self.count(key) for key in keys}


class DeliveryPoster:
    """Turns one store's fulfilment records into validated X3 deliveries. One instance per run."""

    def __init__(
        self,
        *,
        ledger: PostingLedger,
        x3: X3Client,
        mapping: ConnectorMapping,
        location_sites: Mapping[str, Mapping[str, str]],  # store → location GID → X3 site
        owner: str,
        business_timezone: str,
        lease_s: float = 900.0,
        workers: int = 4,
        cancel_action: str = "flag",
    ) -> None:
        if cancel_action != "flag":
            raise ValueError(f"fulfillment_cancel_action {cancel_action!r} is not supported (use 'flag')")
        self.ledger = ledger
        self.x3 = x3
        self.mapping = mapping
        self.location_sites = location_sites
        self.owner = owner
        self.timezone = business_timezone
        self.lease_s = lease_s
        self.workers = max(1, workers)

    # -- the partition -------------------------------------------------------------------------------
    def post_partition(self, store: str, partition: str, *, replay_failed: bool = True) -> DeliveryReport:
        """Deliver the partition's fulfilments, and every fulfilment of the store still waiting (staged).

        ``replay_failed``: also retry the partition's failed fulfilments (a re-materialization or a replay).
        """
        records = {r.id: r for r in self.ledger.records(store, partition, kind=RecordKind.FULFILLMENT)}
        # Waiting fulfilments of other days (order not invoiced then) are retried by any run of the store.
        for record in self.ledger.records_in_states(store, kind=RecordKind.FULFILLMENT, states=[RecordState.STAGED]):
            records.setdefault(record.id, record)
        report = DeliveryReport()
        work: list[LedgerRecord] = []
        for record in records.values():
            if record.state is RecordState.FAILED and replay_failed:
                record = self.ledger.replay(record.id, run_id=self.owner)
            cancelled_after_delivery = (
                record.state is RecordState.DELIVERED and (record.source_payload or {}).get("status") == CANCELLED
            )
            if record.state is RecordState.STAGED or cancelled_after_delivery:
                work.append(record)
            else:
                report.outcomes.append(self._outcome(record, "unchanged"))
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="x3-deliver") as pool:
            report.outcomes.extend(pool.map(self._process_safely, work))
        return report

    # -- one fulfilment --------------------------------------------------------------------------------
    def _process_safely(self, record: LedgerRecord) -> DeliveryOutcome:
        try:
            return self._process(record)
        except LeaseHeld:
            return self._outcome(record, "busy", message="another run holds this fulfilment's X3 operation")
        except (InvalidTransition, StaleRecord):
            return self._outcome(self.ledger.get_by_id(record.id), "busy", message="another run moved this record")
        except OperationInDoubt as exc:
            return self._outcome(record, "in_doubt", message=f"X3 outcome unknown; the next run looks it up: {exc}")
        except (ExactlyOnceError, X3Error) as exc:
            current = self.ledger.get_by_id(record.id)
            if current.state is RecordState.FAILED:
                return self._outcome(current, "failed")
            failed = self.ledger.mark_failed(
                record.id, "x3_unavailable", f"Sage X3 did not answer: {exc}. Nothing was delivered twice; "
                "re-materialize the partition once X3 is reachable.", run_id=self.owner,
                details={"state_before": current.state.value},
            )
            return self._outcome(failed, "failed")

    def _process(self, record: LedgerRecord) -> DeliveryOutcome:
        fulfillment = ShopifyFulfillment.model_validate(record.source_payload)
        store = record.store
        if fulfillment.status == CANCELLED:
            return self._cancelled(record, fulfillment)
        if record.state is not RecordState.STAGED:
            return self._outcome(record, "unchanged")
        if fulfillment.status != SUCCESS:
            if fulfillment.status in {"PENDING", "OPEN"}:
                return self._wait(record, WAITING_FOR_SHIPMENT,
                                  f"Shopify reports the fulfilment {fulfillment.status}: it is delivered once shipped")
            skipped = self.ledger.mark_skipped(
                record.id, "fulfillment_not_shipped",
                f"Shopify reports the fulfilment {fulfillment.status}: nothing was shipped", run_id=self.owner,
            )
            return self._outcome(skipped, "skipped")

        order = self.ledger.get(store, RecordKind.ORDER, fulfillment.order_id)
        invoice = str((order.x3_documents if order else {}).get("invoice") or "")
        if order is None or not invoice or not order.x3_customer:
            where = "not staged yet" if order is None else f"{order.state.value}, no X3 invoice yet"
            return self._wait(record, WAITING_FOR_INVOICE,
                              f"order {fulfillment.order_name or fulfillment.order_id} is {where}: the delivery is "
                              "created once the order is invoiced (retried by every run of the store)")
        try:
            items = self.mapping.for_customer(order.x3_customer, store).items
        except (KeyError, ValueError) as exc:
            return self._fail(record, "mapping", f"The mapping has no entry for customer {order.x3_customer}: {exc}",
                              {"field": "customer"})
        plan = plan_delivery(
            fulfillment, store=store, customer=order.x3_customer, invoice=invoice,
            location_sites=self.location_sites.get(store, {}), items=items, business_timezone=self.timezone,
        )
        if isinstance(plan, DeliveryFailure):
            return self._fail(record, plan.reason, plan.message, {"field": plan.field})

        created = self._create(record, plan)
        if created.status in {OutcomeStatus.REFUSED, OutcomeStatus.PREVIOUSLY_REFUSED}:
            return self._refused(record, created, "creating the delivery")
        number = created.document or ""
        if not (created.result or {}).get("validated"):
            validated = self._validate(record, plan, number)
            if validated.status in {OutcomeStatus.REFUSED, OutcomeStatus.PREVIOUSLY_REFUSED}:
                return self._refused(record, validated, "validating the delivery", {"delivery": number})
        lines = [{"line_item_id": line.line_item_id, "sku": line.sku, "item": line.item, "quantity": line.quantity}
                 for line in plan.lines]
        record = self.ledger.transition(
            record.id, RecordState.DELIVERED, run_id=self.owner, x3_customer=plan.customer,
            x3_documents={"delivery": number, "invoice": invoice},
            detail={"site": plan.site, "ship_date": plan.ship_date, "tracking": plan.tracking, "lines": lines,
                    "reference": plan.reference, "operation": created.status.value},
        )
        self._mark_order_delivered(order.id, fulfillment, number)
        return self._outcome(record, "delivered", plan=plan)

    def _cancelled(self, record: LedgerRecord, fulfillment: ShopifyFulfillment) -> DeliveryOutcome:
        """Cancelled in Shopify: nothing to do before a delivery exists; after one, flag it for a manual return."""
        operation = get_operation(self.ledger, create_key(record.store, record.source_id))
        number = record.x3_documents.get("delivery") or (
            operation.document if operation is not None and operation.state is OperationState.DONE else None
        )
        if operation is not None and operation.state is OperationState.SENDING:
            return self._outcome(record, "in_doubt", message="a delivery may be in flight; the next run decides")
        if number is None:
            if record.state is not RecordState.STAGED:
                return self._outcome(record, "unchanged")
            skipped = self.ledger.mark_skipped(
                record.id, "fulfillment_cancelled",
                "Cancelled in Shopify before any X3 delivery was created: nothing to reverse.", run_id=self.owner,
            )
            return self._outcome(skipped, "skipped")
        validated = record.state is RecordState.DELIVERED
        fix = ("create a customer return for it in X3 (the stock came out when it was validated)" if validated
               else "delete it in X3 if it is not validated, else create a customer return")
        return self._fail(
            record, "fulfillment_cancelled_after_delivery",
            f"Fulfilment {fulfillment.name or fulfillment.id} was cancelled in Shopify after X3 delivery {number} was "
            f"created. Fix: {fix}; the connector does not reverse deliveries (fulfillment_cancel_action=flag).",
            {"delivery": number, "validated": validated}, x3_documents={"delivery": number},
        )

    def _wait(self, record: LedgerRecord, reason: str, message: str) -> DeliveryOutcome:
        self.ledger.record_event(record.id, reason, run_id=self.owner, detail={"message": message})
        return self._outcome(record, "waiting", reason=reason, message=message)

    def _mark_order_delivered(self, order_record_id: int, fulfillment: ShopifyFulfillment, number: str) -> None:
        """The order lists its deliveries; a posted order moves to ``delivered`` (partly or fully)."""
        entry = {"delivery": number, "fulfillment": fulfillment.id,
                 "quantities": {line.line_item_id: line.quantity for line in fulfillment.lines}}
        for _attempt in range(5):
            order = self.ledger.get_by_id(order_record_id)
            deliveries = list(order.x3_documents.get("deliveries") or [])
            if any(d.get("delivery") == number for d in deliveries):
                return
            deliveries.append(entry)
            extent = delivery_extent(order.source_payload, deliveries)
            detail = {"delivery": number, "fulfillment": fulfillment.id, "delivered": extent}
            if order.state not in _ORDER_DELIVERED_FROM:
                # Not posted yet (or credited): its posting flow still owns the state. The order lists the delivery
                # now; posting moves it to `delivered` then (InvoicePoster), so the ledger never shows a shipped
                # order as merely posted.
                try:
                    self.ledger.record_event(order.id, "delivered", run_id=self.owner, detail=detail,
                                             x3_documents={"deliveries": deliveries},
                                             expected_revision=order.revision)
                except StaleRecord:
                    continue  # posted (or another delivery listed) meanwhile: read again
                return
            try:
                self.ledger.transition(
                    order.id, RecordState.DELIVERED, run_id=self.owner, event="delivered",
                    x3_documents={"deliveries": deliveries}, detail=detail, expected_revision=order.revision,
                )
                return
            except (StaleRecord, InvalidTransition):
                continue  # another fulfilment of the same order moved it: read again
        log.warning("order record %s changed five times while delivery %s was being listed", order_record_id, number)

    # -- X3 writes, exactly once -----------------------------------------------------------------------
    def _create(self, record: LedgerRecord, plan: DeliveryPlan) -> OperationOutcome:
        publication = self.x3.config.publications.delivery

        def send() -> RemoteResult:
            result = self.x3.save(publication, plan.to_x3_payload())
            return RemoteResult(document=str(result.field("SDHNUM")), details={"validated": False})

        return self._exactly_once(
            create_key(record.store, record.source_id), record, plan.reference, send=send,
            lookup=lambda: _delivery_found(self.x3.find_delivery_by_reference(plan.reference)),
            summary={"customer": plan.customer, "site": plan.site, "invoice": plan.invoice,
                     "lines": [[line.item, line.quantity] for line in plan.lines]},
        )

    def _validate(self, record: LedgerRecord, plan: DeliveryPlan, number: str) -> OperationOutcome:
        publications = self.x3.config.publications

        def send() -> RemoteResult:
            self.x3.action(publications.delivery, publications.delivery_validate_action, {"SDHNUM": number})
            return RemoteResult(document=number, details={"validated": True})

        return self._exactly_once(
            validate_key(record.store, record.source_id), record, plan.reference, send=send,
            lookup=lambda: _delivery_found(self.x3.find_delivery_by_reference(plan.reference), validated_only=True),
            summary={"delivery": number},
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
    def _refused(self, record: LedgerRecord, outcome: OperationOutcome, doing: str,
                 x3_documents: Mapping[str, Any] | None = None) -> DeliveryOutcome:
        error = outcome.operation.error or {}
        messages = error.get("messages") or [error.get("message") or str(outcome.exception or "refused")]
        text = "; ".join(str(m) for m in messages)
        lowered = text.lower()
        if "period" in lowered and "closed" in lowered:
            reason = "period_closed"
        elif "itmref" in lowered and "does not exist" in lowered:
            reason = "item_not_found"
        elif "stofcy" in lowered:
            reason = "site_invalid"
        else:
            reason = "x3_error"
        return self._fail(record, reason, f"X3 refused {doing}: {text}. Fix the data in X3 (or the mapping, the "
                          "location → site map), then re-materialize this partition.", {"x3_messages": messages},
                          x3_documents=x3_documents)

    def _fail(self, record: LedgerRecord, reason: str, message: str, details: Mapping[str, Any] | None = None,
              x3_documents: Mapping[str, Any] | None = None) -> DeliveryOutcome:
        failed = self.ledger.mark_failed(record.id, reason, message, run_id=self.owner, details=details,
                                         x3_documents=x3_documents)
        return self._outcome(failed, "failed")

    @staticmethod
    def _outcome(record: LedgerRecord, outcome: str, *, plan: DeliveryPlan | None = None,
                 reason: str | None = None, message: str | None = None) -> DeliveryOutcome:
        payload = record.source_payload or {}
        return DeliveryOutcome(
            fulfillment_id=record.source_id,
            fulfillment_name=record.source_name or record.source_id,
            order_id=str(payload.get("order_id") or ""),
            order_name=str(payload.get("order_name") or payload.get("order_id") or ""),
            outcome=outcome,
            state=record.state.value,
            delivery=(record.x3_documents or {}).get("delivery"),
            invoice=(record.x3_documents or {}).get("invoice"),
            lines=tuple((line.item, line.quantity) for line in plan.lines) if plan else (),
            tracking=plan.tracking if plan else "",
            reason=reason or (record.reason_code if outcome in {"failed", "skipped"} else None),
            message=message or (record.reason_message if outcome in {"failed", "skipped"} else None),
        )


def _delivery_found(delivery: X3DeliveryRef | None, *, validated_only: bool = False) -> RemoteResult | None:
    if delivery is None or (validated_only and not delivery.validated):
        return None
    return RemoteResult(document=delivery.number, details={"validated": delivery.validated})


def waiting_ready(ledger: PostingLedger, store: str) -> list[LedgerRecord]:
    """The store's fulfilments waiting for their order's invoice whose order now has one (for the sensor)."""
    ready = []
    for record in ledger.records_in_states(store, kind=RecordKind.FULFILLMENT, states=[RecordState.STAGED]):
        order_id = (record.source_payload or {}).get("order_id")
        order = ledger.get(store, RecordKind.ORDER, str(order_id)) if order_id else None
        if order is not None and order.x3_documents.get("invoice"):
            ready.append(record)
    return ready

