"""What remote calls did, for the audit trail: attempts, outcome, usage, fallbacks taken.

Every call made through :class:`~advanced_rag.remote.resilience.Resilience` produces one
:class:`ProviderCall` (its attempts, each with outcome, HTTP status, ``Retry-After`` and the
back-off slept after it; the usage the provider reported). A fallback chain that gives up on
a component records a :class:`FallbackTaken`. Both go to the :class:`CallLog` of the current
request, which the pipeline opens with :func:`collecting` around the work of one API call and
copies into that call's audit event. Outside ``collecting`` nothing is kept.

The log lives in a :class:`contextvars.ContextVar`, so concurrent requests (separate asyncio
tasks) never see each other's calls. Nothing here holds request text or API keys: only names,
counts, statuses and timings.

Example::

    with collecting() as log:
        hits = await reranker.rerank(query, hits, 5)
    log.payload()   # {"provider_calls": [...], "fallbacks": [...]}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Attempt", "CallLog", "FallbackTaken", "ProviderCall", "collecting", "report_call",
           "report_fallback"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a remote call. ``outcome`` is ``ok`` or the error kind (``timeout``,
    ``rate_limited``, ``server``, ``circuit_open`` ...); ``wait_s`` is the back-off slept
    before the next attempt (``None`` after the last one)."""

    number: int
    outcome: str
    latency_ms: float
    status: int | None = None
    retry_after_s: float | None = None
    wait_s: float | None = None
    error: str | None = None  # the exception class, never its message (it may echo input)

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.number, "outcome": self.outcome,
                               "latency_ms": round(self.latency_ms, 3)}
        for name in ("status", "retry_after_s", "error"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.wait_s is not None:
            out["wait_s"] = round(self.wait_s, 4)
        return out


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One logical call to a provider, with every attempt it took."""

    provider: str  # e.g. "cohere", "openai"
    endpoint: str
    operation: str  # rerank, embed, chat, judge, health
    model: str
    outcome: str  # "ok", or the kind of the last attempt's error
    attempts: tuple[Attempt, ...]
    usage: Mapping[str, float] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        return {"provider": self.provider, "endpoint": self.endpoint,
                "operation": self.operation, "model": self.model, "outcome": self.outcome,
                "attempts": [a.to_payload() for a in self.attempts], "usage": dict(self.usage)}


@dataclass(frozen=True, slots=True)
class FallbackTaken:
    """A fallback chain gave up on ``failed`` (for ``error``, a class name and error kind)
    and served the request with ``used``."""

    role: str  # reranker, generator, judge
    failed: str
    used: str
    error: str

    def to_payload(self) -> dict[str, Any]:
        return {"role": self.role, "failed": self.failed, "used": self.used, "error": self.error}


@dataclass(slots=True)
class CallLog:
    """The remote calls and fallbacks of one request, in order."""

    calls: list[ProviderCall] = field(default_factory=list)
    fallbacks: list[FallbackTaken] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.calls or self.fallbacks)

    def payload(self) -> dict[str, Any]:
        """The audit payload fields (empty when nothing remote happened)."""
        out: dict[str, Any] = {}
        if self.calls:
            out["provider_calls"] = [c.to_payload() for c in self.calls]
        if self.fallbacks:
            out["fallbacks"] = [f.to_payload() for f in self.fallbacks]
        return out

    def since(self, calls: int, fallbacks: int) -> CallLog:
        """The entries added after the log held ``calls`` calls and ``fallbacks`` fallbacks."""
        return CallLog(self.calls[calls:], self.fallbacks[fallbacks:])


_current: ContextVar[CallLog | None] = ContextVar("advanced_rag_call_log", default=None)


@contextmanager
def collecting(log: CallLog | None = None) -> Iterator[CallLog]:
    """Collect the remote calls made in this block into ``log`` (a new one by default);
    nested blocks share the outer log."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    log = CallLog() if log is None else log
    token = _current.set(log)
    try:
        yield log
    finally:
        _current.reset(token)


def report_call(call: ProviderCall) -> None:
    log = _current.get()
    if log is not None:
        log.calls.append(call)


def report_fallback(fallback: FallbackTaken) -> None:
    log = _current.get()
    if log is not None:
        log.fallbacks.append(fallback)
