"""The sandbox's ASGI application: routes, authentication, faults, the SOAP pool and the calls log.

Every route authenticates first (Basic or Bearer; the token endpoint authenticates the OAuth client), then
applies armed faults, then does the work.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from x3_shopify_dagster.sandboxes.x3.api1 import (
    Api1Answer,
    Api1Reader,
    QueryParams,
    diagnosis,
    encode_json,
    json_value,
)
from x3_shopify_dagster.sandboxes.x3.auth import BASIC_CHALLENGE, Authenticator, OAuthError
from x3_shopify_dagster.sandboxes.x3.config import X3SandboxConfig
from x3_shopify_dagster.sandboxes.x3.faults import FaultInjector
from x3_shopify_dagster.sandboxes.x3.pool import PoolTimeout, WebServicePool
from x3_shopify_dagster.sandboxes.x3.publications import handle_call
from x3_shopify_dagster.sandboxes.x3.soap import (
    MESSAGE_ERROR,
    SoapRequestError,
    SoapResult,
    TechnicalInfos,
    parse_call,
    render_fault,
    render_result,
)
from x3_shopify_dagster.sandboxes.x3.state import FolderState
from x3_shopify_dagster.sandboxes.x3.wsdl import render_wsdl

SOAP_PATH = "/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC"
WSDL_PATH = "/soap-wsdl/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC"
OAUTH_GRANT_PATH = "/auth/oauth2/token"
OAUTH_AUTHORISE_PATH = "/auth/oauth2/authorise"
_AUTH_MESSAGES = {
    "missing": "Authentication required", "bad_basic": "Invalid user or password",
    "bad_bearer": "Invalid access token", "expired_bearer": "Access token expired",
    "bad_jwt": "Invalid token (expected an HS256 JWT)",
    "jwt_unknown_client": "Unknown connected application (iss) or user not allowed (sub)",
    "jwt_bad_signature": "Invalid token signature",
    "jwt_expired": "Token expired (exp)",
    "jwt_iat_future": "Error 21: token issued in the future (iat); check the clocks",
    "jwt_too_long": "Token validity (exp - iat) exceeds the connected application's tokens validity",
}
NO_WEB_SERVICES = "No Web services accepted"
LOCKED_MESSAGE = "Record locked by another user"
_RESOURCE = re.compile(r"^(?P<cls>[A-Za-z0-9_]+)(?:\('(?P<key>(?:[^']|'')*)'\))?$")
_JSON = "application/json; charset=utf-8"
_XML = "text/xml; charset=utf-8"


class X3Call(NamedTuple):
    """One request as seen by the sandbox. `status` is the SOAP result status (1 ok / 0 error) for SOAP calls
    that reached a publication, otherwise the HTTP status (always >= 200, so the two never collide)."""

    transport: str  # api1 | soap | oauth | wsdl | http
    operation: str  # "$query/BPCUSTOMER", "save/YSIH", "token/refresh_token", ...
    status: int


class CallLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[X3Call] = []

    def record(self, transport: str, operation: str, status: int) -> None:
        with self._lock:
            self._calls.append(X3Call(transport, operation, status))

    def snapshot(self) -> list[X3Call]:
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


@dataclass
class SandboxRuntime:
    """Everything the app serves from; `states` and `pools` are replaced wholesale by a reset."""

    config: X3SandboxConfig
    auth: Authenticator
    faults: FaultInjector
    calls: CallLog
    states: dict[str, FolderState]
    namespaces: dict[str, UUID]
    pools: dict[str, WebServicePool] = field(default_factory=dict)


def _json(answer: Api1Answer) -> Response:
    return Response(encode_json(answer.body), status_code=answer.status, media_type=_JSON, headers=answer.headers)


class X3SandboxApp:
    def __init__(self, runtime: SandboxRuntime) -> None:
        self.runtime = runtime
        self.starlette = Starlette(routes=[
            Route("/api1/x3/erp/{folder}/{resource}", self.api1, methods=["GET", "POST", "PUT", "DELETE"]),
            Route(SOAP_PATH, self.soap, methods=["POST"]),
            Route(WSDL_PATH, self.wsdl, methods=["GET"]),
            Route(OAUTH_GRANT_PATH, self.token, methods=["POST"]),
            Route(OAUTH_AUTHORISE_PATH, self.authorise, methods=["GET"]),
            Route("/_sandbox/{folder}/customers", self.admin_add_customer, methods=["POST"]),
            Route("/_sandbox/{folder}/accounts", self.admin_account_active, methods=["POST"]),
            Route("/_sandbox/{folder}/stock-receipts", self.admin_stock_receipt, methods=["POST"]),
            Route("/_sandbox/{folder}/stock-adjustments", self.admin_stock_adjustment, methods=["POST"]),
            Route("/{path:path}", self.not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.starlette(scope, receive, send)

    # ------------------------------------------------------------------------------------------ shared steps
    @property
    def faults(self) -> FaultInjector:
        return self.runtime.faults

    def _log(self, transport: str, operation: str, status: int) -> None:
        self.runtime.calls.record(transport, operation, status)

    def _authenticate(self, request: Request, target: str) -> Response | None:
        """None when authenticated, else the 401 to send."""
        authorization = request.headers.get("authorization")
        bearer = bool(authorization) and authorization.lower().startswith("bearer ")  # type: ignore[union-attr]
        if bearer and self.faults.take({"expire_access_tokens"}, target):
            self.runtime.auth.expire_access_tokens()
        outcome = self.runtime.auth.check(authorization)
        if outcome == "ok":
            return None
        response = _json(diagnosis(401, _AUTH_MESSAGES[outcome]))
        response.headers["WWW-Authenticate"] = BASIC_CHALLENGE
        if bearer:
            description = "The access token expired" if outcome == "expired_bearer" else "Unknown access token"
            challenge = f'Bearer realm="Syracuse", error="invalid_token", error_description="{description}"'
            response.headers.append("WWW-Authenticate", challenge)
        return response

    async def _delay(self, target: str, *, configured: bool = True) -> None:
        """The configured per-call latency (api1 and SOAP only) plus an armed `latency` fault."""
        fault = self.faults.take({"latency"}, target)
        extra = (fault.latency_s or 0.0) if fault is not None else 0.0
        total = (self.runtime.config.latency_s if configured else 0.0) + extra
        if total > 0:
            await asyncio.sleep(total)

    @staticmethod
    async def _drop(request: Request) -> None:
        """Close the TCP connection without answering (the server's transport sits behind `receive`)."""
        transport = getattr(getattr(request.receive, "__self__", None), "transport", None)
        if transport is None:
            raise RuntimeError("drop_connection needs uvicorn's transport, which is not reachable here")
        transport.abort()
        await asyncio.sleep(0)  # let the server notice the lost connection before the handler returns

    @staticmethod
    def _target(request: Request) -> str:
        query = request.url.query
        return request.url.path + (f"?{query}" if query else "")

    @staticmethod
    def _base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    # ------------------------------------------------------------------------------------------ api1
    async def api1(self, request: Request) -> Response:
        folder, resource = request.path_params["folder"], request.path_params["resource"]
        match = _RESOURCE.match(resource)
        key = match.group("key") if match else None
        facet = "$details" if key is not None else "$query"
        operation = f"{facet}/{match.group('cls') if match else resource}"
        target = self._target(request)
        if (denied := self._authenticate(request, target)) is not None:
            self._log("api1", operation, 401)
            return denied
        if request.method != "GET":
            return self._api1_answer(operation, diagnosis(
                405, "Writes through api1 need V7-style classes; classic objects are written through SOAP"))
        state = self.runtime.states.get(folder)
        if state is None:
            return self._api1_answer(operation, diagnosis(404, f"Endpoint '{folder}' does not exist"))
        if match is None:
            return self._api1_answer(operation, diagnosis(404, f"Resource '{resource}' is not a class"))
        await self._delay(target)
        if self.faults.take({"http_500"}, target):
            self._log("api1", operation, 500)
            return PlainTextResponse("Internal Server Error", status_code=500)
        if self.faults.take({"locked_record"}, target):
            answer = diagnosis(200, f"{LOCKED_MESSAGE} ({match.group('cls')})", severity="transient")
            return self._api1_answer(operation, answer)
        drop = self.faults.take({"drop_connection"}, target)

        reader = Api1Reader(state, self.runtime.namespaces[folder])
        resolved = reader.resolve(match.group("cls"), request.query_params.get("representation"), facet)
        if isinstance(resolved, Api1Answer):
            answer = resolved
        elif key is not None:
            answer = reader.details(resolved, key.replace("''", "'"), self._base_url(request))
        else:
            params = request.query_params
            answer = reader.query(resolved, QueryParams(params.get("count"), params.get("where"),
                                                        params.get("orderBy"), params.get("key")),
                                  self._base_url(request))
        response = self._api1_answer(operation, answer)
        if drop:
            await self._drop(request)
        return response

    def _api1_answer(self, operation: str, answer: Api1Answer) -> Response:
        self._log("api1", operation, answer.status)
        return _json(answer)

    # ------------------------------------------------------------------------------------------ SOAP
    async def soap(self, request: Request) -> Response:
        target = request.url.path
        if (denied := self._authenticate(request, target)) is not None:
            self._log("soap", "unauthenticated", 401)
            return denied
        try:
            call = parse_call(await request.body())
        except SoapRequestError as error:
            self._log("soap", "invalid", 500)
            return Response(render_fault(str(error), code="soapenv:Client"), status_code=500, media_type=_XML)
        label = f"{call.operation}/{call.public_name}"
        target = f"{request.url.path} {label}"
        if self.faults.take({"http_500"}, target):
            self._log("soap", label, 500)
            return PlainTextResponse("Internal Server Error", status_code=500)
        folder = call.context.pool_alias
        state, pool = self.runtime.states.get(folder), self.runtime.pools.get(folder)
        if state is None or pool is None:
            return self._soap_fault(label, f"Pool '{folder}' does not exist (poolAlias is case-sensitive)")
        if self.faults.take({"no_web_services"}, target):
            return self._soap_fault(label, NO_WEB_SERVICES)
        if self.faults.take({"pool_timeout"}, target):
            return self._soap_fault(label, f"Pool timeout: no client available in pool '{folder}' "
                                           f"within {pool.wait_s:g} s ({pool.size} busy)")
        drop = self.faults.take({"drop_connection"}, target)
        started = time.perf_counter()
        try:
            async with pool.slot() as slot:
                exec_started = time.perf_counter()
                await self._delay(target)
                fault = self.faults.take({"soap_fault", "locked_record"}, target)
                if fault is not None and fault.kind == "soap_fault":
                    return self._soap_fault(label, f"Injected SOAP fault on {label}", status=fault.http_status or 500)
                if fault is not None:
                    result = SoapResult(0, [(MESSAGE_ERROR, f"{LOCKED_MESSAGE}: {label}")])
                else:
                    result = handle_call(call, state)  # synchronous and fast: holds the folder lock briefly
                exec_ms = (time.perf_counter() - exec_started) * 1000
        except PoolTimeout as error:
            return self._soap_fault(label, str(error))
        technical = TechnicalInfos(busy=slot.busy, pool_entry_index=slot.entry_index,
                                   pool_wait_ms=slot.waited_s * 1000, pool_exec_ms=exec_ms,
                                   total_ms=(time.perf_counter() - started) * 1000)
        self._log("soap", label, result.status)
        response = Response(render_result(call.operation, result, technical), media_type=_XML)
        if drop:
            await self._drop(request)
        return response

    def _soap_fault(self, label: str, message: str, *, status: int = 500) -> Response:
        self._log("soap", label, status)
        return Response(render_fault(message), status_code=status, media_type=_XML)

    # ------------------------------------------------------------------------------------------ others
    async def wsdl(self, request: Request) -> Response:
        target = self._target(request)
        if (denied := self._authenticate(request, target)) is not None:
            self._log("wsdl", "CAdxWebServiceXmlCC", 401)
            return denied
        if self.faults.take({"http_500"}, target):
            self._log("wsdl", "CAdxWebServiceXmlCC", 500)
            return PlainTextResponse("Internal Server Error", status_code=500)
        self._log("wsdl", "CAdxWebServiceXmlCC", 200)
        return Response(render_wsdl(self._base_url(request) + SOAP_PATH), media_type=_XML)

    async def token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        grant_type = form.get("grant_type", "")
        operation = f"token/{grant_type or '(none)'}"
        target = self._target(request)
        auth = self.runtime.auth
        if not auth.client_ok(form.get("client_id", ""), form.get("client_secret", "")):
            self._log("oauth", operation, 401)
            response = self._oauth_error(OAuthError(401, "invalid_client", "unknown client or wrong secret"))
            response.headers["WWW-Authenticate"] = BASIC_CHALLENGE
            return response
        await self._delay(target, configured=False)
        if self.faults.take({"http_500"}, target):
            self._log("oauth", operation, 500)
            return PlainTextResponse("Internal Server Error", status_code=500)
        drop = self.faults.take({"drop_connection"}, target)
        try:
            if grant_type == "authorization_code":
                pair = auth.exchange_code(form.get("code", ""), form.get("redirect_uri"))
            elif grant_type == "refresh_token":
                pair = auth.refresh(form.get("refresh_token", ""))
            else:
                raise OAuthError(400, "unsupported_grant_type", f"grant_type '{grant_type}' is not supported")
        except OAuthError as error:
            self._log("oauth", operation, error.status)
            return self._oauth_error(error)
        self._log("oauth", operation, 200)
        response = Response(encode_json(pair.as_json()), media_type=_JSON,
                            headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
        if drop:
            await self._drop(request)
        return response

    async def authorise(self, request: Request) -> Response:
        """The pairing page: an X3 user would log in and approve; the sandbox approves at once and redirects to
        `redirect_uri` with `authorizationCode` and the caller's `state` (X3 Cloud's parameter names)."""
        params = request.query_params
        redirect_uri = params.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        if not self.runtime.auth.client_id_ok(params.get("client_id", "")):
            self._log("oauth", "authorise", 400)
            return PlainTextResponse("Unknown client_id: no connected application has this client id", 400)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.fragment:
            self._log("oauth", "authorise", 400)
            return PlainTextResponse("redirect_uri must be an absolute http(s) URL without a fragment", 400)
        code = self.runtime.auth.issue_authorization_code(redirect_uri)
        answer = {"authorizationCode": code}
        if "state" in params:
            answer["state"] = params["state"]
        query = "&".join(part for part in (parts.query, urlencode(answer)) if part)
        self._log("oauth", "authorise", 302)
        return RedirectResponse(urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")), status_code=302,
                                headers={"Cache-Control": "no-store"})

    @staticmethod
    def _oauth_error(error: OAuthError) -> Response:
        return Response(encode_json({"error": error.error, "error_description": error.description}),
                        status_code=error.status, media_type=_JSON, headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------------------ demo administration
    # What an X3 user would do in the X3 screens, so a demo can show "fix in X3, then replay". Same
    # authentication as every other route.
    async def admin_add_customer(self, request: Request) -> Response:
        if (denied := self._authenticate(request, self._target(request))) is not None:
            return denied
        state = self.runtime.states.get(request.path_params["folder"])
        if state is None:
            return _json(diagnosis(404, f"No such folder: {request.path_params['folder']}"))
        body = await request.json()
        try:
            customer = state.add_customer(str(body["code"]), str(body["name"]), str(body["email"]),
                                          bool(body.get("active", True)))
        except (KeyError, ValueError) as exc:
            return _json(diagnosis(400, f"Cannot create the customer: {exc}"))
        return Response(encode_json({"code": customer.code}), status_code=201, media_type=_JSON)

    async def admin_account_active(self, request: Request) -> Response:
        if (denied := self._authenticate(request, self._target(request))) is not None:
            return denied
        state = self.runtime.states.get(request.path_params["folder"])
        if state is None:
            return _json(diagnosis(404, f"No such folder: {request.path_params['folder']}"))
        body = await request.json()
        try:
            account = state.set_account_active(str(body["chart"]), str(body["account"]), bool(body["active"]))
        except KeyError as exc:
            return _json(diagnosis(400, f"No such account: {exc}"))
        return Response(encode_json({"account": account.account, "active": account.active}), media_type=_JSON)

    async def admin_stock_receipt(self, request: Request) -> Response:
        """A miscellaneous receipt: {"item", "site", "quantity"} → one STOJOU row, ITMMVT.PHYSTO up."""
        return await self._stock_movement(request, receipt=True)

    async def admin_stock_adjustment(self, request: Request) -> Response:
        """A signed adjustment (issue or count correction): {"item", "site", "quantity"}."""
        return await self._stock_movement(request, receipt=False)

    async def _stock_movement(self, request: Request, *, receipt: bool) -> Response:
        if (denied := self._authenticate(request, self._target(request))) is not None:
            return denied
        state = self.runtime.states.get(request.path_params["folder"])
        if state is None:
            return _json(diagnosis(404, f"No such folder: {request.path_params['folder']}"))
        body = await request.json()
        try:
            item, site, quantity = str(body["item"]), str(body["site"]), str(body["quantity"])
            movement = (state.stock_receipt(item, site, quantity) if receipt
                        else state.stock_adjustment(item, site, quantity))
        except (KeyError, ValueError, ArithmeticError) as exc:
            return _json(diagnosis(400, f"Cannot record the stock movement: {exc}"))
        stock = state.stock(movement.item, movement.site)
        return Response(encode_json({
            "voucher": movement.voucher_number, "sequence": movement.sequence, "item": movement.item,
            "site": movement.site, "quantity": movement.quantity, "transaction_type": movement.transaction_type,
            "updated_at": json_value(movement.updated_at), "physical": stock.physical,
        }), status_code=201, media_type=_JSON)

    async def not_found(self, request: Request) -> Response:
        if (denied := self._authenticate(request, self._target(request))) is not None:
            self._log("http", request.url.path, 401)
            return denied
        self._log("http", request.url.path, 404)
        return _json(diagnosis(404, f"No such resource: {request.url.path}"))
