"""Every GraphQL document the connector sends validates against Shopify's real Admin schema (2026-07).

The bulk export's inner query is checked as it is sent (window substituted) and against Shopify's documented
bulk-query restrictions, which plain schema validation does not see.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    get_named_type,
    parse,
    validate,
)

from x3_shopify_dagster.shopify.bulk import bulk_orders_query
from x3_shopify_dagster.shopify.documents import document_names, load_document
from x3_shopify_dagster.shopify.orders import orders_search_query

SCHEMA_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "shopify-admin-schema" / "schema.graphql"


@pytest.fixture(scope="session")
def admin_schema() -> GraphQLSchema:
    if not SCHEMA_PATH.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Shopify Admin schema missing at {SCHEMA_PATH}")
        pytest.skip(f"Shopify Admin schema not available at {SCHEMA_PATH}")
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))


def test_the_package_ships_the_documents_the_client_uses() -> None:
    names = set(document_names())
    assert {
        "orders_page",
        "orders_probe",
        "order_line_items",
        "order_shipping_lines",
        "orders_after_sales",
        "orders_by_id",
        "refund_line_items",
        "refund_shipping_lines",
        "fulfillment_line_items",
        "bulk_orders_export",
        "bulk_orders_run",
        "bulk_operation",
        "bulk_operation_cancel",
        "shop_info",
    } <= names


@pytest.mark.parametrize("name", document_names())
def test_document_validates_against_the_admin_schema(admin_schema: GraphQLSchema, name: str) -> None:
    errors = validate(admin_schema, parse(load_document(name).text))
    assert errors == [], [e.message for e in errors]


def _sent_bulk_query() -> str:
    search = orders_search_query(datetime(2026, 11, 27, 10, tzinfo=UTC), datetime(2026, 11, 27, 11, tzinfo=UTC))
    return bulk_orders_query(search)


def test_bulk_inner_query_as_sent_validates(admin_schema: GraphQLSchema) -> None:
    text = _sent_bulk_query()
    assert "$" not in text  # bulkOperationRunQuery takes no variables
    assert "updated_at:>='2026-11-27T10:00:00Z' AND updated_at:<'2026-11-27T11:00:00Z'" in text
    errors = validate(admin_schema, parse(text))
    assert errors == [], [e.message for e in errors]


# --- Shopify's bulk-query restrictions (shopify.dev bulk-operations/queries, "Operation restrictions") ---


@dataclass
class BulkShape:
    connections: list[str] = field(default_factory=list)
    max_depth: int = 0
    violations: list[str] = field(default_factory=list)


def _fields(selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode]) -> list[FieldNode]:
    found: list[FieldNode] = []
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            found.append(selection)
        elif isinstance(selection, FragmentSpreadNode):
            found.extend(_fields(fragments[selection.name.value].selection_set, fragments))
        elif isinstance(selection, InlineFragmentNode):
            found.extend(_fields(selection.selection_set, fragments))
    return found


def _is_list(type_: object) -> bool:
    return isinstance(type_.of_type if isinstance(type_, GraphQLNonNull) else type_, GraphQLList)


def bulk_shape(schema: GraphQLSchema, document: DocumentNode) -> BulkShape:
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    shape = BulkShape()

    def walk(selection_set: SelectionSetNode | None, parent: GraphQLObjectType, depth: int, in_list: bool) -> None:
        for node in _fields(selection_set, fragments):
            name = node.name.value
            if name == "__typename":
                continue
            definition = parent.fields[name]
            named = get_named_type(definition.type)
            if named.name.endswith("Connection"):
                shape.connections.append(name)
                shape.max_depth = max(shape.max_depth, depth + 1)
                if in_list:
                    shape.violations.append(f"connection {name} inside a list field")
                inner = {f.name.value: f for f in _fields(node.selection_set, fragments)}
                if "nodes" in inner or "edges" not in inner:
                    shape.violations.append(f"connection {name} must select edges {{ node }}, not nodes")
                    continue
                edge = {f.name.value: f for f in _fields(inner["edges"].selection_set, fragments)}
                node_type = get_named_type(get_named_type(named.fields["edges"].type).fields["node"].type)
                node_fields = _fields(edge["node"].selection_set, fragments)
                nests_a_connection = any(
                    get_named_type(node_type.fields[f.name.value].type).name.endswith("Connection")
                    for f in node_fields
                    if f.name.value != "__typename"
                )
                selects_id = any(f.name.value == "id" and f.alias is None for f in node_fields)
                if nests_a_connection and not selects_id:
                    shape.violations.append(f"{name} node has a nested connection but does not select id")
                walk(edge["node"].selection_set, node_type, depth + 1, False)
            elif hasattr(named, "fields"):
                walk(node.selection_set, named, depth, in_list or _is_list(definition.type))

    walk(operation.selection_set, schema.query_type, 0, False)
    return shape


def test_bulk_inner_query_respects_shopify_bulk_restrictions(admin_schema: GraphQLSchema) -> None:
    shape = bulk_shape(admin_schema, parse(_sent_bulk_query()))
    assert shape.violations == []
    assert len(shape.connections) <= 5, shape.connections
    assert shape.max_depth <= 2


def test_bulk_restriction_checker_catches_what_shopify_rejects(admin_schema: GraphQLSchema) -> None:
    # The checker itself must fail on the shapes Shopify refuses, or the test above proves nothing.
    bad = parse(
        "{ orders { edges { node { id fulfillments { fulfillmentLineItems { edges { node { id } } } }"
        " discountApplications { nodes { index } } } } } }"
    )
    shape = bulk_shape(admin_schema, bad)
    assert any("inside a list" in v for v in shape.violations)
    assert any("edges { node }" in v for v in shape.violations)
    deep = parse(
        "{ orders { edges { node { id lineItems { edges { node { id "
        "sellingPlan { name } } } } shippingLines { edges { node { id } } } "
        "discountApplications { edges { node { index } } } "
        "agreements { edges { node { id sales { edges { node { id } } } } } } } } } }"
    )
    deep_shape = bulk_shape(admin_schema, deep)
    assert len(deep_shape.connections) == 6
    assert deep_shape.max_depth == 3
