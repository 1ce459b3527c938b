"""Helpers shared by the X3 client tests: configs, canned api1 responses, a scripted MockTransport."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from x3_shopify_dagster.sandboxes.x3 import X3Sandbox
from x3_shopify_dagster.x3 import RetryPolicy, X3Config

Handler = Callable[[httpx.Request], httpx.Response]


def make_config(**overrides: Any) -> X3Config:
    values: dict[str, Any] = {
        "server_url": "https://x3.example.com",
        "port": 8124,
        "folder": "SEED",
        "retry": RetryPolicy(max_attempts=4, base_delay_s=0.5, max_delay_s=4.0),
    }
    values.update(overrides)
    return X3Config(**values)


def json_response(payload: Any, status: int = 200, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(payload).encode(),
                          headers={"Content-Type": "application/json"}, **kwargs)


def feed(rows: Iterable[dict[str, Any]], next_url: str | None = None) -> httpx.Response:
    payload: dict[str, Any] = {"$resources": list(rows), "$itemsPerPage": 20, "$startIndex": 1}
    if next_url:
        payload["$links"] = {"$next": {"$url": next_url}}
    return json_response(payload)


class Script:
    """A MockTransport handler answering from a queue of responses (or callables) and recording requests."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            if not self.answers:
                raise AssertionError(f"unexpected request {request.method} {request.url}")
            answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


class Sleeps(list[float]):
    """Injected sleep: records the delays instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05)


def sandbox_config(sandbox: X3Sandbox, **overrides: Any) -> X3Config:
    """The client configuration a customer would write, pointed at a sandbox."""
    values: dict[str, Any] = {"server_url": sandbox.base_url, "folder": sandbox.folder,
                              "pool_alias": sandbox.pool_alias, "retry": FAST_RETRY}
    values.update(overrides)
    return X3Config(**values)
