"""Background order traffic for the demo: new orders, payments, fulfilments, refunds, cancellations.

The sequence of decisions comes from the seed, so two runs make the same moves in the same order.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from x3_shopify_dagster.sandboxes.shopify.lifecycle import LifecycleError
from x3_shopify_dagster.sandboxes.shopify.models import Order, gid
from x3_shopify_dagster.sandboxes.shopify.seed import tracking_for
from x3_shopify_dagster.sandboxes.shopify.state import SandboxState

logger = logging.getLogger(__name__)

RECENT_ORDERS = 200  # decisions pick among the newest orders, so big benchmark stores stay cheap

_ACTIONS = ("create", "pay", "fulfil", "refund", "cancel", "touch")
_WEIGHTS = (40, 10, 22, 8, 5, 15)


class TrafficGenerator:
    def __init__(self, state: SandboxState, seed: int, interval_s: float,
                 wait: Callable[[threading.Event, float], bool] | None = None) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.state = state
        self.interval_s = interval_s
        self.rng = random.Random(f"shopify-sandbox-traffic:{seed}")
        self._stop = threading.Event()
        self._wait = wait or (lambda event, seconds: event.wait(seconds))
        self._thread: threading.Thread | None = None
        self.actions_done: list[tuple[str, str, str]] = []  # (store, action, order GID)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="shopify-sandbox-traffic", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _loop(self) -> None:
        while not self._wait(self._stop, self.interval_s):
            try:
                self.step()
            except Exception:  # keep the demo alive; the next tick tries something else
                logger.exception("Shopify sandbox traffic step failed")

    def step(self) -> tuple[str, str, str] | None:
        """One random move; returns (store, action, order GID) or None when nothing applied."""
        store = self.rng.choice(self.state.store_keys)
        action = self.rng.choices(_ACTIONS, weights=_WEIGHTS, k=1)[0]
        recent = self.state.orders(store)[-RECENT_ORDERS:]
        try:
            order_gid = self._do(store, action, recent)
        except LifecycleError as error:
            logger.debug("traffic %s on %s skipped: %s", action, store, error)
            return None
        if order_gid is None:
            return None
        done = (store, action, order_gid)
        self.actions_done.append(done)
        return done

    def _pick(self, orders: list[Order], test: Callable[[Order], bool]) -> Order | None:
        candidates = [o for o in orders if test(o)]
        return self.rng.choice(candidates) if candidates else None

    def _do(self, store: str, action: str, recent: list[Order]) -> str | None:
        state, rng = self.state, self.rng
        if action == "create":
            pending = rng.random() < 0.15
            return state.create_order(store, financial_status="PENDING" if pending else "PAID")
        open_orders = [o for o in recent if o.cancelled_at is None]
        if action == "pay":
            order = self._pick(open_orders, lambda o: o.financial_status in ("PENDING", "AUTHORIZED"))
            if order:
                state.mark_paid(order.legacy_id)
        elif action == "fulfil":
            order = self._pick(open_orders, lambda o: o.financial_status == "PAID"
                               and o.display_fulfillment_status != "FULFILLED")
            if order:
                partial = rng.random() < 0.25 and len(order.cart.lines) > 1
                lines = [(order.cart.lines[0].position, order.fulfillable_quantity(0))] if partial else None
                state.fulfil(order.legacy_id, lines, tracking=tracking_for(rng))
        elif action == "refund":
            order = self._pick(open_orders, lambda o: o.financial_status in ("PAID", "PARTIALLY_REFUNDED")
                               and any(o.current_quantity(line.position) > 0 for line in o.cart.lines))
            if order:
                line = next(line for line in order.cart.lines if order.current_quantity(line.position) > 0)
                state.refund(order.legacy_id, [(line.position, 1)], shipping=rng.random() < 0.3,
                             restock_type=rng.choice(("RETURN", "NO_RESTOCK")), note="Customer return")
        elif action == "cancel":
            order = self._pick(open_orders, lambda o: o.display_fulfillment_status == "UNFULFILLED")
            if order:
                state.cancel(order.legacy_id, reason=rng.choice(("CUSTOMER", "INVENTORY", "FRAUD")))
        else:
            order = self._pick(recent, lambda _o: True)
            if order:
                state.touch_order(store, order.legacy_id)
        return gid("Order", order.legacy_id) if order else None
