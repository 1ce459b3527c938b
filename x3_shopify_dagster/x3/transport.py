"""One HTTP exchange with X3, with authentication, bounded retries and (for SOAP) the pool semaphore.

Retry rules (the same for api1 and SOAP):
- an error X3 raised *before executing* the call (pool exhausted, "No Web services accepted", 503, record
  locked, transient diagnosis, connection refused) is retried for every call, writes included;
- an ambiguous failure (read timeout, dropped connection, 500 without explanation, 502/504) is retried only
  for idempotent calls; for a write it becomes `X3OutcomeUnknownError`, because resending could create a
  second document — the caller looks the document up by its reference instead;
- business errors are never retried;
- a 401 triggers one `auth.on_unauthorized` and at most one extra attempt, outside the retry budget.
Backoff is exponential with full jitter, bounded by `RetryPolicy`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from x3_shopify_dagster.x3.auth import X3Auth
from x3_shopify_dagster.x3.config import RetryPolicy, X3Config
from x3_shopify_dagster.x3.errors import (
    X3AuthenticationError,
    X3Error,
    X3HttpError,
    X3OutcomeUnknownError,
    X3RecordLockedError,
    X3ServiceBusyError,
    X3SoapFault,
    X3TransientDiagnosisError,
    X3TransportError,
)
from x3_shopify_dagster.x3.metrics import X3ClientMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors meaning X3 did not execute the call: resending is safe even for a write.
_REFUSED_BEFORE_EXECUTION = (X3ServiceBusyError, X3RecordLockedError, X3TransientDiagnosisError, X3SoapFault)
# Exceptions raised before the request reached X3.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Call:
    transport: str  # "api1" | "soap"
    operation: str  # query, details, save, actionObject...
    idempotent: bool


def backoff_delay(attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform in [0, min(max_delay, base * 2**(attempt-1))]."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * (2 ** (attempt - 1)))
    return ceiling * rand()


def _retry_after_s(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # HTTP-date form: ignore, our own backoff applies


class X3Transport:
    def __init__(
        self,
        config: X3Config,
        auth: X3Auth,
        *,
        metrics: X3ClientMetrics,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.auth = auth
        self.metrics = metrics
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self.soap_pool = threading.BoundedSemaphore(config.pool_size)
        self.http = httpx.Client(
            transport=transport,
            verify=config.tls_verify(),
            timeout=httpx.Timeout(config.timeouts.read_s, connect=config.timeouts.connect_s),
            # Never follow redirects: the Authorization header must not travel to another host.
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=config.pool_size + 8, max_keepalive_connections=config.pool_size + 4
            ),
            headers={"User-Agent": "x3-shopify-dagster"},
        )

    def close(self) -> None:
        self.http.close()

    def send(
        self,
        call: Call,
        build: Callable[[], httpx.Request],
        interpret: Callable[[httpx.Response], T],
        *,
        pooled: bool = False,
    ) -> T:
        policy = self.config.retry
        attempt = 0
        unauthorized_retry_used = False
        while True:
            attempt += 1
            request = build()
            response: httpx.Response | None = None
            try:
                self.auth.apply(request)
                response = self._exchange(call, request, pooled=pooled)
            except X3TransportError as exc:  # token endpoint unreachable: the X3 call was not sent
                failure: X3Error = exc
                resend_safe = True
            except _NOT_SENT as exc:
                failure = X3TransportError(f"cannot reach X3 ({type(exc).__name__})")
                resend_safe = True
            except httpx.TransportError as exc:  # read/write timeout, dropped connection, protocol error
                failure = X3TransportError(f"X3 connection failed during the call ({type(exc).__name__})")
                resend_safe = False
            else:
                if response.status_code == 401:
                    if not unauthorized_retry_used and self.auth.on_unauthorized(request):
                        unauthorized_retry_used = True
                        attempt -= 1  # the 401 retry does not consume the retry budget
                        self.metrics.record_unauthorized_retry()
                        continue
                    raise X3AuthenticationError(
                        f"X3 rejected the credentials for {call.transport} {call.operation} (HTTP 401)"
                    )
                try:
                    return interpret(response)
                except X3Error as exc:
                    if not exc.retryable:
                        raise
                    failure = exc
                    resend_safe = isinstance(exc, _REFUSED_BEFORE_EXECUTION)

            if not resend_safe and not call.idempotent:
                raise X3OutcomeUnknownError(call.operation, str(failure)) from failure
            if attempt >= policy.max_attempts:
                raise failure
            delay = backoff_delay(attempt, policy, self._rand)
            retry_after = _retry_after_s(response)
            if retry_after is not None:
                delay = max(delay, min(retry_after, policy.max_delay_s))
            reason = _reason(failure)
            self.metrics.record_retry(call.transport, reason)
            log.warning(
                "X3 %s %s failed (%s); attempt %d/%d, retrying in %.2fs",
                call.transport,
                call.operation,
                reason,
                attempt,
                policy.max_attempts,
                delay,
            )
            self._sleep(delay)

    def _exchange(self, call: Call, request: httpx.Request, *, pooled: bool) -> httpx.Response:
        self.metrics.record_call(call.transport, call.operation)
        if not pooled:
            return self.http.send(request)
        if not self.soap_pool.acquire(blocking=False):
            self.metrics.record_pool_wait_started()
            started = self._clock()
            self.soap_pool.acquire()
            self.metrics.record_pool_wait(self._clock() - started)
        try:
            return self.http.send(request)
        finally:
            self.soap_pool.release()


def _reason(error: X3Error) -> str:
    if isinstance(error, X3ServiceBusyError):
        return "busy"
    if isinstance(error, X3RecordLockedError):
        return "locked"
    if isinstance(error, X3TransientDiagnosisError):
        return "transient"
    if isinstance(error, X3SoapFault):
        return "soap_fault"
    if isinstance(error, X3HttpError):
        return f"http_{error.status_code}"
    if isinstance(error, X3TransportError):
        return "network"
    return type(error).__name__
