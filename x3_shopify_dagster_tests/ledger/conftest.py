"""Fixtures for the ledger and exactly-once tests.

Database fixtures (`connector_db`, `database_url`, both engines) come from
x3_shopify_dagster_tests.fixtures.database, the X3 sandbox (`x3_sandbox`, shared per session) from
x3_shopify_dagster_tests.fixtures.x3_sandbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from x3_shopify_dagster.sandboxes.x3 import X3Sandbox
from x3_shopify_dagster.storage import ConnectorDatabase
from x3_shopify_dagster.storage.ledger import PostingLedger
from x3_shopify_dagster.x3 import X3Client
from x3_shopify_dagster_tests.ledger._support import Job, ManualClock, Worker, X3Endpoint


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(connector_db: ConnectorDatabase, clock: ManualClock) -> PostingLedger:
    return PostingLedger(connector_db, clock=clock)


@pytest.fixture
def x3_endpoint(x3_sandbox: X3Sandbox) -> X3Endpoint:
    user, password = x3_sandbox.basic_credentials
    return X3Endpoint(x3_sandbox.base_url, x3_sandbox.folder, x3_sandbox.pool_alias, user, password)


@pytest.fixture
def x3_client(x3_endpoint: X3Endpoint) -> Iterator[X3Client]:
    client = x3_endpoint.client()
    yield client
    client.close()


@pytest.fixture
def reference() -> str:
    """A BPRVCR no other test uses (the session's X3 sandbox is shared)."""
    return f"lt:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def start_worker(request: pytest.FixtureRequest) -> Iterator[Callable[[Job], Worker]]:
    workers: list[Worker] = []

    def start(job: Job) -> Worker:
        workers.append(Worker(job, request.config.rootpath))
        return workers[-1]

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.communicate()
