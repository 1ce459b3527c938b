"""What inventory sync needs: SKU lookups, locations, quantities by name, and inventorySetQuantities with the
2026-04+ rules (mandatory changeFromQuantity, stale compare, mandatory idempotency key, replay, mismatch)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from x3_shopify_dagster.sandboxes.shopify import ShopifySandbox
from x3_shopify_dagster.sandboxes.shopify.models import gid

if TYPE_CHECKING:
    from x3_shopify_dagster_tests.fixtures.shopify_sandbox import ShopifyRawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.shopify_sandbox"]

Factory = Callable[..., "ShopifyRawClient"]
BY_SKU = """query BySku($q: String!, $loc: ID!) { productVariants(first: 5, query: $q) { nodes { id sku
  inventoryItem { id tracked inventoryLevel(locationId: $loc) { id
    quantities(names: ["available", "on_hand", "committed"]) { name quantity updatedAt } } } } } }"""
SET = """mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id reason referenceDocumentUri changes { name delta quantityAfterChange
      item { id } location { id } } }
    userErrors { field message code } } }"""
SET_WITHOUT_KEY = """mutation Set($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) {
  inventoryAdjustmentGroup { id } userErrors { code } } }"""


def first_location(client: ShopifyRawClient) -> str:
    return client.data("{ locations(first: 5) { nodes { id name isActive } } }")["locations"]["nodes"][0]["id"]


def levels(client: ShopifyRawClient, sku: str, location: str) -> tuple[str, dict[str, int]]:
    (variant,) = client.data(BY_SKU, {"q": f"sku:'{sku}'", "loc": location})["productVariants"]["nodes"]
    item = variant["inventoryItem"]
    return item["id"], {q["name"]: q["quantity"] for q in item["inventoryLevel"]["quantities"]}


def set_input(item: str, location: str, quantity: int, change_from: int | None, name: str = "on_hand",
              **extra: Any) -> dict[str, Any]:
    return {"name": name, "reason": "correction", "referenceDocumentUri": "gid://x3-connector/StockSync/1",
            "quantities": [{"inventoryItemId": item, "locationId": location, "quantity": quantity,
                            "changeFromQuantity": change_from, **extra}]}


def test_lookups_by_sku_and_location(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(shopify_sandbox, "us")
    locations = client.data("{ locations(first: 5) { nodes { id name } } }")["locations"]["nodes"]
    assert [loc["name"] for loc in locations] == ["Dallas warehouse", "Reno warehouse"]
    item, quantities = levels(client, "TAMPER-58", locations[1]["id"])
    assert quantities["on_hand"] == quantities["available"] + quantities["committed"]
    assert client.data('{ productVariants(first: 5, query: "sku:\'NOPE\'") { nodes { id } } }')[
        "productVariants"]["nodes"] == []
    found = client.data('{ inventoryItems(first: 2, query: "sku:TAMPER-58") { nodes { id sku } } }')
    assert found["inventoryItems"]["nodes"] == [{"id": item, "sku": "TAMPER-58"}]


def test_set_on_hand_with_the_right_compare_value_applies_once(fresh_shopify_sandbox: ShopifySandbox,
                                                               shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(fresh_shopify_sandbox, "eu")
    location = first_location(client)
    item, before = levels(client, "CUP-PORC-6", location)
    key = str(uuid.uuid4())
    variables = {"input": set_input(item, location, before["on_hand"] + 7, before["on_hand"]), "key": key}
    result = client.data(SET, variables)["inventorySetQuantities"]
    assert result["userErrors"] == []
    group = result["inventoryAdjustmentGroup"]
    assert group["reason"] == "correction"
    assert group["referenceDocumentUri"] == "gid://x3-connector/StockSync/1"
    assert {c["name"]: c["delta"] for c in group["changes"]} == {"on_hand": 7, "available": 7}
    _, after = levels(client, "CUP-PORC-6", location)
    assert after == {**before, "on_hand": before["on_hand"] + 7, "available": before["available"] + 7}

    replay = client.data(SET, variables)["inventorySetQuantities"]  # a retry after a lost response
    assert replay == result
    assert levels(client, "CUP-PORC-6", location)[1] == after

    mismatch = client.data(SET, {**variables, "input": set_input(item, location, 1, after["on_hand"])})
    assert mismatch["inventorySetQuantities"]["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    assert levels(client, "CUP-PORC-6", location)[1] == after


def test_a_stale_compare_value_changes_nothing(fresh_shopify_sandbox: ShopifySandbox,
                                               shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(fresh_shopify_sandbox, "eu")
    location = first_location(client)
    item, before = levels(client, "TAMPER-58", location)
    key = str(uuid.uuid4())
    stale = {"input": set_input(item, location, 3, before["available"] - 1, name="available"), "key": key}
    result = client.data(SET, stale)["inventorySetQuantities"]
    assert result["inventoryAdjustmentGroup"] is None
    (error,) = result["userErrors"]
    assert error["code"] == "CHANGE_FROM_QUANTITY_STALE"
    assert error["field"] == ["input", "quantities", "0", "changeFromQuantity"]
    assert levels(client, "TAMPER-58", location)[1] == before
    # retrying the failed attempt under the same key is refused; a fresh key after re-reading works
    again = client.data(SET, stale)["inventorySetQuantities"]["userErrors"][0]["code"]
    assert again == "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"
    fixed = {"input": set_input(item, location, 3, before["available"], name="available"), "key": str(uuid.uuid4())}
    assert client.data(SET, fixed)["inventorySetQuantities"]["userErrors"] == []
    assert levels(client, "TAMPER-58", location)[1]["available"] == 3


def test_a_null_compare_value_skips_the_check(fresh_shopify_sandbox: ShopifySandbox,
                                              shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(fresh_shopify_sandbox, "us")
    location = first_location(client)
    item, _ = levels(client, "MILK-JUG-35", location)
    result = client.data(SET, {"input": set_input(item, location, 12, None), "key": str(uuid.uuid4())})
    assert result["inventorySetQuantities"]["userErrors"] == []
    assert levels(client, "MILK-JUG-35", location)[1]["on_hand"] == 12


def test_change_from_quantity_must_be_passed(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(shopify_sandbox, "eu")
    location = first_location(client)
    item, before = levels(client, "MILK-JUG-35", location)
    variables = {"input": set_input(item, location, 5, None), "key": str(uuid.uuid4())}
    del variables["input"]["quantities"][0]["changeFromQuantity"]
    body = client.post(SET, variables).json()
    assert "changeFromQuantity is mandatory" in body["errors"][0]["message"]
    assert levels(client, "MILK-JUG-35", location)[1] == before


@pytest.mark.parametrize(("version", "required"), [("2026-01", False), ("2026-04", True), ("2026-07", True)])
def test_the_idempotency_key_is_mandatory_from_2026_04(fresh_shopify_sandbox: ShopifySandbox,
                                                       shopify_raw_factory: Factory, version: str,
                                                       required: bool) -> None:
    client = shopify_raw_factory(fresh_shopify_sandbox, "eu", version)
    location = first_location(client)
    item, before = levels(client, "KNOCK-BOX-S", location)
    body = client.post(SET_WITHOUT_KEY, {"input": set_input(item, location, 9, before["on_hand"])}).json()
    if required:
        assert "@idempotent directive is required" in body["errors"][0]["message"]
        assert levels(client, "KNOCK-BOX-S", location)[1] == before
    else:
        assert body["data"]["inventorySetQuantities"]["userErrors"] == []
        assert levels(client, "KNOCK-BOX-S", location)[1]["on_hand"] == 9


@pytest.mark.parametrize(("change", "code"), [
    ({"name": "committed"}, "INVALID_NAME"),
    ({"reason": "because"}, "INVALID_REASON"),
    ({"quantity": -1}, "INVALID_QUANTITY_NEGATIVE"),
    ({"inventoryItemId": "gid://shopify/InventoryItem/1"}, "INVALID_INVENTORY_ITEM"),
    ({"locationId": "gid://shopify/Location/1"}, "INVALID_LOCATION"),
])
def test_invalid_input_is_a_user_error(fresh_shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory,
                                       change: dict[str, Any], code: str) -> None:
    client = shopify_raw_factory(fresh_shopify_sandbox, "eu")
    location = first_location(client)
    item, before = levels(client, "BEANS-HOUSE-1KG", location)
    payload = set_input(item, location, 4, None)
    for field in ("name", "reason"):
        if field in change:
            payload[field] = change[field]
    payload["quantities"][0].update({k: v for k, v in change.items() if k not in ("name", "reason")})
    result = client.data(SET, {"input": payload, "key": str(uuid.uuid4())})["inventorySetQuantities"]
    assert [e["code"] for e in result["userErrors"]] == [code]
    assert levels(client, "BEANS-HOUSE-1KG", location)[1] == before


def test_orders_move_quantities_between_states(fresh_shopify_sandbox: ShopifySandbox,
                                               shopify_raw_factory: Factory) -> None:
    sandbox = fresh_shopify_sandbox
    client = shopify_raw_factory(sandbox, "us")
    location = gid("Location", sandbox.state.store("us").default_location.legacy_id)
    _, start = levels(client, "CLEAN-TABS-60", location)
    order_id = sandbox.state.create_order("us", lines=[("CLEAN-TABS-60", 3)])
    _, ordered = levels(client, "CLEAN-TABS-60", location)
    assert ordered == {"available": start["available"] - 3, "committed": start["committed"] + 3,
                       "on_hand": start["on_hand"]}
    sandbox.state.fulfil(order_id, [(0, 2)])
    _, shipped = levels(client, "CLEAN-TABS-60", location)
    assert shipped == {"available": ordered["available"], "committed": ordered["committed"] - 2,
                       "on_hand": ordered["on_hand"] - 2}
    sandbox.state.cancel(order_id)  # paid: refunded; the unshipped unit is restocked
    _, cancelled = levels(client, "CLEAN-TABS-60", location)
    assert cancelled["committed"] == start["committed"]
    assert cancelled["on_hand"] == cancelled["available"] + cancelled["committed"]
