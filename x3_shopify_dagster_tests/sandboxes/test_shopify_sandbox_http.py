"""The HTTP surface: routing, versions, auth, request errors, every injectable fault, and the admin routes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from x3_shopify_dagster.sandboxes.shopify import SUPPORTED_API_VERSIONS, ShopifySandbox

if TYPE_CHECKING:
    from x3_shopify_dagster_tests.fixtures.shopify_sandbox import ShopifyRawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.shopify_sandbox"]

SHOP = "query ShopInfo { shop { id currencyCode } }"
INVALID_TOKEN = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
Factory = Callable[..., "ShopifyRawClient"]


@pytest.mark.parametrize("version", SUPPORTED_API_VERSIONS)
def test_supported_versions_answer(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory,
                                   version: str) -> None:
    assert shopify_raw_factory(shopify_sandbox, "us", version).data(SHOP)["shop"]["currencyCode"] == "USD"


@pytest.mark.parametrize("path", ["/stores/eu/admin/api/2025-10/graphql.json",
                                  "/stores/eu/admin/api/unstable-x/graphql.json",
                                  "/stores/nowhere/admin/api/2026-07/graphql.json"])
def test_unknown_versions_and_stores_are_404(shopify_sandbox: ShopifySandbox, path: str) -> None:
    response = httpx.post(shopify_sandbox.base_url + path, json={"query": SHOP},
                          headers={"X-Shopify-Access-Token": shopify_sandbox.access_token("eu")})
    assert response.status_code == 404


@pytest.mark.parametrize("headers", [{}, {"X-Shopify-Access-Token": "shpat_wrong"}])
def test_a_missing_or_wrong_token_is_401_like_shopify(shopify_sandbox: ShopifySandbox,
                                                       headers: dict[str, str]) -> None:
    response = httpx.post(shopify_sandbox.graphql_url("eu"), json={"query": SHOP}, headers=headers)
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


def test_a_token_only_opens_its_own_store(shopify_sandbox: ShopifySandbox) -> None:
    response = httpx.post(shopify_sandbox.graphql_url("us"), json={"query": SHOP},
                          headers={"X-Shopify-Access-Token": shopify_sandbox.access_token("eu")})
    assert response.status_code == 401


@pytest.mark.parametrize("content", [b"not json", b'{"variables": {}}', b'{"query": "  "}', b"[1]"])
def test_a_body_without_a_query_is_400(shopify_sandbox: ShopifySandbox, content: bytes) -> None:
    response = httpx.post(shopify_sandbox.graphql_url("eu"), content=content,
                          headers={"X-Shopify-Access-Token": shopify_sandbox.access_token("eu"),
                                   "Content-Type": "application/json"})
    assert response.status_code == 400


def test_graphql_errors_come_back_as_200_with_locations(shopify_sandbox: ShopifySandbox,
                                                        shopify_raw_factory: Factory) -> None:
    body = shopify_raw_factory(shopify_sandbox).post("{ shop { id ").json()
    assert "data" not in body
    assert body["errors"][0]["locations"]
    body = shopify_raw_factory(shopify_sandbox).post("query($n: Int!) { orders(first: $n) { nodes { id } } }",
                                                     {"n": "ten"}).json()
    assert "Int cannot represent" in body["errors"][0]["message"]


# -- faults ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "status"), [("http_500", 500), ("http_502", 502), ("http_503", 503)])
def test_http_error_faults(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory, kind: str,
                           status: int) -> None:
    client = shopify_raw_factory(shopify_sandbox)
    shopify_sandbox.faults.inject(kind, store="eu")
    assert client.post(SHOP).status_code == status
    assert client.post(SHOP).status_code == 200  # times=1: consumed
    assert [r.status for r in shopify_sandbox.requests_log[-2:]] == [f"fault:{kind}", "ok"]


@pytest.mark.parametrize(("retry_after", "header"), [(None, "1.0"), (2.5, "2.5")])
def test_http_429_carries_a_float_retry_after(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory,
                                              retry_after: float | None, header: str) -> None:
    shopify_sandbox.faults.inject("http_429", retry_after=retry_after)
    response = shopify_raw_factory(shopify_sandbox).post(SHOP)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == header


def test_throttled_fault_answers_200_with_the_throttled_body(shopify_sandbox: ShopifySandbox,
                                                             shopify_raw_factory: Factory) -> None:
    shopify_sandbox.faults.inject("throttled")
    body = shopify_raw_factory(shopify_sandbox).post(SHOP).json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert body["extensions"]["cost"]["requestedQueryCost"] == 1


def test_drop_connection_closes_the_socket_without_an_answer(shopify_sandbox: ShopifySandbox,
                                                              shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(shopify_sandbox)
    shopify_sandbox.faults.inject("drop_connection")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(SHOP)
    assert client.post(SHOP).status_code == 200


def test_timeout_fault_outlasts_the_client_timeout(shopify_sandbox: ShopifySandbox,
                                                   shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(shopify_sandbox)
    shopify_sandbox.faults.inject("timeout", latency_s=30)
    with pytest.raises(httpx.ReadTimeout):
        client.post(SHOP, timeout=0.2)
    assert client.post(SHOP).status_code == 200  # the server was not held up by the abandoned request


def test_latency_fault_delays_only_the_matching_operation(shopify_sandbox: ShopifySandbox,
                                                          shopify_raw_factory: Factory) -> None:
    slow_client, fast_client = shopify_raw_factory(shopify_sandbox), shopify_raw_factory(shopify_sandbox)
    shopify_sandbox.faults.inject("latency", operation="Slow", latency_s=0.8)
    finished: list[str] = []
    slow_started = threading.Event()

    def slow() -> None:
        slow_started.set()
        assert slow_client.post("query Slow { shop { id } }").status_code == 200
        finished.append("slow")

    thread = threading.Thread(target=slow)
    thread.start()
    slow_started.wait()
    while shopify_sandbox.faults.pending():  # the slow request has taken its fault and is sleeping
        threading.Event().wait(0.002)
    assert fast_client.post("query Fast { shop { id } }").status_code == 200
    finished.append("fast")
    thread.join()
    assert finished == ["fast", "slow"]


def test_faults_match_store_operation_and_count(shopify_sandbox: ShopifySandbox,
                                                shopify_raw_factory: Factory) -> None:
    eu, us = shopify_raw_factory(shopify_sandbox, "eu"), shopify_raw_factory(shopify_sandbox, "us")
    shopify_sandbox.faults.inject("http_503", store="us", operation="Probe", times=2)
    assert us.post("query Other { shop { id } }").status_code == 200
    assert eu.post("query Probe { shop { id } }").status_code == 200
    assert us.post("query Probe { shop { id } }").status_code == 503
    assert us.post("{ shop { id } }", operation_name="Probe").status_code == 503
    assert us.post("query Probe { shop { id } }").status_code == 200


def test_unlimited_faults_last_until_cleared(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory) -> None:
    client = shopify_raw_factory(shopify_sandbox)
    shopify_sandbox.faults.inject("http_500", times=None)
    assert [client.post(SHOP).status_code for _ in range(3)] == [500, 500, 500]
    shopify_sandbox.faults.clear()
    assert client.post(SHOP).status_code == 200


def test_unknown_fault_kinds_are_refused(shopify_sandbox: ShopifySandbox) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        shopify_sandbox.faults.inject("http_418")


# -- admin routes (for another process, e.g. the demo launcher) ---------------------------------------------------
def test_admin_routes_inject_and_clear_faults(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory) -> None:
    admin = httpx.Client(base_url=shopify_sandbox.base_url)
    client = shopify_raw_factory(shopify_sandbox)
    assert admin.post("/_sandbox/faults", json={"kind": "http_502", "store": "eu", "times": 5}).status_code == 200
    assert client.post(SHOP).status_code == 502
    assert admin.post("/_sandbox/faults/clear").status_code == 200
    assert client.post(SHOP).status_code == 200
    assert admin.post("/_sandbox/faults", json={"kind": "nope"}).status_code == 400


def test_admin_state_summary_and_request_log(shopify_sandbox: ShopifySandbox, shopify_raw_factory: Factory) -> None:
    shopify_raw_factory(shopify_sandbox, "us").post("query Hello { shop { id } }")
    admin = httpx.Client(base_url=shopify_sandbox.base_url)
    summary = admin.get("/_sandbox/state").json()
    assert set(summary["stores"]) == {"eu", "us"}
    assert summary["stores"]["us"]["shop"] == "acme-us.myshopify.com"
    assert summary["stores"]["eu"]["orders"] == len(shopify_sandbox.state.orders("eu"))
    assert "access_token" not in str(summary)
    assert shopify_sandbox.access_token("eu") not in str(summary)
    log = admin.get("/_sandbox/requests").json()
    assert log[-1]["operation_name"] == "Hello"
    assert log[-1]["store"] == "us"


def test_admin_rate_limit_and_traffic_routes(fresh_shopify_sandbox: ShopifySandbox,
                                             shopify_raw_factory: Factory) -> None:
    admin = httpx.Client(base_url=fresh_shopify_sandbox.base_url)
    assert admin.post("/_sandbox/rate-limit", json={"store": "eu", "bucket_size": 5}).status_code == 200
    cost = shopify_raw_factory(fresh_shopify_sandbox).post(SHOP).json()["extensions"]["cost"]
    assert cost["throttleStatus"]["maximumAvailable"] == 5.0
    before = len(fresh_shopify_sandbox.state.orders("eu")) + len(fresh_shopify_sandbox.state.orders("us"))
    assert admin.post("/_sandbox/traffic/start", json={"interval_s": 0.005}).status_code == 200
    deadline = threading.Event()
    for _ in range(400):
        after = len(fresh_shopify_sandbox.state.orders("eu")) + len(fresh_shopify_sandbox.state.orders("us"))
        if after > before:
            break
        deadline.wait(0.005)
    assert admin.post("/_sandbox/traffic/stop").status_code == 200
    assert after > before


def test_bulk_files_are_only_served_by_name(shopify_sandbox: ShopifySandbox) -> None:
    admin = httpx.Client(base_url=shopify_sandbox.base_url)
    assert admin.get("/_sandbox/bulk/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert admin.get("/_sandbox/bulk/999.jsonl").status_code == 404
