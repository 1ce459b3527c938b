"""The staging payload built without the model (``order_payload``, ``NormalisedOrder``).

Staging stores ``NormalisedOrder.from_graphql(node)``; posting validates it with ``ShopifyOrder.model_validate``.
These tests pin that the unvalidated payload is exactly what the validated model dumps (so content hashes do not
depend on which path built them, flows.md §6: dedupe on (id, updatedAt, content hash)), and that a value the
model refuses is kept as sent, for posting to fail that one order naming the field.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from x3_shopify_dagster.domain.shopify_orders import (
    IncompleteOrderError,
    MalformedOrderError,
    NormalisedOrder,
    ShopifyOrder,
    encode_payload,
    order_payload,
)
from x3_shopify_dagster_tests.shopify.fakes import after_sales_node, full_order, page_node


def _stdlib_canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


ORDER_SHAPES = [
    pytest.param(dict(line_items=lines, refunds=refunds, fulfillments=fulfilments, **extra), id=f"{lines}-{refunds}-"
                 f"{fulfilments}-{'-'.join(extra) or 'plain'}")
    for (lines, refunds, fulfilments), extra in itertools.product(
        [(1, 0, 0), (3, 1, 1), (2, 2, 2), (0, 0, 0)], [{}, {"guest": True}, {"taxes_included": False}]
    )
]


@pytest.mark.parametrize("shape", ORDER_SHAPES)
def test_payload_is_exactly_what_the_validated_model_dumps(shape: dict[str, Any]) -> None:
    node = full_order(11, **shape)
    payload = order_payload(node)
    dumped = ShopifyOrder.from_graphql(node).to_payload()
    # Same keys in the same order with the same values: byte-identical JSON.
    assert orjson.dumps(payload) == orjson.dumps(dumped)
    # A fixed point: validating the stored payload and dumping it again changes nothing.
    assert orjson.dumps(NormalisedOrder.from_payload(payload).to_model().to_payload()) == orjson.dumps(payload)


@pytest.mark.parametrize("shape", ORDER_SHAPES)
def test_stored_json_and_hash_are_the_canonical_json_the_domain_always_hashed(shape: dict[str, Any]) -> None:
    node = full_order(12, **shape)
    model = ShopifyOrder.from_graphql(node)
    text, content_hash = NormalisedOrder.from_graphql(node).encoded()

    dumped = model.to_payload()
    without_updated_at = {key: value for key, value in dumped.items() if key != "updated_at"}
    assert content_hash == hashlib.sha256(_stdlib_canonical(without_updated_at)).hexdigest()
    assert content_hash == model.content_hash()
    assert text.encode() == _stdlib_canonical(dumped)  # the stored text: sorted, compact, updated_at included


def test_paged_and_bulk_shapes_give_byte_identical_payloads_and_hashes() -> None:
    order = full_order(7, line_items=3, refunds=1, fulfillments=1)
    paged = page_node(order, 250, 250)
    details = after_sales_node(order, 250, 250)
    paged["refunds"], paged["fulfillments"] = details["refunds"], details["fulfillments"]

    from_paged, from_bulk = NormalisedOrder.from_graphql(paged), NormalisedOrder.from_graphql(order)
    assert from_paged == from_bulk
    assert from_paged.encoded() == from_bulk.encoded()


@pytest.mark.parametrize(
    ("path", "sent", "stored"),
    [
        (("totalPriceSet", "shopMoney", "amount"), " 69.70 ", "69.70"),
        (("totalPriceSet", "shopMoney", "amount"), "1e2", "1E+2"),
        (("totalPriceSet", "shopMoney", "amount"), "007.5", "7.5"),
        (("createdAt",), "2026-11-27T12:00:00+02:00", "2026-11-27T10:00:00Z"),
        (("createdAt",), "2026-11-27T10:00:00.5Z", "2026-11-27T10:00:00.500000Z"),
        (("closedAt",), "2026-11-27 10:00:00+00:00", "2026-11-27T10:00:00Z"),
        (("lineItems", 0, "taxLines", 0, "rate"), 1e-05, "0.00001"),
        (("lineItems", 0, "taxLines", 0, "rate"), 0.2, "0.2"),
        (("lineItems", 0, "taxLines", 0, "rate"), -0.0, "-0.0"),
        (("lineItems", 0, "taxLines", 0, "rate"), 0.0, "0.0"),
        (("lineItems", 0, "taxLines", 0, "rate"), 0, "0"),
        (("legacyResourceId",), "0012", 12),
        (("legacyResourceId",), 12, 12),
        (("lineItems", 0, "quantity"), "2", 2),
        (("test",), "false", False),
    ],
)
def test_values_are_stored_in_the_models_json_form(path: tuple[Any, ...], sent: Any, stored: Any) -> None:
    node = full_order(3, line_items=2, refunds=1, fulfillments=1)
    target: Any = node
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = sent

    payload = order_payload(node)
    assert orjson.dumps(payload) == orjson.dumps(ShopifyOrder.from_graphql(node).to_payload())
    value: Any = payload
    for step in _snake_path(path):
        value = value[step]
    assert value == stored
    assert type(value) is type(stored)


def _snake_path(path: tuple[Any, ...]) -> list[Any]:
    names = {"totalPriceSet": "total_price_set", "shopMoney": "shop_money", "createdAt": "created_at",
             "closedAt": "closed_at", "lineItems": "line_items", "taxLines": "tax_lines",
             "legacyResourceId": "legacy_resource_id"}
    return [names.get(step, step) for step in path]


def test_a_value_the_model_refuses_is_stored_as_sent_and_named_when_validated() -> None:
    node = full_order(1)
    node["totalPriceSet"]["shopMoney"]["amount"] = 69.7  # a float: refused by the model
    node["lineItems"][0]["quantity"] = "two"

    order = NormalisedOrder.from_graphql(node)  # staging does not validate...
    assert order.payload["total_price_set"]["shop_money"]["amount"] == 69.7
    assert order.payload["line_items"][0]["quantity"] == "two"
    with pytest.raises(ValidationError) as raised:  # ...posting does, and names both fields
        order.to_model()
    locations = {tuple(error["loc"]) for error in raised.value.errors()}
    assert ("total_price_set", "shop_money", "amount") in locations
    assert ("line_items", 0, "quantity") in locations
    with pytest.raises(ValidationError):
        ShopifyOrder.from_graphql(node)  # the validated path refuses it as before


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [("updatedAt", None, "updated_at"), ("updatedAt", "2026-11-27T10:00:00", "updated_at"),
     ("updatedAt", "yesterday", "updated_at"), ("name", None, "name"), ("id", "", "id")],
)
def test_an_order_without_its_identity_cannot_be_staged(key: str, value: Any, named: str) -> None:
    node = full_order(2)
    node[key] = value
    with pytest.raises(MalformedOrderError, match=named):
        NormalisedOrder.from_graphql(node)


def test_unread_pages_still_refuse_the_node() -> None:
    node = page_node(full_order(4, line_items=3), 1, 1)
    with pytest.raises(IncompleteOrderError, match="lineItems"):
        NormalisedOrder.from_graphql(node)


def test_encode_payload_of_foreign_keys_still_sorts_the_whole_document() -> None:
    payload = {"zeta": 1, "updated_at": "2026-11-27T10:00:00Z", "alpha": [1]}
    text, content_hash = encode_payload(payload)
    assert text.encode() == _stdlib_canonical(payload)
    assert content_hash == hashlib.sha256(_stdlib_canonical({"zeta": 1, "alpha": [1]})).hexdigest()


def test_normalised_order_from_a_model_payload_is_the_same_order() -> None:
    node = full_order(5, line_items=2, refunds=1, fulfillments=1)
    model = ShopifyOrder.from_graphql(node)
    assert NormalisedOrder.from_payload(copy.deepcopy(model.to_payload())) == NormalisedOrder.from_graphql(node)
