"""The executable schema: ``schema_subset.graphql`` + scalar serialisation + resolvers. Built once."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    build_schema,
    parse,
    validate,
)

from x3_shopify_dagster.sandboxes.shopify.money import format_decimal
from x3_shopify_dagster.sandboxes.shopify.resolvers import ABSTRACT_TYPE_RESOLVERS, RESOLVERS

SUBSET_FILE = "schema_subset.graphql"


def subset_sdl() -> str:
    return resources.files(__package__).joinpath(SUBSET_FILE).read_text(encoding="utf-8")


def serialize_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise GraphQLError("naive datetime reached the API layer")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def serialize_decimal(value: Any) -> str:
    return format_decimal(value) if isinstance(value, Decimal) else str(value)


_SCALAR_SERIALIZERS = {
    "DateTime": serialize_datetime,
    "Decimal": serialize_decimal,
    "Money": serialize_decimal,
    "UnsignedInt64": str,  # Shopify sends 64-bit integers as strings
    "URL": str,
}


@functools.cache
def sandbox_schema() -> GraphQLSchema:
    schema = build_schema(subset_sdl())
    for name, serializer in _SCALAR_SERIALIZERS.items():
        scalar = schema.type_map[name]
        assert isinstance(scalar, GraphQLScalarType)
        scalar.serialize = serializer  # type: ignore[method-assign]
    for type_name, fields in RESOLVERS.items():
        type_ = schema.type_map[type_name]
        assert isinstance(type_, GraphQLObjectType | GraphQLInterfaceType), type_name
        for field_name, resolver in fields.items():
            if field_name in type_.fields:
                type_.fields[field_name].resolve = resolver
    for type_name, resolve_type in ABSTRACT_TYPE_RESOLVERS.items():
        abstract = schema.type_map[type_name]
        assert isinstance(abstract, GraphQLInterfaceType | GraphQLUnionType)
        abstract.resolve_type = resolve_type
    return schema


def never_awaitable(_value: Any) -> bool:
    """Every resolver is synchronous; telling graphql-core so skips its per-value awaitable check."""
    return False


@functools.lru_cache(maxsize=512)
def parse_and_validate(query: str) -> tuple[DocumentNode | None, tuple[GraphQLError, ...]]:
    """Parsed and validated documents are cached by text, as clients resend the same few queries."""
    try:
        document = parse(query)
    except GraphQLError as error:
        return None, (error,)
    return document, tuple(validate(sandbox_schema(), document))
