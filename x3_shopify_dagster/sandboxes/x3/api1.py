"""api1 (SData 2.0 JSON) reads: the classes/representations the sandbox serves and the `$query`/`$details` logic.

HTTP-free: `Api1Reader.query`/`details` take decoded parameters and return an `Api1Answer` (status + JSON body);
the Starlette app only adapts requests and responses.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode
from uuid import NAMESPACE_URL, UUID, uuid5

from x3_shopify_dagster.sandboxes.x3.sdata import (
    PropertyKind,
    SortField,
    UnknownPropertyError,
    WhereSyntaxError,
    compare_sort_values,
    compile_where,
    decode_cursor,
    encode_cursor,
    parse_order_by,
)
from x3_shopify_dagster.sandboxes.x3.state import FolderState, Tables

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200


# ============================================================================================== classes
@dataclass(frozen=True)
class Prop:
    kind: PropertyKind
    read: Callable[[Any], Any]


def _flag(value: bool) -> int:
    """X3 local menu 1 (no/yes) → 1/2."""
    return 2 if value else 1


@dataclass(frozen=True)
class Api1Class:
    name: str
    representation: str
    keys: tuple[str, ...]
    properties: Mapping[str, Prop]
    records: Callable[[Tables], Iterable[Any]]
    lines_name: str = ""
    lines: Callable[[Any], list[dict[str, Any]]] | None = None
    lines_in_query: bool = False  # custom Z representations designed for the connector carry their lines

    @functools.cached_property
    def kinds(self) -> dict[str, PropertyKind]:
        return {name: prop.kind for name, prop in self.properties.items()}

    def project(self, record: Any) -> dict[str, Any]:
        return {name: prop.read(record) for name, prop in self.properties.items()}

    def key_values(self, row: Mapping[str, Any]) -> list[Any]:
        return [row[name] for name in self.keys]


def _str(getter: Callable[[Any], Any]) -> Prop:
    return Prop("string", getter)


def _int(getter: Callable[[Any], Any]) -> Prop:
    return Prop("integer", getter)


def _dec(getter: Callable[[Any], Any]) -> Prop:
    return Prop("decimal", getter)


def _date(getter: Callable[[Any], Any]) -> Prop:
    return Prop("date", getter)


_UPDDATTIM = Prop("datetime", lambda r: r.updated_at)


def _invoice_lines(invoice: Any) -> list[dict[str, Any]]:
    return [{"SIDLIN": line.line_number, "LINTYP": int(line.line_type), "ITMREF": line.item,
             "ITMDES": line.description, "QTY": line.quantity, "GROPRI": line.gross_price,
             "VACITM": line.tax_code, "ACC": line.account, "DIE": line.dimension_type, "CCE": line.cost_centre,
             "AMTNOTLIN": line.amount_excl_tax, "AMTATILIN": line.amount_incl_tax} for line in invoice.lines]


def _delivery_lines(delivery: Any) -> list[dict[str, Any]]:
    return [{"SDDLIN": line.line_number, "ITMREF": line.item, "QTY": line.quantity} for line in delivery.lines]


def _gl_lines(entry: Any) -> list[dict[str, Any]]:
    return [{"LIG": line.line_number, "ACC": line.account, "CCE": line.cost_centre, "DEB": line.debit,
             "CDT": line.credit, "DES": line.description} for line in entry.lines]


CLASSES: tuple[Api1Class, ...] = (
    Api1Class("BPCUSTOMER", "BPCUSTOMER", ("BPCNUM",), {
        "BPCNUM": _str(lambda c: c.code), "BPCNAM": _str(lambda c: c.name), "BPCINV": _str(lambda c: c.bill_to),
        "BPCSTA": _int(lambda c: _flag(c.active)), "CUR": _str(lambda c: c.currency), "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.customers.values()),
    Api1Class("BPADDRESS", "ZBPADDRESS", ("BPATYP", "BPANUM", "BPAADD"), {
        "BPATYP": _int(lambda a: a.entity_type), "BPANUM": _str(lambda a: a.entity),
        "BPAADD": _str(lambda a: a.address_code), "BPADES": _str(lambda a: a.description),
        "WEB": _str(lambda a: a.email), "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.addresses.values()),
    Api1Class("GACCOUNT", "ZGACCOUNT", ("COA", "ACC"), {
        "COA": _str(lambda a: a.chart), "ACC": _str(lambda a: a.account), "DES": _str(lambda a: a.description),
        "ENAFLG": _int(lambda a: _flag(a.active)), "VLYSTR": _date(lambda a: a.valid_from),
        "VLYEND": _date(lambda a: a.valid_to), "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.accounts.values()),
    Api1Class("CACCE", "ZCACCE", ("DIE", "CCE"), {
        "DIE": _str(lambda d: d.dimension_type), "CCE": _str(lambda d: d.code),
        "DES": _str(lambda d: d.description), "ENAFLG": _int(lambda d: _flag(d.active)),
        "FCY": _str(lambda d: d.site), "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.dimensions.values()),
    Api1Class("TABVAT", "ZTABVAT", ("VAT",), {
        "VAT": _str(lambda v: v.code), "DES": _str(lambda v: v.description),
        "VATRAT": _dec(lambda v: (v.rate * 100).normalize()), "ENAFLG": _int(lambda v: _flag(v.active)),
        "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.tax_codes.values()),
    Api1Class("TABSIVTYP", "ZTABSIVTYP", ("SIVTYP",), {
        "SIVTYP": _str(lambda t: t.code), "DES": _str(lambda t: t.description),
        "INVTYP": _int(lambda t: int(t.category)), "ENAFLG": _int(lambda t: _flag(t.active)),
        "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.invoice_types.values()),
    Api1Class("ITMMASTER", "ITMMASTER", ("ITMREF",), {
        "ITMREF": _str(lambda i: i.code), "ITMDES1": _str(lambda i: i.description),
        "ITMSTA": _int(lambda i: 1 if i.active else 6), "STU": _str(lambda i: i.stock_unit),
        "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.items.values()),
    Api1Class("FACILITY", "FACILITY", ("FCY",), {
        "FCY": _str(lambda s: s.code), "FCYNAM": _str(lambda s: s.name), "LEGCPY": _str(lambda s: s.legal_company),
        "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.sites.values()),
    Api1Class("SINVOICEV", "SINVOICEV", ("NUM",), {
        "NUM": _str(lambda i: i.number), "INVDAT": _date(lambda i: i.invoice_date),
        "ACCDAT": _date(lambda i: i.accounting_date), "BPCINV": _str(lambda i: i.customer),
        "INVTYP": _int(lambda i: int(i.invoice_type)), "SIVTYP": _str(lambda i: i.sales_invoice_type),
        "INVSTA": _int(lambda i: int(i.status)), "CUR": _str(lambda i: i.currency),
        "AMTNOT": _dec(lambda i: i.amount_excl_tax), "AMTATI": _dec(lambda i: i.amount_incl_tax),
        "AMTTAX": _dec(lambda i: i.tax_amount), "SALFCY": _str(lambda i: i.site),
        "BPRVCR": _str(lambda i: i.reference), "SIHORINUM": _str(lambda i: i.origin_invoice),
        "PRITYP": _int(lambda i: int(i.price_type)), "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.invoices.values(), "SINVOICED", _invoice_lines),
    Api1Class("SDELIVERY", "ZSDELIVERY", ("SDHNUM",), {
        "SDHNUM": _str(lambda d: d.number), "BPCORD": _str(lambda d: d.customer),
        "SHIDAT": _date(lambda d: d.ship_date), "STOFCY": _str(lambda d: d.site),
        "CFMFLG": _int(lambda d: _flag(d.validated)), "SIHNUM": _str(lambda d: d.invoice_number),
        "BPRVCR": _str(lambda d: d.reference), "YTRACKING": _str(lambda d: d.tracking), "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.deliveries.values(), "SDELIVERYD", _delivery_lines, lines_in_query=True),
    Api1Class("STOJOU", "ZSTOJOU", ("STOFCY", "VCRTYP", "VCRNUM", "VCRLIN", "MVTSEQ"), {
        "STOFCY": _str(lambda m: m.site), "ITMREF": _str(lambda m: m.item), "VCRTYP": _int(lambda m: m.voucher_type),
        "VCRNUM": _str(lambda m: m.voucher_number), "VCRLIN": _int(lambda m: m.voucher_line),
        "MVTSEQ": _int(lambda m: m.sequence), "TRSTYP": _int(lambda m: m.transaction_type),
        "QTYSTU": _dec(lambda m: m.quantity), "IPTDAT": _date(lambda m: m.posting_date),
        "CREDAT": _date(lambda m: m.created_at.date()), "CRETIM": _str(lambda m: m.created_at.strftime("%H%M%S")),
        "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.movements),
    Api1Class("ITMMVT", "ZITMMVT", ("ITMREF", "STOFCY"), {
        "ITMREF": _str(lambda s: s.item), "STOFCY": _str(lambda s: s.site), "PHYSTO": _dec(lambda s: s.physical),
        "SALSTO": _dec(lambda s: s.allocated), "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.stock.values()),
    Api1Class("GACCENTRY", "ZGACCENTRY", ("TYP", "NUM"), {
        "TYP": _str(lambda e: e.entry_type), "NUM": _str(lambda e: e.number), "JOU": _str(lambda e: e.journal),
        "ACCDAT": _date(lambda e: e.accounting_date), "STA": _int(lambda e: e.status),
        "BPRVCR": _str(lambda e: e.reference), "REF": _str(lambda e: e.origin_document),
        "CUR": _str(lambda e: e.currency), "UPDDATTIM": _UPDDATTIM,
    }, lambda t: t.gl_entries.values(), "GACCENTRYD", _gl_lines, lines_in_query=True),
)
CLASSES_BY_NAME = {cls.name: cls for cls in CLASSES}



# ============================================================================================== answers
@dataclass(frozen=True)
class Api1Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def diagnosis(status: int, message: str, severity: str = "error") -> Api1Answer:
    return Api1Answer(status, {"$diagnoses": [{"$severity": severity, "$message": message}]})


def json_value(value: Any) -> Any:
    """Python value → JSON-ready value; Decimals stay Decimal (see `encode_json`)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value


def encode_json(value: Any) -> bytes:
    """JSON with Decimals written as exact JSON numbers (the stdlib encoder would go through float)."""
    return _encode(json_value(value)).encode("utf-8")


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


# ============================================================================================== reader
@dataclass(frozen=True)
class QueryParams:
    count: str | None = None
    where: str | None = None
    order_by: str | None = None
    key: str | None = None


class Api1Reader:
    """Serves one folder's classes. `base_url` builds `$url` / `$links` (absolute, as X3 does)."""

    def __init__(self, state: FolderState, namespace: UUID) -> None:
        self.state = state
        self.namespace = namespace

    def resolve(self, class_name: str, representation: str | None, facet: str) -> Api1Class | Api1Answer:
        cls = CLASSES_BY_NAME.get(class_name)
        if cls is None:
            return diagnosis(404, f"Class '{class_name}' does not exist in endpoint {self.state.folder}")
        if not representation:
            return diagnosis(400, "this version (api1) requires both parameters: class and representation "
                                  "(missing 'representation')")
        name, _, given_facet = representation.partition(".")
        if name != cls.representation:
            return diagnosis(400, f"Representation '{name}' does not belong to class '{class_name}' "
                                  f"(expected '{cls.representation}')")
        if given_facet != facet:
            return diagnosis(400, f"Facet '{given_facet or '(none)'}' is not available here: use '{facet}'")
        return cls

    def query(self, cls: Api1Class, params: QueryParams, base_url: str) -> Api1Answer:
        try:
            count = DEFAULT_PAGE_SIZE if params.count is None else int(params.count)
        except ValueError:
            return diagnosis(400, f"BadQueryParameter: count must be an integer, got {params.count!r}")
        if count < 1:
            return diagnosis(400, f"BadQueryParameter: count must be positive, got {count}")
        count = min(count, MAX_PAGE_SIZE)
        try:
            predicate = compile_where(params.where, cls.kinds) if params.where else None
            sort_fields = parse_order_by(params.order_by, cls.kinds) if params.order_by else []
            sort_fields += [SortField(name) for name in cls.keys]  # the key breaks ties: a total order
            cursor = self._cursor(cls, params.key, sort_fields, bool(params.order_by))
        except UnknownPropertyError as error:
            # Documented X3 behaviour on ERP endpoints: an unknown property is a server error.
            return diagnosis(500, f"Property '{error.name}' does not exist in representation "
                                  f"{cls.representation}.$query")
        except WhereSyntaxError as error:
            return diagnosis(400, f"BadWhereSyntax: {error}")

        with self.state.lock:
            records = list(cls.records(self.state.tables))
        rows = [(record, cls.project(record)) for record in records]
        if predicate is not None:
            rows = [(record, row) for record, row in rows if predicate(row)]

        def sort_values(row: Mapping[str, Any]) -> list[Any]:
            return [row[f.name] for f in sort_fields]

        rows.sort(key=functools.cmp_to_key(
            lambda a, b: compare_sort_values(sort_values(a[1]), sort_values(b[1]), sort_fields)))
        start = 0
        if cursor is not None:
            inclusive, values = cursor
            start = next((index for index, (_, row) in enumerate(rows)
                          if _after(compare_sort_values(sort_values(row), values, sort_fields), inclusive)),
                         len(rows))
        page = rows[start:start + count]
        body: dict[str, Any] = {
            "$itemsPerPage": count,
            "$startIndex": start + 1,
            "$url": self._query_url(base_url, cls, params),
            "$resources": [self._resource(base_url, cls, record, row, with_lines=cls.lines_in_query)
                           for record, row in page],
            "$links": {},
        }
        if start + count < len(rows):
            last = sort_values(page[-1][1])
            next_params = QueryParams(str(count), params.where, params.order_by, "gt." + encode_cursor(last))
            body["$links"]["$next"] = {"$url": self._query_url(base_url, cls, next_params),
                                       "$type": "application/json; vnd.sage=syracuse"}
        return Api1Answer(200, body)

    def _cursor(self, cls: Api1Class, key: str | None, sort_fields: list[SortField],
                ordered: bool) -> tuple[bool, list[Any]] | None:
        """`key=gt.X` / `key=ge.X` → (inclusive?, values): paging resumes after (or at) X in sort order."""
        if not key:
            return None
        operator, dot, value = key.partition(".")
        if not dot or operator not in {"gt", "ge"}:
            raise WhereSyntaxError(f"key must look like gt.VALUE or ge.VALUE, got {key!r}")
        # Without orderBy the cursor is the plain X3 key (`gt.FR0001`, composite `gt.1~FR0001~MAIN`);
        # with orderBy it carries the sort values first, then the key parts.
        fields = sort_fields if ordered else [SortField(name) for name in cls.keys]
        return operator == "ge", decode_cursor(value, [cls.kinds[f.name] for f in fields])

    def details(self, cls: Api1Class, key: str, base_url: str) -> Api1Answer:
        parts = key.split("~")
        if len(parts) != len(cls.keys):
            return diagnosis(400, f"Key '{key}' has {len(parts)} part(s); {cls.name} keys are "
                                  f"{'~'.join(cls.keys)}")
        try:
            wanted = decode_cursor(key, [cls.kinds[name] for name in cls.keys])
        except WhereSyntaxError:
            wanted = None
        with self.state.lock:
            records = list(cls.records(self.state.tables))
        for record in records:
            row = cls.project(record)
            if wanted is not None and cls.key_values(row) == wanted:
                return Api1Answer(200, self._resource(base_url, cls, record, row, with_lines=True))
        return diagnosis(200, "721 : Record does not exist")

    # -------------------------------------------------------------------------------------------- urls
    def _query_url(self, base_url: str, cls: Api1Class, params: QueryParams) -> str:
        query = {"representation": f"{cls.representation}.$query"}
        for name, value in (("count", params.count), ("where", params.where), ("orderBy", params.order_by),
                            ("key", params.key)):
            if value is not None:
                query[name] = value
        return f"{base_url}/api1/x3/erp/{self.state.folder}/{cls.name}?{urlencode(query, quote_via=quote)}"

    def _resource(self, base_url: str, cls: Api1Class, record: Any, row: dict[str, Any], *,
                  with_lines: bool) -> dict[str, Any]:
        key = encode_cursor(cls.key_values(row))
        detail_path = quote("('" + key.replace("'", "''") + "')", safe="()'~")
        resource: dict[str, Any] = {
            "$uuid": str(uuid5(self.namespace, f"{cls.name}:{key}")),
            "$key": key,
            "$etag": json_value(row.get("UPDDATTIM")),
            "$url": f"{base_url}/api1/x3/erp/{self.state.folder}/{cls.name}{detail_path}"
                    f"?representation={cls.representation}.$details",
        }
        resource.update(row)
        if with_lines and cls.lines is not None:
            resource[cls.lines_name] = cls.lines(record)
        return resource


def _after(comparison: int, inclusive: bool) -> bool:
    """Does a row (compared with the cursor) come after it, or sit on it for `ge`?"""
    return comparison > 0 or (inclusive and comparison == 0)


def folder_namespace(folder: str, seed: int) -> UUID:
    """Stable $uuid namespace per folder and seed."""
    return uuid5(NAMESPACE_URL, f"x3-sandbox:{folder}:{seed}")
