"""Fixtures for the X3 client tests: MockTransport clients for unit tests, sandbox-backed clients for
integration tests (real HTTP on an ephemeral loopback port)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from x3_shopify_dagster.sandboxes.x3 import ManualClock, X3Sandbox, X3SandboxConfig
from x3_shopify_dagster.x3 import BasicAuth, X3Client
from x3_shopify_dagster_tests.x3._support import Handler, Sleeps, make_config, sandbox_config

_SANDBOX_PLUGIN = "x3_shopify_dagster_tests.fixtures.x3_sandbox"


def pytest_configure(config: pytest.Config) -> None:
    # Provides x3_sandbox / fresh_x3_sandbox; loaded here unless the project conftest already registers it.
    if not config.pluginmanager.has_plugin(_SANDBOX_PLUGIN):
        config.pluginmanager.import_plugin(_SANDBOX_PLUGIN)


# ------------------------------------------------------------------------------------------------ unit tests
@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client_factory(sleeps: Sleeps) -> Iterator[Callable[..., X3Client]]:
    """Builds X3Clients over a MockTransport handler, with recorded sleeps and maximal jitter (rand=1)."""
    created: list[X3Client] = []

    def factory(handler: Handler, *, auth: Any = None, **config: Any) -> X3Client:
        client = X3Client(make_config(**config), auth or BasicAuth("WSUSER", "s3cret-basic-pw"),
                          transport=httpx.MockTransport(handler), sleep=sleeps, rand=lambda: 1.0)
        created.append(client)
        return client

    yield factory
    for client in created:
        client.close()


# ------------------------------------------------------------------------------------------ integration tests
@pytest.fixture
def x3_factory(x3_sandbox: X3Sandbox) -> Iterator[Callable[..., X3Client]]:
    """X3Clients on the shared sandbox (Basic auth unless given), closed after the test."""
    created: list[X3Client] = []

    def factory(*, sandbox: X3Sandbox | None = None, auth: Any = None, **overrides: Any) -> X3Client:
        target = sandbox or x3_sandbox
        client = X3Client(sandbox_config(target, **overrides), auth or BasicAuth(*target.basic_credentials))
        created.append(client)
        return client

    yield factory
    for client in created:
        client.close()


@pytest.fixture
def x3(x3_factory: Callable[..., X3Client]) -> X3Client:
    return x3_factory()


@pytest.fixture(scope="module")
def _tight_sandbox() -> Iterator[X3Sandbox]:
    sandbox = X3Sandbox(X3SandboxConfig(pool_size=1, pool_wait_s=0.05, access_token_ttl_s=2,
                                        clock=ManualClock())).start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def tight_sandbox(_tight_sandbox: X3Sandbox) -> Iterator[X3Sandbox]:
    """A sandbox with a one-client SOAP pool that gives up after 50 ms, 2-second access tokens and a manual
    clock (`tight_sandbox.config.clock`), reset before each test."""
    _tight_sandbox.reset()
    yield _tight_sandbox
    _tight_sandbox.faults.clear()
