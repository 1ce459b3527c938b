"""Shopify's calculated query cost, from the query AST (requested) and from the response (actual).

Rules (shopify.dev "GraphQL Admin API rate limits"; Shopify Engineering, "Rate limiting GraphQL APIs by
calculating query complexity"), with the sandbox's choices where Shopify leaves room:

* scalar and enum fields cost 0; ``__typename`` costs 0;
* an object field costs 1 plus its selection;
* a connection field (a ``…Connection`` type) costs ``2 + n x (cost of one node)``, ``n`` being ``first`` or
  ``last``; one node costs 1 plus its selection, whether reached through ``nodes`` or ``edges { node }``
  (both count once); ``pageInfo`` and ``cursor`` are free;
* a plain list of objects (``refunds(first: 20)``, ``taxLines``) costs like **one** element, except
  ``nodes(ids:)``, which costs one element per id;
* an interface or union costs the maximum over its possible types' selections;
* every mutation field costs 10, whatever it selects.

The actual cost replays the same rules on the response, counting the nodes each connection really returned
(a plain list costs its most expensive element, 0 when empty); it never exceeds the requested cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    value_from_ast,
)
from graphql.pyutils import Undefined

from x3_shopify_dagster.sandboxes.shopify.pagination import check_page_size

MUTATION_COST = 10
CONNECTION_BASE_COST = 2


class QueryCostError(GraphQLError):
    """The query cannot be costed (e.g. a connection without ``first``/``last``)."""


def is_connection(named_type: GraphQLNamedType) -> bool:
    return named_type.name.endswith("Connection") and isinstance(named_type, GraphQLObjectType)


def _is_list(field_type: Any) -> bool:
    if isinstance(field_type, GraphQLNonNull):
        field_type = field_type.of_type
    return isinstance(field_type, GraphQLList)


class SelectionWalker:
    """Reads an operation's selections against the schema, fragments flattened per concrete type."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode,
                 variables: Mapping[str, Any] | None) -> None:
        self.schema = schema
        self.operation = operation
        self.variables = dict(variables or {})
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def fields_for(self, type_: GraphQLObjectType, selection_set: SelectionSetNode | None) -> list[FieldNode]:
        """The field nodes that apply to a concrete type, with fragments flattened."""
        out: list[FieldNode] = []
        if selection_set is None:
            return out
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                out.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if self._applies(selection.type_condition.name.value if selection.type_condition else None, type_):
                    out.extend(self.fields_for(type_, selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                if self._applies(fragment.type_condition.name.value, type_):
                    out.extend(self.fields_for(type_, fragment.selection_set))
        return out

    def _applies(self, condition: str | None, type_: GraphQLObjectType) -> bool:
        if condition is None or condition == type_.name:
            return True
        condition_type = self.schema.get_type(condition)
        return isinstance(condition_type, GraphQLAbstractType) and self.schema.is_sub_type(condition_type, type_)

    def concrete_types(self, named: GraphQLNamedType) -> Iterable[GraphQLObjectType]:
        if is_abstract_type(named):
            return self.schema.get_possible_types(named)  # type: ignore[arg-type]
        assert isinstance(named, GraphQLObjectType)
        return (named,)

    def argument(self, field_def: GraphQLField, node: FieldNode, name: str) -> Any:
        for argument in node.arguments:
            if argument.name.value == name:
                value = value_from_ast(argument.value, field_def.args[name].type, self.variables)
                if value is not Undefined:  # an unset variable falls back to the argument's default
                    return value
        arg = field_def.args.get(name)
        return None if arg is None or arg.default_value is Undefined else arg.default_value

    def field_def(self, type_: GraphQLObjectType, node: FieldNode) -> GraphQLField | None:
        if node.name.value.startswith("__"):
            return None
        return type_.fields.get(node.name.value)

    def connection_nodes(self, connection: GraphQLObjectType,
                          node: FieldNode) -> tuple[GraphQLNamedType, list[SelectionSetNode]]:
        """The node type of a connection and every selection set that selects its nodes."""
        node_type = get_named_type(connection.fields["nodes"].type)
        edge_type = get_named_type(connection.fields["edges"].type)
        assert isinstance(edge_type, GraphQLObjectType)
        sets: list[SelectionSetNode] = []
        for field in self.fields_for(connection, node.selection_set):
            if field.name.value == "nodes" and field.selection_set:
                sets.append(field.selection_set)
            elif field.name.value == "edges":
                for edge_field in self.fields_for(edge_type, field.selection_set):
                    if edge_field.name.value == "node" and edge_field.selection_set:
                        sets.append(edge_field.selection_set)
        return node_type, sets



class CostCalculator(SelectionWalker):
    """Requested cost (before execution) and actual cost (from the response) of one operation."""

    def requested(self) -> int:
        if self.operation.operation == OperationType.MUTATION:
            mutation_type = self.schema.mutation_type
            assert mutation_type is not None
            return MUTATION_COST * len(self.fields_for(mutation_type, self.operation.selection_set))
        query_type = self.schema.query_type
        assert query_type is not None
        return self._selection_cost(query_type, self.operation.selection_set)

    def _selection_cost(self, named: GraphQLNamedType, selection_set: SelectionSetNode | None) -> int:
        return max((sum(self._field_cost(type_, f) for f in self.fields_for(type_, selection_set))
                    for type_ in self.concrete_types(named)), default=0)

    def _node_cost(self, named: GraphQLNamedType, selection_sets: list[SelectionSetNode]) -> int:
        if is_leaf_type(named):
            return 0
        return 1 + max((self._selection_cost(named, s) for s in selection_sets), default=0)

    def _field_cost(self, parent: GraphQLObjectType, node: FieldNode) -> int:
        field_def = self.field_def(parent, node)
        if field_def is None:
            return 0
        named = get_named_type(field_def.type)
        if is_leaf_type(named):
            return 0
        if is_connection(named):
            assert isinstance(named, GraphQLObjectType)
            first, last = self.argument(field_def, node, "first"), self.argument(field_def, node, "last")
            try:
                check_page_size(first, last)
            except GraphQLError as exc:
                raise QueryCostError(exc.message, node) from None
            size = first if first is not None else last
            node_type, sets = self.connection_nodes(named, node)
            return CONNECTION_BASE_COST + size * self._node_cost(node_type, sets)
        element = 1 + self._selection_cost(named, node.selection_set)
        if _is_list(field_def.type) and "ids" in field_def.args:
            # nodes(ids:) is sized by the ids it is given
            return element * len(self.argument(field_def, node, "ids") or [])
        return element

    # -- actual cost ------------------------------------------------------------------------------------------
    def actual(self, data: Mapping[str, Any] | None) -> int:
        if self.operation.operation == OperationType.MUTATION:
            return self.requested()
        query_type = self.schema.query_type
        assert query_type is not None
        if data is None:
            return 0
        return self._actual_selection(query_type, self.operation.selection_set, data)

    def _actual_selection(self, named: GraphQLNamedType, selection_set: SelectionSetNode | None,
                          data: Mapping[str, Any]) -> int:
        return max((sum(self._actual_field(type_, f, data) for f in self.fields_for(type_, selection_set))
                    for type_ in self.concrete_types(named)), default=0)

    def _actual_field(self, parent: GraphQLObjectType, node: FieldNode, data: Mapping[str, Any]) -> int:
        field_def = self.field_def(parent, node)
        if field_def is None:
            return 0
        named = get_named_type(field_def.type)
        if is_leaf_type(named):
            return 0
        value = data.get(node.alias.value if node.alias else node.name.value)
        if is_connection(named):
            assert isinstance(named, GraphQLObjectType)
            if not isinstance(value, Mapping):
                return CONNECTION_BASE_COST
            node_type, sets = self.connection_nodes(named, node)
            returned = value.get("nodes") if isinstance(value.get("nodes"), list) else None
            if returned is None:
                edges = next((v for v in value.values() if isinstance(v, list)), [])
                returned = [edge.get("node") for edge in edges if isinstance(edge, Mapping)]
            total = 0
            for item in returned:
                if isinstance(item, Mapping):
                    total += 1 + max((self._actual_selection(node_type, s, item) for s in sets), default=0)
            return CONNECTION_BASE_COST + total
        if _is_list(field_def.type):
            items = [v for v in value or [] if isinstance(v, Mapping)]
            costs = [1 + self._actual_selection(named, node.selection_set, v) for v in items]
            return sum(costs) if "ids" in field_def.args else max(costs, default=0)
        if isinstance(value, Mapping):
            return 1 + self._actual_selection(named, node.selection_set, value)
        return 1
