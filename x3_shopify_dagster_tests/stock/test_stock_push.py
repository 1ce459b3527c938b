"""X3 stock → Shopify levels against both sandboxes over real HTTP (flows.md §3, §4, §6)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from x3_shopify_dagster.domain.mapping import ItemMapping
from x3_shopify_dagster.posting.stock import (
    FailureCode,
    MovedItemSite,
    StockPusher,
    moved_item_sites,
)
from x3_shopify_dagster.sandboxes.shopify import ShopifySandbox
from x3_shopify_dagster.sandboxes.x3 import X3Sandbox
from x3_shopify_dagster.sandboxes.x3.records import Item
from x3_shopify_dagster.shopify import ShopifyClient, ShopifyTransportError
from x3_shopify_dagster.shopify.inventory import AdjustmentGroup, InventoryGateway, QuantityToSet
from x3_shopify_dagster.storage.exactly_once import OperationState, get_operation
from x3_shopify_dagster.storage.ledger import PostingLedger, RecordKind, SourceVersion
from x3_shopify_dagster.storage.stock import PushOutcome, SkuMapping, SkuStatus, StockMovementRow, StockStore
from x3_shopify_dagster.x3 import X3Client, X3ItemSiteStock
from x3_shopify_dagster_tests.stock.conftest import (
    SITE,
    STORE,
    ManualClock,
    inventory_item_gid,
    location_gid,
    shopify_level,
    x3_physical,
    x3_receipt,
)

PARTITION = "2026-11-27"


def moved_since(x3: X3Client, since: datetime, *, sites: Iterable[str] = (SITE,)) -> list[MovedItemSite]:
    """What x3_stock_movements stages and shopify_inventory_levels reads back, straight from X3."""
    rows = [
        StockMovementRow(m.key, m.site, m.item, m.transaction_type, m.quantity, m.voucher, m.updated_at, PARTITION)
        for m in x3.stock_movements_changed(since) if m.site in set(sites)
    ]
    return moved_item_sites(rows)


def add_fulfilment(ledger: PostingLedger, fid: int, lines: list[tuple[str, int]], location: str, *,
                   status: str = "SUCCESS") -> int:
    """A Shopify fulfilment whose X3 delivery is not validated yet, as the fulfilment flow records it."""
    payload = {"id": f"gid://shopify/Fulfillment/{fid}", "order_id": f"gid://shopify/Order/{fid}", "status": status,
               "location_id": location, "updated_at": "2026-11-27T09:00:00Z",
               "lines": [{"line_item_id": f"gid://shopify/LineItem/{fid}{n}", "sku": None,
                          "inventory_item_id": item, "quantity": qty} for n, (item, qty) in enumerate(lines)]}
    version = SourceVersion(store=STORE, kind=RecordKind.FULFILLMENT, source_id=payload["id"],
                            updated_at=datetime(2026, 11, 27, 9, tzinfo=UTC), content_hash=f"f{fid}",
                            partition=PARTITION, payload=payload)
    return ledger.observe(version, run_id="fulfilments").record.id


def start() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)


# ------------------------------------------------------------------------------------------- X3 reads
def test_x3_receipt_is_read_from_the_stock_journal_and_itmmvt(fresh_x3_sandbox: X3Sandbox, x3: X3Client) -> None:
    since = start()
    before = x3_physical(fresh_x3_sandbox, "CUP-PORC-6")
    receipt = x3_receipt(fresh_x3_sandbox, "CUP-PORC-6", 12)
    issue = x3_receipt(fresh_x3_sandbox, "TAMPER-58", -3, adjustment=True)

    movements = list(x3.stock_movements_changed(since))
    assert [(m.item, m.quantity, m.voucher) for m in movements] == [
        ("CUP-PORC-6", Decimal(12), receipt["voucher"]), ("TAMPER-58", Decimal(-3), issue["voucher"])]
    assert all(m.updated_at >= since for m in movements)
    assert movements[0].transaction_type == 3
    assert movements[1].transaction_type == 2
    assert len({m.key for m in movements}) == 2
    assert list(x3.stock_movements_changed(since, until=since)) == []

    stock = x3.stock_by_item_site([("CUP-PORC-6", SITE), ("TAMPER-58", SITE), ("CUP-PORC-6", "US011")])
    assert stock[("CUP-PORC-6", SITE)].physical == before + 12 == Decimal(str(receipt["physical"]))
    assert stock[("TAMPER-58", SITE)].physical == x3_physical(fresh_x3_sandbox, "TAMPER-58")
    assert stock[("CUP-PORC-6", "US011")].physical == x3_physical(fresh_x3_sandbox, "CUP-PORC-6", "US011")


def test_the_sandbox_refuses_an_issue_beyond_the_stock(fresh_x3_sandbox: X3Sandbox) -> None:
    physical = x3_physical(fresh_x3_sandbox, "TAMPER-58")
    response = httpx.post(f"{fresh_x3_sandbox.base_url}/_sandbox/{fresh_x3_sandbox.folder}/stock-adjustments",
                          auth=fresh_x3_sandbox.basic_credentials,
                          json={"item": "TAMPER-58", "site": SITE, "quantity": str(-(physical + 1))})
    assert response.status_code == 400
    assert "insufficient stock" in response.text
    assert x3_physical(fresh_x3_sandbox, "TAMPER-58") == physical


# ------------------------------------------------------------------------------------------- the push
def test_receipt_sets_the_shopify_level_to_x3_stock_minus_pending(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client, ledger: PostingLedger,
    stock_store: StockStore, make_pusher: Callable[..., StockPusher],
) -> None:
    """flows.md §4: quantity pushed = X3 physical stock - fulfilled units whose X3 delivery is not validated."""
    since = start()
    location = location_gid(fresh_shopify_sandbox)
    cups = inventory_item_gid(fresh_shopify_sandbox, "CUP-PORC-6")
    add_fulfilment(ledger, 1, [(cups, 2)], location)
    add_fulfilment(ledger, 2, [(cups, 1)], location)
    add_fulfilment(ledger, 3, [(cups, 30)], location, status="CANCELLED")  # counts zero
    receipt = x3_receipt(fresh_x3_sandbox, "CUP-PORC-6", 25)
    expected = int(x3_physical(fresh_x3_sandbox, "CUP-PORC-6")) - 3
    before = shopify_level(fresh_shopify_sandbox, "CUP-PORC-6")
    assert before != expected

    report = make_pusher().push(moved_since(x3, since), PARTITION)

    assert shopify_level(fresh_shopify_sandbox, "CUP-PORC-6") == expected
    assert (report.items_moved, report.quantities_set, report.unchanged, report.failures) == (1, 1, 0, [])
    (row,) = stock_store.pushes(STORE, PARTITION)
    assert (row.outcome, row.quantity, row.previous_quantity, row.pending_fulfilled) == (
        PushOutcome.SET, expected, before, 3)
    assert row.x3_physical == x3_physical(fresh_x3_sandbox, "CUP-PORC-6")
    assert row.trigger is not None
    assert row.trigger["vouchers"] == [receipt["voucher"]]
    assert row.adjustment_group is not None
    assert row.adjustment_group.startswith("gid://shopify/InventoryAdjustmentGroup/")
    assert row.run_id == "run-1"
    operation = get_operation(ledger, row.operation_key or "")
    assert operation is not None
    assert operation.state is OperationState.DONE
    assert operation.request_summary is not None
    sent = operation.request_summary["input"]
    assert sent["referenceDocumentUri"] == f"gid://x3-shopify-dagster/X3StockDocument/{receipt['voucher']}"
    assert sent["reason"] == "correction"
    assert sent["name"] == "on_hand"
    assert sent["quantities"] == [{"inventoryItemId": cups, "locationId": location, "quantity": expected,
                                   "changeFromQuantity": before}]
    assert stock_store.sku_mapping(STORE, "CUP-PORC-6").status is SkuStatus.MAPPED  # type: ignore[union-attr]

    # A second run of the same window: nothing to change, nothing sent.
    again = make_pusher(owner="run-2").push(moved_since(x3, since), PARTITION)
    assert (again.quantities_set, again.unchanged, again.calls) == (0, 1, 0)


def test_available_can_be_the_quantity_set(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client,
    make_pusher: Callable[..., StockPusher],
) -> None:
    since = start()
    x3_receipt(fresh_x3_sandbox, "MILK-JUG-35", 4)
    make_pusher(quantity_name="available").push(moved_since(x3, since), PARTITION)
    assert shopify_level(fresh_shopify_sandbox, "MILK-JUG-35", "available") == int(
        x3_physical(fresh_x3_sandbox, "MILK-JUG-35"))


def test_unmapped_and_ambiguous_skus_are_flagged_never_guessed(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client, stock_store: StockStore,
    make_pusher: Callable[..., StockPusher],
) -> None:
    since = start()
    x3_receipt(fresh_x3_sandbox, "DESCALER-1L", 5)  # stocked in X3, on no Shopify variant
    x3_receipt(fresh_x3_sandbox, "BEANS-DECAF-1KG", 5)  # on two Shopify variants
    store = fresh_shopify_sandbox.state.store(STORE)
    levels_before = {key: dict(level.quantities) for key, level in store.inventory.items()}

    report = make_pusher().push(moved_since(x3, since), PARTITION)

    assert report.quantities_set == 0
    assert report.unmapped_skus == ["BEANS-DECAF-1KG", "DESCALER-1L"]
    reasons = {r.x3_item: (r.reason_code, r.reason_message) for r in report.failures}
    assert reasons["DESCALER-1L"][0] == FailureCode.SKU_NOT_FOUND
    assert "No Shopify variant has SKU DESCALER-1L" in (reasons["DESCALER-1L"][1] or "")
    assert reasons["BEANS-DECAF-1KG"][0] == FailureCode.SKU_AMBIGUOUS
    assert "on 2 Shopify variants" in (reasons["BEANS-DECAF-1KG"][1] or "")
    assert {key: dict(level.quantities) for key, level in store.inventory.items()} == levels_before
    ambiguous = stock_store.sku_mapping(STORE, "BEANS-DECAF-1KG")
    assert ambiguous is not None
    assert ambiguous.status is SkuStatus.AMBIGUOUS
    assert len(ambiguous.candidates) == 2
    assert [r.outcome for r in stock_store.pushes(STORE)] == [PushOutcome.FAILED, PushOutcome.FAILED]


class FlakyGateway(InventoryGateway):
    """The real gateway, with hooks around `set_quantities` (a crash after the write, a concurrent change)."""

    def __init__(self, client: ShopifyClient, *, before: Callable[[], None] | None = None,
                 fail_after: bool = False, fail_before: bool = False) -> None:
        super().__init__(client)
        self.before, self.fail_after, self.fail_before = before, fail_after, fail_before
        self.keys: list[str] = []

    def set_quantities(self, *, name: str, reason: str, reference_document_uri: str,
                       quantities: Any, idempotency_key: str) -> AdjustmentGroup:
        self.keys.append(idempotency_key)
        if self.before is not None:
            hook, self.before = self.before, None
            hook()
        if self.fail_before:
            self.fail_before = False
            raise ShopifyTransportError("ReadTimeout: connection dropped before the request was read")
        group = super().set_quantities(name=name, reason=reason, reference_document_uri=reference_document_uri,
                                       quantities=quantities, idempotency_key=idempotency_key)
        if self.fail_after:
            self.fail_after = False
            raise ShopifyTransportError("ReadTimeout: the answer was lost")
        return group


def test_change_from_quantity_stale_rereads_and_retries(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client, shopify: ShopifyClient,
    stock_store: StockStore, make_pusher: Callable[..., StockPusher],
) -> None:
    """flows.md §4: a stale compare re-reads. An order committing units between our read and our write."""
    since = start()
    x3_receipt(fresh_x3_sandbox, "TAMPER-58", 7)
    store = fresh_shopify_sandbox.state.store(STORE)
    variant = store.variant_by_sku("TAMPER-58")
    assert variant is not None

    def someone_sells_one() -> None:
        fresh_shopify_sandbox.state.adjust_inventory(STORE, variant.inventory_item_id,
                                                     store.default_location.legacy_id, {"on_hand": -1})

    gateway = FlakyGateway(shopify, before=someone_sells_one)
    report = make_pusher(inventory=gateway).push(moved_since(x3, since), PARTITION)

    assert shopify_level(fresh_shopify_sandbox, "TAMPER-58") == int(x3_physical(fresh_x3_sandbox, "TAMPER-58"))
    assert report.stale_retries == 1
    assert report.quantities_set == 1
    assert report.failures == []
    assert len(set(gateway.keys)) == 2  # a new read, a new key: the refused request is never re-sent as such
    (row,) = stock_store.pushes(STORE)
    assert row.outcome is PushOutcome.SET


def test_stale_retries_are_bounded(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client, shopify: ShopifyClient,
    make_pusher: Callable[..., StockPusher],
) -> None:
    since = start()
    x3_receipt(fresh_x3_sandbox, "TAMPER-58", 7)
    store = fresh_shopify_sandbox.state.store(STORE)
    variant = store.variant_by_sku("TAMPER-58")
    assert variant is not None

    class AlwaysMoving(InventoryGateway):
        def set_quantities(self, **kwargs: Any) -> AdjustmentGroup:
            fresh_shopify_sandbox.state.adjust_inventory(STORE, variant.inventory_item_id,
                                                         store.default_location.legacy_id, {"on_hand": -1})
            return super().set_quantities(**kwargs)

    report = make_pusher(inventory=AlwaysMoving(shopify), stale_retries=2).push(moved_since(x3, since), PARTITION)
    assert report.stale_retries == 2
    (failure,) = report.failures
    assert failure.reason_code == FailureCode.STALE_RETRIES_EXHAUSTED


def test_a_lost_answer_is_resolved_without_a_second_adjustment(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client, shopify: ShopifyClient,
    ledger: PostingLedger, ledger_clock: ManualClock, stock_store: StockStore,
    make_pusher: Callable[..., StockPusher],
) -> None:
    """flows.md §3: the write happened but its answer was lost (in doubt); the re-run adds no adjustment."""
    since = start()
    x3_receipt(fresh_x3_sandbox, "CLEAN-TABS-60", 9)
    target = int(x3_physical(fresh_x3_sandbox, "CLEAN-TABS-60"))
    idempotency = fresh_shopify_sandbox.state.store(STORE).idempotency

    crashed = make_pusher(inventory=FlakyGateway(shopify, fail_after=True)).push(moved_since(x3, since), PARTITION)
    assert crashed.in_doubt == 1
    assert crashed.failures[0].reason_code == FailureCode.OUTCOME_UNKNOWN
    assert shopify_level(fresh_shopify_sandbox, "CLEAN-TABS-60") == target  # it did happen
    assert len(idempotency) == 1

    ledger_clock.now += timedelta(minutes=5)  # the crashed run's lease expires
    rerun = make_pusher(owner="run-2").push(moved_since(x3, since), PARTITION)
    assert (rerun.unchanged, rerun.quantities_set, rerun.calls) == (1, 0, 0)
    assert len(idempotency) == 1  # one adjustment in Shopify, whatever happened
    assert shopify_level(fresh_shopify_sandbox, "CLEAN-TABS-60") == target


def test_an_unsent_write_in_doubt_is_looked_up_then_resent_with_the_same_key(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client, shopify: ShopifyClient,
    ledger: PostingLedger, ledger_clock: ManualClock, make_pusher: Callable[..., StockPusher],
) -> None:
    since = start()
    x3_receipt(fresh_x3_sandbox, "CLEAN-TABS-60", 9)
    target = int(x3_physical(fresh_x3_sandbox, "CLEAN-TABS-60"))
    first = FlakyGateway(shopify, fail_before=True)
    crashed = make_pusher(inventory=first).push(moved_since(x3, since), PARTITION)
    assert crashed.in_doubt == 1
    assert shopify_level(fresh_shopify_sandbox, "CLEAN-TABS-60") != target

    # Another run while the lease is live never touches the operation in flight.
    blocked = make_pusher(owner="run-2").push(moved_since(x3, since), PARTITION)
    assert blocked.in_doubt == 1
    assert blocked.calls == 0

    ledger_clock.now += timedelta(minutes=5)
    second = FlakyGateway(shopify)
    rerun = make_pusher(owner="run-3", inventory=second).push(moved_since(x3, since), PARTITION)
    assert rerun.quantities_set == 1
    assert second.keys == first.keys  # the lookup found nothing: the same request, the same key
    assert shopify_level(fresh_shopify_sandbox, "CLEAN-TABS-60") == target
    key = crashed.failures[0].operation_key or ""
    operation = get_operation(ledger, key)
    assert operation is not None
    assert operation.state is OperationState.DONE
    assert operation.attempts == 2


def test_the_same_idempotency_key_replays_without_a_second_adjustment(
    fresh_shopify_sandbox: ShopifySandbox, shopify: ShopifyClient,
) -> None:
    gateway = InventoryGateway(shopify)
    item, location = inventory_item_gid(fresh_shopify_sandbox, "KNOCK-BOX-S"), location_gid(fresh_shopify_sandbox)
    before = shopify_level(fresh_shopify_sandbox, "KNOCK-BOX-S")
    quantities = [QuantityToSet(item, location, before + 5, before)]
    kwargs: dict[str, Any] = {"name": "on_hand", "reason": "correction", "quantities": quantities,
                              "reference_document_uri": "gid://x3-shopify-dagster/X3StockDocument/MR1",
                              "idempotency_key": "4b7d0a64-2d7e-5a7e-8d1b-000000000001"}
    first = gateway.set_quantities(**kwargs)
    second = gateway.set_quantities(**kwargs)
    assert first.id == second.id is not None
    assert shopify_level(fresh_shopify_sandbox, "KNOCK-BOX-S") == before + 5


def test_the_read_order_under_sells_when_a_delivery_is_validated_in_between(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client, ledger: PostingLedger,
    make_pusher: Callable[..., StockPusher],
) -> None:
    """flows.md §4: pending quantities are read BEFORE X3's stock. A delivery validated between the two reads
    (pending record delivered, X3 stock issued) is then subtracted twice - Shopify shows fewer units than it
    could, never more than are on the shelf."""
    since = start()
    location = location_gid(fresh_shopify_sandbox)
    cups = inventory_item_gid(fresh_shopify_sandbox, "CUP-PORC-6")
    record = add_fulfilment(ledger, 1, [(cups, 4)], location)
    x3_receipt(fresh_x3_sandbox, "CUP-PORC-6", 10)
    physical_before = int(x3_physical(fresh_x3_sandbox, "CUP-PORC-6"))
    order: list[str] = []

    class DeliveryValidatedDuringTheRead:
        def stock_by_item_site(self, pairs: Iterable[tuple[str, str]]) -> Mapping[tuple[str, str], X3ItemSiteStock]:
            order.append("x3")
            # The X3 delivery of the 4 fulfilled units is validated now: stock leaves X3, the record is delivered.
            fresh_x3_sandbox.state.stock_adjustment("CUP-PORC-6", SITE, -4)
            with ledger.database.transaction(write=True) as connection:
                connection.exec_driver_sql(f"UPDATE ledger_records SET state = 'delivered' WHERE id = {record}")
            return x3.stock_by_item_site(pairs)

    pusher = make_pusher(x3=DeliveryValidatedDuringTheRead(), refresh_pending=lambda store: order.append(store))
    pusher.push(moved_since(x3, since), PARTITION)

    on_the_shelf = physical_before - 4  # the truth after the validation
    assert order == [STORE, "x3"]
    assert shopify_level(fresh_shopify_sandbox, "CUP-PORC-6") == on_the_shelf - 4  # double-subtracted: safe
    assert shopify_level(fresh_shopify_sandbox, "CUP-PORC-6") <= on_the_shelf


@pytest.mark.parametrize("extra_items", [260])
def test_more_than_250_quantities_are_split_into_calls(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client, stock_store: StockStore,
    make_pusher: Callable[..., StockPusher], extra_items: int,
) -> None:
    since = start()
    state = fresh_x3_sandbox.state
    now = datetime.now(UTC)
    for n in range(extra_items):
        code = f"BULK-{n:04d}"
        with state.lock:
            state.tables.items[code] = Item(code, f"Bulk item {n}", True, "UN", Decimal(1), now)
        fresh_shopify_sandbox.state.add_product(STORE, code, f"Bulk item {n}", on_hand=0)
        state.stock_receipt(code, SITE, n + 1)

    report = make_pusher().push(moved_since(x3, since), PARTITION)

    assert report.items_moved == extra_items
    assert report.quantities_set == extra_items
    assert report.calls == 2  # 250 + 10
    assert len(set(report.adjustment_groups)) == 2
    assert shopify_level(fresh_shopify_sandbox, "BULK-0259") == 260
    assert shopify_level(fresh_shopify_sandbox, "BULK-0000") == 1


# ------------------------------------------------------------------------------------------- the items mapping
def _items(identity: bool = True, **overrides: str | None) -> ItemMapping:
    return ItemMapping(identity=identity, overrides=dict(overrides), without_sku=None)


def test_a_variant_whose_sku_the_mapping_overrides_follows_the_x3_item(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client, ledger: PostingLedger,
    stock_store: StockStore, make_pusher: Callable[..., StockPusher],
) -> None:
    """docs/mapping.md "Items": `items.overrides: {DESCALER-SHOP: DESCALER-1L}` (identity on). The Shopify variant
    with SKU DESCALER-SHOP carries X3 item DESCALER-1L's stock; no variant has SKU DESCALER-1L, which is normal."""
    since = start()
    fresh_shopify_sandbox.state.add_product(STORE, "DESCALER-SHOP", "Descaler 1 L", on_hand=0)
    location = location_gid(fresh_shopify_sandbox)
    shop_item = inventory_item_gid(fresh_shopify_sandbox, "DESCALER-SHOP")
    add_fulfilment(ledger, 1, [(shop_item, 2)], location)
    receipt = x3_receipt(fresh_x3_sandbox, "DESCALER-1L", 9)
    expected = int(x3_physical(fresh_x3_sandbox, "DESCALER-1L")) - 2
    items = _items(**{"DESCALER-SHOP": "DESCALER-1L"})

    # Without the mapping (today's behaviour with no mapping file): the item code is the SKU, and no variant has it.
    plain = make_pusher(owner="run-0").push(moved_since(x3, since), PARTITION)
    assert [(r.x3_item, r.reason_code) for r in plain.failures] == [("DESCALER-1L", FailureCode.SKU_NOT_FOUND)]
    assert shopify_level(fresh_shopify_sandbox, "DESCALER-SHOP") == 0

    report = make_pusher(items=items).push(moved_since(x3, since), PARTITION)

    assert (report.quantities_set, report.failures, report.unmapped_skus) == (1, [], [])
    assert shopify_level(fresh_shopify_sandbox, "DESCALER-SHOP") == expected
    row = stock_store.pushes(STORE, PARTITION)[-1]
    assert (row.x3_item, row.shopify_sku, row.outcome, row.inventory_item_id) == (
        "DESCALER-1L", "DESCALER-SHOP", PushOutcome.SET, shop_item)
    assert (row.quantity, row.pending_fulfilled) == (expected, 2)
    assert row.trigger is not None
    assert row.trigger["vouchers"] == [receipt["voucher"]]
    assert row.trigger["shopify_sku"] == "DESCALER-SHOP"
    # The persisted lookups are keyed by SKU: the one carrying the item, and the item code no variant has.
    mapped = stock_store.sku_mapping(STORE, "DESCALER-SHOP")
    assert mapped is not None
    assert (mapped.status, mapped.inventory_item_id) == (SkuStatus.MAPPED, shop_item)
    assert stock_store.sku_mapping(STORE, "DESCALER-1L").status is SkuStatus.NOT_FOUND  # type: ignore[union-attr]

    # The variant is deleted and recreated in Shopify: the stale mapping is forgotten by its SKU, then found again.
    stock_store.save_sku_mapping(SkuMapping(STORE, "DESCALER-SHOP", SkuStatus.MAPPED,
                                            "gid://shopify/InventoryItem/987654321"))
    x3_receipt(fresh_x3_sandbox, "DESCALER-1L", 1)
    gone = make_pusher(owner="run-2", items=items).push(moved_since(x3, since), PARTITION)
    (failure,) = gone.failures
    assert (failure.reason_code, failure.shopify_sku) == (FailureCode.INVENTORY_ITEM_MISSING, "DESCALER-SHOP")
    assert "SKU DESCALER-SHOP, X3 item DESCALER-1L" in (failure.reason_message or "")
    assert stock_store.sku_mapping(STORE, "DESCALER-SHOP") is None
    again = make_pusher(owner="run-3", items=items).push(moved_since(x3, since), PARTITION)
    assert again.quantities_set == 1
    assert shopify_level(fresh_shopify_sandbox, "DESCALER-SHOP") == expected + 1


def test_an_old_sku_kept_in_the_overrides_does_not_block_the_one_on_a_variant(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client,
    make_pusher: Callable[..., StockPusher],
) -> None:
    """Two SKUs map to the item (the old one kept for refunds of old orders), only one is on a Shopify variant:
    that one carries the stock."""
    since = start()
    fresh_shopify_sandbox.state.add_product(STORE, "DESC-NEW", "Descaler 1 L", on_hand=0)
    x3_receipt(fresh_x3_sandbox, "DESCALER-1L", 4)
    items = _items(False, **{"DESC-OLD": "DESCALER-1L", "DESC-NEW": "DESCALER-1L"})
    report = make_pusher(items=items).push(moved_since(x3, since), PARTITION)
    assert (report.quantities_set, report.failures) == (1, [])
    assert shopify_level(fresh_shopify_sandbox, "DESC-NEW") == int(x3_physical(fresh_x3_sandbox, "DESCALER-1L"))


def test_an_item_the_mapping_gives_several_variants_or_none_fails_and_touches_no_level(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client, stock_store: StockStore,
    make_pusher: Callable[..., StockPusher],
) -> None:
    since = start()
    fresh_shopify_sandbox.state.add_product(STORE, "DESC-A", "Descaler 1 L", on_hand=3)
    fresh_shopify_sandbox.state.add_product(STORE, "DESC-B", "Descaler 1 L (bundle)", on_hand=5)
    fresh_shopify_sandbox.state.add_product(STORE, "TAMPER-OLD", "Tamper (old listing)", on_hand=1)
    x3_receipt(fresh_x3_sandbox, "DESCALER-1L", 6)  # two overrides, both on variants
    x3_receipt(fresh_x3_sandbox, "TAMPER-58", 2)  # an override and the identity SKU, both on variants
    x3_receipt(fresh_x3_sandbox, "CUP-PORC-6", 2)  # overridden to null: no SKU at all
    items = _items(**{"DESC-A": "DESCALER-1L", "DESC-B": "DESCALER-1L", "TAMPER-OLD": "TAMPER-58",
                      "CUP-PORC-6": None})
    store = fresh_shopify_sandbox.state.store(STORE)
    levels_before = {key: dict(level.quantities) for key, level in store.inventory.items()}

    report = make_pusher(items=items).push(moved_since(x3, since), PARTITION)

    assert (report.quantities_set, report.calls) == (0, 0)
    assert {key: dict(level.quantities) for key, level in store.inventory.items()} == levels_before
    reasons = {r.x3_item: (r.reason_code, r.reason_message or "") for r in report.failures}
    assert reasons["DESCALER-1L"][0] == FailureCode.ITEM_MAPPED_TO_SEVERAL_SKUS
    assert "DESC-A (items.overrides.DESC-A), DESC-B (items.overrides.DESC-B)" in reasons["DESCALER-1L"][1]
    assert reasons["TAMPER-58"][0] == FailureCode.ITEM_MAPPED_TO_SEVERAL_SKUS
    assert "TAMPER-OLD (items.overrides.TAMPER-OLD), TAMPER-58 (items.identity)" in reasons["TAMPER-58"][1]
    assert reasons["CUP-PORC-6"][0] == FailureCode.ITEM_NOT_MAPPED_TO_SKU
    assert "items.overrides.CUP-PORC-6 maps SKU CUP-PORC-6 to no X3 item" in reasons["CUP-PORC-6"][1]
    assert report.unmapped_skus == ["CUP-PORC-6", "DESCALER-1L", "TAMPER-58"]
    assert {r.outcome for r in stock_store.pushes(STORE)} == {PushOutcome.FAILED}


def test_sku_not_found_and_ambiguous_name_the_item_and_the_sku(
    fresh_x3_sandbox: X3Sandbox, fresh_shopify_sandbox: ShopifySandbox, x3: X3Client,
    make_pusher: Callable[..., StockPusher],
) -> None:
    since = start()
    fresh_shopify_sandbox.state.add_product(STORE, "TWICE", "Tamper", on_hand=0)
    fresh_shopify_sandbox.state.add_product(STORE, "TWICE", "Tamper (copy)", on_hand=0)
    x3_receipt(fresh_x3_sandbox, "TAMPER-58", 1)
    x3_receipt(fresh_x3_sandbox, "DESCALER-1L", 1)
    items = _items(False, TWICE="TAMPER-58", **{"DESC-GONE": "DESCALER-1L"})
    report = make_pusher(items=items).push(moved_since(x3, since), PARTITION)
    rows = {r.x3_item: r for r in report.failures}
    ambiguous, missing = rows["TAMPER-58"], rows["DESCALER-1L"]
    assert (ambiguous.reason_code, ambiguous.shopify_sku) == (FailureCode.SKU_AMBIGUOUS, "TWICE")
    assert "SKU TWICE (X3 item TAMPER-58) is on 2 Shopify variants" in (ambiguous.reason_message or "")
    assert "items.overrides.TWICE" in (ambiguous.reason_message or "")
    assert (missing.reason_code, missing.shopify_sku) == (FailureCode.SKU_NOT_FOUND, "DESC-GONE")
    assert "No Shopify variant has SKU DESC-GONE (items.overrides.DESC-GONE)" in (missing.reason_message or "")
    assert "X3 item DESCALER-1L" in (missing.reason_message or "")
    assert report.unmapped_skus == ["DESCALER-1L (SKU DESC-GONE)", "TAMPER-58 (SKU TWICE)"]
