"""GraphQL documents sent to the Shopify Admin API.

Each operation lives in its own ``graphql/<name>.graphql`` file; shared fragments live in
``graphql/_fragments.graphql`` and are appended to an operation only when it uses them (transitively),
so the text sent over the wire is exactly what the schema-validation test checks.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    OperationDefinitionNode,
    parse,
    visit,
)
from graphql.language import Visitor

_PACKAGE = "x3_shopify_dagster.shopify.graphql"
_FRAGMENTS_FILE = "_fragments.graphql"


@dataclass(frozen=True)
class GraphQLDocument:
    """An operation plus the fragments it needs, ready to send."""

    name: str
    operation_name: str
    text: str


def _read(file_name: str) -> str:
    return resources.files(_PACKAGE).joinpath(file_name).read_text(encoding="utf-8")


@functools.cache
def _fragments() -> dict[str, tuple[str, FragmentDefinitionNode]]:
    text = _read(_FRAGMENTS_FILE)
    parsed = parse(text, no_location=False)
    out: dict[str, tuple[str, FragmentDefinitionNode]] = {}
    for definition in parsed.definitions:
        assert isinstance(definition, FragmentDefinitionNode)
        loc = definition.loc
        assert loc is not None
        out[definition.name.value] = (text[loc.start : loc.end], definition)
    return out


class _SpreadCollector(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_args: object) -> None:
        self.names.add(node.name.value)


def _spreads(node: DocumentNode | FragmentDefinitionNode) -> set[str]:
    collector = _SpreadCollector()
    visit(node, collector)
    return collector.names


def _needed_fragments(document: DocumentNode) -> list[str]:
    fragments = _fragments()
    needed: list[str] = []
    pending = sorted(_spreads(document))
    while pending:
        name = pending.pop(0)
        if name in needed:
            continue
        if name not in fragments:
            raise KeyError(f"GraphQL fragment {name!r} is used but not defined in {_FRAGMENTS_FILE}")
        needed.append(name)
        pending.extend(sorted(_spreads(fragments[name][1]) - set(needed)))
    return needed


@functools.cache
def load_document(name: str) -> GraphQLDocument:
    """Load ``graphql/<name>.graphql`` with the fragments it uses appended."""
    text = _read(f"{name}.graphql")
    document = parse(text)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].name is None:
        raise ValueError(f"{name}.graphql must hold exactly one named operation")
    fragment_texts = [_fragments()[f][0] for f in _needed_fragments(document)]
    full_text = "\n\n".join([text.strip(), *fragment_texts]) + "\n"
    return GraphQLDocument(name=name, operation_name=operations[0].name.value, text=full_text)


def document_names() -> list[str]:
    """Every operation file shipped in the package (used by the schema-validation test)."""
    names = []
    for entry in resources.files(_PACKAGE).iterdir():
        if entry.name.endswith(".graphql") and not entry.name.startswith("_"):
            names.append(re.sub(r"\.graphql$", "", entry.name))
    return sorted(names)
