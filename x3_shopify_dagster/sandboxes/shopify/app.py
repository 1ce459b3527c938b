"""HTTP layer: the Admin GraphQL route (with injected faults), admin routes and bulk result files.

Routes:
    POST /stores/{store}/admin/api/{version}/graphql.json   the Admin API (like https://{shop}.myshopify.com)
    GET  /_sandbox/health                                     liveness
    GET  /_sandbox/state                                      summary of every store
    GET  /_sandbox/requests                                   the recent request log
    POST /_sandbox/faults                                     {"kind", "store", "times", "operation", ...}
    POST /_sandbox/faults/clear
    POST /_sandbox/rate-limit                                 {"store", "bucket_size", "restore_rate"}
    POST /_sandbox/traffic/start                              {"interval_s"}
    POST /_sandbox/traffic/stop
    GET  /_sandbox/bulk/{file}                                bulk JSONL (streamed from disk)
    GET  /stores/{store}/admin/oauth/authorize                OAuth install approval (see oauth.py)
    POST /stores/{store}/admin/oauth/access_token             OAuth token endpoint (see oauth.py)
    POST /_sandbox/oauth/revoke                               {"store"}: revoke the store's issued tokens
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from x3_shopify_dagster.sandboxes.shopify.api import ApiResponse, GraphQLService
from x3_shopify_dagster.sandboxes.shopify.faults import DEFAULT_RETRY_AFTER_S, Fault, FaultInjector

TRANSPORT_KEY = "x3_shopify_sandbox.transport"
_BULK_FILE = re.compile(r"^\d+(-partial)?\.jsonl$")
_BAD_GATEWAY_HTML = ("<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
                     "</body></html>")


class _CaptureTransport:
    """Outermost ASGI layer: remembers uvicorn's transport so a fault can drop the socket without a reply."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            cycle = getattr(send, "__self__", None)
            scope[TRANSPORT_KEY] = getattr(cycle, "transport", None)
        await self.app(scope, receive, send)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(body, default=_json_default), status_code=status_code,
                    media_type="application/json")


class SandboxHttp:
    def __init__(self, service: GraphQLService, faults: FaultInjector, files_dir: Path,
                 latency_s: Callable[[], float], admin: dict[str, Callable[..., Any]]) -> None:
        self.service = service
        self.faults = faults
        self.files_dir = files_dir
        self.latency_s = latency_s
        self.admin = admin
        self.loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _shutdown_event(self) -> asyncio.Event:
        if self._shutdown is None:
            self.loop = asyncio.get_running_loop()
            self._shutdown = asyncio.Event()
        return self._shutdown

    def request_shutdown(self) -> None:
        """Thread-safe: wake every request sleeping on a latency/timeout fault so the server can stop."""
        if self.loop is not None and self._shutdown is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._shutdown.set)

    async def _wait_disconnect(self, request: Request) -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    async def _sleep(self, request: Request, seconds: float) -> bool:
        """Sleep unless the client hangs up or the server stops; True when the full time elapsed."""
        if seconds <= 0:
            return True
        sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
        watchers = [asyncio.ensure_future(self._wait_disconnect(request)),
                    asyncio.ensure_future(self._shutdown_event().wait())]
        done, pending = await asyncio.wait([sleeper, *watchers], return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return sleeper in done

    async def _drop(self, request: Request) -> Response:
        transport = request.scope.get(TRANSPORT_KEY)
        if transport is None:
            raise RuntimeError("drop_connection needs uvicorn's transport; run the sandbox under uvicorn")
        transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wait_disconnect(request), timeout=2.0)
        return Response(status_code=500)  # never reaches the client: the socket is gone

    # -- the Admin API ---------------------------------------------------------------------------------------
    async def graphql(self, request: Request) -> Response:
        self._shutdown_event()
        store, version = request.path_params["store"], request.path_params["version"]
        body = await request.body()
        parsed = self.service.preflight(store, version, request.headers.get("x-shopify-access-token"), body)
        if isinstance(parsed, ApiResponse):
            return self._response(parsed)
        if not await self._sleep(request, self.latency_s()):
            return Response(status_code=499)
        fault = self.faults.take(store, parsed.operation_name)
        if fault is not None:
            early = await self._apply_fault(request, fault, parsed)
            if early is not None:
                return early
        return self._response(self.service.execute(parsed))

    async def _apply_fault(self, request: Request, fault: Fault, parsed: Any) -> Response | None:
        store, operation = parsed.store, parsed.operation_name
        record: Callable[[str], None] = lambda outcome: self.service.record(  # noqa: E731
            store, operation, None, None, outcome)
        kind = fault.kind
        if kind in ("latency", "timeout"):
            # Only delays: the request is then served (and logged) normally, unless the client gave up.
            if not await self._sleep(request, fault.sleep_s):
                record(f"fault:{kind}")
                return Response(status_code=499)
            return None
        if kind != "throttled":  # the throttled body is logged as "throttled" by the service
            record(f"fault:{kind}")
        if kind == "http_500":
            return _json({"errors": "Internal Server Error"}, 500)
        if kind == "http_502":
            return Response(_BAD_GATEWAY_HTML, status_code=502, media_type="text/html")
        if kind == "http_503":
            return _json({"errors": "Service Unavailable"}, 503)
        if kind == "http_429":
            retry_after = DEFAULT_RETRY_AFTER_S if fault.retry_after is None else fault.retry_after
            return Response(json.dumps({"errors": "Exceeded 2 calls per second for api client. Reduce request "
                                                  "rates to resume uninterrupted service."}),
                            status_code=429, media_type="application/json",
                            headers={"Retry-After": f"{float(retry_after)}"})
        if kind == "throttled":
            return self._response(self.service.throttled(parsed, self.service.requested_cost(parsed)))
        if kind == "drop_connection":
            return await self._drop(request)
        raise AssertionError(f"unhandled fault kind {kind}")

    @staticmethod
    def _response(api: ApiResponse) -> Response:
        return Response(api.encoded(), status_code=api.status_code, media_type=api.media_type, headers=api.headers)

    # -- admin ------------------------------------------------------------------------------------------------
    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError("expected a JSON object")
        return payload

    def _admin_route(self, action: Callable[[dict[str, Any]], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                result = action(await self._body(request))
            except (ValueError, KeyError, TypeError) as error:
                return _json({"error": str(error)}, 400)
            return _json(result if result is not None else {"ok": True})

        return endpoint

    async def state(self, _request: Request) -> Response:
        return _json(self.admin["summary"]())

    async def requests(self, _request: Request) -> Response:
        return _json([record._asdict() for record in self.service.requests_log()[-500:]])

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def bulk_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        path = self.files_dir / name
        if not _BULK_FILE.match(name) or not path.is_file():
            return _json({"errors": "Not Found"}, 404)
        return FileResponse(path, media_type="application/jsonl")

    # -- OAuth --------------------------------------------------------------------------------------------------
    async def oauth_authorize(self, request: Request) -> Response:
        store = request.path_params["store"]
        authority = self.service.authority
        if store not in self.service.tokens or authority is None:
            return _json({"errors": "Not Found"}, 404)
        result = authority.authorize(store, dict(request.query_params))
        if result.location is not None:
            return RedirectResponse(result.location, status_code=302)
        return _json(result.body, result.status_code)

    async def oauth_access_token(self, request: Request) -> Response:
        store = request.path_params["store"]
        authority = self.service.authority
        if store not in self.service.tokens or authority is None:
            return _json({"errors": "Not Found"}, 404)
        if request.headers.get("content-type", "").startswith("application/json"):
            payload = await self._body(request)
            form = {str(k): str(v) for k, v in payload.items()}
        else:
            # parsed here: starlette's request.form() needs python-multipart, which is not a dependency
            form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        result = authority.token(store, form)
        return _json(result.body, result.status_code)

    def asgi(self) -> ASGIApp:
        def inject(body: dict[str, Any]) -> dict[str, Any]:
            fault = self.faults.inject(
                body["kind"], store=body.get("store"), times=body.get("times", 1), operation=body.get("operation"),
                retry_after=body.get("retry_after"), latency_s=body.get("latency_s"))
            return {"injected": asdict(fault)}

        routes = [
            Route("/stores/{store}/admin/api/{version}/graphql.json", self.graphql, methods=["POST"]),
            Route("/_sandbox/health", self.health, methods=["GET"]),
            Route("/_sandbox/state", self.state, methods=["GET"]),
            Route("/_sandbox/requests", self.requests, methods=["GET"]),
            Route("/_sandbox/faults", self._admin_route(inject), methods=["POST"]),
            Route("/_sandbox/faults/clear", self._admin_route(lambda _b: self.faults.clear()), methods=["POST"]),
            Route("/_sandbox/rate-limit", self._admin_route(lambda b: self.admin["rate_limit"](
                b["store"], bucket_size=b.get("bucket_size"), restore_rate=b.get("restore_rate"))),
                methods=["POST"]),
            Route("/_sandbox/traffic/start", self._admin_route(lambda b: {"running": bool(self.admin["traffic_start"](
                float(b.get("interval_s", 2.0))))}), methods=["POST"]),
            Route("/_sandbox/traffic/stop", self._admin_route(lambda _b: self.admin["traffic_stop"]()),
                  methods=["POST"]),
            Route("/_sandbox/bulk/{name}", self.bulk_file, methods=["GET"]),
            Route("/stores/{store}/admin/oauth/authorize", self.oauth_authorize, methods=["GET"]),
            Route("/stores/{store}/admin/oauth/access_token", self.oauth_access_token, methods=["POST"]),
            Route("/_sandbox/oauth/revoke", self._admin_route(lambda b: {"revoked": self.admin["oauth_revoke"](
                str(b["store"]))}), methods=["POST"]),
        ]
        return _CaptureTransport(Starlette(routes=routes))
