"""``ShopifySandbox``: the stores, the rate limits, the faults and a uvicorn server in a daemon thread."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from x3_shopify_dagster.sandboxes.shopify.api import GraphQLService, RequestRecord
from x3_shopify_dagster.sandboxes.shopify.app import SandboxHttp
from x3_shopify_dagster.sandboxes.shopify.bulk import BulkRunner
from x3_shopify_dagster.sandboxes.shopify.catalog import access_token_for
from x3_shopify_dagster.sandboxes.shopify.config import SandboxConfig
from x3_shopify_dagster.sandboxes.shopify.faults import FaultInjector
from x3_shopify_dagster.sandboxes.shopify.oauth import OAuthAuthority, app_credentials_for
from x3_shopify_dagster.sandboxes.shopify.state import SandboxState
from x3_shopify_dagster.sandboxes.shopify.throttle import LeakyBucket
from x3_shopify_dagster.sandboxes.shopify.traffic import TrafficGenerator

DEFAULT_API_VERSION = "2026-07"
STARTUP_TIMEOUT_S = 10.0


class ShopifySandbox:
    """A local server that behaves like the Shopify Admin GraphQL API for several stores.

    >>> sandbox = ShopifySandbox(SandboxConfig(stores=("eu",))).start()   # doctest: +SKIP
    >>> sandbox.shop_url("eu")                                             # doctest: +SKIP
    'http://127.0.0.1:54321/stores/eu'
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.state = SandboxState(self.config)
        self.faults = FaultInjector()
        self._tokens = {key: access_token_for(self.config.seed, key) for key in self.config.stores}
        self._buckets = {key: LeakyBucket(self.config.bucket_size, self.config.restore_rate)
                         for key in self.config.stores}
        self._files_dir = Path(tempfile.mkdtemp(prefix="shopify-sandbox-bulk-"))
        self._bulk = BulkRunner(self.state, self._files_dir, self._bulk_url, self.faults)
        self.oauth = self._new_oauth()
        self._service = GraphQLService(self.state, self._tokens, self._buckets, self._bulk, self.oauth)
        self._http = SandboxHttp(self._service, self.faults, self._files_dir, lambda: self.config.latency_s, {
            "summary": self.state.summary, "rate_limit": self.set_rate_limit,
            "traffic_start": self.start_traffic, "traffic_stop": self.stop_traffic,
            "oauth_revoke": self.revoke_tokens})
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
        self._traffic: TrafficGenerator | None = None

    # -- server ----------------------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> ShopifySandbox:
        """Serve on ``host:port`` (0: an ephemeral port) from a daemon thread; returns once accepting."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        bound_host, bound_port = sock.getsockname()[:2]
        config = uvicorn.Config(self._http.asgi(), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="shopify-sandbox",
                                  daemon=True)
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the Shopify sandbox server did not start")
            time.sleep(0.005)
        self._server, self._thread = server, thread
        display_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._base_url = f"http://{display_host}:{bound_port}"
        return self

    def stop(self) -> None:
        """Stop traffic, bulk runs and the server, and delete the bulk files. Safe to call twice."""
        self.stop_traffic()
        self._bulk.shutdown()
        if self._server is not None and self._thread is not None:
            self._http.request_shutdown()
            self._server.should_exit = True
            self._thread.join(5.0)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(5.0)
        self._server = self._thread = None
        shutil.rmtree(self._files_dir, ignore_errors=True)

    def reset(self) -> None:
        """Back to the freshly seeded state: new data, real clock, no faults, full buckets, empty log.

        Much cheaper than a new server; the test plugin uses it for ``fresh_shopify_sandbox``.
        """
        self.stop_traffic()
        self.faults.clear()
        self._bulk.shutdown()
        for leftover in self._files_dir.glob("*.jsonl"):
            leftover.unlink(missing_ok=True)
        self.state = SandboxState(self.config)
        self._bulk = BulkRunner(self.state, self._files_dir, self._bulk_url, self.faults)
        self._service.state = self.state
        self._service.bulk_runner = self._bulk
        self.oauth = self._service.authority = self._new_oauth()
        self._http.admin["summary"] = self.state.summary
        self.reset_rate_limits()
        self.clear_requests_log()

    @property
    def bulk(self) -> BulkRunner:
        """The bulk runner (tests slow it down with ``pace_s``/``chunk_size`` to watch an operation run)."""
        return self._bulk

    def __enter__(self) -> ShopifySandbox:
        return self if self._server is not None else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- addresses and credentials ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the sandbox is not started; call start() first")
        return self._base_url

    def shop_url(self, store: str) -> str:
        """Stands in for ``https://{shop}.myshopify.com``; clients append ``/admin/api/{version}/graphql.json``."""
        self.state.store(store)
        return f"{self.base_url}/stores/{store}"

    def graphql_url(self, store: str, version: str = DEFAULT_API_VERSION) -> str:
        return f"{self.shop_url(store)}/admin/api/{version}/graphql.json"

    def access_token(self, store: str) -> str:
        """The only token the store accepts (sandbox credential, stable for a given seed)."""
        self.state.store(store)
        return self._tokens[store]

    @property
    def app_client_id(self) -> str:
        """Client id of the sandbox's app (for OAuth and client-credentials stores)."""
        return self.oauth.client_id

    @property
    def app_client_secret(self) -> str:
        return self.oauth.client_secret

    def revoke_tokens(self, store: str) -> int:
        """Revoke every OAuth/client-credentials token of ``store`` (as uninstalling the app does)."""
        self.state.store(store)
        return self.oauth.revoke(store)

    def _new_oauth(self) -> OAuthAuthority:
        client_id, client_secret = app_credentials_for(self.config.seed)
        domains = {key: f"{self.state.store(key).demo.shop}.myshopify.com" for key in self.config.stores}
        # Late-bound: reset() replaces the state, and tests move the store clock.
        return OAuthAuthority(client_id, client_secret, lambda: self.state.now(), domains)

    def _bulk_url(self, file_name: str) -> str:
        return f"{self.base_url}/_sandbox/bulk/{file_name}"

    # -- rate limits, log, traffic -------------------------------------------------------------------------------
    def set_rate_limit(self, store: str, *, bucket_size: float | None = None,
                       restore_rate: float | None = None) -> None:
        self.state.store(store)
        self._buckets[store].reconfigure(bucket_size, restore_rate)

    def reset_rate_limits(self) -> None:
        """Back to the configured plan, with full buckets (the test plugin calls this between tests)."""
        for bucket in self._buckets.values():
            bucket.reconfigure(self.config.bucket_size, self.config.restore_rate)
            bucket.refill_completely()

    @property
    def requests_log(self) -> list[RequestRecord]:
        """(store, operation_name, requested_cost, actual_cost, status) per GraphQL request, oldest first."""
        return self._service.requests_log()

    def clear_requests_log(self) -> None:
        self._service.clear_log()

    def start_traffic(self, interval_s: float = 2.0) -> TrafficGenerator:
        self.stop_traffic()
        self._traffic = TrafficGenerator(self.state, self.config.seed, interval_s)
        self._traffic.start()
        return self._traffic

    def stop_traffic(self) -> None:
        if self._traffic is not None:
            self._traffic.stop()
            self._traffic = None
