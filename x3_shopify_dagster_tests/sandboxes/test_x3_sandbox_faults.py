"""The X3 sandbox's web-service pool and every injectable fault, over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
import pytest

from x3_shopify_dagster.sandboxes.x3 import FAULT_KINDS, X3Sandbox, X3SandboxConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from x3_shopify_dagster_tests.fixtures.x3_sandbox import SoapReply, X3RawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.x3_sandbox"]


def concurrent_reads(client: X3RawClient, count: int) -> list[SoapReply]:
    with ThreadPoolExecutor(max_workers=count) as executor:
        futures = [executor.submit(client.soap, "getDescription", "YSIH") for _ in range(count)]
        return [future.result() for future in futures]


# ---------------------------------------------------------------------------------------------- pool
@pytest.fixture(scope="module")
def slow_pool_sandbox() -> Iterator[X3Sandbox]:
    # 2 clients, 0.3 s per call: a third concurrent call has to queue.
    with X3Sandbox(X3SandboxConfig(pool_size=2, latency_s=0.3, pool_wait_s=10)) as sandbox:
        yield sandbox


def test_calls_beyond_the_pool_size_queue(slow_pool_sandbox: X3Sandbox,
                                          x3_raw_factory: Callable[..., X3RawClient]) -> None:
    replies = concurrent_reads(x3_raw_factory(slow_pool_sandbox), 3)

    assert [reply.status for reply in replies] == [1, 1, 1]
    assert sorted(reply.technical["busy"] for reply in replies) == ["false", "false", "true"]
    stats = slow_pool_sandbox.pool_stats()
    assert (stats.peak_in_use, stats.in_use, stats.timeouts) == (2, 0, 0)


def test_a_call_that_cannot_get_a_client_in_time_gets_the_pool_error(
        x3_raw_factory: Callable[..., X3RawClient]) -> None:
    with X3Sandbox(X3SandboxConfig(pool_size=1, latency_s=0.5, pool_wait_s=0.05)) as sandbox:
        replies = concurrent_reads(x3_raw_factory(sandbox), 2)

        assert sorted((reply.http_status, reply.status) for reply in replies) == [(200, 1), (500, None)]
        fault = next(reply.fault for reply in replies if reply.fault)
        assert fault.startswith("Pool timeout: no client available in pool 'SEED'")
        assert sandbox.pool_stats().timeouts == 1
        assert sandbox.count_calls("soap", "getDescription/YSIH", status=500) == 1


# ---------------------------------------------------------------------------------------------- faults
def test_fault_kinds_are_validated(x3_sandbox: X3Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        x3_sandbox.faults.inject("meteor_strike")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency_s"):
        x3_sandbox.faults.inject("latency")
    assert {"http_500", "no_web_services", "pool_timeout", "locked_record", "latency", "drop_connection",
            "expire_access_tokens", "soap_fault"} == FAULT_KINDS


def test_http_500_hits_times_matching_requests_then_stops(x3_raw: X3RawClient, x3_sandbox: X3Sandbox) -> None:
    x3_sandbox.faults.inject("http_500", times=2, path_contains="SINVOICEV")

    assert x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query").status_code == 200  # not matching: untouched
    statuses = [x3_raw.api1("SINVOICEV", "SINVOICEV.$query").status_code for _ in range(3)]

    assert statuses == [500, 500, 200]
    assert x3_sandbox.faults.pending() == []


def test_http_500_on_soap_is_a_bare_server_error(x3_raw: X3RawClient, x3_sandbox: X3Sandbox) -> None:
    x3_sandbox.faults.inject("http_500", path_contains="save/YSIH")
    response = x3_raw.soap_response("save", "YSIH", payload=x3_raw.invoice_payload())
    assert (response.status_code, response.text) == (500, "Internal Server Error")


@pytest.mark.parametrize(("kind", "fault"), [
    ("no_web_services", "No Web services accepted"),
    ("pool_timeout", "Pool timeout: no client available in pool 'SEED' within 5 s (4 busy)"),
    ("soap_fault", "Injected SOAP fault on save/YSIH"),
])
def test_soap_level_faults(x3_raw: X3RawClient, x3_sandbox: X3Sandbox, kind: str, fault: str) -> None:
    reference = f"fault-{uuid.uuid4().hex[:8]}"
    x3_sandbox.faults.inject(kind)  # type: ignore[arg-type]

    reply = x3_raw.save_invoice(reference=reference)

    assert (reply.http_status, reply.fault) == (500, fault)
    assert all(invoice.reference != reference for invoice in x3_sandbox.state.invoices())  # nothing was written
    assert x3_raw.save_invoice(reference=reference).status == 1


def test_a_soap_fault_can_arrive_with_http_200(x3_raw: X3RawClient, x3_sandbox: X3Sandbox) -> None:
    x3_sandbox.faults.inject("soap_fault", http_status=200)
    reply = x3_raw.soap("getDescription", "YSIH")
    assert (reply.http_status, reply.fault) == (200, "Injected SOAP fault on getDescription/YSIH")


def test_soap_faults_ignore_api1_requests(x3_raw: X3RawClient, x3_sandbox: X3Sandbox) -> None:
    x3_sandbox.faults.inject("no_web_services")
    assert x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query").status_code == 200
    assert x3_raw.soap("getDescription", "YSIH").fault == "No Web services accepted"


def test_locked_record_is_transient_on_api1_and_a_lock_message_on_soap(x3_raw: X3RawClient,
                                                                       x3_sandbox: X3Sandbox) -> None:
    x3_sandbox.faults.inject("locked_record", times=2)

    api1 = x3_raw.api1("SINVOICEV", "SINVOICEV.$query")
    soap = x3_raw.soap("read", "YSIH", keys={"NUM": "ANY"})

    assert api1.status_code == 200
    assert api1.json() == {"$diagnoses": [{"$severity": "transient",
                                           "$message": "Record locked by another user (SINVOICEV)"}]}
    assert (soap.status, soap.errors) == (0, ["Record locked by another user: read/YSIH"])


def test_latency_holds_the_pool_slot(x3_raw_factory: Callable[..., X3RawClient]) -> None:
    with X3Sandbox(X3SandboxConfig(pool_size=1)) as sandbox:
        sandbox.faults.inject("latency", latency_s=0.3, path_contains="getDescription")
        replies = concurrent_reads(x3_raw_factory(sandbox), 2)
        # The first call sleeps inside the only pool slot, so the second one must queue behind it.
        assert sorted(reply.technical["busy"] for reply in replies) == ["false", "true"]
        assert sandbox.faults.pending() == []


def test_drop_connection_processes_the_write_and_loses_the_answer(x3_raw: X3RawClient,
                                                                  x3_sandbox: X3Sandbox) -> None:
    reference = f"in-doubt-{uuid.uuid4().hex[:8]}"
    x3_sandbox.faults.inject("drop_connection", path_contains="save/YSIH")

    with pytest.raises(httpx.RemoteProtocolError):
        x3_raw.save_invoice(reference=reference)

    # The classic in-doubt case: the invoice exists, and the reference finds it.
    found = x3_raw.soap("query", "YSIH", keys={"BPRVCR": reference})
    assert len(found.result["LIST"]) == 1
    assert x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query").status_code == 200  # the next connection is fine


def test_drop_connection_on_api1(x3_raw: X3RawClient, x3_sandbox: X3Sandbox) -> None:
    x3_sandbox.faults.inject("drop_connection", path_contains="/BPCUSTOMER")
    with pytest.raises(httpx.RemoteProtocolError):
        x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query")


def test_expire_access_tokens_only_touches_bearer_requests(fresh_x3_sandbox: X3Sandbox) -> None:
    with httpx.Client(base_url=fresh_x3_sandbox.base_url) as client:
        client_id, client_secret = fresh_x3_sandbox.oauth_client
        tokens = client.post("/auth/oauth2/token", data={
            "grant_type": "authorization_code", "code": fresh_x3_sandbox.issue_authorization_code(),
            "client_id": client_id, "client_secret": client_secret}).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        query = "/api1/x3/erp/SEED/BPCUSTOMER?representation=BPCUSTOMER.$query"
        fresh_x3_sandbox.faults.inject("expire_access_tokens", path_contains="key=gt.")

        assert client.get(query, auth=fresh_x3_sandbox.basic_credentials).status_code == 200
        first = client.get(query + "&count=5", headers=headers)
        assert first.status_code == 200
        second = client.get(first.json()["$links"]["$next"]["$url"], headers=headers)
        assert second.status_code == 401
        assert fresh_x3_sandbox.faults.pending() == []
        assert client.get(query, headers=headers).status_code == 401  # the token stays expired


def test_faults_are_cleared_by_clear(x3_sandbox: X3Sandbox, x3_raw: X3RawClient) -> None:
    x3_sandbox.faults.inject("http_500", times=None)
    assert x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query").status_code == 500
    assert x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query").status_code == 500
    x3_sandbox.faults.clear()
    assert x3_raw.api1("BPCUSTOMER", "BPCUSTOMER.$query").status_code == 200
