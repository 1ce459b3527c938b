"""Retry, pacing and error decisions of ShopifyClient, driven through httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from x3_shopify_dagster.shopify.client import ShopifyClient
from x3_shopify_dagster.shopify.documents import GraphQLDocument, load_document
from x3_shopify_dagster.shopify.errors import (
    MaxCostExceededError,
    ShopifyAuthError,
    ShopifyError,
    ShopifyGraphQLError,
    ShopifyHTTPError,
    ShopifyThrottledError,
    ShopifyTransportError,
    ShopifyUserErrors,
)
from x3_shopify_dagster.shopify.retry import RetryPolicy
from x3_shopify_dagster_tests.shopify.fakes import (
    ENDPOINT,
    TOKEN,
    FakeClock,
    cost_extension,
    graphql_response,
)

SHOP = load_document("shop_info")
SHOP_DATA = {
    "shop": {
        "id": "gid://shopify/Shop/1",
        "name": "Acme EU",
        "myshopifyDomain": "acme-eu.myshopify.com",
        "currencyCode": "EUR",
        "ianaTimezone": "Europe/Paris",
    }
}
PLAIN_MUTATION = load_document("bulk_orders_run")
IDEMPOTENT_MUTATION = GraphQLDocument(
    name="set_quantities",
    operation_name="SetQuantities",
    text=(
        "mutation SetQuantities($input: InventorySetQuantitiesInput!, $key: String!) {\n"
        "  inventorySetQuantities(input: $input) @idempotent(key: $key) { userErrors { field message code } }\n"
        "}\n"
    ),
)


class Script:
    """A handler serving prepared answers in order and recording what was sent."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok(data: dict | None = None, **cost: float) -> httpx.Response:
    return graphql_response(data if data is not None else SHOP_DATA, extensions=cost_extension(**cost))


def throttled(requested: int, available: float, maximum: float = 2000.0, restore: float = 100.0) -> httpx.Response:
    return graphql_response(
        errors=[{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        extensions=cost_extension(requested, actual=None, available=available, maximum=maximum, restore=restore),
    )


MakeClient = Callable[..., ShopifyClient]


def test_posts_the_operation_with_the_token_header_and_returns_data_and_cost(make_client: MakeClient) -> None:
    script = Script(ok(requested=3, actual=2, available=1998))
    response = make_client(script).execute(SHOP, {"unused": 1})

    request = script.requests[0]
    assert request.method == "POST"
    assert str(request.url) == ENDPOINT
    assert request.headers["X-Shopify-Access-Token"] == TOKEN
    assert json.loads(request.content) == {"query": SHOP.text, "variables": {"unused": 1}, "operationName": "ShopInfo"}
    assert response.data == SHOP_DATA
    assert response.cost is not None
    assert (response.cost.requested_query_cost, response.cost.actual_query_cost) == (3, 2)


def test_throttled_in_200_waits_what_the_bucket_needs_then_succeeds(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    script = Script(throttled(requested=500, available=100), ok())
    client = make_client(script)
    client.execute(SHOP)

    assert fake_clock.sleeps == [pytest.approx(4.0)]  # (500 - 100) points / 100 points per second
    assert len(script.requests) == 2
    snapshot = client.metrics.snapshot()
    assert (snapshot["requests"], snapshot["retries"], snapshot["throttle_waits"]) == (2, 1, 1)
    assert snapshot["throttle_wait_s"] == pytest.approx(4.0)


def test_http_429_honours_a_fractional_retry_after(make_client: MakeClient, fake_clock: FakeClock) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "2.5"}), ok())
    make_client(script).execute(SHOP)
    assert fake_clock.sleeps == [2.5]
    assert len(script.requests) == 2


def test_http_429_without_retry_after_waits_one_second(make_client: MakeClient, fake_clock: FakeClock) -> None:
    script = Script(httpx.Response(429), httpx.Response(429, headers={"Retry-After": "soon"}), ok())
    make_client(script).execute(SHOP)
    assert fake_clock.sleeps == [1.0, 1.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_back_off_exponentially(make_client: MakeClient, fake_clock: FakeClock, status: int) -> None:
    script = Script(httpx.Response(status), httpx.Response(status), httpx.Response(status), ok())
    make_client(script).execute(SHOP)
    assert fake_clock.sleeps == [0.5, 1.0, 2.0]  # base 0.5 s doubled; jitter pinned at its ceiling


def test_backoff_uses_full_jitter(make_client: MakeClient, fake_clock: FakeClock) -> None:
    script = Script(httpx.Response(503), httpx.Response(503), ok())
    make_client(script, retry=RetryPolicy(random=lambda: 0.25)).execute(SHOP)
    assert fake_clock.sleeps == [0.125, 0.25]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_timeouts_and_dropped_connections_are_retried(make_client: MakeClient, failure: Exception) -> None:
    script = Script(failure, ok())
    assert make_client(script).execute(SHOP).data == SHOP_DATA
    assert len(script.requests) == 2


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_not_retried_and_name_the_shop_not_the_token(make_client: MakeClient, status: int) -> None:
    script = Script(httpx.Response(status, text=f"Invalid API key or access token {TOKEN}"))
    with pytest.raises(ShopifyAuthError) as caught:
        make_client(script).execute(SHOP)
    assert len(script.requests) == 1
    assert caught.value.status_code == status
    assert "acme-eu.myshopify.com" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_client_errors_are_not_retried(make_client: MakeClient, status: int) -> None:
    script = Script(httpx.Response(status, text="nope"))
    with pytest.raises(ShopifyHTTPError) as caught:
        make_client(script).execute(SHOP)
    assert len(script.requests) == 1
    assert caught.value.status_code == status


def test_graphql_validation_errors_are_not_retried(make_client: MakeClient) -> None:
    answer = graphql_response(
        errors=[{"message": "Field 'bogus' doesn't exist on type 'Shop'", "extensions": {"code": "undefinedField"}}]
    )
    script = Script(answer)
    with pytest.raises(ShopifyGraphQLError, match="bogus") as caught:
        make_client(script).execute(SHOP)
    assert len(script.requests) == 1
    assert caught.value.codes == ("undefinedField",)


def test_internal_server_error_in_200_is_retried_for_queries(make_client: MakeClient) -> None:
    answer = graphql_response(errors=[{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}])
    script = Script(answer, ok())
    make_client(script).execute(SHOP)
    assert len(script.requests) == 2


def test_retries_stop_after_max_attempts(make_client: MakeClient) -> None:
    script = Script(*[httpx.Response(503) for _ in range(3)])
    with pytest.raises(ShopifyHTTPError) as caught:
        make_client(script, retry=RetryPolicy(max_attempts=3, random=lambda: 1.0)).execute(SHOP)
    assert len(script.requests) == 3
    assert caught.value.status_code == 503


def test_retries_stop_when_the_time_budget_is_spent(make_client: MakeClient, fake_clock: FakeClock) -> None:
    script = Script(*[httpx.Response(429, headers={"Retry-After": "4"}) for _ in range(5)])
    policy = RetryPolicy(max_attempts=10, max_total_s=5.0, random=lambda: 1.0)
    with pytest.raises(ShopifyThrottledError):
        make_client(script, retry=policy).execute(SHOP)
    # t=0 fails, waits 4 (4 <= 5); t=4 fails, another 4 would end at 8 > 5: give up
    assert len(script.requests) == 2
    assert fake_clock.sleeps == [4.0]


def test_max_cost_exceeded_raises_with_cost_and_limit(make_client: MakeClient) -> None:
    answer = graphql_response(
        errors=[
            {
                "message": "Query cost is 1066, which exceeds the single query max cost limit (1000).",
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": 1066, "maxCost": 1000},
            }
        ],
    )
    script = Script(answer)
    with pytest.raises(MaxCostExceededError) as caught:
        make_client(script).execute(SHOP)
    assert (caught.value.cost, caught.value.max_cost) == (1066, 1000)
    assert len(script.requests) == 1


def test_a_query_larger_than_the_whole_bucket_is_reported_as_too_expensive(make_client: MakeClient) -> None:
    # Waiting can never make 300 points fit a 50-point bucket: the caller has to ask for less.
    script = Script(throttled(requested=300, available=50, maximum=50, restore=5))
    with pytest.raises(MaxCostExceededError) as caught:
        make_client(script).execute(SHOP)
    assert (caught.value.cost, caught.value.max_cost) == (300, 50)


def test_pacing_waits_for_the_bucket_before_sending(make_client: MakeClient, fake_clock: FakeClock) -> None:
    script = Script(
        ok(requested=300, actual=280, available=50, restore=100),
        ok(requested=300, available=10),
        ok(requested=300),
        ok(requested=5),
    )
    client = make_client(script)
    client.execute(SHOP)
    assert fake_clock.sleeps == []  # nothing known before the first answer

    client.execute(SHOP)  # 50 available, 300 expected: 2.5 s at 100 points/s
    assert fake_clock.sleeps == [pytest.approx(2.5)]

    fake_clock.now += 1.0  # time passes outside the client: the bucket refilled by 100
    client.execute(SHOP)  # 10 + 100 available, 300 expected: 1.9 s
    assert fake_clock.sleeps[-1] == pytest.approx(1.9)

    client.execute(PLAIN_MUTATION, {"query": "{ orders { edges { node { id } } } }"})
    assert len(fake_clock.sleeps) == 2  # an operation never seen has no expected cost yet: no wait
    assert client.metrics.throttle_waits == 2


def test_metrics_count_points_per_operation(make_client: MakeClient) -> None:
    data = {
        "bulkOperationRunQuery": {"bulkOperation": {"id": "1", "status": "CREATED", "createdAt": "x"}, "userErrors": []}
    }
    script = Script(ok(requested=3, actual=2), ok(requested=3, actual=1), ok(data, requested=10, actual=10))
    client = make_client(script)
    client.execute(SHOP)
    client.execute(SHOP)
    client.execute(PLAIN_MUTATION, {"query": "{}"})
    snapshot = client.metrics.snapshot()
    assert (snapshot["points_requested"], snapshot["points_spent"]) == (16, 13)
    assert snapshot["by_operation"]["ShopInfo"]["requests"] == 2
    assert snapshot["by_operation"]["ShopInfo"]["points_spent"] == 3
    assert snapshot["by_operation"]["BulkOrdersRun"]["points_requested"] == 10


def test_user_errors_from_a_mutation_are_raised_with_field_message_and_code(make_client: MakeClient) -> None:
    data = {
        "bulkOperationRunQuery": {
            "bulkOperation": None,
            "userErrors": [
                {
                    "field": ["query"],
                    "message": "Bulk queries cannot contain more than 5 connections.",
                    "code": "INVALID",
                }
            ],
        }
    }
    script = Script(ok(data))
    with pytest.raises(ShopifyUserErrors) as caught:
        make_client(script).execute(PLAIN_MUTATION, {"query": "{}"})
    (error,) = caught.value.user_errors
    assert (error.field, error.code) == (("query",), "INVALID")
    assert "5 connections" in error.message
    assert "query: Bulk queries cannot" in str(caught.value)


def test_a_plain_mutation_is_not_resent_after_an_ambiguous_failure(make_client: MakeClient) -> None:
    for failure in (httpx.Response(502), httpx.ReadTimeout("read timed out")):
        script = Script(failure, ok())
        with pytest.raises((ShopifyHTTPError, ShopifyTransportError)):
            make_client(script).execute(PLAIN_MUTATION, {"query": "{}"})
        assert len(script.requests) == 1


def test_a_plain_mutation_is_resent_when_shopify_refused_it_before_running_it(make_client: MakeClient) -> None:
    data = {
        "bulkOperationRunQuery": {"bulkOperation": {"id": "1", "status": "CREATED", "createdAt": "x"}, "userErrors": []}
    }
    script = Script(httpx.Response(429), httpx.ConnectError("refused"), throttled(20, 0), ok(data))
    make_client(script).execute(PLAIN_MUTATION, {"query": "{}"})
    assert len(script.requests) == 4


def test_an_idempotent_mutation_is_resent_after_an_ambiguous_failure(make_client: MakeClient) -> None:
    data = {"inventorySetQuantities": {"userErrors": []}}
    script = Script(httpx.Response(502), httpx.ReadTimeout("read timed out"), ok(data))
    make_client(script).execute(IDEMPOTENT_MUTATION, {"input": {}, "key": "k-1"})
    assert len(script.requests) == 3
    bodies = {request.content for request in script.requests}
    assert len(bodies) == 1  # the very same request, same idempotency key


def test_the_token_never_appears_in_errors_or_reprs(make_client: MakeClient) -> None:
    echo = graphql_response(errors=[{"message": f"bad token {TOKEN}", "extensions": {"code": "ACCESS_DENIED"}}])
    script = Script(
        echo,
        httpx.ConnectError(f"failed for {TOKEN}"),
        httpx.ConnectError("x"),
        httpx.ConnectError("x"),
        httpx.ConnectError("x"),
        httpx.ConnectError("x"),
        httpx.ConnectError("x"),
    )
    client = make_client(script)
    texts = [repr(client), str(client.__dict__.get("retry"))]
    for _ in range(2):
        with pytest.raises(ShopifyError) as caught:
            client.execute(SHOP)
        texts += [str(caught.value), repr(caught.value), str(caught.value.__cause__ or "")]
    assert all(TOKEN not in text for text in texts)
    assert any("ACCESS_DENIED" in text for text in texts)


def test_the_constructor_refuses_plain_http_except_on_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        ShopifyClient("http://acme-eu.myshopify.com", TOKEN)
    with pytest.raises(ValueError, match="empty"):
        ShopifyClient("https://acme-eu.myshopify.com", "")
    for url in ("http://127.0.0.1:8123/stores/eu/", "http://localhost:9/x", "http://[::1]:9"):
        with ShopifyClient(url, TOKEN) as client:
            assert client.endpoint.endswith("/admin/api/2026-07/graphql.json")
    with ShopifyClient("http://127.0.0.1:8123/stores/eu/", TOKEN, api_version="2026-10") as client:
        assert client.endpoint == "http://127.0.0.1:8123/stores/eu/admin/api/2026-10/graphql.json"


def test_shop_info_reports_identity_and_the_rate_limit_plan(make_client: MakeClient) -> None:
    info = make_client(Script(ok(maximum=20000.0, restore=1000.0))).shop_info()
    assert (info.name, info.domain, info.currency_code, info.iana_timezone) == (
        "Acme EU",
        "acme-eu.myshopify.com",
        "EUR",
        "Europe/Paris",
    )
    assert (info.maximum_available, info.restore_rate) == (20000.0, 1000.0)


def test_downloads_are_streamed_without_the_token(make_client: MakeClient) -> None:
    script = Script(httpx.Response(503), httpx.Response(200, content=b'{"id": 1}\n\n{"id": 2}\n'))
    client = make_client(script)
    with client.stream_lines("https://storage.example/bulk/result.jsonl?sig=abc") as lines:
        assert list(lines) == ['{"id": 1}', '{"id": 2}']
    assert len(script.requests) == 2
    assert all("X-Shopify-Access-Token" not in r.headers for r in script.requests)
    with pytest.raises(ValueError, match="https"), client.stream_lines("http://storage.example/x"):
        pass
