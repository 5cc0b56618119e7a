"""The one retry-and-breaker policy every remote call goes through.

:class:`Resilience` holds the configured :class:`~advanced_rag.config.RetrySettings` and one
:class:`~advanced_rag.remote.breaker.CircuitBreaker` per provider endpoint. Adapters hand it
a coroutine factory for a single attempt that raises
:class:`~advanced_rag.errors.ProviderError` on failure; :meth:`Resilience.call` then

* bounds each attempt by the adapter's timeout (``asyncio.timeout``, on top of the SDK's own);
* retries timeouts, connection errors, 429 and 5xx (``ProviderError.retriable``), never other
  4xx, malformed responses or an open breaker;
* waits "full jitter" exponential back-off between attempts, or the server's ``Retry-After``
  (capped by ``max_retry_after_s``: a longer one ends the call at once, so a request never
  sleeps for minutes), and stops when the next wait would pass ``deadline_s``;
* reports a :class:`~advanced_rag.remote.calls.ProviderCall` with every attempt and the
  provider's usage to the request's call log (the audit event).

Retrying is done by ``tenacity`` (``AsyncRetrying``); the SDKs' own retry loops are switched
off (``max_retries=0`` on the OpenAI and Cohere clients) so that exactly one policy applies
and every attempt is visible.

:meth:`Resilience.retry_transient` applies the same back-off to non-HTTP work (Milvus writes
during ingest): it retries a :class:`~advanced_rag.errors.BackendError` whose ``retriable``
is true, without a breaker — but not a ``ProviderError``, whose retries :meth:`call` spent.

Example::

    resilience = Resilience(config.resilience)
    target = Target("cohere", "https://api.cohere.com", "rerank-v3.5", timeout_s=10)
    response = await resilience.call(target, "rerank", attempt, usage=cohere_usage)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState

from ..config import ResilienceSettings, RetrySettings
from ..errors import BackendError, CircuitOpenError, ProviderError
from .breaker import BreakerState, CircuitBreaker
from .calls import Attempt, ProviderCall, report_call

__all__ = ["Resilience", "Target", "backoff_bound", "usage_numbers"]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a call goes: the breaker key is ``provider`` + ``endpoint``."""

    provider: str
    endpoint: str
    model: str
    timeout_s: float

    @property
    def key(self) -> str:
        return f"{self.provider} {self.endpoint}"


def backoff_bound(settings: RetrySettings, retry_number: int) -> float:
    """The upper bound of the back-off before retry ``retry_number`` (1 = the first retry):
    ``min(max_backoff_s, initial_backoff_s * 2**(retry_number - 1))``. The wait is uniform in
    [0, bound] ("full jitter", which spreads the retries of many clients best)."""
    return min(settings.max_backoff_s, settings.initial_backoff_s * 2.0 ** (retry_number - 1))


class _Stop(Exception):
    """Internal: the policy decided not to retry (the original error is re-raised)."""


class Resilience:
    """Retries, back-off and per-provider circuit breakers from ``resilience:`` settings.

    ``sleep``, ``clock`` and ``rng`` are injectable for tests (no real waiting needed).
    """

    def __init__(self, settings: ResilienceSettings | None = None, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.settings = settings or ResilienceSettings()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, key: str) -> CircuitBreaker:
        if key not in self._breakers:
            b = self.settings.breaker
            self._breakers[key] = CircuitBreaker(key, failure_threshold=b.failure_threshold,
                                                 reset_after_s=b.reset_after_s, clock=self._clock)
        return self._breakers[key]

    def breakers(self) -> list[BreakerState]:
        """The state of every provider's breaker (for health reports)."""
        return [b.snapshot() for b in self._breakers.values()]

    def _wait_s(self, error: BaseException | None, retry_number: int) -> float:
        settings = self.settings.retry
        if isinstance(error, ProviderError) and error.retry_after_s is not None:
            return error.retry_after_s
        return self._rng.uniform(0.0, backoff_bound(settings, retry_number))

    def _should_retry(self, error: BaseException, retry_number: int, *,
                      provider_errors: bool) -> bool:
        """Whether to try again after ``error`` (retry ``retry_number`` would be next)."""
        settings = self.settings.retry
        if not isinstance(error, BackendError) or not error.retriable:
            return False
        if isinstance(error, ProviderError) and not provider_errors:
            return False  # already retried by call(): retrying again would multiply attempts
        if isinstance(error, CircuitOpenError) or retry_number >= settings.attempts:
            return False
        if isinstance(error, ProviderError) and error.retry_after_s is not None \
                and error.retry_after_s > settings.max_retry_after_s:
            return False
        return True

    def _retrying(self, started: float, on_sleep: Callable[[float], None], *,
                  provider_errors: bool = True) -> AsyncRetrying:
        settings = self.settings.retry
        planned: dict[int, float] = {}

        def wait(state: RetryCallState) -> float:
            number = state.attempt_number
            if number not in planned:
                error = state.outcome.exception() if state.outcome else None
                planned[number] = self._wait_s(error, number)
            return planned[number]

        def should_retry(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if error is None:
                return False
            if not self._should_retry(error, state.attempt_number,
                                      provider_errors=provider_errors):
                return False
            return self._clock() - started + wait(state) <= settings.deadline_s

        async def sleep(seconds: float) -> None:
            on_sleep(seconds)
            await self._sleep(seconds)

        return AsyncRetrying(retry=should_retry, wait=wait, sleep=sleep, reraise=True)

    async def call(self, target: Target, operation: str, attempt: Callable[[], Awaitable[T]], *,
                   usage: Callable[[T], Mapping[str, float]] | None = None) -> T:
        """Run ``attempt`` under the policy; return its result or raise the last
        :class:`ProviderError`. The call is reported to the request's call log either way."""
        breaker = self.breaker(target.key)
        attempts: list[Attempt] = []
        started = self._clock()

        def slept(seconds: float) -> None:
            if attempts:
                attempts[-1] = replace(attempts[-1], wait_s=seconds)

        async def one() -> T:
            number = len(attempts) + 1
            began = self._clock()
            try:
                breaker.before_call()
                try:
                    async with asyncio.timeout(target.timeout_s):
                        result = await attempt()
                except TimeoutError as exc:
                    raise ProviderError(
                        f"{target.provider} {operation} timed out after {target.timeout_s:g} s "
                        f"(model {target.model!r} at {target.endpoint})",
                        provider=target.provider, kind="timeout") from exc
            except ProviderError as exc:
                if not isinstance(exc, CircuitOpenError):
                    breaker.record_failure(exc)
                attempts.append(Attempt(number, exc.kind, (self._clock() - began) * 1000.0,
                                        status=exc.status, retry_after_s=exc.retry_after_s,
                                        error=type(exc).__name__))
                raise
            breaker.record_success()
            attempts.append(Attempt(number, "ok", (self._clock() - began) * 1000.0))
            return result

        try:
            result: T = await self._retrying(started, slept)(one)
        except ProviderError as exc:
            report_call(ProviderCall(target.provider, target.endpoint, operation, target.model,
                                     exc.kind, tuple(attempts)))
            if len(attempts) > 1:
                log.warning("%s %s failed after %d attempts: %s", target.provider, operation,
                            len(attempts), exc.kind)
            raise
        reported: Mapping[str, float] = {}
        if usage is not None:
            try:
                reported = usage(result)
            except Exception:  # usage is informative; a strange shape must not fail the call
                log.debug("could not read usage from %s %s", target.provider, operation,
                          exc_info=True)
        report_call(ProviderCall(target.provider, target.endpoint, operation, target.model,
                                 "ok", tuple(attempts), reported))
        return result

    async def retry_transient(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action``, retrying a retriable :class:`BackendError` with the same back-off
        (no breaker, no call log): for Milvus writes and deletes during ingest. A
        :class:`ProviderError` is not retried here: it comes from :meth:`call`, which has
        already spent the attempts (so a hosted embedder is not tried attempts² times)."""
        started = self._clock()
        tries = 0

        def slept(seconds: float) -> None:
            log.warning("%s failed with a transient error (try %d); retrying in %.2f s",
                        what, tries, seconds)

        async def one() -> T:
            nonlocal tries
            tries += 1
            return await action()

        result: T = await self._retrying(started, slept, provider_errors=False)(one)
        return result


def usage_numbers(raw: Mapping[str, Any] | None) -> dict[str, float]:
    """The numeric fields of a provider's usage object (tokens, units, cost if reported)."""
    if not raw:
        return {}
    return {k: float(v) for k, v in raw.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}
