"""The sandbox's in-memory stores, and the helpers tests and the traffic generator use to change them.

Thread-safe: every change happens under one re-entrant lock. Orders are immutable records replaced on each
change (``updatedAt`` bumped like Shopify does), so readers work on snapshots without holding the lock.
"""

from __future__ import annotations

import random
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from x3_shopify_dagster.sandboxes import demo_data
from x3_shopify_dagster.sandboxes.shopify import lifecycle, seed
from x3_shopify_dagster.sandboxes.shopify.catalog import (
    ON_HAND_PARTS,
    IdAllocator,
    StoreData,
    add_listing,
    build_store,
)
from x3_shopify_dagster.sandboxes.shopify.config import SandboxConfig
from x3_shopify_dagster.sandboxes.shopify.models import (
    BulkOperation,
    Customer,
    Fulfillment,
    InventoryLevel,
    Order,
    Refund,
    TrackingInfo,
    gid,
    parse_gid,
)
from x3_shopify_dagster.sandboxes.shopify.pagination import Page, PageRequest, SortKey, paginate
from x3_shopify_dagster.sandboxes.shopify.pricing import CartSpec, DiscountSpec, ShippingSpec
from x3_shopify_dagster.sandboxes.shopify.search import Bound, CompiledSearch, SearchField, compile_search

Clock = Callable[[], datetime]

# sortKey -> (value of an order, search field whose range can narrow a scan, cursor value kind)
ORDER_SORT_KEYS: dict[str, tuple[Callable[[Order], Any], str | None, str]] = {
    "UPDATED_AT": (lambda o: o.updated_at, "updated_at", "time"),
    "CREATED_AT": (lambda o: o.created_at, "created_at", "time"),
    "PROCESSED_AT": (lambda o: o.processed_at, "processed_at", "time"),
    "ID": (lambda o: o.legacy_id, "id", "int"),
    "ORDER_NUMBER": (lambda o: o.number, None, "int"),
}

_FULFILLMENT_STATUS_TERMS = {
    "shipped": ("FULFILLED",), "fulfilled": ("FULFILLED",), "partial": ("PARTIALLY_FULFILLED",),
    "unshipped": ("UNFULFILLED",), "unfulfilled": ("UNFULFILLED", "PARTIALLY_FULFILLED"),
}


def _status_matches(order: Order, wanted: str) -> bool:
    if wanted == "cancelled":
        return order.cancelled_at is not None
    if wanted == "closed":
        return order.closed_at is not None
    if wanted == "open":
        return order.closed_at is None and order.cancelled_at is None
    if wanted == "not_closed":
        return order.closed_at is None
    return False


ORDER_SEARCH_FIELDS: dict[str, SearchField] = {
    "updated_at": SearchField(lambda o: o.updated_at, "time"),
    "created_at": SearchField(lambda o: o.created_at, "time"),
    "processed_at": SearchField(lambda o: o.processed_at, "time"),
    "id": SearchField(lambda o: o.legacy_id, "int"),
    "test": SearchField(lambda o: o.test, "bool"),
    "email": SearchField(lambda o: o.email),
    "name": SearchField(lambda o: (o.name, str(o.number)), "any_text"),
    "sku": SearchField(lambda o: [line.item.sku for line in o.cart.lines], "any_text"),
    "financial_status": SearchField(lambda o: o.financial_status.lower()),
    "status": SearchField(lambda o: [s for s in ("open", "closed", "cancelled", "not_closed")
                                     if _status_matches(o, s)], "any_text"),
    "fulfillment_status": SearchField(
        lambda o: [term for term, states in _FULFILLMENT_STATUS_TERMS.items()
                   if o.display_fulfillment_status in states], "any_text"),
    "customer_id": SearchField(lambda o: o.customer.legacy_id if o.customer else None, "int"),
    "source_name": SearchField(lambda o: o.source_name),
}


def _real_clock() -> datetime:
    return datetime.now(UTC)


class SandboxState:
    """All stores of one sandbox. Public helpers take GIDs (``gid://shopify/Order/…``) or numeric ids."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._lock = threading.RLock()
        self._clock: Clock = config.clock or _real_clock
        self._ids = IdAllocator()
        self._rng = random.Random(f"shopify-sandbox:{config.seed}")
        self._stores: dict[str, StoreData] = {}
        self._order_store: dict[int, str] = {}
        self._factories: dict[str, seed.OrderFactory] = {}
        self.bulk_operations: dict[int, BulkOperation] = {}
        now = self.now()
        for key in config.stores:
            store_rng = random.Random(f"shopify-sandbox:{config.seed}:{key}")
            store = build_store(key, self._ids, store_rng, now)
            self._stores[key] = store
            self._factories[key] = seed.OrderFactory(store, self._ids, store_rng)
        for key in config.stores:
            for order in seed.seed_history(self._factories[key], config.orders_per_store, now,
                                           config.history_days):
                self._put(order)
        # After the history, so the seeded orders are the same with or without them.
        for key in config.stores:
            for product in demo_data.DUPLICATE_SKU_LISTINGS:
                add_listing(self._stores[key], self._ids, product, now)

    # -- clock and locking -------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The store clock, truncated to whole seconds like Shopify's timestamps."""
        moment = self._clock()
        if moment.tzinfo is None:
            raise ValueError("the sandbox clock must return timezone-aware datetimes")
        return moment.astimezone(UTC).replace(microsecond=0)

    def set_clock(self, clock: Clock | None) -> None:
        """Use ``clock`` (returning aware UTC datetimes) from now on; ``None`` restores real time."""
        with self._lock:
            self._clock = clock or _real_clock

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            yield

    def next_id(self, kind: str) -> int:
        with self._lock:
            return self._ids.next(kind)

    # -- stores --------------------------------------------------------------------------------------------
    @property
    def store_keys(self) -> tuple[str, ...]:
        return tuple(self._stores)

    def store(self, key: str) -> StoreData:
        try:
            return self._stores[key]
        except KeyError:
            raise KeyError(f"unknown sandbox store {key!r}; serving {list(self._stores)}") from None

    def timezone(self, key: str) -> ZoneInfo:
        return ZoneInfo(self.store(key).demo.iana_timezone)

    # -- orders: reads -------------------------------------------------------------------------------------
    def order(self, order_id: str | int) -> Order:
        legacy_id = self._order_id(order_id)
        with self._lock:
            return self._stores[self._order_store[legacy_id]].orders[legacy_id]

    def find_order(self, store_key: str, order_id: str | int) -> Order | None:
        legacy_id = parse_gid(order_id, "Order")
        if legacy_id is None:
            return None
        return self.store(store_key).orders.get(legacy_id)

    def find_refund(self, store_key: str, refund_id: str | int) -> tuple[Order, Refund] | None:
        return self._find_child(store_key, parse_gid(refund_id, "Refund"), "refund_owner", "refunds")

    def find_fulfillment(self, store_key: str, fulfillment_id: str | int) -> tuple[Order, Fulfillment] | None:
        return self._find_child(store_key, parse_gid(fulfillment_id, "Fulfillment"), "fulfillment_owner",
                                "fulfillments")

    def _find_child(self, store_key: str, child_id: int | None, index: str, attribute: str) -> Any:
        if child_id is None:
            return None
        with self._lock:
            store = self.store(store_key)
            order = store.orders.get(getattr(store, index).get(child_id, -1))
        if order is None:
            return None
        child = next((c for c in getattr(order, attribute) if c.legacy_id == child_id), None)
        return (order, child) if child is not None else None

    def orders(self, store_key: str) -> list[Order]:
        """Every order of the store, oldest first (a snapshot)."""
        with self._lock:
            return list(self.store(store_key).orders.values())

    def _sorted(self, store: StoreData, sort_key: str) -> tuple[list[Order], list[SortKey]]:
        with self._lock:
            cached = store.sorted_cache.get(sort_key)
            if cached and cached[0] == store.version:
                return cached[1], cached[2]  # type: ignore[return-value]
            value_of = ORDER_SORT_KEYS[sort_key][0]
            ordered = sorted(store.orders.values(), key=lambda o: (value_of(o), o.legacy_id))
            keys = [(value_of(o), o.legacy_id) for o in ordered]
            store.sorted_cache[sort_key] = (store.version, ordered, keys)  # type: ignore[assignment]
            return ordered, keys

    def compile_order_search(self, store_key: str, query: str | None) -> CompiledSearch:
        return compile_search(query, ORDER_SEARCH_FIELDS, tz=self.timezone(store_key), now=self.now())

    def order_page(self, store_key: str, query: str | None, sort_key: str, request: PageRequest) -> Page:
        store = self.store(store_key)
        search = self.compile_order_search(store_key, query)
        ordered, keys = self._sorted(store, sort_key)
        low, high = _index_range(keys, search.bounds.get(ORDER_SORT_KEYS[sort_key][1] or ""))
        return paginate(ordered, keys, request, search.matches, low, high)

    def count_orders(self, store_key: str, query: str | None, limit: int | None) -> tuple[int, bool]:
        """(count, exact): like ``ordersCount``, stops at ``limit`` and reports AT_LEAST then."""
        search = self.compile_order_search(store_key, query)
        count = 0
        for order in self.orders(store_key):
            if search.matches(order):
                count += 1
                if limit is not None and count >= limit:
                    return limit, False
        return count, True

    # -- orders: writes ------------------------------------------------------------------------------------
    def _put(self, order: Order) -> Order:
        with self._lock:
            store = self._stores[order.store]
            store.orders[order.legacy_id] = order
            store.version += 1
            self._order_store[order.legacy_id] = order.store
            for refund in order.refunds:
                store.refund_owner[refund.legacy_id] = order.legacy_id
            for fulfillment in order.fulfillments:
                store.fulfillment_owner[fulfillment.legacy_id] = order.legacy_id
            return order

    def _order_id(self, order_id: str | int) -> int:
        legacy_id = parse_gid(order_id, "Order")
        if legacy_id is None or legacy_id not in self._order_store:
            raise KeyError(f"no sandbox order {order_id!r}")
        return legacy_id

    def _change(self, order_id: str | int, change: Callable[[Order, datetime], Order]) -> Order:
        with self._lock:
            before = self.order(order_id)
            after = change(before, self.now())
            self._apply_inventory(before, after)
            return self._put(after)

    def create_order(self, store_key: str, *, email: str | None = None,
                     lines: Sequence[tuple[str, int]] | None = None, guest: bool = False, test: bool = False,
                     financial_status: str = "PAID", discounts: Sequence[DiscountSpec] = (),
                     shipping: Sequence[ShippingSpec] | None = None, presentment_currency: str | None = None,
                     source_name: str = "web") -> str:
        """Create an order and return its GID.

        ``lines`` are (sku, quantity) pairs from the demo catalog (random lines when omitted). ``email`` picks
        the demo customer with that address (a guest checkout when ``guest`` or when nobody has it); without
        it a random demo customer buys. ``shipping=None`` adds the store's standard rate.
        """
        with self._lock:
            store, factory = self.store(store_key), self._factories[store_key]
            if lines is None:
                line_specs = factory.random_lines()
            else:
                line_specs = []
                for sku, quantity in lines:
                    variant = store.variant_by_sku(sku)
                    if variant is None:
                        raise KeyError(f"SKU {sku!r} is not in the {store_key} sandbox catalog")
                    line_specs.append(factory.line(variant, quantity))
            customer: Customer | None
            if email is not None:
                customer = None if guest else store.customer_by_email(email)
            else:
                customer = None if guest else factory.random_customer()
                email = customer.email if customer else None
            spec = CartSpec(tuple(line_specs), (factory.shipping(0),) if shipping is None else tuple(shipping),
                            tuple(discounts))
            plan = seed.OrderPlan(spec=spec, customer=customer, email=email,
                                  presentment_currency=presentment_currency, test=test, source_name=source_name,
                                  financial_status=financial_status)
            order = factory.create(plan, self.now())
            self._reserve_inventory(order, sign=1)
            self._put(order)
            return gid("Order", order.legacy_id)

    def touch_order(self, store_key: str, order_id: str | int) -> None:
        """Move ``updatedAt`` without changing the content (Shopify does this for invisible changes)."""
        order = self.order(order_id)
        if order.store != store_key:
            raise KeyError(f"order {order_id!r} belongs to store {order.store!r}, not {store_key!r}")
        self._change(order_id, lifecycle.touch)

    def mark_paid(self, order_id: str | int) -> None:
        self._change(order_id, lifecycle.mark_paid)

    def fulfil(self, order_id: str | int, lines: Sequence[tuple[str | int, int]] | None = None, *,
               tracking: TrackingInfo | tuple[str, str, str] | None = None, location_id: str | int | None = None,
               delivered: bool = False) -> str:
        """Fulfil ``lines`` ((line item GID or position, quantity) pairs) or everything left; returns the GID."""
        fulfillment_id = self.next_id("Fulfillment")
        info = TrackingInfo(*tracking) if isinstance(tracking, tuple) else tracking

        def change(order: Order, now: datetime) -> Order:
            store = self.store(order.store)
            location = parse_gid(location_id, "Location") if location_id else store.default_location.legacy_id
            return lifecycle.fulfil(order, now, fulfillment_id=fulfillment_id, location_id=location,
                                    lines=self._positions(order, lines), tracking=info, delivered=delivered)

        self._change(order_id, change)
        return gid("Fulfillment", fulfillment_id)

    def cancel_fulfillment(self, fulfillment_id: str | int) -> None:
        """Cancel a fulfilment (``fulfillmentCancel``): its units are committed again; ``Order.updatedAt`` stays."""
        self._change_fulfillment(fulfillment_id, cancel=True)

    def update_tracking(self, fulfillment_id: str | int, tracking: TrackingInfo | tuple[str, str, str]) -> None:
        """Replace a fulfilment's tracking (``fulfillmentTrackingInfoUpdate``); ``Order.updatedAt`` stays."""
        info = TrackingInfo(*tracking) if isinstance(tracking, tuple) else tracking
        self._change_fulfillment(fulfillment_id, tracking=info)

    def _change_fulfillment(self, fulfillment_id: str | int, *, cancel: bool = False,
                            tracking: TrackingInfo | None = None) -> None:
        legacy_id = parse_gid(fulfillment_id, "Fulfillment")
        with self._lock:
            owner = next((s.fulfillment_owner[legacy_id] for s in self._stores.values()
                          if legacy_id is not None and legacy_id in s.fulfillment_owner), None)
            if owner is None or legacy_id is None:
                raise KeyError(f"no sandbox fulfillment {fulfillment_id!r}")
            order = self.order(owner)
            changed = lifecycle.change_fulfillment(order, self.now(), legacy_id, cancel=cancel, tracking=tracking)
            if cancel:
                fulfillment = next(f for f in order.fulfillments if f.legacy_id == legacy_id)
                for part in fulfillment.lines:
                    item = order.cart.lines[part.line_position].item.inventory_item_id
                    if item is not None and fulfillment.location_id is not None:
                        self.adjust_inventory(order.store, item, fulfillment.location_id, {"committed": part.quantity})
            self._put(changed)

    def refund(self, order_id: str | int, lines: Sequence[tuple[str | int, int]] = (), *,
               shipping: bool | Decimal = False, restock_type: str = "RETURN", note: str | None = None) -> str:
        """Refund (line item GID or position, quantity) pairs and/or shipping (True: all, or an amount)."""
        refund_id = self.next_id("Refund")

        def change(order: Order, now: datetime) -> Order:
            location = self.store(order.store).default_location.legacy_id
            return lifecycle.refund(order, now, refund_id=refund_id, lines=self._positions(order, lines) or (),
                                    shipping=shipping, restock_type=restock_type, location_id=location, note=note)

        self._change(order_id, change)
        return gid("Refund", refund_id)

    def cancel(self, order_id: str | int, *, reason: str = "CUSTOMER") -> None:
        refund_id = self.next_id("Refund")

        def change(order: Order, now: datetime) -> Order:
            location = self.store(order.store).default_location.legacy_id
            return lifecycle.cancel(order, now, refund_id=refund_id, reason=reason, location_id=location)

        self._change(order_id, change)

    def bulk_seed(self, store_key: str, n: int) -> int:
        """Add ``n`` plain paid orders quickly (benchmarks); returns how many exist now."""
        with self._lock:
            factory = self._factories[store_key]
            created = seed.bulk_orders(factory, n, self.now(), self.config.history_days)
            store = self.store(store_key)
            for order in created:
                store.orders[order.legacy_id] = order
                self._order_store[order.legacy_id] = store_key
            store.version += 1
            return len(store.orders)

    @staticmethod
    def _positions(order: Order, lines: Sequence[tuple[str | int, int]] | None) -> list[tuple[int, int]] | None:
        if lines is None:
            return None
        positions = []
        for ref, quantity in lines:
            if isinstance(ref, int) and 0 <= ref < len(order.cart.lines):
                position: int | None = ref
            else:
                line_id = parse_gid(ref, "LineItem")
                position = order.line_position(line_id) if line_id is not None else None
            if position is None:
                raise KeyError(f"order {order.name} has no line item {ref!r}")
            positions.append((position, quantity))
        return positions

    # -- inventory -----------------------------------------------------------------------------------------
    def add_product(self, store_key: str, sku: str, title: str, *, price: Decimal = Decimal("1.00"),
                    on_hand: int = 0) -> int:
        """One more product (single variant) stocked at every location; returns its inventory item id."""
        product = demo_data.DemoProduct(sku, title, price, price, Decimal(0), sku)
        with self._lock:
            return add_listing(self.store(store_key), self._ids, product, self.now(), on_hand).inventory_item_id

    def inventory_level(self, store_key: str, inventory_item_id: int, location_id: int) -> InventoryLevel | None:
        return self.store(store_key).inventory.get((inventory_item_id, location_id))

    def adjust_inventory(self, store_key: str, inventory_item_id: int, location_id: int,
                         deltas: dict[str, int]) -> None:
        """Apply deltas to named quantities, keeping on_hand = available + committed + … consistent."""
        with self._lock:
            level = self.inventory_level(store_key, inventory_item_id, location_id)
            if level is None:
                return
            for name, delta in deltas.items():
                level.quantities[name] = level.quantities.get(name, 0) + delta
            on_hand_delta = sum(delta for name, delta in deltas.items() if name in ON_HAND_PARTS)
            if "on_hand" not in deltas:
                level.quantities["on_hand"] += on_hand_delta
            level.updated_at = self.now()

    def _reserve_inventory(self, order: Order, sign: int) -> None:
        location = self.store(order.store).default_location.legacy_id
        for line in order.cart.lines:
            if line.item.inventory_item_id is not None:
                self.adjust_inventory(order.store, line.item.inventory_item_id, location,
                                      {"available": -sign * line.quantity, "committed": sign * line.quantity})

    def _apply_inventory(self, before: Order, after: Order) -> None:
        """Shopify's quantity states: an order commits units, a fulfilment ships them (on_hand goes down),
        a restocking refund makes them available again, a cancellation releases what was not shipped."""
        store_key = after.store
        default_location = self.store(store_key).default_location.legacy_id
        for fulfillment in after.fulfillments[len(before.fulfillments):]:
            for part in fulfillment.lines:
                item = after.cart.lines[part.line_position].item.inventory_item_id
                if item is not None and fulfillment.location_id is not None:
                    self.adjust_inventory(store_key, item, fulfillment.location_id, {"committed": -part.quantity})
        new_refunds = after.refunds[len(before.refunds):]
        for refund in new_refunds:
            for part in refund.lines:
                item = after.cart.lines[part.line_position].item.inventory_item_id
                if item is None:
                    continue
                unshipped = max(0, before.current_quantity(part.line_position)
                                - before.fulfilled_quantity(part.line_position))
                from_committed = min(part.quantity, unshipped)
                deltas = {"committed": -from_committed}
                if part.restock_type in ("RETURN", "CANCEL", "LEGACY_RESTOCK"):
                    deltas["available"] = part.quantity  # shipped units come back on hand too
                self.adjust_inventory(store_key, item, part.location_id or default_location, deltas)
        if after.cancelled_at is not None and before.cancelled_at is None and not new_refunds:
            for line in after.cart.lines:
                unshipped = after.current_quantity(line.position) - after.fulfilled_quantity(line.position)
                if line.item.inventory_item_id is not None and unshipped > 0:
                    self.adjust_inventory(store_key, line.item.inventory_item_id, default_location,
                                          {"committed": -unshipped, "available": unshipped})

    # -- bulk operations -----------------------------------------------------------------------------------
    def add_bulk_operation(self, operation: BulkOperation) -> None:
        with self._lock:
            self.bulk_operations[operation.legacy_id] = operation

    def running_bulk_operations(self, store_key: str) -> int:
        with self._lock:
            return sum(1 for op in self.bulk_operations.values()
                       if op.store == store_key and op.status in ("CREATED", "RUNNING"))

    # -- summary -------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        with self._lock:
            stores = {}
            for key, store in self._stores.items():
                orders = list(store.orders.values())
                stores[key] = {
                    "shop": f"{store.demo.shop}.myshopify.com",
                    "orders": len(orders),
                    "cancelled": sum(1 for o in orders if o.cancelled_at is not None),
                    "refunded_orders": sum(1 for o in orders if o.refunds),
                    "fulfilled_orders": sum(1 for o in orders if o.display_fulfillment_status == "FULFILLED"),
                    "latest_updated_at": max((o.updated_at for o in orders), default=None),
                    "bulk_operations": sum(1 for op in self.bulk_operations.values() if op.store == key),
                }
            return {"now": self.now(), "stores": stores}


def _index_range(keys: list[SortKey], bound: Bound | None) -> tuple[int, int]:
    """Index window of sorted keys that a range term on the sort field allows."""
    if bound is None:
        return 0, len(keys)
    low, high = 0, len(keys)
    if bound.low is not None:
        probe = (bound.low, -1) if bound.low_inclusive else (bound.low, 2**63)
        low = bisect_left(keys, probe) if bound.low_inclusive else bisect_right(keys, probe)
    if bound.high is not None:
        probe = (bound.high, 2**63) if bound.high_inclusive else (bound.high, -1)
        high = bisect_right(keys, probe) if bound.high_inclusive else bisect_left(keys, probe)
    return low, max(low, high)
