"""Bulk query operations: validate the inner query, run it in the background, write JSONL to disk.

Output follows Shopify's format: one line per root node; nodes of nested connections on their own lines with
``"__parentId"`` (the id of the root node that owns them, also when the connection sits inside a plain
list such as ``refunds``); plain lists and objects stay inline. Children come after their parent but, unless
``groupObjects`` is true, not necessarily right after it: half of a node's children are deliberately held
back until after the next root node (deterministic), because clients must not rely on adjacency.

An operation that returns no objects completes with ``url: null`` (Shopify does the same).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    execute,
    get_named_type,
    is_leaf_type,
)

from x3_shopify_dagster.sandboxes.shopify.config import MAX_CONCURRENT_BULK_QUERIES
from x3_shopify_dagster.sandboxes.shopify.context import BulkScope, RequestContext
from x3_shopify_dagster.sandboxes.shopify.cost import SelectionWalker, is_connection
from x3_shopify_dagster.sandboxes.shopify.faults import FaultInjector
from x3_shopify_dagster.sandboxes.shopify.models import BulkOperation
from x3_shopify_dagster.sandboxes.shopify.schema import never_awaitable, parse_and_validate, sandbox_schema

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 5
MAX_CONNECTION_DEPTH = 2
CHUNK_SIZE = 200  # root nodes executed per graphql-core call


def _user_error(message: str, code: str) -> dict[str, Any]:
    return {"field": ["query"], "message": message, "code": code}


class _Plan:
    """A validated inner query: its operation and the walker that knows its connection fields."""

    def __init__(self, walker: SelectionWalker, operation: OperationDefinitionNode, root: FieldNode) -> None:
        self.walker = walker
        self.operation = operation
        self.root = root


def _connections(walker: SelectionWalker, named: GraphQLNamedType, selection_set: SelectionSetNode | None,
                 depth: int, found: list[int], in_list: list[str], path: str = "") -> None:
    """Append the depth of every connection below ``selection_set``; note connections inside list fields."""
    if is_leaf_type(named) or selection_set is None:
        return
    for type_ in walker.concrete_types(named):
        for field in walker.fields_for(type_, selection_set):
            field_def = walker.field_def(type_, field)
            if field_def is None:
                continue
            child = get_named_type(field_def.type)
            here = f"{path}.{field.name.value}" if path else field.name.value
            if is_connection(child):
                assert isinstance(child, GraphQLObjectType)
                if path.endswith("[]"):
                    in_list.append(here)
                found.append(depth + 1)
                node_type, sets = walker.connection_nodes(child, field)
                for node_set in sets:
                    _connections(walker, node_type, node_set, depth + 1, found, in_list, "")
            else:
                suffix = "[]" if _is_list_type(field_def.type) else ""
                _connections(walker, child, field.selection_set, depth, found, in_list, here + suffix)


def _is_list_type(field_type: Any) -> bool:
    if isinstance(field_type, GraphQLNonNull):
        field_type = field_type.of_type
    return isinstance(field_type, GraphQLList)


def plan_bulk_query(query: str) -> _Plan | str:
    """The plan, or the reason Shopify would refuse the query (a BulkOperationUserError message)."""
    document, errors = parse_and_validate(query)
    if document is None or errors:
        return f"Invalid bulk query: {errors[0].message}"
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
        return "Invalid bulk query: a bulk query must hold exactly one query operation."
    operation = operations[0]
    if operation.variable_definitions:
        return "Invalid bulk query: bulk queries can't use variables; inline the values."
    walker = SelectionWalker(sandbox_schema(), document, operation, {})
    query_type = sandbox_schema().query_type
    assert query_type is not None
    roots = walker.fields_for(query_type, operation.selection_set)
    if len(roots) != 1:
        return "Invalid bulk query: a bulk query must select exactly one top-level field."
    root = roots[0]
    root_def = walker.field_def(query_type, root)
    if root_def is None or not is_connection(get_named_type(root_def.type)):
        return "Invalid bulk query: the top-level field must be a connection."
    depths: list[int] = []
    in_list: list[str] = []
    _connections(walker, query_type, operation.selection_set, 0, depths, in_list)
    if in_list:
        return (f"Invalid bulk query: connections inside list fields are not supported ({', '.join(in_list)}); "
                "query them separately.")
    if len(depths) > MAX_CONNECTIONS:
        return (f"Invalid bulk query: the query has {len(depths)} connections; bulk queries support at most "
                f"{MAX_CONNECTIONS}.")
    if max(depths) > MAX_CONNECTION_DEPTH:
        return (f"Invalid bulk query: connections are nested {max(depths)} levels deep; bulk queries support "
                f"at most {MAX_CONNECTION_DEPTH}.")
    return _Plan(walker, operation, root)


@dataclass(frozen=True)
class _Slot:
    """What the flattener does with one response key of an object (worked out once per selection)."""

    key: str
    child_type: GraphQLNamedType
    selection_set: SelectionSetNode | None
    connection: tuple[GraphQLNamedType, list[SelectionSetNode]] | None  # node type and node selections


class _Flattener:
    """Turns one executed root node into its JSONL line plus child lines."""

    def __init__(self, walker: SelectionWalker) -> None:
        self.walker = walker
        self._slots: dict[tuple[str, int], list[_Slot]] = {}

    def flatten(self, named: GraphQLNamedType, sets: list[SelectionSetNode],
                record: dict[str, Any]) -> list[dict[str, Any]]:
        children: list[dict[str, Any]] = []
        for selection_set in sets:
            self._extract(named, selection_set, record, record.get("id"), children)
        return children

    def _slots_for(self, named: GraphQLNamedType, selection_set: SelectionSetNode | None) -> list[_Slot]:
        cache_key = (named.name, id(selection_set))
        slots = self._slots.get(cache_key)
        if slots is not None:
            return slots
        walker, seen, slots = self.walker, set(), []
        for type_ in walker.concrete_types(named):
            for field in walker.fields_for(type_, selection_set):
                key = field.alias.value if field.alias else field.name.value
                field_def = walker.field_def(type_, field)
                if key in seen or field_def is None:
                    continue
                seen.add(key)
                child_type = get_named_type(field_def.type)
                if is_leaf_type(child_type):
                    continue
                connection = None
                if is_connection(child_type):
                    assert isinstance(child_type, GraphQLObjectType)
                    connection = walker.connection_nodes(child_type, field)
                slots.append(_Slot(key, child_type, field.selection_set, connection))
        self._slots[cache_key] = slots
        return slots

    def _extract(self, named: GraphQLNamedType, selection_set: SelectionSetNode | None, obj: dict[str, Any],
                 parent_id: Any, children: list[dict[str, Any]]) -> None:
        for slot in self._slots_for(named, selection_set):
            value = obj.get(slot.key)
            if value is None:
                continue
            if slot.connection is not None:
                del obj[slot.key]
                node_type, node_sets = slot.connection
                for item in _connection_items(value):
                    for node_set in node_sets:
                        self._extract(node_type, node_set, item, item.get("id"), children)
                    item["__parentId"] = parent_id
                    children.append(item)
            elif isinstance(value, list):
                for element in value:
                    if isinstance(element, dict):
                        self._extract(slot.child_type, slot.selection_set, element, parent_id, children)
            elif isinstance(value, dict):
                self._extract(slot.child_type, slot.selection_set, value, parent_id, children)


def _connection_items(value: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(value.get("nodes"), list):
        return [n for n in value["nodes"] if isinstance(n, dict)]
    items = []
    for edges in (v for v in value.values() if isinstance(v, list)):
        items.extend(e["node"] for e in edges if isinstance(e, dict) and isinstance(e.get("node"), dict))
    return items


class _JsonlWriter:
    """Writes root lines and their children, interleaving children unless objects are grouped."""

    def __init__(self, stream: IO[str], group_objects: bool) -> None:
        self.stream = stream
        self.group_objects = group_objects
        self.deferred: list[dict[str, Any]] = []
        self.lines = 0
        self.roots = 0
        self.bytes = 0

    def _write(self, obj: dict[str, Any]) -> None:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"
        self.stream.write(text)
        self.lines += 1
        self.bytes += len(text.encode("utf-8"))

    def root(self, line: dict[str, Any], children: list[dict[str, Any]]) -> None:
        self._write(line)
        self.roots += 1
        if self.group_objects:
            for child in children:
                self._write(child)
            return
        held_back, self.deferred = self.deferred, []
        for child in held_back:
            self._write(child)
        cut = (len(children) + 1) // 2
        for child in children[:cut]:
            self._write(child)
        self.deferred = children[cut:]

    def finish(self) -> None:
        for child in self.deferred:
            self._write(child)
        self.deferred = []


class BulkRunner:
    def __init__(self, state: Any, files_dir: Path, url_for: Callable[[str], str], faults: FaultInjector,
                 api_version_for_run: str = "2026-07") -> None:
        self.state = state
        self.files_dir = files_dir
        self.url_for = url_for
        self.faults = faults
        self.api_version = api_version_for_run
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cancelled: set[int] = set()
        self.chunk_size = CHUNK_SIZE
        self.pace_s = 0.0  # pause between chunks; tests raise it to catch an operation while it runs

    def file_path(self, legacy_id: int, partial: bool = False) -> Path:
        return self.files_dir / (f"{legacy_id}-partial.jsonl" if partial else f"{legacy_id}.jsonl")

    def start(self, store: str, query: str, *, group_objects: bool, operation_name: str | None) -> dict[str, Any]:
        plan = plan_bulk_query(query)
        if isinstance(plan, str):
            return {"bulkOperation": None, "userErrors": [_user_error(plan, "INVALID")]}
        state = self.state
        with state.locked():
            if state.running_bulk_operations(store) >= MAX_CONCURRENT_BULK_QUERIES:
                return {"bulkOperation": None, "userErrors": [_user_error(
                    f"A maximum of {MAX_CONCURRENT_BULK_QUERIES} bulk query operations can run at the same time "
                    "for this app and shop.", "LIMIT_REACHED")]}
            operation = BulkOperation(legacy_id=state.next_id("BulkOperation"), store=store, query=query,
                                      created_at=state.now())
            state.add_bulk_operation(operation)
        fail = self.faults.take(store, operation_name, bulk=True) is not None
        thread = threading.Thread(target=self._run, args=(operation, plan, group_objects, fail),
                                  name=f"shopify-bulk-{operation.legacy_id}", daemon=True)
        self._threads.append(thread)
        snapshot = self.snapshot(operation)
        thread.start()
        return {"bulkOperation": snapshot, "userErrors": []}

    def snapshot(self, operation: BulkOperation) -> BulkOperation:
        """A consistent copy to serialise while the runner thread keeps updating the original."""
        with self.state.locked():
            return dataclasses.replace(operation)

    def cancel(self, operation: BulkOperation) -> dict[str, Any]:
        with self.state.locked():
            if operation.status in ("CREATED", "RUNNING"):
                operation.status = "CANCELING"
                self._cancelled.add(operation.legacy_id)
                return {"bulkOperation": dataclasses.replace(operation), "userErrors": []}
            status = operation.status.lower()
            snapshot = dataclasses.replace(operation)
        return {"bulkOperation": snapshot, "userErrors": [
            {"field": None, "message": f"A bulk operation cannot be canceled when it is {status}"}]}

    def _cancelling(self, operation: BulkOperation) -> bool:
        return self._stop.is_set() or operation.legacy_id in self._cancelled

    def shutdown(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _update(self, operation: BulkOperation, **changes: Any) -> None:
        with self.state.locked():
            for name, value in changes.items():
                setattr(operation, name, value)

    def _run(self, operation: BulkOperation, plan: _Plan, group_objects: bool, fail: bool) -> None:
        with self.state.locked():
            if operation.status == "CREATED":
                operation.status = "RUNNING"
        path = self.file_path(operation.legacy_id)
        try:
            with path.open("w", encoding="utf-8") as stream:
                writer = _JsonlWriter(stream, group_objects)
                self._export(operation, plan, writer)
                writer.finish()
        except Exception:
            logger.exception("Shopify sandbox bulk operation %s failed", operation.legacy_id)
            self._update(operation, status="FAILED", error_code="INTERNAL_SERVER_ERROR")
            return
        if self._cancelling(operation):
            path.unlink(missing_ok=True)
            self._update(operation, status="CANCELED")
            return
        if fail:
            self._fail_with_partial_data(operation, path, writer.lines)
            return
        empty = writer.lines == 0
        self._update(operation, status="COMPLETED", object_count=writer.lines, root_object_count=writer.roots,
                     file_size=None if empty else writer.bytes,
                     url=None if empty else self.url_for(path.name), completed_at=self.state.now())

    def _export(self, operation: BulkOperation, plan: _Plan, writer: _JsonlWriter) -> None:
        schema = sandbox_schema()
        walker = plan.walker
        query_type = schema.query_type
        assert query_type is not None
        root_def = walker.field_def(query_type, plan.root)
        assert root_def is not None
        root_connection = get_named_type(root_def.type)
        assert isinstance(root_connection, GraphQLObjectType)
        node_type, node_sets = walker.connection_nodes(root_connection, plan.root)
        flattener = _Flattener(walker)
        scope = BulkScope(chunk_size=self.chunk_size)
        context = RequestContext(state=self.state, store=operation.store, api_version=self.api_version,
                                 bulk=scope)
        full_document, _errors = parse_and_validate(operation.query)
        assert full_document is not None
        key = plan.root.alias.value if plan.root.alias else plan.root.name.value
        while not self._cancelling(operation):
            result = execute(schema, full_document, context_value=context, is_awaitable=never_awaitable)
            if result.errors:
                raise GraphQLError(f"bulk execution failed: {result.errors[0].message}")
            assert result.data is not None
            records = _connection_items(result.data[key])
            for record in records:
                children = flattener.flatten(node_type, node_sets, record)
                writer.root(record, children)
            self._update(operation, object_count=writer.lines, root_object_count=writer.roots)
            scope.chunk_start += scope.chunk_size
            if scope.chunk_start >= len(scope.root_records or []):
                break
            if self.pace_s:
                self._stop.wait(self.pace_s)

    def _fail_with_partial_data(self, operation: BulkOperation, path: Path, lines: int) -> None:
        """The bulk_fail fault: FAILED + INTERNAL_SERVER_ERROR, and the first half of the rows as partial data."""
        keep = lines // 2
        partial = self.file_path(operation.legacy_id, partial=True)
        written = 0
        with path.open(encoding="utf-8") as source, partial.open("w", encoding="utf-8") as target:
            for index, line in enumerate(source):
                if index >= keep:
                    break
                target.write(line)
                written += len(line.encode("utf-8"))
        path.unlink()
        self._update(operation, status="FAILED", error_code="INTERNAL_SERVER_ERROR", object_count=keep,
                     partial_data_url=self.url_for(partial.name) if keep else None, file_size=None)

