"""The sandbox's schema subset is a faithful slice of Shopify's real 2026-07 Admin schema, and every GraphQL
document the product ships validates against it and executes against the running sandbox."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from graphql import (
    DocumentNode,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    OperationDefinitionNode,
    StringValueNode,
    VariableNode,
    build_schema,
    is_required_argument,
    is_required_input_field,
    parse,
    print_ast,
    validate,
    visit,
)
from graphql.language import Visitor

from x3_shopify_dagster.sandboxes.shopify import ShopifySandbox
from x3_shopify_dagster.sandboxes.shopify.models import Order, gid
from x3_shopify_dagster.sandboxes.shopify.schema import sandbox_schema, subset_sdl
from x3_shopify_dagster.shopify.documents import document_names, load_document

if TYPE_CHECKING:
    from x3_shopify_dagster_tests.fixtures.shopify_sandbox import ShopifyRawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.shopify_sandbox"]

REAL_SCHEMA = Path(__file__).resolve().parents[2].parent / "shared" / "shopify-admin-schema" / "schema.graphql"


@pytest.fixture(scope="module")
def real_schema() -> GraphQLSchema:
    path = Path(os.environ.get("SHOPIFY_ADMIN_SCHEMA", REAL_SCHEMA))
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Shopify's 2026-07 Admin schema is required in CI and missing at {path}")
        pytest.skip(f"Shopify's 2026-07 Admin schema not available at {path}")
    return build_schema(path.read_text(encoding="utf-8"))


def subset_mismatches(subset: GraphQLSchema, real: GraphQLSchema) -> list[str]:
    """Everything in ``subset`` that Shopify's real schema does not have, or has with another type."""
    problems: list[str] = []
    for name, subset_type in subset.type_map.items():
        if name.startswith("__") or name in ("String", "Int", "Float", "Boolean", "ID"):
            continue
        real_type = real.type_map.get(name)
        if real_type is None:
            problems.append(f"type {name} does not exist")
            continue
        if type(real_type) is not type(subset_type):
            problems.append(f"{name} is a {type(real_type).__name__}, not a {type(subset_type).__name__}")
            continue
        if isinstance(subset_type, GraphQLObjectType | GraphQLInterfaceType):
            assert isinstance(real_type, GraphQLObjectType | GraphQLInterfaceType)
            real_interfaces = {i.name for i in real_type.interfaces}
            problems += [f"{name} does not implement {i.name}" for i in subset_type.interfaces
                         if i.name not in real_interfaces]
            for field_name, field in subset_type.fields.items():
                real_field = real_type.fields.get(field_name)
                if real_field is None:
                    problems.append(f"{name}.{field_name} does not exist")
                    continue
                if str(field.type) != str(real_field.type):
                    problems.append(f"{name}.{field_name} is {real_field.type}, not {field.type}")
                for arg_name, arg in field.args.items():
                    real_arg = real_field.args.get(arg_name)
                    if real_arg is None:
                        problems.append(f"{name}.{field_name}({arg_name}) does not exist")
                    elif str(arg.type) != str(real_arg.type) or arg.default_value != real_arg.default_value:
                        problems.append(f"{name}.{field_name}({arg_name}) is {real_arg.type} = "
                                        f"{real_arg.default_value!r}, not {arg.type} = {arg.default_value!r}")
                problems += [f"{name}.{field_name} lacks required argument {a}" for a, real_arg in
                             real_field.args.items() if is_required_argument(real_arg) and a not in field.args]
        elif isinstance(subset_type, GraphQLInputObjectType):
            assert isinstance(real_type, GraphQLInputObjectType)
            for field_name, field in subset_type.fields.items():
                real_field = real_type.fields.get(field_name)
                if real_field is None or str(real_field.type) != str(field.type):
                    problems.append(f"input {name}.{field_name} differs or does not exist")
            problems += [f"input {name} lacks required field {f}" for f, real_field in real_type.fields.items()
                         if is_required_input_field(real_field) and f not in subset_type.fields]
        elif isinstance(subset_type, GraphQLEnumType):
            assert isinstance(real_type, GraphQLEnumType)
            problems += [f"enum {name} has no value {v}" for v in subset_type.values if v not in real_type.values]
        elif isinstance(subset_type, GraphQLUnionType):
            assert isinstance(real_type, GraphQLUnionType)
            real_members = {t.name for t in real_type.types}
            problems += [f"union {name} has no member {t.name}" for t in subset_type.types
                         if t.name not in real_members]
        else:
            assert isinstance(subset_type, GraphQLScalarType)
    for directive in subset.directives:
        real_directive = real.get_directive(directive.name)
        if real_directive is None:
            problems.append(f"directive @{directive.name} does not exist")
        elif ({a: str(v.type) for a, v in directive.args.items()}
              != {a: str(v.type) for a, v in real_directive.args.items()}
              or set(directive.locations) - set(real_directive.locations)):
            problems.append(f"directive @{directive.name} differs")
    for operation in ("query_type", "mutation_type"):
        subset_root, real_root = getattr(subset, operation), getattr(real, operation)
        if subset_root is not None and (real_root is None or subset_root.name != real_root.name):
            problems.append(f"root {operation} is {real_root}, not {subset_root}")
    return problems


def test_the_subset_exists_in_the_real_2026_07_schema_with_the_same_types(real_schema: GraphQLSchema) -> None:
    subset = build_schema(subset_sdl())
    assert subset_mismatches(subset, real_schema) == []
    assert subset.get_directive("idempotent") is not None


def test_the_compatibility_check_catches_invented_or_retyped_schema(real_schema: GraphQLSchema) -> None:
    wrong = build_schema("""
        directive @idempotent(key: Int!) on FIELD
        type QueryRoot { order(id: ID!): Order, madeUp: Int }
        type Order { id: ID!, name: Int, lineItems(first: Int, page: Int): LineItemConnection! }
        type LineItemConnection { nodes: [String!]! }
        enum CountPrecision { EXACT, ROUGHLY }
        input InventoryQuantityInput { quantity: Int! }
    """)
    problems = subset_mismatches(wrong, real_schema)
    for expected in ("QueryRoot.madeUp does not exist", "Order.name is String!, not Int",
                     "Order.lineItems(page) does not exist", "LineItemConnection.nodes is [LineItem!]!",
                     "enum CountPrecision has no value ROUGHLY",
                     "input InventoryQuantityInput lacks required field inventoryItemId",
                     "directive @idempotent differs"):
        assert any(p.startswith(expected) for p in problems), (expected, problems)


@pytest.mark.parametrize("name", document_names())
def test_every_product_document_validates_against_the_subset(name: str) -> None:
    errors = validate(sandbox_schema(), parse(load_document(name).text))
    assert errors == [], [e.message for e in errors]


# -- every product document runs against the sandbox -------------------------------------------------------
class _InlineVariable(Visitor):
    def __init__(self, name: str, value: str) -> None:
        super().__init__()
        self.name, self.value = name, value

    def enter_variable(self, node: VariableNode, *_args: object) -> StringValueNode | None:
        return StringValueNode(value=self.value) if node.name.value == self.name else None


def bulk_inner_query(search: str) -> str:
    """The export document as a bulk query: ``$query`` inlined as a string literal, no variable definitions."""
    document: DocumentNode = visit(parse(load_document("bulk_orders_export").text), _InlineVariable("query", search))
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            definition.variable_definitions = ()
    return print_ast(document)


def wait_for_bulk(client: ShopifyRawClient, operation_id: str, *, done: tuple[str, ...] = ("COMPLETED", "FAILED",
                  "CANCELED")) -> dict[str, Any]:
    query = load_document("bulk_operation").text
    deadline = time.monotonic() + 30
    while True:
        operation = client.data(query, {"id": operation_id})["bulkOperation"]
        if operation["status"] in done or time.monotonic() > deadline:
            return operation  # type: ignore[no-any-return]
        time.sleep(0.01)


def _orders(sandbox: ShopifySandbox, store: str, test: Callable[[Order], bool]) -> list[Order]:
    found = [o for o in sandbox.state.orders(store) if test(o)]
    assert found, "the seeded history lacks an order this recipe needs"
    return found


def _run_bulk(client: ShopifyRawClient) -> dict[str, Any]:
    started = client.data(load_document("bulk_orders_run").text,
                          {"query": bulk_inner_query("updated_at:>='2000-01-01T00:00:00Z'")})
    run = started["bulkOperationRunQuery"]
    assert run["userErrors"] == []
    assert run["bulkOperation"]["status"] == "CREATED"
    return run["bulkOperation"]  # type: ignore[no-any-return]


def _recipes(sandbox: ShopifySandbox, client: ShopifyRawClient) -> dict[str, Callable[[], dict[str, Any]]]:
    """name -> a call that runs the document against the sandbox and returns its data."""
    big = _orders(sandbox, "eu", lambda o: len(o.cart.lines) > 60)[0]
    refunded = _orders(sandbox, "eu", lambda o: any(r.shipping for r in o.refunds))[0]
    fulfilled = _orders(sandbox, "eu", lambda o: bool(o.fulfillments))[0]
    window = "updated_at:>='2000-01-01T00:00:00Z' AND updated_at:<'2100-01-01T00:00:00Z'"
    ids = [gid("Order", o.legacy_id) for o in (big, refunded, fulfilled)]

    def run(name: str, variables: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        return lambda: client.data(load_document(name).text, variables)

    def export_completes() -> dict[str, Any]:
        operation = wait_for_bulk(client, _run_bulk(client)["id"])
        assert operation["status"] == "COMPLETED", operation
        return {"bulkOperation": operation}

    def cancel_running() -> dict[str, Any]:
        sandbox.bulk.pace_s, sandbox.bulk.chunk_size = 0.05, 2
        try:
            operation = _run_bulk(client)
            data = client.data(load_document("bulk_operation_cancel").text, {"id": operation["id"]})
            assert data["bulkOperationCancel"]["bulkOperation"]["status"] in ("CANCELING", "CANCELED")
            assert wait_for_bulk(client, operation["id"])["status"] == "CANCELED"
            return data
        finally:
            sandbox.bulk.pace_s, sandbox.bulk.chunk_size = 0.0, 200

    store = sandbox.state.store("eu")
    variant = store.variant_by_sku("TAMPER-58")
    assert variant is not None
    item, location = gid("InventoryItem", variant.inventory_item_id), gid("Location", store.default_location.legacy_id)
    on_hand = store.inventory[(variant.inventory_item_id, store.default_location.legacy_id)].quantities["on_hand"]
    set_input = {"name": "on_hand", "reason": "correction", "referenceDocumentUri": "gid://x3-shopify-dagster/T/1",
                 "quantities": [{"inventoryItemId": item, "locationId": location, "quantity": on_hand + 1,
                                 "changeFromQuantity": on_hand}]}

    return {
        "variants_by_sku": run("variants_by_sku", {"query": "sku:'TAMPER-58'", "first": 10}),
        "inventory_levels": run("inventory_levels", {"ids": [item], "locationId": location, "names": ["on_hand"]}),
        "inventory_set_quantities": run("inventory_set_quantities", {"input": set_input,
                                                                     "idempotencyKey": "schema-recipe-1"}),
        "shop_info": run("shop_info", {}),
        "access_scopes": run("access_scopes", {}),
        "orders_probe": run("orders_probe", {"query": window}),
        "orders_page": run("orders_page", {"first": 2, "after": None, "query": window, "lineItemsFirst": 5,
                                           "shippingLinesFirst": 2}),
        "order_line_items": run("order_line_items", {"id": gid("Order", big.legacy_id), "first": 40}),
        "order_shipping_lines": run("order_shipping_lines", {"id": gid("Order", big.legacy_id), "first": 5}),
        "orders_by_id": run("orders_by_id", {"ids": ids[1:], "lineItemsFirst": 5, "shippingLinesFirst": 2}),
        "orders_after_sales": run("orders_after_sales", {"ids": ids, "linesFirst": 5, "shippingLinesFirst": 2}),
        "refund_line_items": run("refund_line_items", {"id": gid("Refund", refunded.refunds[0].legacy_id),
                                                       "first": 10}),
        "refund_shipping_lines": run("refund_shipping_lines", {"id": gid("Refund", refunded.refunds[0].legacy_id),
                                                               "first": 5}),
        "fulfillment_line_items": run("fulfillment_line_items", {
            "id": gid("Fulfillment", fulfilled.fulfillments[0].legacy_id), "first": 10}),
        "fulfillment_orders_probe": run("fulfillment_orders_probe", {"query": window}),
        "fulfillment_orders_page": run("fulfillment_orders_page", {
            "first": 2, "after": None, "query": window, "fulfillmentsFirst": 5, "linesFirst": 5}),
        "fulfillment_sync_line_items": run("fulfillment_sync_line_items", {
            "id": gid("Fulfillment", fulfilled.fulfillments[0].legacy_id), "first": 10}),
        "bulk_orders_run": export_completes,
        "bulk_orders_export": export_completes,
        "bulk_operation": lambda: client.data(load_document("bulk_operation").text, {"id": _run_bulk(client)["id"]}),
        "bulk_operation_cancel": cancel_running,
    }


@pytest.mark.parametrize("name", document_names())
def test_every_product_document_executes_against_the_sandbox(
        name: str, fresh_shopify_sandbox: ShopifySandbox,
        shopify_raw_factory: Callable[..., ShopifyRawClient]) -> None:
    client = shopify_raw_factory(fresh_shopify_sandbox, "eu")
    recipes = _recipes(fresh_shopify_sandbox, client)
    if name not in recipes:
        pytest.fail(f"no recipe runs the product document {name!r} against the sandbox: add one here (and make "
                    "sure the sandbox serves every field it uses)")
    data = recipes[name]()
    assert data, f"{name} returned no data"
    assert all(value is not None for value in data.values()), data


def test_the_recipes_prove_something_the_orders_page_returns_seeded_orders(
        fresh_shopify_sandbox: ShopifySandbox, shopify_raw_factory: Callable[..., ShopifyRawClient]) -> None:
    client = shopify_raw_factory(fresh_shopify_sandbox, "us")
    page = client.data(load_document("orders_page").text, {
        "first": 3, "query": "updated_at:>='2000-01-01T00:00:00Z'", "lineItemsFirst": 4, "shippingLinesFirst": 1})
    nodes = page["orders"]["nodes"]
    assert len(nodes) == 3
    assert page["orders"]["pageInfo"]["hasNextPage"] is True
    assert {n["currencyCode"] for n in nodes} == {"USD"}


def test_the_sandbox_rejects_what_the_real_schema_rejects(shopify_sandbox: ShopifySandbox) -> None:
    response = httpx.post(shopify_sandbox.graphql_url("eu"), json={"query": "{ shop { id inventedField } }"},
                          headers={"X-Shopify-Access-Token": shopify_sandbox.access_token("eu")})
    assert response.status_code == 200
    body = response.json()
    assert "data" not in body
    assert "inventedField" in body["errors"][0]["message"]
