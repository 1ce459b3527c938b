"""api1 reads of the X3 sandbox over real HTTP: envelope shapes, filters, ordering, key paging and errors."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from x3_shopify_dagster.sandboxes import demo_data
from x3_shopify_dagster.sandboxes.x3 import X3Sandbox

if TYPE_CHECKING:
    from x3_shopify_dagster_tests.fixtures.x3_sandbox import X3RawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.x3_sandbox"]

SEEDED_CUSTOMER_CODES = sorted(code for c in demo_data.CUSTOMERS for code in c.x3_customer_codes)


def page(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return json.loads(response.content, parse_float=Decimal)


def codes(rows: list[dict[str, Any]], name: str = "BPCNUM") -> list[str]:
    return [row[name] for row in rows]


# ---------------------------------------------------------------------------------------------- shapes
def test_query_feed_has_the_sdata_envelope_and_row_metadata(x3_raw: X3RawClient, x3_sandbox: X3Sandbox) -> None:
    body = page(x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query", count="2"))

    assert body["$itemsPerPage"] == 2
    assert body["$startIndex"] == 1
    assert body["$url"].startswith(f"{x3_sandbox.base_url}/api1/x3/erp/SEED/BPCUSTOMER?")
    first = body["$resources"][0]
    assert {"$uuid", "$key", "$etag", "$url", "BPCNUM", "BPCNAM", "BPCINV", "BPCSTA", "CUR", "UPDDATTIM"} <= set(first)
    assert first["$key"] == first["BPCNUM"] == SEEDED_CUSTOMER_CODES[0]
    assert first["$url"].endswith(f"BPCUSTOMER('{first['BPCNUM']}')?representation=BPCUSTOMER.$details")
    assert first["UPDDATTIM"].endswith("Z")
    assert body["$links"]["$next"]["$url"].startswith(x3_sandbox.base_url)


def test_default_page_size_is_20_and_count_is_capped_at_200(fresh_x3_raw: X3RawClient,
                                                             fresh_x3_sandbox: X3Sandbox) -> None:
    for n in range(10):
        fresh_x3_sandbox.state.add_customer(f"ZZ{n:04d}", f"Filler {n}", f"filler{n}@example.test")

    first = page(fresh_x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query"))
    assert first["$itemsPerPage"] == 20
    assert len(first["$resources"]) == 20
    assert "$next" in first["$links"]

    capped = page(fresh_x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query", count="500"))
    assert capped["$itemsPerPage"] == 200
    assert len(capped["$resources"]) == len(SEEDED_CUSTOMER_CODES) + 10
    assert capped["$links"] == {}


@pytest.mark.parametrize(("params", "expected"), [
    ({}, SEEDED_CUSTOMER_CODES),
    ({"orderBy": "BPCNAM desc"}, None),  # checked against a sort below
    ({"where": "(CUR eq 'USD')", "orderBy": "BPCNUM desc"},
     sorted((c for c in SEEDED_CUSTOMER_CODES if c.startswith("US")), reverse=True)),
])
def test_key_paging_returns_every_row_exactly_once(x3_raw: X3RawClient, params: dict[str, str],
                                                   expected: list[str] | None) -> None:
    rows = x3_raw.query_all("BPCUSTOMER", "BPCUSTOMER", count="3", **params)
    seeded = [row for row in rows if row["BPCNUM"] in SEEDED_CUSTOMER_CODES]  # the shared sandbox may grow
    if expected is None:
        names = [row["BPCNAM"] for row in seeded]
        assert names == sorted(names, reverse=True)
        assert sorted(codes(seeded)) == SEEDED_CUSTOMER_CODES
    else:
        assert codes(seeded) == expected
    assert len(codes(rows)) == len(set(codes(rows)))


def test_next_link_encodes_the_last_key_and_startindex_moves(x3_raw: X3RawClient) -> None:
    first = page(x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query", count="4"))
    next_url = first["$links"]["$next"]["$url"]
    assert f"key=gt.{first['$resources'][-1]['BPCNUM']}" in next_url
    second = page(x3_raw.http.get(next_url))
    assert second["$startIndex"] == 5
    assert codes(second["$resources"]) == SEEDED_CUSTOMER_CODES[4:8]


def test_a_client_built_key_cursor_works_on_composite_keys(x3_raw: X3RawClient) -> None:
    body = page(x3_raw.api1("BPADDRESS", "ZBPADDRESS.$query", key="gt.1~US0006~MAIN", count="2"))
    assert codes(body["$resources"], "BPANUM") == ["US0007", "US0008"]


def test_an_email_shared_by_two_customers_yields_two_addresses(x3_raw: X3RawClient) -> None:
    body = page(x3_raw.api1("BPADDRESS", "ZBPADDRESS.$query", where="(WEB eq 'orders@shared-kitchen.example')"))
    assert codes(body["$resources"], "BPANUM") == ["US0007", "US0008"]
    assert {row["$key"] for row in body["$resources"]} == {"1~US0007~MAIN", "1~US0008~MAIN"}


def test_customers_without_a_code_do_not_exist(x3_raw: X3RawClient) -> None:
    body = page(x3_raw.api1("BPADDRESS", "ZBPADDRESS.$query", where="(WEB eq 'new.buyer@fresh-start.example')"))
    assert body["$resources"] == []


# ---------------------------------------------------------------------------------------------- where
@pytest.mark.parametrize(("where", "expected"), [
    ("BPCNUM eq 'FR0001'", ["FR0001"]),
    ("(BPCNUM ge 'US0006' and BPCNUM lt 'US0008')", ["US0006", "US0007"]),
    ("(BPCNUM gt 'US0007') or (BPCNUM le 'DE0001')", ["DE0001", "US0008"]),
    ("not (CUR eq 'USD') and BPCNUM ne 'FR0001'", ["DE0001", "ES0001", "FR0002", "FR0003", "IT0001"]),
    ("BPCNUM like 'FR%'", ["FR0001", "FR0002", "FR0003"]),
    ("BPCNUM like 'US000_' and BPCNUM in ('US0001', 'US0009', 'FR0001')", ["US0001"]),
    ("BPCNUM not in ('US0001','US0002','US0003','US0004','US0005','US0006','US0007','US0008')",
     ["DE0001", "ES0001", "FR0001", "FR0002", "FR0003", "IT0001"]),
    ("BPCSTA eq 2 and BPCNAM eq \"Claire Martin\"", ["FR0001"]),
])
def test_where_operators(x3_raw: X3RawClient, where: str, expected: list[str]) -> None:
    body = page(x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query", where=where, count="200"))
    assert [c for c in codes(body["$resources"]) if c in SEEDED_CUSTOMER_CODES] == expected


def test_where_on_dates_and_timestamps(fresh_x3_raw: X3RawClient) -> None:
    seeded_at = page(fresh_x3_raw.api1("GACCOUNT", "ZGACCOUNT.$query", count="1"))["$resources"][0]["UPDDATTIM"]

    ended = page(fresh_x3_raw.api1("GACCOUNT", "ZGACCOUNT.$query", where="(VLYEND lt @2026-01-01@)"))
    assert codes(ended["$resources"], "ACC") == ["706100"]
    same_second = page(fresh_x3_raw.api1("GACCOUNT", "ZGACCOUNT.$query", where=f"(UPDDATTIM ge @{seeded_at}@)"))
    assert len(same_second["$resources"]) == 9
    later = page(fresh_x3_raw.api1("GACCOUNT", "ZGACCOUNT.$query", where=f"(UPDDATTIM gt @{seeded_at}@)"))
    assert later["$resources"] == []
    with_offset = seeded_at.replace("Z", "+02:00")  # two hours earlier in UTC: every row is after it
    earlier = page(fresh_x3_raw.api1("GACCOUNT", "ZGACCOUNT.$query", where=f"(UPDDATTIM gt @{with_offset}@)"))
    assert len(earlier["$resources"]) == 9


def test_a_quote_in_an_email_is_found_when_doubled(fresh_x3_raw: X3RawClient, fresh_x3_sandbox: X3Sandbox) -> None:
    fresh_x3_sandbox.state.add_customer("IE0001", "Sean O'Brien", "sean.o'brien@pub.example")

    body = page(fresh_x3_raw.api1("BPADDRESS", "ZBPADDRESS.$query", where="(WEB eq 'sean.o''brien@pub.example')"))
    assert codes(body["$resources"], "BPANUM") == ["IE0001"]


@pytest.mark.parametrize("where", [
    "(WEB eq 'sean.o'brien@pub.example')",  # unescaped quote: stray text then an unterminated string
    "(WEB eq 'x') or 'a'='a'",  # not SData, and never a way to widen the filter
    "(WEB eq 'x'",
    "WEB eq 'x') or (WEB ne 'x'",
    "(WEB eq 'x' WEB)",
    "BPANUM eq",
    "BPATYP eq 'one'",
])
def test_a_broken_where_is_a_syntax_error_never_a_wider_result(x3_raw: X3RawClient, where: str) -> None:
    response = x3_raw.api1("BPADDRESS", "ZBPADDRESS.$query", where=where)
    assert response.status_code == 400
    assert "$resources" not in response.json()
    assert response.json()["$diagnoses"][0]["$severity"] == "error"
    assert "BadWhereSyntax" in response.json()["$diagnoses"][0]["$message"]


def test_an_unknown_property_in_where_is_a_500_with_diagnoses(x3_raw: X3RawClient) -> None:
    response = x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query", where="(EMAIL eq 'a@b.example')")
    assert response.status_code == 500
    assert "EMAIL" in response.json()["$diagnoses"][0]["$message"]


def test_an_unknown_orderby_property_is_rejected(x3_raw: X3RawClient) -> None:
    assert x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query", orderBy="NOPE desc").status_code == 500
    assert x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query", orderBy="BPCNAM sideways").status_code == 400


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("cls", "representation", "status", "fragment"), [
    ("BPCUSTOMER", None, 400, "representation"),
    ("BPCUSTOMER", "ZBPADDRESS.$query", 400, "does not belong"),
    ("BPCUSTOMER", "BPCUSTOMER", 400, "Facet"),
    ("BPCUSTOMER", "BPCUSTOMER.$details", 400, "Facet"),
    ("NOSUCHCLASS", "NOSUCHCLASS.$query", 404, "does not exist"),
])
def test_representation_errors(x3_raw: X3RawClient, cls: str, representation: str | None, status: int,
                               fragment: str) -> None:
    response = x3_raw.api1(cls, representation)
    assert response.status_code == status
    assert fragment in response.json()["$diagnoses"][0]["$message"]


def test_bad_count_unknown_folder_and_writes_are_refused(x3_raw: X3RawClient) -> None:
    assert x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query", count="ten").status_code == 400
    assert x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query", count="0").status_code == 400
    assert x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query", folder="NOPE").status_code == 404
    put = x3_raw.http.put("/api1/x3/erp/SEED/BPCUSTOMER('FR0001')?representation=BPCUSTOMER.$edit", json={})
    assert put.status_code == 405


# ---------------------------------------------------------------------------------------------- details
def test_details_of_a_composite_key_and_of_a_missing_record(x3_raw: X3RawClient) -> None:
    found = page(x3_raw.api1("BPADDRESS", "ZBPADDRESS.$details", record="1~FR0001~MAIN"))
    assert found["WEB"] == "claire.martin@bistro-lyon.example"
    assert found["$key"] == "1~FR0001~MAIN"

    missing = x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$details", record="XX9999")
    assert missing.status_code == 200
    assert missing.json() == {"$diagnoses": [{"$severity": "error", "$message": "721 : Record does not exist"}]}


def test_reference_data_reads(x3_raw: X3RawClient) -> None:
    accounts = {row["ACC"]: row for row in x3_raw.query_all("GACCOUNT", "ZGACCOUNT", where="(COA eq 'CHART1')")}
    assert accounts["706900"]["ENAFLG"] == 1
    assert accounts["706000"]["ENAFLG"] == 2
    assert accounts["706100"]["VLYEND"] == "2025-12-31"
    cost_centres = {row["CCE"]: row for row in x3_raw.query_all("CACCE", "ZCACCE", where="(DIE eq 'CCT')")}
    assert cost_centres["WEB-EU"]["FCY"] == "FR011"
    assert cost_centres["RETAIL-OLD"]["ENAFLG"] == 1
    taxes = {row["VAT"]: row["VATRAT"] for row in x3_raw.query_all("TABVAT", "ZTABVAT")}
    assert taxes["US825"] == Decimal("8.25")
    items = codes(x3_raw.query_all("ITMMASTER", "ITMMASTER"), "ITMREF")
    assert "GIFT-WRAP" not in items
    assert len(items) == len([p for p in (*demo_data.PRODUCTS, *demo_data.X3_ONLY_ITEMS) if p.x3_item])
    assert "DESCALER-1L" in items  # stocked in X3, sold in no shop (stock sync: sku_not_found)
    sites = codes(x3_raw.query_all("FACILITY", "FACILITY"), "FCY")
    assert sites == sorted(store.x3_site for store in demo_data.STORES)


def test_stock_quantities_are_exact_decimal_json_numbers(x3_raw: X3RawClient, x3_sandbox: X3Sandbox) -> None:
    response = x3_raw.api1("ITMMVT", "ZITMMVT.$details", record="TAMPER-58~US011")
    assert b'"PHYSTO":' in response.content
    assert b'"PHYSTO":"' not in response.content  # a JSON number, not a string
    assert page(response)["PHYSTO"] == x3_sandbox.state.stock("TAMPER-58", "US011").physical
