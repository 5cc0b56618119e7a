"""A circuit breaker per provider: stop calling a provider that keeps failing, then probe it.

States (the classic pattern, M. Nygard, *Release It!*):

* ``closed`` — calls go through; ``failure_threshold`` consecutive failures open it;
* ``open`` — calls are refused at once with :class:`~advanced_rag.errors.CircuitOpenError`
  (a fallback, if configured, serves them) until ``reset_after_s`` have passed;
* ``half_open`` — one trial call is let through; success closes the breaker, failure opens
  it again for another ``reset_after_s``. Other callers are refused while the trial runs.

Only failures that say something about the provider count: timeouts, connection errors,
429, 5xx and malformed responses. A 400 or 401 is the caller's problem and resets nothing.
The clock is injectable so tests can move time instead of sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CircuitOpenError, ProviderError

__all__ = ["BreakerState", "CircuitBreaker", "counts_against_provider"]

log = logging.getLogger(__name__)

_PROVIDER_FAULTS = frozenset({"timeout", "connection", "rate_limited", "server", "malformed"})


def counts_against_provider(error: ProviderError) -> bool:
    """Whether ``error`` is evidence that the provider (not the request) is unhealthy."""
    return error.kind in _PROVIDER_FAULTS


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A snapshot for health reports."""

    name: str
    state: str  # closed, open, half_open
    consecutive_failures: int
    reopens_in_s: float | None


class CircuitBreaker:
    """One provider's breaker. Not thread-safe: use it from one event loop."""

    def __init__(self, name: str, *, failure_threshold: int, reset_after_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._reset_after = reset_after_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._reset_after:
            return "half_open"
        return "open"

    def snapshot(self) -> BreakerState:
        reopens = None
        if self._opened_at is not None:
            reopens = max(self._reset_after - (self._clock() - self._opened_at), 0.0)
        return BreakerState(self.name, self.state, self._failures, reopens)

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go out now."""
        state = self.state
        if state == "closed":
            return
        if state == "half_open" and not self._trial_running:
            self._trial_running = True
            log.info("circuit breaker %s half-open: letting one trial call through", self.name)
            return
        assert self._opened_at is not None
        raise CircuitOpenError(self.name, self._reset_after - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        if self._opened_at is not None:
            log.warning("circuit breaker %s closed: the provider answered again", self.name)
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def record_failure(self, error: ProviderError) -> None:
        """Count ``error`` if it is the provider's fault; open when the threshold is reached
        (or at once when a half-open trial fails)."""
        trial = self._trial_running
        self._trial_running = False
        if not counts_against_provider(error):
            return
        self._failures += 1
        if trial or self._failures >= self._threshold:
            if self._opened_at is None or trial:
                log.warning("circuit breaker %s open after %d consecutive failures (last: %s); "
                            "refusing calls for %.0f s", self.name, self._failures, error.kind,
                            self._reset_after)
            self._opened_at = self._clock()
