"""The SOAP publications (GESAWE) the sandbox serves, mapping `CAdxWebServiceXmlCC` calls to business rules.

- `YSIH` (object GESSIH): sales invoices and credit memos; header group SIH0_1, lines table SIH4_1, totals
  group SIH4_3 in results; action `VALID` posts.
- `YSDH` (object GESSDH): deliveries; header group SDH0_1, lines table SDH1_4; action `VALID` validates.
- `YSIHVALID` (sub-program, `run`): posts the invoice given in group GRP1 field NUM.

Header fields may arrive in any group (X3 screens split them over several); line tables and field names are
checked, so a typo comes back as a clear type-3 message instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from x3_shopify_dagster.sandboxes.x3.documents import (
    BusinessError,
    DeliveryDraft,
    DeliveryLineDraft,
    InvoiceDraft,
    InvoiceLineDraft,
    create_delivery,
    create_invoice,
    delete_delivery,
    delete_invoice,
    draft_from_delivery,
    draft_from_invoice,
    modify_delivery,
    modify_invoice,
    post_invoice,
    validate_delivery,
)
from x3_shopify_dagster.sandboxes.x3.records import Delivery, Invoice, InvoiceType, LineType, PriceType
from x3_shopify_dagster.sandboxes.x3.soap import (
    MESSAGE_ERROR,
    MESSAGE_INFO,
    ObjectData,
    ObjectFormatError,
    SoapCall,
    SoapResult,
    field_text,
    parse_object,
    render_object,
)
from x3_shopify_dagster.sandboxes.x3.state import FolderState

DEFAULT_LIST_SIZE = 20
_T = TypeVar("_T")
VALIDATION_ACTION = "VALID"


def failure(*messages: str) -> SoapResult:
    return SoapResult(0, [(MESSAGE_ERROR, message) for message in messages])


# ============================================================================================== field parsing
class _Fields:
    """Typed reads of string field values; every problem is collected as "FIELD: message"."""

    def __init__(self, values: Mapping[str, str], where: str = "") -> None:
        self.values = values
        self.where = where
        self.problems: list[str] = []

    def _label(self, name: str) -> str:
        return f"{name}{self.where}"

    def present(self, name: str) -> bool:
        return name in self.values

    def text(self, name: str) -> str:
        return self.values.get(name, "").strip()

    def decimal(self, name: str, default: Decimal | None = None) -> Decimal:
        raw = self.text(name)
        if not raw:
            if default is None:
                self.problems.append(f"{self._label(name)}: value is mandatory")
                return Decimal(0)
            return default
        try:
            value = Decimal(raw)
        except InvalidOperation:
            value = Decimal("NaN")
        if not value.is_finite():
            self.problems.append(f"{self._label(name)}: '{raw}' is not a number")
            return Decimal(0)
        return value

    def date(self, name: str) -> date | None:
        raw = self.text(name)
        if not raw:
            return None
        for pattern in ("%Y%m%d", "%Y-%m-%d"):
            try:
                return datetime.strptime(raw, pattern).date()  # noqa: DTZ007 - a calendar date, no time
            except ValueError:
                continue
        self.problems.append(f"{self._label(name)}: '{raw}' is not a date (YYYYMMDD)")
        return None

    def choice(self, name: str, parse: Callable[[str], _T], default: _T | None = None) -> _T | None:
        raw = self.text(name)
        if not raw:
            return default
        try:
            return parse(raw)
        except (ValueError, KeyError):
            self.problems.append(f"{self._label(name)}: '{raw}' is not an accepted value")
            return default


def _unknown_fields(values: Mapping[str, str], allowed: frozenset[str], where: str) -> list[str]:
    return [f"{name}{where}: field is not in the publication" for name in values if name not in allowed]


def _merged_groups(data: ObjectData) -> dict[str, str]:
    merged: dict[str, str] = {}
    for fields in data.groups.values():
        merged.update(fields)
    return merged


def _line_type(raw: str) -> LineType:
    if raw.isdigit():
        return LineType(int(raw))
    return LineType[raw.upper()]


# ============================================================================================== base
class ObjectPublication:
    """Shared plumbing of an object publication: keys, actions, errors → SoapResult."""

    name = ""
    key_field = ""
    description: dict[str, tuple[str, ...]] = {}

    def handle(self, call: SoapCall, state: FolderState) -> SoapResult:
        handler = {
            "save": self.save, "modify": self.modify, "delete": self.delete, "read": self.read,
            "query": self.query, "actionObject": self.action, "actionObjectKeys": self.action,
            "getDescription": self.get_description,
        }.get(call.operation)
        if handler is None:
            return failure(f"{self.name}: operation '{call.operation}' is not available on an object publication")
        try:
            with state.lock:
                return handler(call, state)
        except BusinessError as error:
            return failure(*error.messages)
        except ObjectFormatError as error:
            return failure(str(error))

    def render(self, call: SoapCall, data: ObjectData) -> str:
        return render_object(data, as_json=call.context.json_result, beautify=call.context.beautify)

    def key_of(self, call: SoapCall) -> str:
        keys = dict(call.keys)
        if call.operation == "actionObject":
            keys = _merged_groups(parse_object(call.payload))
        value = keys.get(self.key_field, "").strip()
        if not value:
            raise BusinessError([f"{self.key_field}: key value is mandatory"])
        return value

    def get_description(self, call: SoapCall, state: FolderState) -> SoapResult:
        data = ObjectData(groups={block: {name: "" for name in names}
                                  for block, names in self.description.items()})
        return SoapResult(1, [], self.render(call, data))

    def save(self, call: SoapCall, state: FolderState) -> SoapResult:
        raise NotImplementedError

    def modify(self, call: SoapCall, state: FolderState) -> SoapResult:
        raise NotImplementedError

    def delete(self, call: SoapCall, state: FolderState) -> SoapResult:
        raise NotImplementedError

    def read(self, call: SoapCall, state: FolderState) -> SoapResult:
        raise NotImplementedError

    def query(self, call: SoapCall, state: FolderState) -> SoapResult:
        raise NotImplementedError

    def action(self, call: SoapCall, state: FolderState) -> SoapResult:
        raise NotImplementedError

    def _check_action(self, call: SoapCall) -> None:
        if call.action_code != VALIDATION_ACTION:
            raise BusinessError([f"actionCode: action '{call.action_code}' does not exist on {self.name}"])

    def _query_rows(self, call: SoapCall, rows: list[dict[str, Any]], filterable: frozenset[str]) -> SoapResult:
        criteria = dict(call.keys)
        unknown = [name for name in criteria if name not in filterable]
        if unknown:
            return failure(*(f"{name}: not a selection criterion of {self.name}" for name in unknown))
        selected = [row for row in rows
                    if all(field_text(row.get(name)) == value for name, value in criteria.items())]
        limit = call.list_size if call.list_size and call.list_size > 0 else DEFAULT_LIST_SIZE
        return SoapResult(1, [], self.render(call, ObjectData(tables={"LIST": selected[:limit]})))


# ============================================================================================== YSIH
class SalesInvoicePublication(ObjectPublication):
    name = "YSIH"
    key_field = "NUM"
    header_group, lines_table, totals_group = "SIH0_1", "SIH4_1", "SIH4_3"
    header_fields = frozenset({"NUM", "BPCINV", "SIVTYP", "INVTYP", "INVDAT", "ACCDAT", "CUR", "SALFCY", "BPRVCR",
                               "SIHORINUM", "PRITYP"})
    line_fields = frozenset({"LINTYP", "ITMREF", "ITMDES", "QTY", "GROPRI", "VACITM", "VACITM1", "DIE", "CCE",
                             "CCE1", "ACC"})
    description = {"SIH0_1": tuple(sorted(header_fields)), "SIH4_1": tuple(sorted(line_fields - {"VACITM1", "CCE1"})),
                   "SIH4_3": ("AMTNOT", "AMTTAX", "AMTATI")}

    def _draft(self, data: ObjectData, base: InvoiceDraft | None) -> InvoiceDraft:
        header_values = _merged_groups(data)
        problems = _unknown_fields(header_values, self.header_fields, "")
        problems += [f"{table}: unknown table (lines go in {self.lines_table})" for table in data.tables
                     if table != self.lines_table]
        header = _Fields(header_values)
        if header.text("NUM") and base is None:
            problems.append(f"NUM: numbering is automatic, do not send a number (got '{header.text('NUM')}')")
        changes: dict[str, Any] = {}
        for name, attribute in (("BPCINV", "customer"), ("SALFCY", "site"), ("SIVTYP", "sales_invoice_type"),
                                ("CUR", "currency"), ("BPRVCR", "reference"), ("SIHORINUM", "origin_invoice")):
            if header.present(name):
                changes[attribute] = header.text(name)
        for name, attribute in (("INVDAT", "invoice_date"), ("ACCDAT", "accounting_date")):
            if header.present(name):
                changes[attribute] = header.date(name)
        if header.present("INVTYP"):
            changes["invoice_type"] = header.choice("INVTYP", lambda raw: InvoiceType(int(raw)))
        if header.present("PRITYP"):
            changes["price_type"] = header.choice("PRITYP", lambda raw: PriceType(int(raw)),
                                                  PriceType.EXCLUDING_TAX)
        lines = None
        if self.lines_table in data.tables or base is None:
            lines = tuple(self._line(values, index, problems)
                          for index, values in enumerate(data.tables.get(self.lines_table, []), 1))
            changes["lines"] = lines
        problems += header.problems
        if problems:
            raise BusinessError(problems)
        if base is None:
            base = InvoiceDraft(customer="", site="", lines=())
        return replace(base, **changes)

    def _line(self, values: Mapping[str, str], index: int, problems: list[str]) -> InvoiceLineDraft:
        where = f" (line {index})"
        problems += _unknown_fields(values, self.line_fields, where)
        line = _Fields(values, where)
        draft = InvoiceLineDraft(
            line_type=line.choice("LINTYP", _line_type, LineType.GOODS) or LineType.GOODS,
            item=line.text("ITMREF"), description=line.text("ITMDES"),
            quantity=line.decimal("QTY", Decimal(1)), gross_price=line.decimal("GROPRI"),
            tax_code=line.text("VACITM") or line.text("VACITM1"), account=line.text("ACC"),
            dimension_type=line.text("DIE"), cost_centre=line.text("CCE") or line.text("CCE1"))
        problems += line.problems
        return draft

    def result(self, invoice: Invoice) -> ObjectData:
        header = {"NUM": invoice.number, "SIVTYP": invoice.sales_invoice_type, "INVTYP": int(invoice.invoice_type),
                  "BPCINV": invoice.customer, "INVDAT": invoice.invoice_date, "ACCDAT": invoice.accounting_date,
                  "CUR": invoice.currency, "SALFCY": invoice.site, "BPRVCR": invoice.reference,
                  "SIHORINUM": invoice.origin_invoice, "PRITYP": int(invoice.price_type),
                  "STA": int(invoice.status)}
        totals = {"AMTNOT": invoice.amount_excl_tax, "AMTTAX": invoice.tax_amount, "AMTATI": invoice.amount_incl_tax}
        lines = [{"SIDLIN": line.line_number, "LINTYP": int(line.line_type), "ITMREF": line.item,
                  "ITMDES": line.description, "QTY": line.quantity, "GROPRI": line.gross_price,
                  "VACITM": line.tax_code, "ACC": line.account, "DIE": line.dimension_type,
                  "CCE": line.cost_centre, "AMTNOTLIN": line.amount_excl_tax, "AMTATILIN": line.amount_incl_tax}
                 for line in invoice.lines]
        return ObjectData(groups={self.header_group: header, self.totals_group: totals},
                          tables={self.lines_table: lines})

    def _answer(self, call: SoapCall, invoice: Invoice, message: str) -> SoapResult:
        return SoapResult(1, [(MESSAGE_INFO, message)], self.render(call, self.result(invoice)))

    def _invoice(self, state: FolderState, number: str) -> Invoice:
        invoice = state.invoice(number)
        if invoice is None:
            raise BusinessError([f"NUM: invoice '{number}' does not exist"])
        return invoice

    def save(self, call: SoapCall, state: FolderState) -> SoapResult:
        invoice = create_invoice(state, self._draft(parse_object(call.payload), None))
        kind = "Credit memo" if invoice.invoice_type == InvoiceType.CREDIT_MEMO else "Invoice"
        return self._answer(call, invoice, f"{kind} {invoice.number} created")

    def read(self, call: SoapCall, state: FolderState) -> SoapResult:
        invoice = self._invoice(state, self.key_of(call))
        return SoapResult(1, [], self.render(call, self.result(invoice)))

    def modify(self, call: SoapCall, state: FolderState) -> SoapResult:
        number = self.key_of(call)
        existing = self._invoice(state, number)
        draft = self._draft(parse_object(call.payload), draft_from_invoice(existing))
        return self._answer(call, modify_invoice(state, number, draft), f"Invoice {number} modified")

    def delete(self, call: SoapCall, state: FolderState) -> SoapResult:
        invoice = delete_invoice(state, self.key_of(call))
        return SoapResult(1, [(MESSAGE_INFO, f"Invoice {invoice.number} deleted")], None)

    def query(self, call: SoapCall, state: FolderState) -> SoapResult:
        rows = [{**self.result(invoice).groups[self.header_group], **self.result(invoice).groups[self.totals_group]}
                for invoice in sorted(state.invoices(), key=lambda i: i.number)]
        return self._query_rows(call, rows, frozenset({"NUM", "BPCINV", "BPRVCR", "SIHORINUM", "INVTYP", "STA",
                                                       "SIVTYP"}))

    def action(self, call: SoapCall, state: FolderState) -> SoapResult:
        self._check_action(call)
        invoice = post_invoice(state, self.key_of(call))
        return self._answer(call, invoice, f"Invoice {invoice.number} posted, GL entry {invoice.gl_entry}")


# ============================================================================================== YSDH
class DeliveryPublication(ObjectPublication):
    name = "YSDH"
    key_field = "SDHNUM"
    header_group, lines_table = "SDH0_1", "SDH1_4"
    header_fields = frozenset({"SDHNUM", "BPCORD", "SHIDAT", "STOFCY", "SIHNUM", "BPRVCR", "YTRACKING"})
    line_fields = frozenset({"ITMREF", "QTY"})
    description = {"SDH0_1": tuple(sorted(header_fields)), "SDH1_4": tuple(sorted(line_fields))}

    def _draft(self, data: ObjectData, base: DeliveryDraft | None) -> DeliveryDraft:
        header_values = _merged_groups(data)
        problems = _unknown_fields(header_values, self.header_fields, "")
        problems += [f"{table}: unknown table (lines go in {self.lines_table})" for table in data.tables
                     if table != self.lines_table]
        header = _Fields(header_values)
        if header.text("SDHNUM") and base is None:
            problems.append(f"SDHNUM: numbering is automatic, do not send a number (got '{header.text('SDHNUM')}')")
        changes: dict[str, Any] = {}
        for name, attribute in (("BPCORD", "customer"), ("STOFCY", "site"), ("SIHNUM", "invoice_number"),
                                ("BPRVCR", "reference"), ("YTRACKING", "tracking")):
            if header.present(name):
                changes[attribute] = header.text(name)
        if header.present("SHIDAT"):
            changes["ship_date"] = header.date("SHIDAT")
        if self.lines_table in data.tables or base is None:
            lines = []
            for index, values in enumerate(data.tables.get(self.lines_table, []), 1):
                where = f" (line {index})"
                problems += _unknown_fields(values, self.line_fields, where)
                line = _Fields(values, where)
                lines.append(DeliveryLineDraft(line.text("ITMREF"), line.decimal("QTY")))
                problems += line.problems
            changes["lines"] = tuple(lines)
        problems += header.problems
        if problems:
            raise BusinessError(problems)
        if base is None:
            base = DeliveryDraft(customer="", site="", lines=())
        return replace(base, **changes)

    def result(self, delivery: Delivery) -> ObjectData:
        header = {"SDHNUM": delivery.number, "BPCORD": delivery.customer, "SHIDAT": delivery.ship_date,
                  "STOFCY": delivery.site, "SIHNUM": delivery.invoice_number, "BPRVCR": delivery.reference,
                  "YTRACKING": delivery.tracking, "CFMFLG": 2 if delivery.validated else 1}
        lines = [{"SDDLIN": line.line_number, "ITMREF": line.item, "QTY": line.quantity} for line in delivery.lines]
        return ObjectData(groups={self.header_group: header}, tables={self.lines_table: lines})

    def _answer(self, call: SoapCall, delivery: Delivery, message: str) -> SoapResult:
        return SoapResult(1, [(MESSAGE_INFO, message)], self.render(call, self.result(delivery)))

    def _delivery(self, state: FolderState, number: str) -> Delivery:
        delivery = state.delivery(number)
        if delivery is None:
            raise BusinessError([f"SDHNUM: delivery '{number}' does not exist"])
        return delivery

    def save(self, call: SoapCall, state: FolderState) -> SoapResult:
        delivery = create_delivery(state, self._draft(parse_object(call.payload), None))
        return self._answer(call, delivery, f"Delivery {delivery.number} created")

    def read(self, call: SoapCall, state: FolderState) -> SoapResult:
        return SoapResult(1, [], self.render(call, self.result(self._delivery(state, self.key_of(call)))))

    def modify(self, call: SoapCall, state: FolderState) -> SoapResult:
        number = self.key_of(call)
        draft = self._draft(parse_object(call.payload), draft_from_delivery(self._delivery(state, number)))
        return self._answer(call, modify_delivery(state, number, draft), f"Delivery {number} modified")

    def delete(self, call: SoapCall, state: FolderState) -> SoapResult:
        delivery = delete_delivery(state, self.key_of(call))
        return SoapResult(1, [(MESSAGE_INFO, f"Delivery {delivery.number} deleted")], None)

    def query(self, call: SoapCall, state: FolderState) -> SoapResult:
        rows = [self.result(delivery).groups[self.header_group]
                for delivery in sorted(state.deliveries(), key=lambda d: d.number)]
        return self._query_rows(call, rows, frozenset({"SDHNUM", "BPCORD", "SIHNUM", "BPRVCR", "CFMFLG"}))

    def action(self, call: SoapCall, state: FolderState) -> SoapResult:
        self._check_action(call)
        delivery = validate_delivery(state, self.key_of(call))
        return self._answer(call, delivery, f"Delivery {delivery.number} validated")


# ============================================================================================== sub-program
class PostInvoiceSubprogram:
    """`run` on YSIHVALID: input GRP1/NUM, output GRP1/NUM + STA (the mass-validation alternative)."""

    name = "YSIHVALID"

    def handle(self, call: SoapCall, state: FolderState) -> SoapResult:
        if call.operation != "run":
            return failure(f"{self.name}: a sub-program only answers 'run'")
        try:
            values = _merged_groups(parse_object(call.payload))
            number = values.get("NUM", "").strip()
            if not number:
                return failure("NUM: invoice number is mandatory")
            invoice = post_invoice(state, number)
        except BusinessError as error:
            return failure(*error.messages)
        except ObjectFormatError as error:
            return failure(str(error))
        data = ObjectData(groups={"GRP1": {"NUM": invoice.number, "STA": int(invoice.status),
                                           "GACCNUM": invoice.gl_entry}})
        return SoapResult(1, [(MESSAGE_INFO, f"Invoice {invoice.number} posted")],
                          render_object(data, as_json=call.context.json_result))


Publication = ObjectPublication | PostInvoiceSubprogram
PUBLICATIONS: dict[str, Publication] = {
    p.name: p for p in (SalesInvoicePublication(), DeliveryPublication(), PostInvoiceSubprogram())}


def handle_call(call: SoapCall, state: FolderState) -> SoapResult:
    publication = PUBLICATIONS.get(call.public_name)
    if publication is None:
        return failure(f"Web service '{call.public_name}' is not published (GESAWE) in folder {state.folder}")
    if call.operation == "run" and not isinstance(publication, PostInvoiceSubprogram):
        return failure(f"{call.public_name} is an object publication: use save/read/modify/delete/actionObject")
    return publication.handle(call, state)
