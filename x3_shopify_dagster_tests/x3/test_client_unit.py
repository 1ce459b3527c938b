"""X3Client over httpx.MockTransport: paging, error classification, retry decisions, SOAP writes, pool bound."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from x3_shopify_dagster.x3 import (
    RetryPolicy,
    Where,
    X3AmbiguousReferenceError,
    X3BusinessError,
    X3Client,
    X3DiagnosisError,
    X3HttpError,
    X3OutcomeUnknownError,
    X3ProtocolError,
    X3RecordLockedError,
    X3ServiceBusyError,
    X3SoapFault,
    X3TransportError,
)
from x3_shopify_dagster.x3.transport import backoff_delay
from x3_shopify_dagster_tests.x3._support import Script, feed, json_response

ClientFactory = Callable[..., X3Client]
API1 = "https://x3.example.com:8124/api1/x3/erp/SEED"


def query_params(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}


def soap_result(status: int = 1, *, result: str = "", messages: list[tuple[int, str]] | None = None) -> httpx.Response:
    items = "".join(f"<messages><type>{t}</type><message>{m}</message></messages>" for t, m in messages or [])
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:wss="http://www.adonix.com/WSS"><soapenv:Body><wss:saveResponse><saveReturn>'
        f"<messages>{items}</messages><resultXml><![CDATA[{result}]]></resultXml><status>{status}</status>"
        "<technicalInfos><busy>false</busy></technicalInfos></saveReturn></wss:saveResponse>"
        "</soapenv:Body></soapenv:Envelope>"
    )
    return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/xml; charset=utf-8"})


def soap_fault(text: str, status: int = 500) -> httpx.Response:
    body = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
            f"<soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>{text}</faultstring>"
            "</soapenv:Fault></soapenv:Body></soapenv:Envelope>")
    return httpx.Response(status, content=body.encode(), headers={"Content-Type": "text/xml"})


INVOICE_SAVED = soap_result(result=json.dumps({"SIH0_1": {"NUM": "FAC-000042", "AMTATI": "418.92"}}))


# ------------------------------------------------------------------------------------------------- api1 reads
def test_query_follows_next_links_and_always_sends_the_representation(client_factory: ClientFactory) -> None:
    script = Script(
        feed([{"BPCNUM": "FR0001"}, {"BPCNUM": "FR0002"}],
             next_url="/api1/x3/erp/SEED/BPCUSTOMER?representation=BPCUSTOMER.$query&count=2&key=gt.FR0002"),
        feed([{"BPCNUM": "FR0003"}],
             next_url=f"{API1}/BPCUSTOMER?representation=BPCUSTOMER.$query&count=2&key=gt.FR0003"),
        feed([]),
    )
    client = client_factory(script)
    where = Where.eq("BPCNAM", "O'Brien & Sons") | Where.ge("UPDDATTIM", datetime(2026, 11, 27, tzinfo=UTC))
    rows = list(client.query("BPCUSTOMER", "BPCUSTOMER", where=where, order_by="BPCNUM asc", count=2))
    assert [r["BPCNUM"] for r in rows] == ["FR0001", "FR0002", "FR0003"]
    first = script.requests[0]
    assert first.url.path == "/api1/x3/erp/SEED/BPCUSTOMER"
    assert query_params(first) == {
        "representation": "BPCUSTOMER.$query", "count": "2", "orderBy": "BPCNUM asc",
        "where": "((BPCNAM eq 'O''Brien & Sons') or (UPDDATTIM ge @2026-11-27T00:00:00Z@))"}
    assert "+" not in first.url.query.decode()  # spaces travel as %20
    assert [query_params(r)["key"] for r in script.requests[1:]] == ["gt.FR0002", "gt.FR0003"]
    assert all(query_params(r)["representation"] == "BPCUSTOMER.$query" for r in script.requests)
    assert client.metrics.calls[("api1", "query")] == 3


def test_next_link_to_another_server_is_refused(client_factory: ClientFactory) -> None:
    script = Script(feed([{"BPCNUM": "FR0001"}], next_url="https://evil.example/api1/x3/erp/SEED/BPCUSTOMER"))
    client = client_factory(script)
    rows = client.query("BPCUSTOMER", "BPCUSTOMER")
    assert next(rows)["BPCNUM"] == "FR0001"
    with pytest.raises(X3ProtocolError, match="another server"):
        next(rows)
    assert len(script.requests) == 1


def test_paging_loop_is_detected(client_factory: ClientFactory) -> None:
    loop = f"{API1}/BPCUSTOMER?representation=BPCUSTOMER.$query&key=gt.A"
    client = client_factory(Script(feed([{"BPCNUM": "A"}], next_url=loop), feed([{"BPCNUM": "B"}], next_url=loop)))
    with pytest.raises(X3ProtocolError, match="loops"):
        list(client.query("BPCUSTOMER", "BPCUSTOMER"))


def test_numbers_are_decimals(client_factory: ClientFactory) -> None:
    client = client_factory(Script(feed([{"NUM": "FAC-1", "AMTATI": 418.92, "INVSTA": 3}])))
    row = next(client.query("SINVOICEV", "SINVOICEV"))
    assert row["AMTATI"] == Decimal("418.92")
    assert isinstance(row["AMTATI"], Decimal)


def test_error_diagnoses_in_a_200_are_errors_and_not_retried(client_factory: ClientFactory,
                                                             sleeps: list[float]) -> None:
    script = Script(json_response({"$diagnoses": [{"$severity": "error", "$message": "Access denied to GACCOUNT"}]}))
    client = client_factory(script)
    with pytest.raises(X3DiagnosisError) as caught:
        list(client.query("GACCOUNT", "ZGACCOUNT"))
    assert caught.value.messages == ["Access denied to GACCOUNT"]
    assert len(script.requests) == 1
    assert sleeps == []


def test_transient_diagnosis_is_retried(client_factory: ClientFactory, sleeps: list[float]) -> None:
    locked = json_response({"$diagnoses": [{"$severity": "transient", "$message": "Record locked by SYSTEM"}]})
    client = client_factory(Script(locked, feed([{"BPCNUM": "FR0001"}])))
    assert [r["BPCNUM"] for r in client.query("BPCUSTOMER", "BPCUSTOMER")] == ["FR0001"]
    assert sleeps == [0.5]
    assert client.metrics.retries[("api1", "transient")] == 1


@pytest.mark.parametrize("failure", [
    httpx.Response(500, text="No Web services accepted"),
    httpx.Response(500, text="Pool timeout: no client available after 5 s"),
    httpx.Response(502, text="Bad gateway"),
    httpx.Response(503, text="Service unavailable"),
    httpx.Response(504, text="Gateway timeout"),
    httpx.Response(500, text="Internal error"),
    httpx.ReadTimeout("read timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.ConnectError("connection refused"),
], ids=["no_web_services", "pool_timeout", "502", "503", "504", "500", "timeout", "dropped", "refused"])
def test_reads_survive_retryable_failures(client_factory: ClientFactory, sleeps: list[float],
                                          failure: httpx.Response | Exception) -> None:
    script = Script(failure, failure, feed([{"BPCNUM": "FR0001"}]))
    client = client_factory(script)
    assert [r["BPCNUM"] for r in client.query("BPCUSTOMER", "BPCUSTOMER")] == ["FR0001"]
    assert len(script.requests) == 3
    assert sleeps == [0.5, 1.0]  # full jitter at its ceiling (rand=1): base * 2**(attempt-1)


def test_retries_are_bounded(client_factory: ClientFactory, sleeps: list[float]) -> None:
    script = Script(*[httpx.Response(503, text="busy")] * 4)
    client = client_factory(script, retry=RetryPolicy(max_attempts=4, base_delay_s=0.5, max_delay_s=1.5))
    with pytest.raises(X3ServiceBusyError) as caught:
        list(client.query("BPCUSTOMER", "BPCUSTOMER"))
    assert caught.value.retryable
    assert len(script.requests) == 4
    assert sleeps == [0.5, 1.0, 1.5]  # capped by max_delay_s


def test_transport_failure_after_the_budget_is_a_transport_error(client_factory: ClientFactory) -> None:
    client = client_factory(Script(*[httpx.ConnectError("refused")] * 4))
    with pytest.raises(X3TransportError, match="cannot reach X3"):
        client.details("BPCUSTOMER", "BPCUSTOMER", "FR0001")


def test_retry_after_is_honoured_within_the_cap(client_factory: ClientFactory, sleeps: list[float]) -> None:
    busy = httpx.Response(503, headers={"Retry-After": "3"}, text="busy")
    client = client_factory(Script(busy, feed([])))
    assert list(client.query("BPCUSTOMER", "BPCUSTOMER")) == []
    assert sleeps == [3.0]


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.5, max_delay_s=8.0)
    assert [backoff_delay(n, policy, lambda: 1.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff_delay(3, policy, lambda: 0.25) == 0.5
    assert backoff_delay(3, policy, lambda: 0.0) == 0.0


@pytest.mark.parametrize(("response", "error"), [
    (json_response({"$diagnoses": [{"$severity": "error", "$message": "Unknown property: FOO"}]}, 500),
     X3DiagnosisError),
    (json_response({"$diagnoses": [{"$severity": "error", "$message": "representation is mandatory"}]}, 400),
     X3DiagnosisError),
    (httpx.Response(400, text="Bad representation"), X3HttpError),
    (httpx.Response(403, text="Forbidden"), X3HttpError),
])
def test_permanent_errors_are_not_retried(client_factory: ClientFactory, sleeps: list[float],
                                          response: httpx.Response, error: type[Exception]) -> None:
    script = Script(response)
    client = client_factory(script)
    with pytest.raises(error) as caught:
        list(client.query("BPCUSTOMER", "BPCUSTOMER", where=Where.eq("FOO", "x")))
    assert not caught.value.retryable  # type: ignore[attr-defined]
    assert len(script.requests) == 1
    assert sleeps == []


def test_details_found_missing_and_composite_keys(client_factory: ClientFactory) -> None:
    missing = json_response({"$diagnoses": [{"$severity": "error", "$message": "721 : Record does not exist"}]})
    script = Script(json_response({"$uuid": "u", "COA": "FR", "ACC": "706000"}), missing,
                    httpx.Response(404, text="Not found"))
    client = client_factory(script)
    assert client.details("GACCOUNT", "ZGACCOUNT", ["FR", "706000"]) == {"$uuid": "u", "COA": "FR", "ACC": "706000"}
    assert client.details("BPCUSTOMER", "BPCUSTOMER", "O'X") is None
    assert client.details("BPCUSTOMER", "BPCUSTOMER", "NOPE") is None
    assert unquote(script.requests[0].url.raw_path.decode()).startswith(
        "/api1/x3/erp/SEED/GACCOUNT('FR~706000')?representation=ZGACCOUNT.$details")
    assert unquote(script.requests[1].url.raw_path.decode()).startswith("/api1/x3/erp/SEED/BPCUSTOMER('O''X')")


# ------------------------------------------------------------------------------------------- connector reads
def address(code: str, web: str, add: str = "MAIN") -> dict[str, object]:
    return {"BPATYP": 1, "BPANUM": code, "BPAADD": add, "WEB": web}


def customer(code: str, name: str, status: int = 2) -> dict[str, object]:
    return {"BPCNUM": code, "BPCNAM": name, "BPCINV": code, "BPCSTA": status, "CUR": "USD"}


def test_customers_by_email_normalises_and_reports_every_match(client_factory: ClientFactory) -> None:
    script = Script(
        feed([address("US0007", "orders@shared-kitchen.example"), address("US0008", "Orders@Shared-Kitchen.example"),
              address("US0009", "other@x.example")]),  # a server that widens the filter is double-checked here
        feed([customer("US0008", "Kitchen Two", status=1), customer("US0007", "Kitchen One")]),
    )
    client = client_factory(script)
    found = client.customers_by_email("  Orders@Shared-Kitchen.EXAMPLE ")
    assert [(c.code, c.name, c.active) for c in found] == [("US0007", "Kitchen One", True),
                                                         ("US0008", "Kitchen Two", False)]
    where = query_params(script.requests[0])["where"]
    assert where == ("(((WEB eq 'Orders@Shared-Kitchen.EXAMPLE') or (WEB eq 'orders@shared-kitchen.example'))"
                     " and (BPATYP eq 1))")
    assert query_params(script.requests[0])["representation"] == "ZBPADDRESS.$query"
    assert query_params(script.requests[1])["where"] == "((BPCNUM eq 'US0007') or (BPCNUM eq 'US0008'))"


def test_customers_by_email_missing_or_blank(client_factory: ClientFactory) -> None:
    script = Script(feed([]))
    client = client_factory(script)
    assert client.customers_by_email("new.buyer@fresh-start.example") == []
    assert client.customers_by_email("   ") == []
    assert len(script.requests) == 1  # no customer query when no address matched; none for a blank e-mail


def test_email_with_a_quote_stays_a_literal(client_factory: ClientFactory) -> None:
    script = Script(feed([]))
    client_factory(script).customers_by_email("o'brien@pub.example")
    assert query_params(script.requests[0])["where"] == "((WEB eq 'o''brien@pub.example') and (BPATYP eq 1))"


def invoice_row(num: str, reference: str, status: int = 1) -> dict[str, object]:
    return {"NUM": num, "BPCINV": "FR0001", "INVTYP": 1, "SIVTYP": "FAC", "INVSTA": status, "CUR": "EUR",
            "AMTNOT": 349.1, "AMTATI": 418.92, "BPRVCR": reference, "SIHORINUM": "", "INVDAT": "2026-11-27",
            "ACCDAT": "2026-11-27", "UPDDATTIM": "2026-11-27T10:15:00Z"}


def test_find_invoice_by_reference(client_factory: ClientFactory) -> None:
    script = Script(feed([invoice_row("FAC-1", "eu:1001:invoice:3", status=3), invoice_row("FAC-9", "eu:1001")]),
                    feed([]),
                    feed([invoice_row("FAC-1", "dup"), invoice_row("FAC-2", "dup")]))
    client = client_factory(script)
    found = client.find_invoice_by_reference("eu:1001:invoice:3")
    assert found is not None
    assert (found.number, found.posted, found.amount_incl_tax) == ("FAC-1", True, Decimal("418.92"))
    assert found.invoice_date == date(2026, 11, 27)
    assert found.updated_at == datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
    assert query_params(script.requests[0])["where"] == "(BPRVCR eq 'eu:1001:invoice:3')"
    assert client.find_invoice_by_reference("eu:nope") is None
    with pytest.raises(X3AmbiguousReferenceError, match="FAC-1, FAC-2"):
        client.find_invoice_by_reference("dup")


def test_find_delivery_by_reference(client_factory: ClientFactory) -> None:
    row = {"SDHNUM": "LIV-7", "BPCORD": "FR0001", "SHIDAT": "2026-11-28", "CFMFLG": 2, "SIHNUM": "FAC-1",
           "STOFCY": "FR011", "BPRVCR": "eu:1001:fulfilment:55"}
    script = Script(feed([row]))
    delivery = client_factory(script).find_delivery_by_reference("eu:1001:fulfilment:55")
    assert delivery is not None
    assert (delivery.number, delivery.validated, delivery.ship_date) == ("LIV-7", True, date(2026, 11, 28))
    assert query_params(script.requests[0])["representation"] == "ZSDELIVERY.$query"


def test_gl_accounts_and_dimensions_are_typed(client_factory: ClientFactory) -> None:
    script = Script(
        feed([{"COA": "FR", "ACC": "706000", "DES": "Sales", "ENAFLG": 2, "VLYSTR": "1599-12-31", "VLYEND": ""},
              {"COA": "FR", "ACC": "709000", "DES": "Old", "ENAFLG": 2, "VLYSTR": "2020-01-01",
               "VLYEND": "2025-12-31"}]),
        feed([{"DIE": "CCT", "CCE": "LYON", "DES": "Lyon shop", "ENAFLG": 1, "FCY": "FR011"}]),
    )
    client = client_factory(script)
    accounts = list(client.gl_accounts())
    assert accounts[0].valid_from is None
    assert accounts[0].usable_on(date(2026, 11, 27))
    assert not accounts[1].usable_on(date(2026, 11, 27))
    dimensions = list(client.dimensions())
    assert [(d.dimension_type, d.code, d.enabled) for d in dimensions] == [("CCT", "LYON", False)]
    assert query_params(script.requests[0])["orderBy"] == "COA asc, ACC asc"


def test_changed_since_filters_and_orders(client_factory: ClientFactory) -> None:
    script = Script(feed([{"STOFCY": "FR011", "VCRNUM": "LIV-7"}]))
    client = client_factory(script)
    since = datetime(2026, 11, 27, 11, 0, 0, 500_000, tzinfo=UTC)
    rows = list(client.changed_since("STOJOU", "ZSTOJOU", since, key_fields=["STOFCY", "VCRTYP", "VCRNUM"],
                                     until=datetime(2026, 11, 27, 12, tzinfo=UTC)))
    assert rows == [{"STOFCY": "FR011", "VCRNUM": "LIV-7"}]
    params = query_params(script.requests[0])
    assert params["where"] == "((UPDDATTIM ge @2026-11-27T11:00:00Z@) and (UPDDATTIM lt @2026-11-27T12:00:00Z@))"
    assert params["orderBy"] == "UPDDATTIM asc, STOFCY asc, VCRTYP asc, VCRNUM asc"
    with pytest.raises(ValueError, match="timezone-aware"):
        list(client.changed_since("STOJOU", "ZSTOJOU", datetime(2026, 1, 1), key_fields=["STOFCY"]))


# ------------------------------------------------------------------------------------------------ SOAP writes
def test_save_sends_the_envelope_and_returns_the_result(client_factory: ClientFactory) -> None:
    script = Script(INVOICE_SAVED)
    client = client_factory(script)
    result = client.save("YSIH", {"SIH0_1": {"BPCINV": "FR0001", "BPRVCR": "eu:1001:invoice:3"},
                                  "SIH4_1": [{"ITMREF": "CUP-PORC-6", "QTY": 2, "GROPRI": Decimal("24.92")}]})
    assert result.field("NUM") == "FAC-000042"
    request = script.requests[0]
    assert request.url.path == "/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC"
    assert request.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert request.headers["SOAPAction"] == '""'
    assert request.headers["Authorization"].startswith("Basic ")
    body = request.content.decode()
    assert "<wss:save " in body
    assert '"GROPRI":"24.92"' in body
    assert client.metrics.calls[("soap", "save")] == 1


def test_business_error_is_raised_with_x3_messages_and_never_retried(client_factory: ClientFactory,
                                                                     sleeps: list[float]) -> None:
    script = Script(soap_result(0, messages=[(3, "ACCDAT : Period closed (2026-10)"), (1, "Creation cancelled")]))
    client = client_factory(script)
    with pytest.raises(X3BusinessError) as caught:
        client.save("YSIH", {"SIH0_1": {"BPCINV": "FR0001"}})
    assert caught.value.error_texts == ["ACCDAT : Period closed (2026-10)"]
    assert "Period closed" in str(caught.value)
    assert not caught.value.retryable
    assert len(script.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize("refusal", [
    soap_result(0, messages=[(3, "Record locked by another user (WSCONNECT)")]),
    httpx.Response(500, text="No Web services accepted"),
    soap_fault("Pool timeout: no client available"),
    httpx.Response(503, text="unavailable"),
    httpx.ConnectError("connection refused"),
], ids=["locked", "no_web_services", "pool_fault", "503", "refused"])
def test_writes_are_resent_when_x3_refused_before_executing(client_factory: ClientFactory, sleeps: list[float],
                                                            refusal: httpx.Response | Exception) -> None:
    script = Script(refusal, INVOICE_SAVED)
    client = client_factory(script)
    assert client.save("YSIH", {"SIH0_1": {"BPCINV": "FR0001"}}).field("NUM") == "FAC-000042"
    assert len(script.requests) == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize("ambiguous", [
    httpx.ReadTimeout("read timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.Response(502, text="Bad gateway"),
    httpx.Response(504, text="Gateway timeout"),
    httpx.Response(500, text="Internal error"),
], ids=["timeout", "dropped", "502", "504", "500"])
def test_writes_in_doubt_are_never_resent(client_factory: ClientFactory, ambiguous: httpx.Response | Exception
                                          ) -> None:
    script = Script(ambiguous)
    client = client_factory(script)
    with pytest.raises(X3OutcomeUnknownError, match="look the document up"):
        client.save("YSIH", {"SIH0_1": {"BPCINV": "FR0001"}})
    assert len(script.requests) == 1


def test_soap_reads_are_retried_on_ambiguous_failures(client_factory: ClientFactory) -> None:
    script = Script(httpx.ReadTimeout("slow"), httpx.Response(502), INVOICE_SAVED)
    result = client_factory(script).read("YSIH", {"NUM": "FAC-000042"})
    assert result is not None
    assert result.field("NUM") == "FAC-000042"
    assert len(script.requests) == 3


def test_lock_that_outlives_the_budget_is_a_locked_error(client_factory: ClientFactory) -> None:
    locked = soap_result(0, messages=[(3, "Record locked by another user")])
    client = client_factory(Script(*[locked] * 4))
    with pytest.raises(X3RecordLockedError):
        client.action("YSIH", "VALID", {"NUM": "FAC-000042"})


def test_soap_fault_is_surfaced(client_factory: ClientFactory) -> None:
    script = Script(soap_fault("Publication YSIHX does not exist", status=200))
    client = client_factory(script)
    with pytest.raises(X3SoapFault, match="YSIHX"):
        client.save("YSIHX", {"SIH0_1": {"BPCINV": "FR0001"}})
    assert len(script.requests) == 1


def test_read_not_found_is_none_and_action_delete_envelopes(client_factory: ClientFactory) -> None:
    script = Script(soap_result(0, messages=[(3, "FAC-404 : Record does not exist")]), soap_result(1), soap_result(1))
    client = client_factory(script)
    assert client.read("YSIH", {"NUM": "FAC-404"}) is None
    assert client.action("YSIH", "VALID", {"NUM": "FAC-000042"}).ok
    assert client.delete("YSIH", {"NUM": "FAC-000042"}).ok
    action_body, delete_body = (r.content.decode() for r in script.requests[1:])
    assert "<wss:actionObjectKeys " in action_body
    assert '<actionCode xsi:type="xsd:string">VALID</actionCode>' in action_body
    assert "<key xsi:type=\"xsd:string\">NUM</key><value xsi:type=\"xsd:string\">FAC-000042</value>" in delete_body


# -------------------------------------------------------------------------------------------- pool semaphore
def test_soap_concurrency_is_bounded_by_the_pool_size(client_factory: ClientFactory) -> None:
    release = threading.Event()
    lock = threading.Lock()
    state = {"in_flight": 0, "max_in_flight": 0, "entered": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            state["in_flight"] += 1
            state["entered"] += 1
            state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        release.wait(timeout=10)
        with lock:
            state["in_flight"] -= 1
        return soap_result(1)

    client = client_factory(handler, pool_size=2)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(client.read("YSIH", {"NUM": "X"})))
               for _ in range(5)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while (state["entered"] < 2 or client.metrics.pool_waits < 3) and time.monotonic() < deadline:
        time.sleep(0.005)
    # Two calls hold the pool; the three others are queued on the semaphore, not at X3.
    assert state["entered"] == 2
    assert client.metrics.pool_waits == 3
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 5
    assert state["max_in_flight"] == 2
    assert client.metrics.pool_wait_seconds > 0
    assert client.metrics.snapshot()["calls"] == {"soap.read": 5}


def test_api1_reads_do_not_take_pool_slots(client_factory: ClientFactory) -> None:
    client = client_factory(Script(feed([])), pool_size=1)
    client._transport.soap_pool.acquire()  # the only SOAP slot is busy
    try:
        assert list(client.query("BPCUSTOMER", "BPCUSTOMER")) == []
    finally:
        client._transport.soap_pool.release()
