"""X3Client against the X3 sandbox over real HTTP (ephemeral loopback port).

Writes on the shared sandbox use unique references (BPRVCR) and assert only on what they created.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from x3_shopify_dagster.sandboxes.x3 import ManualClock, X3Sandbox
from x3_shopify_dagster.x3 import (
    MemoryTokenStore,
    OAuth2Auth,
    RetryPolicy,
    Where,
    X3BusinessError,
    X3Client,
    X3OutcomeUnknownError,
    X3ReauthorizationRequired,
    X3SoapFault,
)
from x3_shopify_dagster_tests.x3._support import sandbox_config

ClientFactory = Callable[..., X3Client]
TODAY = date(2026, 11, 27)


def new_reference() -> str:
    return f"it:{uuid.uuid4().hex[:12]}"


def invoice(reference: str, *, customer: str = "FR0001", price: Decimal = Decimal("100.00"),
            cost_centre: str = "WEB-EU") -> dict[str, Any]:
    return {
        "SIH0_1": {"BPCINV": customer, "SALFCY": "FR011", "INVDAT": TODAY, "BPRVCR": reference},
        "SIH4_1": [{"LINTYP": 1, "ITMREF": "ESP-GRINDER-01", "QTY": 1, "GROPRI": price, "VACITM": "FRN",
                    "CCE": cost_centre}],
    }


# --------------------------------------------------------------------------------------------------- reads
def test_customer_by_email(x3: X3Client) -> None:
    [claire] = x3.customers_by_email("claire.martin@bistro-lyon.example")
    assert (claire.code, claire.name, claire.active, claire.currency) == ("FR0001", "Claire Martin", True, "EUR")
    assert [c.code for c in x3.customers_by_email("  Claire.Martin@Bistro-Lyon.EXAMPLE ")] == ["FR0001"]


def test_ambiguous_email_returns_every_customer(x3: X3Client) -> None:
    assert [c.code for c in x3.customers_by_email("orders@shared-kitchen.example")] == ["US0007", "US0008"]


def test_missing_email_returns_nothing(x3: X3Client) -> None:
    assert x3.customers_by_email("new.buyer@fresh-start.example") == []


@pytest.mark.parametrize("hostile", ["o'brien@pub.example", "x' or WEB ne 'x", "') or (BPATYP eq 1"])
def test_quotes_in_an_email_neither_break_nor_widen_the_query(x3: X3Client, x3_sandbox: X3Sandbox,
                                                              hostile: str) -> None:
    x3_sandbox.clear_calls_log()
    assert x3.customers_by_email(hostile) == []
    assert [call.status for call in x3_sandbox.calls_log] == [200]  # parsed fine, matched nothing


def test_an_email_with_a_quote_is_found(fresh_x3_sandbox: X3Sandbox, x3_factory: ClientFactory) -> None:
    fresh_x3_sandbox.state.add_customer("IE0001", "Sean O'Brien", "sean.o'brien@pub.example")
    x3 = x3_factory(sandbox=fresh_x3_sandbox)
    assert [c.code for c in x3.customers_by_email("Sean.O'Brien@pub.example")] == ["IE0001"]


def test_gl_accounts_and_dimensions(x3: X3Client) -> None:
    accounts = {a.account: a for a in x3.gl_accounts()}
    assert accounts["706000"].usable_on(TODAY)
    assert not accounts["706100"].usable_on(TODAY)  # validity ended 2025-12-31
    assert accounts["706100"].valid_to == date(2025, 12, 31)
    assert not accounts["706900"].enabled
    dimensions = {d.code: d for d in x3.dimensions()}
    assert (dimensions["WEB-EU"].enabled, dimensions["WEB-EU"].site) == (True, "FR011")
    assert not dimensions["RETAIL-OLD"].enabled
    assert all(d.dimension_type == "CCT" for d in dimensions.values())


def test_paging_reads_every_row_once(x3: X3Client, x3_sandbox: X3Sandbox) -> None:
    x3_sandbox.clear_calls_log()
    codes = [row["BPCNUM"] for row in x3.query("BPCUSTOMER", "BPCUSTOMER", order_by="BPCNUM asc", count=4)]
    assert codes == sorted(set(codes))
    assert {"FR0001", "US0007", "US0008"} <= set(codes)
    assert x3_sandbox.count_calls("api1", "$query/BPCUSTOMER") == -(-len(codes) // 4)  # ceil: one call a page


def test_details(x3: X3Client) -> None:
    row = x3.details("GACCOUNT", "ZGACCOUNT", ["CHART1", "706000"])
    assert row is not None
    assert row["DES"] == "Sales of goods"
    assert x3.details("BPCUSTOMER", "BPCUSTOMER", "ZZ999") is None


# -------------------------------------------------------------------------------------------------- writes
@pytest.mark.parametrize("soap_json", [True, False], ids=["json", "xml"])
def test_save_validate_and_find_an_invoice_by_reference(x3_factory: ClientFactory, soap_json: bool) -> None:
    x3 = x3_factory(soap_json=soap_json)
    reference = new_reference()
    saved = x3.save("YSIH", invoice(reference))
    number = saved.field("NUM")
    assert number
    assert saved.decimal("AMTATI") == Decimal("120.00")

    found = x3.find_invoice_by_reference(reference)
    assert found is not None
    assert (found.number, found.posted, found.customer) == (number, False, "FR0001")
    assert (found.amount_excl_tax, found.amount_incl_tax) == (Decimal("100.00"), Decimal("120.00"))

    assert x3.action("YSIH", "VALID", {"NUM": number}).ok
    posted = x3.find_invoice_by_reference(reference)
    assert posted is not None
    assert posted.posted
    read = x3.read("YSIH", {"NUM": number})
    assert read is not None
    assert read.integer("STA") == 3
    assert x3.read("YSIH", {"NUM": "INV-NOPE"}) is None


def test_business_errors_carry_x3_messages_and_are_not_retried(x3: X3Client, x3_sandbox: X3Sandbox) -> None:
    reference = new_reference()
    x3_sandbox.clear_calls_log()
    with pytest.raises(X3BusinessError) as caught:
        x3.save("YSIH", invoice(reference, customer="ZZ999", cost_centre="RETAIL-OLD"))
    assert "BPCINV: customer 'ZZ999' does not exist" in caught.value.error_texts
    assert any("RETAIL-OLD" in text and "inactive" in text for text in caught.value.error_texts)
    assert x3_sandbox.count_calls("soap", "save/YSIH") == 1
    assert x3.find_invoice_by_reference(reference) is None


def test_posted_invoice_cannot_be_modified(x3: X3Client) -> None:
    number = x3.save("YSIH", invoice(new_reference())).field("NUM")
    x3.action("YSIH", "VALID", {"NUM": number})
    with pytest.raises(X3BusinessError):
        x3.modify("YSIH", {"NUM": number}, {"SIH0_1": {"BPRVCR": new_reference()}})


def test_delivery_validation_shows_in_the_stock_journal(fresh_x3_sandbox: X3Sandbox,
                                                        x3_factory: ClientFactory) -> None:
    x3 = x3_factory(sandbox=fresh_x3_sandbox)
    since = datetime.now(UTC) - timedelta(seconds=5)
    reference = new_reference()
    number = x3.save("YSDH", {"SDH0_1": {"BPCORD": "FR0001", "SHIDAT": TODAY, "STOFCY": "FR011",
                                         "BPRVCR": reference},
                              "SDH1_4": [{"ITMREF": "CUP-PORC-6", "QTY": 2}]}).field("SDHNUM")
    delivery = x3.find_delivery_by_reference(reference)
    assert delivery is not None
    assert (delivery.number, delivery.validated) == (number, False)
    x3.action("YSDH", "VALID", {"SDHNUM": number})
    validated = x3.find_delivery_by_reference(reference)
    assert validated is not None
    assert validated.validated
    moves = list(x3.changed_since("STOJOU", "ZSTOJOU", since, key_fields=["STOFCY", "VCRTYP", "VCRNUM", "VCRLIN"]))
    assert [(m["VCRNUM"], m["ITMREF"], m["QTYSTU"]) for m in moves] == [(number, "CUP-PORC-6", Decimal(-2))]
    assert list(x3.changed_since("STOJOU", "ZSTOJOU", datetime.now(UTC) + timedelta(hours=1),
                                 key_fields=["STOFCY"])) == []


# -------------------------------------------------------------------------------------------------- faults
@pytest.mark.parametrize("kind", ["http_500", "locked_record", "drop_connection"])
def test_reads_survive_faults(x3: X3Client, x3_sandbox: X3Sandbox, kind: str) -> None:
    x3_sandbox.faults.inject(kind, times=2, path_contains="BPCUSTOMER")  # type: ignore[arg-type]
    rows = list(x3.query("BPCUSTOMER", "BPCUSTOMER", where=Where.eq("BPCNUM", "FR0001")))
    assert [row["BPCNUM"] for row in rows] == ["FR0001"]
    assert x3.metrics.snapshot()["total_retries"] == 2
    assert x3_sandbox.faults.pending() == []


@pytest.mark.parametrize("kind", ["no_web_services", "pool_timeout", "locked_record"])
def test_writes_are_resent_after_refusals(x3: X3Client, x3_sandbox: X3Sandbox, kind: str) -> None:
    reference = new_reference()
    x3_sandbox.faults.inject(kind, times=2, path_contains="save/YSIH")  # type: ignore[arg-type]
    number = x3.save("YSIH", invoice(reference)).field("NUM")
    found = x3.find_invoice_by_reference(reference)  # exactly one document, not three
    assert found is not None
    assert found.number == number
    assert x3.metrics.snapshot()["total_retries"] == 2


def test_dropped_write_is_in_doubt_and_resolved_by_reference(x3: X3Client, x3_sandbox: X3Sandbox) -> None:
    reference = new_reference()
    x3_sandbox.faults.inject("drop_connection", path_contains="save/YSIH")
    with pytest.raises(X3OutcomeUnknownError):
        x3.save("YSIH", invoice(reference))
    assert x3_sandbox.count_calls("soap", "save/YSIH") >= 1
    adopted = x3.find_invoice_by_reference(reference)  # X3 did create it: adopt, never resend
    assert adopted is not None
    assert adopted.amount_incl_tax == Decimal("120.00")


def test_unexplained_500_on_a_write_is_in_doubt(x3: X3Client, x3_sandbox: X3Sandbox) -> None:
    reference = new_reference()
    x3_sandbox.faults.inject("http_500", path_contains="save/YSIH")
    with pytest.raises(X3OutcomeUnknownError):
        x3.save("YSIH", invoice(reference))
    assert x3.find_invoice_by_reference(reference) is None  # not created: safe to send again
    assert x3.save("YSIH", invoice(reference)).field("NUM")


def test_soap_fault_is_surfaced(x3: X3Client, x3_sandbox: X3Sandbox) -> None:
    x3_sandbox.faults.inject("soap_fault", path_contains="save/YSIH")
    with pytest.raises(X3SoapFault, match="Injected SOAP fault"):
        x3.save("YSIH", invoice(new_reference()))


def test_latency_is_tolerated(x3: X3Client, x3_sandbox: X3Sandbox) -> None:
    x3_sandbox.faults.inject("latency", latency_s=0.05, path_contains="BPCUSTOMER")
    assert [c.code for c in x3.customers_by_email("claire.martin@bistro-lyon.example")] == ["FR0001"]


# ---------------------------------------------------------------------------------------------- OAuth2
def oauth(sandbox: X3Sandbox, store: MemoryTokenStore, **kwargs: Any) -> OAuth2Auth:
    client_id, secret = sandbox.oauth_client
    return OAuth2Auth.for_config(sandbox_config(sandbox), client_id, secret, store, **kwargs)


def test_oauth_rotation_across_a_long_paging_read(tight_sandbox: X3Sandbox, x3_factory: ClientFactory,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    clock = tight_sandbox.config.clock
    assert isinstance(clock, ManualClock)
    store = MemoryTokenStore()
    auth = oauth(tight_sandbox, store, now=clock)
    auth.exchange_code(tight_sandbox.issue_authorization_code())
    first_pair = store.load()
    assert first_pair is not None
    x3 = x3_factory(sandbox=tight_sandbox, auth=auth)

    codes = []
    with caplog.at_level("DEBUG"):
        for index, row in enumerate(x3.query("BPCUSTOMER", "BPCUSTOMER", order_by="BPCNUM asc", count=2)):
            codes.append(row["BPCNUM"])
            clock.advance(0.7)  # 2-second tokens: several expire while we page
            if index == 6:
                tight_sandbox.faults.inject("expire_access_tokens")  # and one dies early, mid-pagination
    assert len(codes) == len(set(codes)) >= 14
    assert x3.metrics.token_refreshes >= 3
    assert x3.metrics.unauthorized_retries == 1
    assert store.saves == 1 + x3.metrics.token_refreshes  # every rotated pair was persisted

    # Rotation: the first refresh token is dead, the stored one is alive.
    old = first_pair.refresh_token.get_secret_value()
    token_form = {"grant_type": "refresh_token", "client_id": tight_sandbox.oauth_client[0],
                  "client_secret": tight_sandbox.oauth_client[1], "refresh_token": old}
    assert httpx.post(tight_sandbox.token_url, data=token_form).status_code == 400
    latest = store.load()
    assert latest is not None
    for secret in (old, latest.refresh_token.get_secret_value(), latest.access_token.get_secret_value(),
                   tight_sandbox.oauth_client[1]):
        assert secret not in caplog.text


def test_reused_refresh_token_asks_for_re_pairing(tight_sandbox: X3Sandbox, x3_factory: ClientFactory) -> None:
    clock = tight_sandbox.config.clock
    assert isinstance(clock, ManualClock)
    store = MemoryTokenStore()
    auth = oauth(tight_sandbox, store, now=clock)
    auth.exchange_code(tight_sandbox.issue_authorization_code())
    stolen = store.load()
    assert stolen is not None
    x3 = x3_factory(sandbox=tight_sandbox, auth=auth)
    clock.advance(5)
    assert x3.details("BPCUSTOMER", "BPCUSTOMER", "FR0001") is not None  # refreshed: `stolen` is now dead
    replay = oauth(tight_sandbox, MemoryTokenStore(stolen), now=clock)
    with pytest.raises(X3ReauthorizationRequired, match="re-pair") as caught:
        x3_factory(sandbox=tight_sandbox, auth=replay).details("BPCUSTOMER", "BPCUSTOMER", "FR0001")
    assert stolen.refresh_token.get_secret_value() not in str(caught.value)


# ------------------------------------------------------------------------------------------- concurrency
def test_soap_concurrency_stays_within_the_pool(fresh_x3_sandbox: X3Sandbox, x3_factory: ClientFactory) -> None:
    x3 = x3_factory(sandbox=fresh_x3_sandbox, pool_size=2)
    fresh_x3_sandbox.faults.inject("latency", times=None, latency_s=0.05, path_contains="save/YSIH")
    references = [new_reference() for _ in range(6)]
    start = threading.Barrier(len(references))
    errors: list[BaseException] = []

    def save(reference: str) -> None:
        start.wait()
        try:
            x3.save("YSIH", invoice(reference))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=save, args=(ref,)) for ref in references]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    stats = fresh_x3_sandbox.pool_stats()
    assert stats.served == 6
    assert stats.peak_in_use <= 2  # the sandbox's pool has 4 clients; the client never used more than 2
    assert stats.timeouts == 0
    assert x3.metrics.pool_waits >= 1
    assert all(x3.find_invoice_by_reference(ref) is not None for ref in references)


def test_pool_exhaustion_at_x3_is_retried(tight_sandbox: X3Sandbox, x3_factory: ClientFactory) -> None:
    # The client allows 3 concurrent calls but X3's pool has one client and gives up after 50 ms; a budget of
    # 10 attempts leaves ample room for the queue (3 x 100 ms) to drain.
    x3 = x3_factory(sandbox=tight_sandbox, pool_size=3,
                    retry=RetryPolicy(max_attempts=10, base_delay_s=0.01, max_delay_s=0.05))
    tight_sandbox.faults.inject("latency", times=None, latency_s=0.1, path_contains="save/YSIH")
    references = [new_reference() for _ in range(3)]
    start = threading.Barrier(len(references))
    errors: list[BaseException] = []

    def save(reference: str) -> None:
        start.wait()
        try:
            x3.save("YSIH", invoice(reference))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=save, args=(ref,)) for ref in references]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert tight_sandbox.pool_stats().timeouts >= 1
    assert x3.metrics.retries[("soap", "busy")] == tight_sandbox.pool_stats().timeouts
    assert len({x3.find_invoice_by_reference(ref).number for ref in references}) == 3  # type: ignore[union-attr]
