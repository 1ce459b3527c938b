"""The mapping file: validation names the YAML path (and line) and says how to fix it; layers resolve with the
documented precedence; the referenced_* sets list what X3 must hold before anything is posted."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from x3_shopify_dagster.domain.mapping import (
    GlAccount,
    GuestMode,
    Mapping,
    MappingError,
    MappingProblem,
    MoneySide,
    PostingMoment,
    load_mapping,
    parse_mapping,
)

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
version: 1
defaults:
  site: FR011
  invoice_type: INV
  credit_memo_type: CRN
  accounts:
    chart: CHART1
    goods: "706000"
    shipping: "708500"
    discounts: "709000"
    receivable: "411000"
    tax: "445710"
  taxes:
    - {title: VAT, rate: "0.20", code: FRN}
"""


def problems_of(text: str) -> list[MappingProblem]:
    with pytest.raises(MappingError) as raised:
        parse_mapping(textwrap.dedent(text), source="test.yaml")
    return list(raised.value.problems)


def only_problem(text: str) -> MappingProblem:
    found = problems_of(text)
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------------------------------------- shipped files
def test_the_demo_mapping_and_the_documented_example_are_valid(demo_mapping: Mapping):
    example = load_mapping(REPO / "docs" / "mapping.example.yaml")
    assert demo_mapping.for_customer("FR0001", "eu").site == "FR011"
    assert example.for_customer(None, "eu").accounts.goods == GlAccount(chart="CHART1", account="706000")


def test_minimal_mapping_resolves_with_documented_defaults():
    resolved = parse_mapping(MINIMAL).for_customer("FR0001", "eu")
    assert resolved.money is MoneySide.SHOP
    assert resolved.posting is PostingMoment.ON_PAID
    assert resolved.include_test_orders is False
    assert resolved.guest_checkout.mode is GuestMode.FLAG
    assert resolved.items.identity is True
    assert resolved.accounts.duties is None
    assert resolved.accounts.rounding is None
    assert resolved.untaxed is None
    assert resolved.dimensions == {}


# ------------------------------------------------------------------------------------------- validation
def test_an_unknown_key_is_named_with_its_path_line_and_closest_key():
    problem = only_problem(MINIMAL + "customers:\n  FR0001:\n    acounts: {goods: '706100'}\n")
    assert problem.path == "customers.FR0001.acounts"
    assert problem.line == 17
    assert "unknown key 'acounts'" in problem.message
    assert "did you mean 'accounts'?" in problem.hint


def test_an_unknown_key_without_a_close_match_lists_the_allowed_keys():
    problem = only_problem(MINIMAL.replace("    tax: ", "    colour: blue\n    tax: "))
    assert problem.path == "defaults.accounts.colour"
    assert "keys allowed here:" in problem.hint
    assert "receivable" in problem.hint


@pytest.mark.parametrize("bad", ["70-6000", "706 000", "sales", "7060000000000000000000"])
def test_a_malformed_account_is_named_with_its_path(bad: str):
    problem = only_problem(MINIMAL.replace('goods: "706000"', f'goods: "{bad}"'))
    assert problem.path == "defaults.accounts.goods"
    assert problem.line == 8
    assert f"'{bad}' is not a GL account code" in problem.message
    assert '"706000"' in problem.hint


def test_missing_defaults_name_each_missing_key_and_an_example():
    found = problems_of("version: 1\ndefaults:\n  site: FR011\n  accounts: {chart: CHART1}\n")
    paths = [problem.path for problem in found]
    assert paths == [
        "defaults.invoice_type",
        "defaults.credit_memo_type",
        "defaults.accounts.goods",
        "defaults.accounts.shipping",
        "defaults.accounts.discounts",
        "defaults.accounts.receivable",
        "defaults.accounts.tax",
    ]
    goods = found[2]
    assert "defaults must set it" in goods.message
    assert 'goods: "706000"' in goods.hint


def test_a_missing_defaults_section_is_required():
    problem = only_problem("version: 1\nstores: {}\n")
    assert problem.path == "defaults"
    assert "required" in problem.message


def test_every_problem_is_reported_at_once_sorted_by_line():
    found = problems_of(
        MINIMAL.replace("site: FR011", "site: fr011").replace('goods: "706000"', "goods: 70-6000")
        + "  money: shopp\n"
    )
    assert [(problem.path, problem.line) for problem in found] == [
        ("defaults.site", 3),
        ("defaults.accounts.goods", 8),
        ("defaults.money", 15),
    ]
    assert "'shop' or 'presentment'" in found[2].message


def test_a_rate_written_as_a_percentage_is_explained():
    problem = only_problem(MINIMAL.replace('rate: "0.20"', "rate: 20"))
    assert problem.path == "defaults.taxes[0].rate"
    assert "looks like a percentage" in problem.message
    assert '"0.2"' in problem.hint


def test_numbers_are_read_as_text_so_accounts_and_rates_stay_exact():
    text = MINIMAL.replace('goods: "706000"', "goods: 0706000").replace('rate: "0.20"', "rate: 0.0825")
    resolved = parse_mapping(text).for_customer(None, "eu")
    assert resolved.accounts.goods.account == "0706000"  # YAML 1.1 would have read an octal number
    assert resolved.taxes[0].rate == Decimal("0.0825")
    assert isinstance(resolved.taxes[0].rate, Decimal)


def test_a_duplicate_key_is_reported_instead_of_silently_kept():
    problem = only_problem(MINIMAL.replace("  site: FR011\n", "  site: FR011\n  site: US011\n"))
    assert problem.path == "defaults.site"
    assert problem.line == 4
    assert "twice" in problem.message


def test_guest_checkout_cannot_be_set_per_customer():
    problem = only_problem(MINIMAL + "customers:\n  FR0001:\n    guest_checkout: {mode: skip}\n")
    assert problem.path == "customers.FR0001.guest_checkout"
    assert "stores.<store>" in problem.hint


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("{mode: customer}", "needs the X3 account"),
        ("{mode: skip, customer: WEBGUEST}", "only used with mode"),
    ],
)
def test_an_inconsistent_guest_policy_is_explained(policy: str, message: str):
    problem = only_problem(MINIMAL + f"  guest_checkout: {policy}\n")
    assert problem.path == "defaults.guest_checkout"
    assert message in problem.message


def test_one_tax_code_cannot_have_two_rates():
    problem = only_problem(
        MINIMAL + "stores:\n  us:\n    taxes:\n      - {title: Sales tax, rate: '0.0825', code: FRN}\n"
    )
    assert problem.path == "stores.us.taxes[0].code"
    assert "0.0825" in problem.message
    assert "defaults.taxes[0]" in problem.message


def test_the_untaxed_code_cannot_be_mapped_from_a_positive_rate():
    problem = only_problem(MINIMAL + "  untaxed: FRN\n")
    assert problem.path == "defaults.taxes[0].code"
    assert "untaxed" in problem.message


def test_only_one_analytical_dimension_per_line():
    problem = only_problem(MINIMAL + "  dimensions: {CCT: WEB-EU, DEP: SALES}\n")
    assert problem.path == "defaults.dimensions"
    assert "DIE/CCE" in problem.hint


def test_a_customer_key_must_be_an_x3_code():
    problem = only_problem(MINIMAL + "customers:\n  fr 0001: {site: FR011}\n")
    assert problem.path == 'customers["fr 0001"] (the key)'


def test_yaml_syntax_errors_carry_their_line():
    problem = only_problem("version: 1\ndefaults:\n  site: 'FR011\n  invoice_type: INV\n")
    assert problem.path == ""
    assert "not valid YAML" in problem.message
    assert problem.line is not None


def test_a_file_that_does_not_exist_is_a_mapping_error(tmp_path: Path):
    with pytest.raises(MappingError, match="cannot read the file"):
        load_mapping(tmp_path / "missing.yaml")


def test_an_empty_file_points_to_the_example():
    problem = only_problem("")
    assert "mapping.example.yaml" in problem.hint


def test_the_error_text_lists_source_path_line_and_fix():
    with pytest.raises(MappingError) as raised:
        parse_mapping(MINIMAL.replace("site: FR011", "site: fr011"), source="acme.yaml")
    text = str(raised.value)
    assert text.startswith("invalid mapping acme.yaml: 1 problem(s)")
    assert "line 3, defaults.site: 'fr011' is not an X3 code. Fix: " in text


# ------------------------------------------------------------------------------------------- precedence
LAYERED = """\
version: 1
defaults:
  site: FR011
  invoice_type: INV
  credit_memo_type: CRN
  posting: on_paid
  accounts: {chart: CHART1, goods: "706000", shipping: "708500", discounts: "709000", receivable: "411000",
             tax: "445710", rounding: "758000"}
  dimensions: {CCT: WEB-EU}
  taxes:
    - {title: VAT, rate: "0.20", code: FRN}
  untaxed: EXO
  items:
    overrides: {OLD-SKU: NEW-ITEM, GIFT-WRAP: null}
stores:
  us:
    site: US011
    dimensions: {CCT: WEB-US}
    guest_checkout: {customer: WEBGUEST}
    taxes:
      - {title: Sales tax, rate: "0.0825", code: US825}
customers:
  US0005:
    posting: on_create
    accounts: {goods: "706100", rounding: null}
    items:
      overrides: {GIFT-WRAP: WRAP-01}
    stores:
      us:
        dimensions: {CCT: WEB-ALL}
        taxes:
          - {title: Sales tax, rate: "0.0825", code: US825B}
"""


@pytest.fixture(scope="module")
def layered() -> Mapping:
    return parse_mapping(LAYERED)


def test_defaults_apply_to_any_store_and_customer(layered: Mapping):
    resolved = layered.for_customer("FR0001", "eu")
    assert (resolved.site, resolved.dimensions, resolved.posting) == (
        "FR011",
        {"CCT": "WEB-EU"},
        PostingMoment.ON_PAID,
    )
    assert resolved.guest_checkout.mode is GuestMode.FLAG


def test_a_store_overrides_defaults(layered: Mapping):
    resolved = layered.for_customer("FR0001", "us")
    assert (resolved.site, resolved.dimensions) == ("US011", {"CCT": "WEB-US"})
    assert resolved.guest_checkout.customer == "WEBGUEST"
    assert resolved.tax_rule_for("Sales tax", Decimal("0.0825")).code == "US825"
    assert resolved.tax_rule_for("VAT", Decimal("0.2")).code == "FRN"  # defaults still apply


def test_a_customer_overrides_the_store_and_its_store_section_overrides_the_customer(layered: Mapping):
    in_eu = layered.for_customer("US0005", "eu")
    assert in_eu.posting is PostingMoment.ON_CREATE
    assert in_eu.dimensions == {"CCT": "WEB-EU"}
    in_us = layered.for_customer("US0005", "us")
    assert (in_us.site, in_us.posting, in_us.dimensions) == (
        "US011",
        PostingMoment.ON_CREATE,
        {"CCT": "WEB-ALL"},
    )
    assert in_us.tax_rule_for("sales TAX", Decimal("0.08250")).code == "US825B"  # most specific rule first


def test_accounts_and_item_overrides_merge_key_by_key_and_null_clears(layered: Mapping):
    resolved = layered.for_customer("US0005", "us")
    assert resolved.accounts.goods == GlAccount(chart="CHART1", account="706100")
    assert resolved.accounts.shipping == GlAccount(chart="CHART1", account="708500")  # from defaults
    assert resolved.accounts.rounding is None  # explicitly cleared by the customer
    assert layered.for_customer("FR0001", "us").accounts.rounding == GlAccount(
        chart="CHART1", account="758000"
    )
    assert resolved.items.item_for("GIFT-WRAP") == ("WRAP-01", "items.overrides.GIFT-WRAP")
    assert resolved.items.item_for("OLD-SKU")[0] == "NEW-ITEM"
    assert layered.for_customer("FR0001", "eu").items.item_for("GIFT-WRAP")[0] is None


def test_unknown_customers_and_stores_get_the_defaults(layered: Mapping):
    assert layered.for_customer("ZZ9999", "mars") == layered.for_customer(None, None).model_copy(
        update={"customer": "ZZ9999", "store": "mars"}
    )


def test_item_resolution_explains_why_there_is_no_item():
    items = (
        parse_mapping(MINIMAL + "  items: {identity: false, overrides: {A-1: ITEM-A}}\n")
        .for_customer(None, "eu")
        .items
    )
    assert items.item_for("A-1") == ("ITEM-A", "items.overrides.A-1")
    assert items.item_for("B-2") == (
        None,
        "SKU 'B-2' is not listed in items.overrides and items.identity is false",
    )
    assert items.item_for(None)[1] == "the line has no SKU and items.without_sku is not set"
    identity = parse_mapping(MINIMAL).for_customer(None, "eu").items
    assert identity.item_for("CUP-PORC-6") == ("CUP-PORC-6", "identity")
    assert identity.item_for("cup porc 6")[0] is None  # not a valid X3 item reference


# ------------------------------------------------------------------------------------------- references
def test_the_demo_mapping_references_exactly_the_seeded_x3_master_data(demo_mapping: Mapping):
    assert demo_mapping.referenced_gl_accounts() == {
        GlAccount(chart="CHART1", account=account)
        for account in ("706000", "708500", "709000", "411000", "445710")
    }
    assert demo_mapping.referenced_dimensions() == {("CCT", "WEB-EU"), ("CCT", "WEB-US"), ("CCT", "WEB-ALL")}
    assert demo_mapping.referenced_site_dimensions() == {
        ("FR011", "CCT", "WEB-EU"),
        ("US011", "CCT", "WEB-US"),
        ("FR011", "CCT", "WEB-ALL"),
        ("US011", "CCT", "WEB-ALL"),
    }
    assert demo_mapping.referenced_tax_codes() == {"FRN", "US825", "EXO"}
    assert demo_mapping.tax_code_rates() == {"FRN": Decimal("0.20"), "US825": Decimal("0.0825"), "EXO": 0}
    assert demo_mapping.referenced_sites() == {"FR011", "US011"}
    assert demo_mapping.referenced_customers() == frozenset()
    assert demo_mapping.referenced_items() == frozenset()


def test_references_cover_every_layer(layered: Mapping):
    accounts = {account.account for account in layered.referenced_gl_accounts()}
    assert {"706100", "758000", "706000"} <= accounts
    assert layered.referenced_tax_codes() == {"FRN", "US825", "US825B", "EXO"}
    assert layered.referenced_customers() == {"WEBGUEST"}
    assert layered.referenced_items() == {"NEW-ITEM", "WRAP-01"}
    assert ("CCT", "WEB-ALL") in layered.referenced_dimensions()
