"""`X3Sandbox`: the sandbox server on a daemon thread, plus the handles tests and the demo drive it with."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from types import TracebackType

import uvicorn

from x3_shopify_dagster.sandboxes.x3.api1 import folder_namespace
from x3_shopify_dagster.sandboxes.x3.app import CallLog, SandboxRuntime, X3Call, X3SandboxApp
from x3_shopify_dagster.sandboxes.x3.auth import Authenticator
from x3_shopify_dagster.sandboxes.x3.config import X3SandboxConfig
from x3_shopify_dagster.sandboxes.x3.faults import FaultInjector
from x3_shopify_dagster.sandboxes.x3.pool import PoolStats, WebServicePool
from x3_shopify_dagster.sandboxes.x3.seed import seed_folder
from x3_shopify_dagster.sandboxes.x3.state import FolderState


class X3Sandbox:
    """A local Sage X3 (Syracuse) server for one or more folders.

    >>> sandbox = X3Sandbox(X3SandboxConfig(folder="SEED")).start()   # ephemeral loopback port
    >>> sandbox.base_url, sandbox.basic_credentials
    """

    def __init__(self, config: X3SandboxConfig | None = None) -> None:
        self.config = config or X3SandboxConfig()
        self.faults = FaultInjector()
        self._auth = Authenticator(
            user=self.config.user, password=self.config.password, client_id=self.config.client_id,
            client_secret=self.config.client_secret, clock=self.config.clock,
            access_ttl_s=self.config.access_token_ttl_s, refresh_ttl_s=self.config.refresh_token_ttl_s,
            code_ttl_s=self.config.authorization_code_ttl_s, jwt_iat_tolerance_s=self.config.jwt_iat_tolerance_s,
            jwt_max_validity_s=self.config.jwt_max_validity_s)
        self._runtime = SandboxRuntime(
            config=self.config, auth=self._auth, faults=self.faults, calls=CallLog(), states=self._seeded_states(),
            namespaces={folder: folder_namespace(folder, self.config.seed) for folder in self.config.folders},
            pools=self._new_pools())
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    def __repr__(self) -> str:
        return f"X3Sandbox(folders={self.config.folders}, base_url={self._base_url})"

    def _seeded_states(self) -> dict[str, FolderState]:
        states = {}
        for folder in self.config.folders:
            state = FolderState(folder, self.config.clock, allow_negative_stock=self.config.allow_negative_stock)
            seed_folder(state, self.config.seed)
            states[folder] = state
        return states

    def _new_pools(self) -> dict[str, WebServicePool]:
        # One classic SOAP pool per folder; its alias is the folder name.
        return {folder: WebServicePool(folder, self.config.pool_size, self.config.pool_wait_s)
                for folder in self.config.folders}

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self, host: str = "127.0.0.1", port: int = 0, *, ready_timeout_s: float = 10.0,
              ssl_certfile: str | None = None, ssl_keyfile: str | None = None) -> X3Sandbox:
        """Serve on a daemon thread; returns once the server accepts connections. With a certificate and key
        it serves https (an on-premise X3 with a private CA, for the TLS tests)."""
        if self._server is not None:
            raise RuntimeError("this sandbox is already started")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self._runtime.pools = self._new_pools()  # asyncio primitives must not outlive a server's loop
        server = uvicorn.Server(uvicorn.Config(
            X3SandboxApp(self._runtime), log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=1, timeout_keep_alive=30, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                                  name=f"x3-sandbox-{self.config.folder}")
        thread.start()
        deadline = time.monotonic() + ready_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError(f"X3 sandbox did not start on {host}:{port}")
            time.sleep(0.005)
        bound_port = sock.getsockname()[1]
        url_host = f"[{host}]" if family == socket.AF_INET6 else host
        self._server, self._thread = server, thread
        scheme = "https" if ssl_certfile else "http"
        self._base_url = f"{scheme}://{url_host}:{bound_port}"
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None
        self._base_url = None

    def __enter__(self) -> X3Sandbox:
        return self if self._server is not None else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to the seeded state: data, tokens, faults, calls log and pools. Call between tests, not during
        requests."""
        self.faults.clear()
        self._auth.reset()
        self._runtime.calls.clear()
        self._runtime.states = self._seeded_states()
        self._runtime.pools = self._new_pools()

    # ------------------------------------------------------------------------------------------ addresses
    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the sandbox is not started")
        return self._base_url

    @property
    def is_loopback(self) -> bool:
        host = self.base_url.split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
        return host == "localhost" or ipaddress.ip_address(host).is_loopback

    @property
    def folder(self) -> str:
        return self.config.folder

    @property
    def folders(self) -> tuple[str, ...]:
        return self.config.folders

    @property
    def pool_alias(self) -> str:
        """The SOAP poolAlias that reaches the main folder (each folder's alias is its name)."""
        return self.config.folder

    @property
    def api1_url(self) -> str:
        return f"{self.base_url}/api1/x3/erp/{self.folder}"

    @property
    def soap_url(self) -> str:
        return f"{self.base_url}/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC"

    @property
    def wsdl_url(self) -> str:
        return f"{self.base_url}/soap-wsdl/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC?wsdl"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/auth/oauth2/token"

    @property
    def authorise_url(self) -> str:
        return f"{self.base_url}/auth/oauth2/authorise"

    # ------------------------------------------------------------------------------------------ credentials
    @property
    def basic_credentials(self) -> tuple[str, str]:
        return self.config.user, self.config.password.get_secret_value()

    @property
    def oauth_client(self) -> tuple[str, str]:
        return self.config.client_id, self.config.client_secret.get_secret_value()

    def issue_authorization_code(self) -> str:
        """Stands in for an X3 user approving the pairing in a browser: a single-use code."""
        return self._auth.issue_authorization_code()

    def expire_access_tokens(self) -> int:
        return self._auth.expire_access_tokens()

    def revoke_refresh_tokens(self) -> int:
        """An X3 administrator deletes the pairing: every refresh token stops working."""
        return self._auth.revoke_refresh_tokens()

    # ------------------------------------------------------------------------------------------ state
    @property
    def state(self) -> FolderState:
        return self._runtime.states[self.config.folder]

    def state_for(self, folder: str) -> FolderState:
        return self._runtime.states[folder]

    @property
    def calls_log(self) -> list[X3Call]:
        """Snapshot of (transport, operation, status) for every request so far."""
        return self._runtime.calls.snapshot()

    def clear_calls_log(self) -> None:
        self._runtime.calls.clear()

    def count_calls(self, transport: str, operation_prefix: str = "", status: int | None = None) -> int:
        return sum(1 for call in self.calls_log if call.transport == transport
                   and call.operation.startswith(operation_prefix) and (status is None or call.status == status))

    def pool_stats(self, folder: str | None = None) -> PoolStats:
        return self._runtime.pools[folder or self.config.folder].stats()
