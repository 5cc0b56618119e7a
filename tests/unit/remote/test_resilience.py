"""The retry policy and circuit breaker as pure logic: scripted attempts, a fake clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from advanced_rag.config import BreakerSettings, ResilienceSettings, RetrySettings
from advanced_rag.errors import CircuitOpenError, ProviderError, VectorStoreError
from advanced_rag.remote import Resilience, Target, collecting
from advanced_rag.remote.breaker import CircuitBreaker
from advanced_rag.remote.resilience import backoff_bound

TARGET = Target("cohere", "http://127.0.0.1:1", "rerank-test", timeout_s=5.0)


class Clock:
    """Time that moves only when the code under test sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def policy(clock: Clock, **retry: float) -> Resilience:
    settings = ResilienceSettings(retry=RetrySettings(**retry),  # type: ignore[arg-type]
                                  breaker=BreakerSettings(failure_threshold=3, reset_after_s=30))
    return Resilience(settings, sleep=clock.sleep, clock=clock, rng=random.Random(7))


def scripted(*outcomes: Exception | str) -> tuple[list[int], object]:
    """An attempt factory that raises or returns the next scripted outcome."""
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return calls, attempt


def err(kind: str, status: int | None = None, retry_after: float | None = None) -> ProviderError:
    return ProviderError(f"{kind} failure", provider="cohere", kind=kind, status=status,
                         retry_after_s=retry_after)


async def test_retries_transient_errors_then_succeeds_with_bounded_backoff() -> None:
    clock = Clock()
    calls, attempt = scripted(err("server", 500), err("timeout"), "ranked")
    with collecting() as log:
        result = await policy(clock, attempts=4, initial_backoff_s=0.5,
                              max_backoff_s=8).call(TARGET, "rerank", attempt)  # type: ignore[arg-type]
    assert result == "ranked" and len(calls) == 3
    settings = RetrySettings(initial_backoff_s=0.5, max_backoff_s=8)
    assert len(clock.slept) == 2
    for number, waited in enumerate(clock.slept, start=1):
        assert 0.0 <= waited <= backoff_bound(settings, number)
    [call] = log.calls
    assert call.outcome == "ok" and [a.outcome for a in call.attempts] == ["server", "timeout", "ok"]
    assert call.attempts[0].status == 500
    assert [a.wait_s for a in call.attempts] == [clock.slept[0], clock.slept[1], None]


def test_backoff_bound_doubles_up_to_the_cap() -> None:
    settings = RetrySettings(initial_backoff_s=0.5, max_backoff_s=3)
    assert [backoff_bound(settings, n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_retry_after_is_honoured_and_a_too_long_one_ends_the_call() -> None:
    clock = Clock()
    calls, attempt = scripted(err("rate_limited", 429, retry_after=2.5), "ok")
    await policy(clock).call(TARGET, "rerank", attempt)  # type: ignore[arg-type]
    assert clock.slept == [2.5] and len(calls) == 2

    clock = Clock()
    calls, attempt = scripted(err("rate_limited", 429, retry_after=120.0), "ok")
    with pytest.raises(ProviderError) as info:
        await policy(clock, max_retry_after_s=30).call(TARGET, "rerank", attempt)  # type: ignore[arg-type]
    assert info.value.kind == "rate_limited" and len(calls) == 1 and clock.slept == []


@pytest.mark.parametrize("kind,status", [("client", 400), ("auth", 401), ("malformed", None)])
async def test_no_retry_on_client_errors_or_malformed_responses(kind: str, status: int | None) -> None:
    clock = Clock()
    calls, attempt = scripted(err(kind, status), "never")
    with collecting() as log, pytest.raises(ProviderError):
        await policy(clock).call(TARGET, "rerank", attempt)  # type: ignore[arg-type]
    assert len(calls) == 1 and clock.slept == []
    assert log.calls[0].outcome == kind


async def test_attempts_and_deadline_bound_the_call() -> None:
    clock = Clock()
    calls, attempt = scripted(*[err("server", 503)] * 5)
    with pytest.raises(ProviderError):
        await policy(clock, attempts=3).call(TARGET, "rerank", attempt)  # type: ignore[arg-type]
    assert len(calls) == 3

    clock = Clock()  # every Retry-After of 4 s, but only 10 s in all: 1 + 2 retries
    calls, attempt = scripted(*[err("rate_limited", 429, retry_after=4.0)] * 10)
    with pytest.raises(ProviderError):
        await policy(clock, attempts=10, deadline_s=10).call(TARGET, "rerank", attempt)  # type: ignore[arg-type]
    assert len(calls) == 3 and sum(clock.slept) <= 10


async def test_attempt_timeout_is_a_retriable_timeout() -> None:
    clock = Clock()
    target = Target("openai", "http://127.0.0.1:1", "m", timeout_s=0.05)
    tries: list[int] = []

    async def attempt() -> str:
        tries.append(1)
        if len(tries) == 1:
            await asyncio.sleep(1.0)  # past the 50 ms timeout: cancelled
        return "done"

    assert await policy(clock).call(target, "chat", attempt) == "done"
    assert len(tries) == 2


async def test_usage_is_recorded_and_a_strange_usage_does_not_fail_the_call() -> None:
    clock = Clock()
    _, attempt = scripted("ok")
    with collecting() as log:
        await policy(clock).call(TARGET, "rerank", attempt,  # type: ignore[arg-type]
                                 usage=lambda _: {"search_units": 1.0})
        _, attempt = scripted("ok")
        await policy(clock).call(TARGET, "rerank", attempt,  # type: ignore[arg-type]
                                 usage=lambda _: 1 / 0)  # type: ignore[arg-type, return-value]
    assert [dict(c.usage) for c in log.calls] == [{"search_units": 1.0}, {}]


async def test_breaker_opens_refuses_then_half_opens_and_closes() -> None:
    clock = Clock()
    resilience = policy(clock, attempts=1)
    for _ in range(3):
        _, attempt = scripted(err("server", 500))
        with pytest.raises(ProviderError):
            await resilience.call(TARGET, "rerank", attempt)  # type: ignore[arg-type]
    calls, attempt = scripted("never")
    with collecting() as log, pytest.raises(CircuitOpenError):
        await resilience.call(TARGET, "rerank", attempt)  # type: ignore[arg-type]
    assert calls == [] and log.calls[0].outcome == "circuit_open"
    [state] = resilience.breakers()
    assert state.state == "open" and state.consecutive_failures == 3

    clock.now += 30.0  # reset_after_s: one trial goes through
    calls, attempt = scripted("ranked")
    assert await resilience.call(TARGET, "rerank", attempt) == "ranked"  # type: ignore[arg-type]
    assert resilience.breakers()[0].state == "closed"


def test_breaker_trial_failure_reopens_and_client_errors_do_not_count() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p", failure_threshold=2, reset_after_s=10, clock=clock)
    for _ in range(5):
        breaker.before_call()
        breaker.record_failure(err("client", 400))
    assert breaker.state == "closed"
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure(err("timeout"))
    assert breaker.state == "open"
    clock.now += 10
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # a second caller while the trial runs
    breaker.record_failure(err("server", 502))
    assert breaker.state == "open"
    assert breaker.snapshot().reopens_in_s == pytest.approx(10.0)


async def test_breakers_are_per_endpoint() -> None:
    clock = Clock()
    resilience = policy(clock, attempts=1)
    other = Target("cohere", "http://127.0.0.1:2", "rerank-test", timeout_s=5.0)
    for _ in range(3):
        _, attempt = scripted(err("server", 500))
        with pytest.raises(ProviderError):
            await resilience.call(TARGET, "rerank", attempt)  # type: ignore[arg-type]
    _, attempt = scripted("fine")
    assert await resilience.call(other, "rerank", attempt) == "fine"  # type: ignore[arg-type]


async def test_retry_transient_retries_only_retriable_backend_errors() -> None:
    clock = Clock()
    resilience = policy(clock)
    failures = [VectorStoreError("Milvus upsert failed: unavailable", retriable=True)]

    async def write() -> int:
        if failures:
            raise failures.pop()
        return 7

    assert await resilience.retry_transient("upsert", write) == 7 and len(clock.slept) == 1

    async def refused() -> int:
        raise VectorStoreError("schema mismatch", retriable=False)

    with pytest.raises(VectorStoreError, match="schema"):
        await resilience.retry_transient("upsert", refused)
    assert len(clock.slept) == 1


async def test_call_logs_of_concurrent_requests_stay_apart() -> None:
    clock = Clock()
    resilience = policy(clock)

    async def request(model: str) -> list[str]:
        with collecting() as log:
            target = Target("openai", "http://127.0.0.1:1", model, timeout_s=5.0)
            for _ in range(3):
                _, attempt = scripted("ok")
                await resilience.call(target, "embed", attempt)  # type: ignore[arg-type]
                await asyncio.sleep(0)
            return [c.model for c in log.calls]

    a, b = await asyncio.gather(request("a"), request("b"))
    assert a == ["a"] * 3 and b == ["b"] * 3


def test_provider_error_kinds_decide_retriability() -> None:
    assert err("timeout").retriable and err("rate_limited", 429).retriable
    assert err("server", 503).retriable and err("connection").retriable
    assert not err("client", 400).retriable and not err("malformed").retriable
    with pytest.raises(ValueError, match="unknown provider error kind"):
        err("weird")


async def test_retry_transient_does_not_retry_what_call_already_retried() -> None:
    clock = Clock()
    tries: list[int] = []

    async def embed() -> int:
        tries.append(1)
        raise err("server", 503)  # what a hosted embedder raises after call() gave up

    with pytest.raises(ProviderError):
        await policy(clock).retry_transient("embed batch", embed)
    assert len(tries) == 1 and clock.slept == []
