"""`X3Client`: one object for everything the connector asks of a customer's Sage X3 folder.

Reads go through api1 (JSON), writes through classic SOAP. Thread-safe: share one client across a thread
pool; SOAP concurrency is bounded by the folder's web-service pool size.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from x3_shopify_dagster.domain.customers import normalise_email
from x3_shopify_dagster.x3.auth import X3Auth
from x3_shopify_dagster.x3.config import ClassRef, X3Config
from x3_shopify_dagster.x3.errors import X3AmbiguousReferenceError, X3ProtocolError
from x3_shopify_dagster.x3.metrics import X3ClientMetrics
from x3_shopify_dagster.x3.models import (
    X3Customer,
    X3DeliveryRef,
    X3Dimension,
    X3GlAccount,
    X3InvoiceRef,
    X3ItemSiteStock,
    X3StockMovement,
    text,
)
from x3_shopify_dagster.x3.rest import Api1Reader
from x3_shopify_dagster.x3.sdata import Where, order_by, property_name
from x3_shopify_dagster.x3.soap import SoapCaller, SoapResult, encode_object
from x3_shopify_dagster.x3.transport import X3Transport


class X3Client:
    def __init__(
        self,
        config: X3Config,
        auth: X3Auth,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.auth = auth
        self.metrics = X3ClientMetrics()
        add_listener = getattr(auth, "add_refresh_listener", None)
        if callable(add_listener):
            add_listener(self.metrics.record_token_refresh)
        self._transport = X3Transport(
            config, auth, metrics=self.metrics, transport=transport, sleep=sleep, clock=clock, rand=rand
        )
        self._api1 = Api1Reader(config, self._transport)
        self._soap = SoapCaller(config, self._transport)

    # -- lifecycle ----------------------------------------------------------------------------------------
    def close(self) -> None:
        self._transport.close()
        close_auth = getattr(self.auth, "close", None)  # OAuth2's token-endpoint connection
        if callable(close_auth):
            close_auth()

    def __enter__(self) -> X3Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"X3Client(base_url={self.config.base_url!r}, folder={self.config.folder!r}, auth={self.auth!r})"
        )

    # -- generic api1 reads -------------------------------------------------------------------------------
    def query(
        self,
        cls: str,
        representation: str,
        *,
        where: Where | None = None,
        order_by: str | None = None,
        count: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """Every row of a `$query` feed, following `$links.$next` until the last page."""
        return self._api1.query(cls, representation, where=where, order_by=order_by, count=count)

    def details(self, cls: str, representation: str, key: str | Sequence[str]) -> dict[str, Any] | None:
        """One record's `$details`, or None if X3 says it does not exist."""
        return self._api1.details(cls, representation, key)

    def _query_ref(self, ref: ClassRef, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return self.query(ref.cls, ref.representation, count=self.config.page_size, **kwargs)

    # -- connector reads ----------------------------------------------------------------------------------
    def customers_by_email(self, email: str) -> list[X3Customer]:
        """X3 customers whose customer address carries this e-mail (trimmed, case-folded match).

        More than one result means the e-mail is ambiguous in X3: the caller must not guess.
        """
        wanted = normalise_email(email)
        if not wanted:
            return []
        # X3 compares case-sensitively: ask for the normalised form and the form as typed, then compare
        # case-folded here.
        spellings = sorted({wanted, email.strip()})
        reps = self.config.representations
        where = Where.any_of(Where.eq("WEB", s) for s in spellings) & Where.eq(
            "BPATYP", self.config.customer_address_type
        )
        addresses: dict[str, dict[str, Any]] = {}
        for row in self._query_ref(
            reps.customer_addresses, where=where, order_by=order_by("BPANUM", "BPAADD")
        ):
            code = text(row, "BPANUM")
            if code and normalise_email(text(row, "WEB")) == wanted:
                addresses.setdefault(code, row)
        if not addresses:
            return []
        customer_where = Where.any_of(Where.eq("BPCNUM", code) for code in addresses)
        customers = {
            text(row, "BPCNUM"): row for row in self._query_ref(reps.customers, where=customer_where)
        }
        return [
            X3Customer.from_rows(customers[code], addresses[code])
            for code in sorted(addresses)
            if code in customers
        ]

    def customer_directory(self) -> Iterator[X3Customer]:
        """Every customer address with an e-mail, joined to its customer (one row per customer and address).

        Two full key-ordered reads instead of one lookup per order: the snapshot the posting flow matches against.
        """
        reps = self.config.representations
        customers = {
            text(row, "BPCNUM"): row
            for row in self._query_ref(reps.customers, order_by=order_by("BPCNUM"))
        }
        where = Where.eq("BPATYP", self.config.customer_address_type)
        for row in self._query_ref(reps.customer_addresses, where=where, order_by=order_by("BPANUM", "BPAADD")):
            code = text(row, "BPANUM")
            if code in customers and normalise_email(text(row, "WEB")):
                yield X3Customer.from_rows(customers[code], row)

    def find_invoice_by_reference(self, reference: str) -> X3InvoiceRef | None:
        """The sales invoice or credit memo carrying the connector's idempotency key, if any."""
        rows = self._by_reference(self.config.representations.sales_invoices, reference)
        if len(rows) > 1:
            raise X3AmbiguousReferenceError("sales invoices", reference, [text(r, "NUM") for r in rows])
        return X3InvoiceRef.from_row(rows[0], self.config.reference_field) if rows else None

    def find_delivery_by_reference(self, reference: str) -> X3DeliveryRef | None:
        rows = self._by_reference(self.config.representations.deliveries, reference)
        if len(rows) > 1:
            raise X3AmbiguousReferenceError("deliveries", reference, [text(r, "SDHNUM") for r in rows])
        return X3DeliveryRef.from_row(rows[0], self.config.reference_field) if rows else None

    def _by_reference(self, ref: ClassRef, reference: str) -> list[dict[str, Any]]:
        if not reference.strip():
            raise ValueError("an empty reference cannot identify a document")
        field = self.config.reference_field
        rows = self._query_ref(ref, where=Where.eq(field, reference))
        return [row for row in rows if text(row, field) == reference.strip()]

    def gl_accounts(self, *, chart: str | None = None) -> Iterator[X3GlAccount]:
        where = Where.eq("COA", chart) if chart else None
        for row in self._query_ref(
            self.config.representations.gl_accounts, where=where, order_by=order_by("COA", "ACC")
        ):
            yield X3GlAccount.from_row(row)

    def dimensions(self, *, dimension_type: str | None = None) -> Iterator[X3Dimension]:
        where = Where.eq("DIE", dimension_type) if dimension_type else None
        for row in self._query_ref(
            self.config.representations.dimensions, where=where, order_by=order_by("DIE", "CCE")
        ):
            yield X3Dimension.from_row(row)

    def changed_since(
        self,
        cls: str,
        representation: str,
        since: datetime,
        *,
        key_fields: Sequence[str],
        until: datetime | None = None,
        timestamp_field: str = "UPDDATTIM",
    ) -> Iterator[dict[str, Any]]:
        """Rows with `timestamp_field >= since` (and `< until`), ordered by timestamp then key.

        The lower bound is inclusive (X3 timestamps have one-second precision): callers keep an overlap and
        dedupe on the key fields.
        """
        if not key_fields:
            raise ValueError("key_fields are needed for a deterministic order")
        where = Where.ge(timestamp_field, since)
        if until is not None:
            where = where & Where.lt(timestamp_field, until)
        ordering = order_by(timestamp_field, *key_fields)
        return self.query(cls, representation, where=where, order_by=ordering, count=self.config.page_size)

    # -- stock ------------------------------------------------------------------------------------------
    def stock_movements_changed(
        self, since: datetime, until: datetime | None = None
    ) -> Iterator[X3StockMovement]:
        """Stock journal rows updated in [since, until), oldest first then by key (flows.md §6).

        The lower bound is inclusive: callers overlap their windows and dedupe on `X3StockMovement.key`.
        """
        ref = self.config.representations.stock_journal
        rows = self.changed_since(
            ref.cls, ref.representation, since, until=until,
            key_fields=("STOFCY", "VCRTYP", "VCRNUM", "VCRLIN", "MVTSEQ"),
        )
        for row in rows:
            yield X3StockMovement.from_row(row)

    def stock_by_item_site(
        self, pairs: Iterable[tuple[str, str]], *, batch_size: int = 50
    ) -> dict[tuple[str, str], X3ItemSiteStock]:
        """X3's authoritative stock (ITMMVT) per (item, site), read for these pairs only.

        A pair X3 has no ITMMVT row for is absent from the result (nothing was ever stocked there: zero).
        """
        wanted = sorted(set(pairs))
        ref = self.config.representations.stock_by_item_site
        found: dict[tuple[str, str], X3ItemSiteStock] = {}
        for start in range(0, len(wanted), batch_size):
            batch = wanted[start : start + batch_size]
            where = Where.any_of(Where.eq("ITMREF", item) & Where.eq("STOFCY", site) for item, site in batch)
            for row in self._query_ref(ref, where=where, order_by=order_by("ITMREF", "STOFCY")):
                stock = X3ItemSiteStock.from_row(row)
                if (stock.item, stock.site) in batch:
                    found[(stock.item, stock.site)] = stock
        return found

    # -- SOAP writes and reads ----------------------------------------------------------------------------
    def _encode(self, payload: Mapping[str, Any]) -> str:
        return encode_object(payload, as_json=self.config.soap_json)

    def save(self, publication: str, payload: Mapping[str, Any]) -> SoapResult:
        """Create an object. Raises X3BusinessError (status 0), X3OutcomeUnknownError (in doubt)."""
        return _required(
            self._soap.call("save", publication, idempotent=False, object_xml=self._encode(payload))
        )

    def modify(self, publication: str, keys: Mapping[str, str], payload: Mapping[str, Any]) -> SoapResult:
        return _required(
            self._soap.call(
                "modify",
                publication,
                idempotent=False,
                object_keys=_keys(keys),
                object_xml=self._encode(payload),
            )
        )

    def action(self, publication: str, action: str, keys: Mapping[str, str]) -> SoapResult:
        """Run an object action (e.g. VALID to post an invoice) on the record identified by `keys`."""
        return _required(
            self._soap.call(
                "actionObjectKeys", publication, idempotent=False, action_code=action, object_keys=_keys(keys)
            )
        )

    def delete(self, publication: str, keys: Mapping[str, str]) -> SoapResult:
        return _required(self._soap.call("delete", publication, idempotent=False, object_keys=_keys(keys)))

    def read(self, publication: str, keys: Mapping[str, str]) -> SoapResult | None:
        """Read an object through its publication; None if X3 says it does not exist."""
        return self._soap.call(
            "read", publication, idempotent=True, not_found_is_none=True, object_keys=_keys(keys)
        )


def _required(result: SoapResult | None) -> SoapResult:
    if result is None:  # only `read` maps "does not exist" to None
        raise X3ProtocolError("X3 SOAP call returned no result")
    return result


def _keys(keys: Mapping[str, str]) -> dict[str, str]:
    if not keys:
        raise ValueError("object keys are required")
    return {property_name(k): str(v) for k, v in keys.items()}
