"""Business rules of the X3 sandbox, driven over SOAP and checked over api1 and in the sandbox state:
invoice validation, totals and rounding, posting and its GL entry, immutability, credit memos, deliveries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from x3_shopify_dagster.sandboxes.x3 import ManualClock, X3Sandbox, X3SandboxConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from x3_shopify_dagster_tests.fixtures.x3_sandbox import SoapReply, X3RawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.x3_sandbox"]

GRINDER = {"LINTYP": "1", "ITMREF": "ESP-GRINDER-01", "QTY": "1", "GROPRI": "100.00", "VACITM": "FRN",
           "CCE": "WEB-EU"}


def line(**fields: str) -> dict[str, str]:
    return {**GRINDER, **fields}


def post(client: X3RawClient, number: str) -> SoapReply:
    return client.soap("actionObject", "YSIH", action_code="VALID", payload={"SIH0_1": {"NUM": number}})


def posted_invoice(client: X3RawClient, **fields: Any) -> str:
    number = client.save_invoice(**fields).field("NUM")
    assert post(client, number).status == 1
    return number


def api1_json(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return json.loads(response.content, parse_float=Decimal)


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("changes", "expected"), [
    ({"customer": "XX9999"}, "BPCINV: customer 'XX9999' does not exist"),
    ({"site": "ZZ011"}, "SALFCY: site 'ZZ011' does not exist"),
    ({"CUR": "JPY"}, "CUR: currency 'JPY' does not exist"),
    ({"lines": [line(ITMREF="GIFT-WRAP")]}, "ITMREF (line 1): item 'GIFT-WRAP' does not exist"),
    ({"lines": [line(ACC="799999")]}, "ACC (line 1): account '799999' does not exist in chart CHART1"),
    ({"lines": [line(ACC="706900")]}, "ACC (line 1): account '706900' is inactive"),
    ({"lines": [line(ACC="706100")]},
     "ACC (line 1): account '706100' is not valid on 2026-11-27 (validity 2020-01-01 to 2025-12-31)"),
    ({"lines": [line(CCE="NOPE")]}, "CCE (line 1): cost centre 'NOPE' does not exist in dimension CCT"),
    ({"lines": [line(CCE="RETAIL-OLD")]}, "CCE (line 1): cost centre 'RETAIL-OLD' is inactive"),
    ({"lines": [line(CCE="WEB-US")]}, "CCE (line 1): cost centre 'WEB-US' is restricted to site US011, not 'FR011'"),
    ({"lines": [line(VACITM="ZZZ")]}, "VACITM (line 1): tax code 'ZZZ' does not exist"),
    ({"lines": [line(VACITM="FRR")]}, "VACITM (line 1): tax code 'FRR' is inactive"),
    ({"lines": [line(VACITM="")]}, "VACITM (line 1): tax code is mandatory"),
    ({"lines": [line(QTY="0")]}, "QTY (line 1): quantity must be positive, got 0"),
    ({"lines": [line(QTY="two")]}, "QTY (line 1): 'two' is not a number"),
    ({"lines": [line(GROPRI="-5")]},
     "GROPRI (line 1): price cannot be negative, got -5 (discount lines reduce the total through LINTYP 3)"),
    ({"lines": [line(LINTYP="9")]}, "LINTYP (line 1): '9' is not an accepted value"),
    ({"lines": []}, "SIH4_1: an invoice needs at least one line"),
    ({"INVDAT": "20261345"}, "INVDAT: '20261345' is not a date (YYYYMMDD)"),
    ({"SIHORINUM": "INV2611-00001"}, "SIHORINUM: only a credit memo has an origin invoice (got 'INV2611-00001')"),
    ({"NUM": "MY-OWN-1"}, "NUM: numbering is automatic, do not send a number (got 'MY-OWN-1')"),
    ({"SIVTYP": "PRF"}, "SIVTYP: invoice type 'PRF' does not exist"),
    ({"SIVTYP": "INVX"}, "SIVTYP: invoice type 'INVX' is inactive"),
    ({"lines": [line(LINTYP="3", GROPRI="500")]}, "AMTATI: the total -600.00 is negative: discounts exceed the goods"),
])
def test_invalid_invoices_are_refused_with_the_field_and_value(x3_raw: X3RawClient, changes: dict[str, Any],
                                                               expected: str) -> None:
    reply = x3_raw.save_invoice(**changes)
    assert reply.status == 0
    assert reply.errors == [expected]
    assert reply.result == {}


def test_every_problem_is_reported_at_once(x3_raw: X3RawClient) -> None:
    reply = x3_raw.save_invoice(customer="XX9999", lines=[line(ITMREF="NOPE"), line(VACITM="ZZZ")])
    assert reply.errors == ["BPCINV: customer 'XX9999' does not exist", "ITMREF (line 1): item 'NOPE' does not exist",
                            "VACITM (line 2): tax code 'ZZZ' does not exist"]


def test_inactive_customer_and_closed_period(fresh_x3_raw: X3RawClient, fresh_x3_sandbox: X3Sandbox) -> None:
    fresh_x3_sandbox.state.set_customer_active("FR0002", False)
    fresh_x3_sandbox.state.close_period("2026-10")

    assert fresh_x3_raw.save_invoice(customer="FR0002").errors == ["BPCINV: customer 'FR0002' is inactive"]
    closed = fresh_x3_raw.save_invoice(INVDAT="20261015")
    assert closed.errors == ["ACCDAT: period 2026-10 is closed (2026-10-15)"]
    assert fresh_x3_raw.save_invoice(INVDAT="20261015", ACCDAT="20261102").status == 1  # ACCDAT decides


# ---------------------------------------------------------------------------------------------- amounts
@pytest.mark.parametrize(("changes", "totals"), [
    ({}, ("100.00", "20.00", "120.00")),
    # Tax is computed per tax code on the summed bases: 3 x round(0.03 x 20 %) would give 0.03, not 0.02.
    ({"lines": [line(GROPRI="0.03")] * 3}, ("0.09", "0.02", "0.11")),
    # Half-up on the line amount: 3 x 0.335 = 1.005 -> 1.01.
    ({"lines": [line(QTY="3", GROPRI="0.335", VACITM="EXO")]}, ("1.01", "0.00", "1.01")),
    ({"customer": "US0001", "site": "US011", "lines": [line(QTY="2", GROPRI="379.00", VACITM="US825", CCE="WEB-US")]},
     ("758.00", "62.54", "820.54")),
    # Prices including tax (PRITYP 2): the total is the sum of the gross lines, to the cent.
    ({"PRITYP": "2", "lines": [line(GROPRI="349.00"), line(LINTYP="2", ITMREF="", GROPRI="9.90", CCE="")]},
     ("299.08", "59.82", "358.90")),
    ({"lines": [line(QTY="2", GROPRI="290.83"), line(LINTYP="shipping", ITMREF="", GROPRI="10", CCE=""),
                line(LINTYP="3", ITMREF="", GROPRI="5.5", CCE="")]}, ("586.16", "117.23", "703.39")),
])
def test_totals_are_computed_from_the_lines(x3_raw: X3RawClient, changes: dict[str, Any],
                                            totals: tuple[str, str, str]) -> None:
    reply = x3_raw.save_invoice(**changes)
    assert reply.status == 1, reply.errors
    assert (reply.field("AMTNOT"), reply.field("AMTTAX"), reply.field("AMTATI")) == totals


# ---------------------------------------------------------------------------------------------- posting
def test_posting_writes_a_balanced_gl_entry_per_line_account_and_cost_centre(x3_raw: X3RawClient,
                                                                             x3_sandbox: X3Sandbox) -> None:
    lines = [line(QTY="2", GROPRI="290.83"), line(LINTYP="2", ITMREF="", GROPRI="10", CCE="WEB-ALL"),
             line(LINTYP="3", ITMREF="", GROPRI="5.5", CCE="")]
    number = x3_raw.save_invoice(lines=lines, reference="gl-check").field("NUM")
    assert all(entry.origin_document != number for entry in x3_sandbox.state.gl_entries())

    reply = post(x3_raw, number)

    assert (reply.status, reply.field("STA")) == (1, "3")
    invoice = x3_sandbox.state.invoice(number)
    entry = x3_sandbox.state.gl_entry(invoice.gl_entry)
    assert entry.balanced
    assert [(e.account, e.cost_centre, e.debit, e.credit) for e in entry.lines] == [
        ("411000", "", Decimal("703.39"), 0),
        ("706000", "WEB-EU", 0, Decimal("581.66")),
        ("708500", "WEB-ALL", 0, Decimal("10.00")),
        ("709000", "", Decimal("5.50"), 0),
        ("445710", "", 0, Decimal("117.23")),
    ]
    assert (entry.reference, entry.origin_document) == ("gl-check", number)

    over_api1 = api1_json(x3_raw.api1("GACCENTRY", "ZGACCENTRY.$details", record=f"SIH~{entry.number}"))
    assert sum(g["DEB"] for g in over_api1["GACCENTRYD"]) == sum(g["CDT"] for g in over_api1["GACCENTRYD"])
    status = api1_json(x3_raw.api1("SINVOICEV", "SINVOICEV.$query", where=f"(NUM eq '{number}')"))["$resources"]
    assert status[0]["INVSTA"] == 3


def test_posting_rechecks_master_data(fresh_x3_raw: X3RawClient, fresh_x3_sandbox: X3Sandbox) -> None:
    number = fresh_x3_raw.save_invoice().field("NUM")
    fresh_x3_sandbox.state.set_account_active("CHART1", "706000", False)
    fresh_x3_sandbox.state.set_dimension_active("CCT", "WEB-EU", False)

    reply = post(fresh_x3_raw, number)

    assert reply.errors == ["ACC (line 1): account '706000' is inactive",
                            "CCE (line 1): cost centre 'WEB-EU' is inactive"]
    assert fresh_x3_sandbox.state.invoice(number).status == 1
    assert fresh_x3_sandbox.state.gl_entries() == []


def test_a_posted_invoice_is_immutable(x3_raw: X3RawClient, x3_sandbox: X3Sandbox) -> None:
    number = posted_invoice(x3_raw)
    before = x3_sandbox.state.invoice(number)

    modify = x3_raw.soap("modify", "YSIH", keys={"NUM": number}, payload={"SIH0_1": {"BPRVCR": "changed"}})
    delete = x3_raw.soap("delete", "YSIH", keys={"NUM": number})
    again = post(x3_raw, number)

    assert modify.errors == [f"NUM: invoice '{number}' is posted: modification is not allowed "
                             "(issue a credit memo instead)"]
    assert delete.errors == [f"NUM: invoice '{number}' is posted: deletion is not allowed "
                             "(issue a credit memo instead)"]
    assert again.errors == [f"NUM: invoice '{number}' is already posted (GL entry {before.gl_entry})"]
    assert x3_sandbox.state.invoice(number) == before


def test_an_unposted_invoice_can_be_deleted(x3_raw: X3RawClient) -> None:
    number = x3_raw.save_invoice().field("NUM")
    assert x3_raw.soap("delete", "YSIH", keys={"NUM": number}).status == 1
    missing = x3_raw.api1("SINVOICEV", "SINVOICEV.$details", record=number)
    assert missing.json()["$diagnoses"][0]["$message"] == "721 : Record does not exist"


def test_the_reference_field_finds_the_invoice_over_api1(x3_raw: X3RawClient) -> None:
    number = x3_raw.save_invoice(reference="shop-eu#1001:v3").field("NUM")
    rows = api1_json(x3_raw.api1("SINVOICEV", "SINVOICEV.$query", where="(BPRVCR eq 'shop-eu#1001:v3')"))
    assert [row["NUM"] for row in rows["$resources"]] == [number]
    details = api1_json(x3_raw.api1("SINVOICEV", "SINVOICEV.$details", record=number))
    assert details["SINVOICED"][0]["ITMREF"] == "ESP-GRINDER-01"
    assert details["AMTATI"] == Decimal("120.00")


# ---------------------------------------------------------------------------------------------- credit memos
def test_a_credit_memo_reverses_its_invoice(x3_raw: X3RawClient, x3_sandbox: X3Sandbox) -> None:
    origin = posted_invoice(x3_raw, lines=[line(QTY="2")])
    memo = x3_raw.save_invoice(INVTYP="2", SIHORINUM=origin, lines=[line(QTY="1")])
    assert (memo.status, memo.field("SIVTYP"), memo.field("INVTYP")) == (1, "CRN", "2")
    assert memo.field("NUM").startswith("CRN2611-")

    assert post(x3_raw, memo.field("NUM")).status == 1

    entry = x3_sandbox.state.gl_entry(x3_sandbox.state.invoice(memo.field("NUM")).gl_entry)
    assert entry.balanced
    assert [(e.account, e.debit, e.credit) for e in entry.lines] == [
        ("411000", 0, Decimal("120.00")), ("706000", Decimal("100.00"), 0), ("445710", Decimal("20.00"), 0)]


@pytest.mark.parametrize(("kind", "expected"), [
    ("unposted", "SIHORINUM: invoice '{origin}' is not posted: modify or delete it instead"),
    ("other_customer", "SIHORINUM: invoice '{origin}' belongs to customer FR0001, not 'FR0002'"),
    ("too_much", "AMTATI: credit 360.00 plus earlier credits 120.00 exceed invoice {origin} total 240.00"),
    ("no_origin", "SIHORINUM: a credit memo needs its origin invoice"),
])
def test_credit_memo_rules(x3_raw: X3RawClient, kind: str, expected: str) -> None:
    origin = x3_raw.save_invoice().field("NUM") if kind == "unposted" else posted_invoice(x3_raw, lines=[line(QTY="2")])
    memo: dict[str, Any] = {"INVTYP": "2", "SIHORINUM": origin}
    if kind == "other_customer":
        memo["customer"] = "FR0002"
    if kind == "too_much":
        assert x3_raw.save_invoice(**memo, lines=[line(QTY="1")]).status == 1  # an earlier, legitimate credit
        memo["lines"] = [line(QTY="3")]
    if kind == "no_origin":
        memo["SIHORINUM"] = ""
    assert x3_raw.save_invoice(**memo).errors == [expected.format(origin=origin)]


# ---------------------------------------------------------------------------------------------- deliveries
def delivery_payload(invoice: str, *lines: tuple[str, str], customer: str = "FR0001", site: str = "FR011",
                     reference: str = "") -> dict[str, Any]:
    return {"SDH0_1": {"BPCORD": customer, "SHIDAT": "20261128", "STOFCY": site, "SIHNUM": invoice,
                       "BPRVCR": reference, "YTRACKING": "1Z999"},
            "SDH1_4": [{"ITMREF": item, "QTY": qty} for item, qty in lines]}


def test_delivery_validation_issues_stock_and_posts_cogs(fresh_x3_raw: X3RawClient,
                                                         fresh_x3_sandbox: X3Sandbox) -> None:
    state = fresh_x3_sandbox.state
    invoice = posted_invoice(fresh_x3_raw, lines=[line(QTY="3"), line(ITMREF="MILK-JUG-35", QTY="2")])
    before = {item: state.stock(item, "FR011") for item in ("ESP-GRINDER-01", "MILK-JUG-35")}

    saved = fresh_x3_raw.soap("save", "YSDH", payload=delivery_payload(
        invoice, ("ESP-GRINDER-01", "2"), ("MILK-JUG-35", "2"), reference="ful-1"))
    assert (saved.status, saved.field("CFMFLG"), saved.field("SIHNUM")) == (1, "1", invoice)
    number = saved.field("SDHNUM")
    assert state.stock("ESP-GRINDER-01", "FR011").allocated == 2
    assert state.stock("ESP-GRINDER-01", "FR011").physical == before["ESP-GRINDER-01"].physical
    assert state.stock_movements() == []

    validated = fresh_x3_raw.soap("actionObject", "YSDH", action_code="VALID", payload={"SDH0_1": {"SDHNUM": number}})

    assert (validated.status, validated.field("CFMFLG")) == (1, "2")
    movements = api1_json(fresh_x3_raw.api1("STOJOU", "ZSTOJOU.$query", where=f"(VCRNUM eq '{number}')",
                                            orderBy="VCRLIN"))["$resources"]
    assert [(m["ITMREF"], m["QTYSTU"], m["VCRTYP"], m["VCRLIN"], m["STOFCY"], m["IPTDAT"]) for m in movements] == [
        ("ESP-GRINDER-01", Decimal(-2), 4, 1000, "FR011", "2026-11-28"),
        ("MILK-JUG-35", Decimal(-2), 4, 2000, "FR011", "2026-11-28")]
    for item in before:
        after = state.stock(item, "FR011")
        assert (after.physical, after.allocated) == (before[item].physical - 2, 0)
    stock_row = api1_json(fresh_x3_raw.api1("ITMMVT", "ZITMMVT.$details", record="ESP-GRINDER-01~FR011"))
    assert stock_row["PHYSTO"] == before["ESP-GRINDER-01"].physical - 2
    cogs = state.gl_entry(state.delivery(number).gl_entry)
    assert cogs.balanced
    assert [(e.account, e.debit, e.credit) for e in cogs.lines] == [
        ("607000", Decimal("360.00"), 0), ("603700", 0, Decimal("360.00")),
        ("607000", Decimal("10.20"), 0), ("603700", 0, Decimal("10.20"))]


def test_a_validated_delivery_is_final(fresh_x3_raw: X3RawClient) -> None:
    invoice = posted_invoice(fresh_x3_raw)
    number = fresh_x3_raw.soap("save", "YSDH", payload=delivery_payload(invoice, ("ESP-GRINDER-01", "1"))
                               ).field("SDHNUM")
    assert fresh_x3_raw.soap("actionObjectKeys", "YSDH", action_code="VALID", keys={"SDHNUM": number}).status == 1

    again = fresh_x3_raw.soap("actionObjectKeys", "YSDH", action_code="VALID", keys={"SDHNUM": number})
    modify = fresh_x3_raw.soap("modify", "YSDH", keys={"SDHNUM": number}, payload={"SDH0_1": {"YTRACKING": "X"}})
    delete = fresh_x3_raw.soap("delete", "YSDH", keys={"SDHNUM": number})

    assert again.errors == [f"SDHNUM: delivery '{number}' is already validated"]
    assert modify.errors == [f"SDHNUM: delivery '{number}' is validated: modification is not allowed"]
    assert delete.errors == [f"SDHNUM: delivery '{number}' is validated: deletion is not allowed"]


@pytest.mark.parametrize(("lines", "changes", "expected"), [
    ([("ESP-GRINDER-01", "2"), ("ESP-GRINDER-01", "2")], {},
     "QTY: 4 x 'ESP-GRINDER-01' exceeds the 3 left to deliver on invoice {invoice}"),
    ([("TAMPER-58", "1")], {}, "ITMREF: item 'TAMPER-58' is not on invoice {invoice}"),
    ([("ESP-GRINDER-01", "1")], {"customer": "FR0002"},
     "SIHNUM: invoice '{invoice}' belongs to customer FR0001, not 'FR0002'"),
    ([("NOPE", "1")], {}, "ITMREF (line 1): item 'NOPE' does not exist"),
    ([("ESP-GRINDER-01", "-1")], {}, "QTY (line 1): quantity must be positive, got -1"),
    ([("ESP-GRINDER-01", "1")], {"site": "XX011"}, "STOFCY: site 'XX011' does not exist"),
])
def test_delivery_rules(x3_raw: X3RawClient, lines: list[tuple[str, str]], changes: dict[str, str],
                        expected: str) -> None:
    invoice = posted_invoice(x3_raw, lines=[line(QTY="3")])
    reply = x3_raw.soap("save", "YSDH", payload=delivery_payload(invoice, *lines, **changes))
    assert reply.errors == [expected.format(invoice=invoice)]


def test_partial_deliveries_and_modify_or_delete_before_validation(fresh_x3_raw: X3RawClient,
                                                                   fresh_x3_sandbox: X3Sandbox) -> None:
    invoice = posted_invoice(fresh_x3_raw, lines=[line(QTY="3")])
    first = fresh_x3_raw.soap("save", "YSDH", payload=delivery_payload(invoice, ("ESP-GRINDER-01", "1")))
    second = fresh_x3_raw.soap("save", "YSDH", payload=delivery_payload(invoice, ("ESP-GRINDER-01", "2")))
    assert (first.status, second.status) == (1, 1)
    grown = fresh_x3_raw.soap("modify", "YSDH", keys={"SDHNUM": first.field("SDHNUM")},
                              payload={"SDH1_4": [{"ITMREF": "ESP-GRINDER-01", "QTY": "2"}]})
    assert grown.errors == [f"QTY: 2 x 'ESP-GRINDER-01' exceeds the 1 left to deliver on invoice {invoice}"]
    assert fresh_x3_sandbox.state.stock("ESP-GRINDER-01", "FR011").allocated == 3

    assert fresh_x3_raw.soap("delete", "YSDH", keys={"SDHNUM": second.field("SDHNUM")}).status == 1
    assert fresh_x3_sandbox.state.stock("ESP-GRINDER-01", "FR011").allocated == 1
    delete_invoice = fresh_x3_raw.soap("delete", "YSIH", keys={"NUM": invoice})
    assert delete_invoice.status == 0  # posted; and an unposted one with deliveries is refused too


def test_validation_refuses_to_oversell(fresh_x3_raw: X3RawClient, fresh_x3_sandbox: X3Sandbox) -> None:
    state = fresh_x3_sandbox.state
    physical = state.stock("KNOCK-BOX-S", "FR011").physical
    too_many = str(physical + 1)
    invoice = posted_invoice(fresh_x3_raw, lines=[line(ITMREF="KNOCK-BOX-S", QTY=too_many)])
    number = fresh_x3_raw.soap("save", "YSDH", payload=delivery_payload(invoice, ("KNOCK-BOX-S", too_many))
                               ).field("SDHNUM")

    reply = fresh_x3_raw.soap("actionObjectKeys", "YSDH", action_code="VALID", keys={"SDHNUM": number})

    assert reply.errors == [f"QTY: insufficient stock of 'KNOCK-BOX-S' at FR011: {physical} available, "
                            f"{too_many} to deliver"]
    assert state.stock_movements() == []
    assert state.stock("KNOCK-BOX-S", "FR011").physical == physical


def test_stock_receipts_write_positive_movements(fresh_x3_raw: X3RawClient, fresh_x3_sandbox: X3Sandbox) -> None:
    state = fresh_x3_sandbox.state
    before = state.stock("BEANS-HOUSE-1KG", "US011").physical

    movement = state.stock_receipt("BEANS-HOUSE-1KG", "US011", 25)

    assert state.stock("BEANS-HOUSE-1KG", "US011").physical == before + 25
    rows = api1_json(fresh_x3_raw.api1("STOJOU", "ZSTOJOU.$query", where="(QTYSTU gt 0)"))["$resources"]
    assert [(r["ITMREF"], r["QTYSTU"], r["VCRTYP"], r["VCRNUM"], r["MVTSEQ"]) for r in rows] == [
        ("BEANS-HOUSE-1KG", Decimal(25), 19, movement.voucher_number, movement.sequence)]
    with pytest.raises(KeyError):
        state.stock_receipt("GIFT-WRAP", "US011", 1)


def test_every_change_bumps_upddattim_to_the_second(x3_raw_factory: Callable[..., X3RawClient]) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 9, 0, 0, 250_000, tzinfo=UTC))
    with X3Sandbox(X3SandboxConfig(clock=clock)) as sandbox:
        client = x3_raw_factory(sandbox)
        number = client.save_invoice().field("NUM")
        clock.advance(90)
        post(client, number)
        clock.advance(30)
        sandbox.state.stock_receipt("TAMPER-58", "FR011", 5)

        changed = api1_json(client.api1("SINVOICEV", "SINVOICEV.$query", where="(UPDDATTIM gt @2026-11-27T09:00:00Z@)"))
        assert [(r["NUM"], r["UPDDATTIM"]) for r in changed["$resources"]] == [(number, "2026-11-27T09:01:30Z")]
        stock = api1_json(client.api1("ITMMVT", "ZITMMVT.$query", where="(UPDDATTIM ge @2026-11-27T09:02:00Z@)"))
        assert [(r["ITMREF"], r["STOFCY"]) for r in stock["$resources"]] == [("TAMPER-58", "FR011")]


def test_invoice_types_are_an_api1_class(x3_raw: X3RawClient) -> None:
    rows = {row["SIVTYP"]: row for row in x3_raw.query_all("TABSIVTYP", "ZTABSIVTYP")}
    assert {code: (row["INVTYP"], row["ENAFLG"]) for code, row in rows.items()} == {
        "INV": (1, 2), "CRN": (2, 2), "INVX": (1, 1)}
