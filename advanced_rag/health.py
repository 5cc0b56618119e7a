"""Health checks: is every configured dependency up, and can the pipeline serve?

A check runs one probe — a coroutine that returns a short detail or raises — under a
timeout and turns the outcome into a :class:`HealthCheck`. Nothing is written to the audit
log or the index: the audit store proves it *could* commit (write lock / INSERT grant),
Milvus that the collection is loaded, local models that they encode, hosted providers
answer a cheap authenticated call (OpenAI ``GET /models``, Cohere ``check-api-key``; a
hosted embedder embeds two words, the cheapest call it has).

A component with a fallback chain is reported member by member (not required on their own)
plus one required check for the role, which is up when any member is.

Example::

    report = await rag.health()
    report.ok, [c.name for c in report.checks if not c.ok]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .remote.breaker import BreakerState

__all__ = ["HealthCheck", "HealthReport", "probe_component", "role_checks", "run_check"]

Probe = Callable[[], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One dependency's state. ``required``: the pipeline cannot serve while it is down."""

    name: str
    ok: bool
    required: bool
    latency_ms: float
    detail: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every check, the circuit breakers' states, and ``ok``: all required checks passed."""

    checks: tuple[HealthCheck, ...]
    breakers: tuple[BreakerState, ...] = ()

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    @property
    def failed(self) -> tuple[HealthCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks],
                "breakers": [asdict(b) for b in self.breakers]}


async def run_check(name: str, probe: Probe, *, required: bool = True,
                    timeout_s: float = 10.0) -> HealthCheck:
    """Run ``probe`` under ``timeout_s``; any exception is a failed check, never raised."""
    began = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            detail = await probe()
        ok = True
    except TimeoutError:
        ok, detail = False, f"no answer within {timeout_s:g} s"
    except Exception as exc:  # a health check reports; it never raises
        ok, detail = False, f"{type(exc).__name__}: {exc}"[:500]
    return HealthCheck(name, ok, required, (time.perf_counter() - began) * 1000.0, detail)


def probe_component(component: object) -> Probe:
    """The probe of a reranker, generator or judge: its own ``probe()`` (hosted ones call the
    provider) or, for a local component that needs no call, its loaded name."""
    probe = getattr(component, "probe", None)
    if callable(probe):
        return probe  # type: ignore[no-any-return]
    name = getattr(component, "name", type(component).__name__)

    async def loaded() -> str:
        return f"{name} loaded (local)"

    return loaded


async def role_checks(role: str, component: object, *, timeout_s: float) -> list[HealthCheck]:
    """Checks for one role: the component itself, or each member of a fallback chain plus the
    role as a whole (up when any member is)."""
    members: Sequence[object] = getattr(component, "members", None) or ()
    if not members:
        return [await run_check(role, probe_component(component), timeout_s=timeout_s)]
    names = [role] + [f"{role}.fallback[{i}]" for i in range(len(members) - 1)]
    checks = list(await asyncio.gather(*(
        run_check(n, probe_component(m), required=False, timeout_s=timeout_s)
        for n, m in zip(names, members, strict=True))))
    serving = next((c for c in checks if c.ok), None)
    if serving is None:
        summary = HealthCheck(f"{role} chain", False, True, max(c.latency_ms for c in checks),
                              "every member of the fallback chain is down")
    else:
        note = "" if serving is checks[0] else " (fallback: the primary is down)"
        summary = HealthCheck(f"{role} chain", True, True, serving.latency_ms,
                              f"served by {serving.name}{note}")
    return [*checks, summary]
