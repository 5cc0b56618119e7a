"""Drift monitoring over the logged traffic: capture references, compare windows.

:class:`DriftMonitor` turns query-log rows into :class:`~.detector.Window`\\ s and runs
:func:`~.detector.detect` in a worker thread (the permutation tests are CPU work). The
pipeline's ``detect_drift`` and ``capture_reference`` and the weekly report use it; audit
events are the caller's (the pipeline records them).

Example::

    monitor = DriftMonitor(store, config.drift)
    await monitor.capture_reference("launch", first=500, after=deployed_at, actor="ops")
    report = await monitor.compare("launch", await store.window("week", start=a, end=b))
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime

import numpy as np

from ..config import DriftSettings
from ..errors import InputError
from ..store.filters import check_tenant
from .detector import DriftReport, Window, detect
from .store import DriftStore, Reference

__all__ = ["TESTED_SCORES", "DriftMonitor", "to_window"]

# Query-log columns whose distributions are tested (KS and Anderson–Darling), with the name
# the report shows. Retrieval scores of other signals are on other scales per search type.
TESTED_SCORES = {"top_fused": "top-1 fused score", "top_rerank": "top-1 rerank score",
                 "faithfulness": "answer faithfulness"}


def to_window(reference: Reference, label: str | None = None) -> Window:
    """A detector window from logged rows: embeddings, the tested scores that are present,
    and the tenant / search-type labels."""
    scores = {key: np.array([v for v in reference.scores.get(key, ()) if v is not None],
                            dtype=np.float64) for key in TESTED_SCORES}
    return Window(label=label or reference.name, embeddings=reference.embeddings,
                  ids=reference.ids, scores={k: v for k, v in scores.items() if len(v)},
                  categories={k: tuple(v) for k, v in reference.categories.items()},
                  start=reference.window_start or (min(reference.times) if reference.times
                                                   else None),
                  end=reference.window_end or (max(reference.times) if reference.times
                                               else None))


class DriftMonitor:
    """Reference capture and window comparison over one :class:`DriftStore`."""

    def __init__(self, store: DriftStore, settings: DriftSettings) -> None:
        self.store = store
        self.settings = settings

    async def capture_reference(self, name: str, *, actor: str, start: datetime | None = None,
                                end: datetime | None = None, first: int | None = None,
                                tenant: str | None = None, replace_existing: bool = False
                                ) -> Reference:
        """Snapshot logged retrievals as reference ``name``: those in ``[start, end)``, or the
        ``first`` N from ``start`` on (e.g. the first 500 queries after a deployment)."""
        if tenant is not None:
            check_tenant(tenant)
        if first is not None and first < 1:
            raise InputError("first must be at least 1")
        if first is None and start is None and end is None:
            raise InputError("give a time range (start/end) or first=N (with an optional start)")
        rows = await self.store.window(name, start=start, end=end, tenant=tenant, limit=first)
        if first is not None:
            what = f"first {rows.size} logged retrievals" + (f" from {start.isoformat()}"
                                                              if start else "")
        else:
            what = (f"logged retrievals from {start.isoformat() if start else 'the beginning'} "
                    f"to {end.isoformat() if end else 'now'}")
        reference = replace(rows, description=what + (f", tenant {tenant}" if tenant else ""))
        await self.store.save_reference(reference, created_by=actor, replace=replace_existing)
        return reference

    async def reference(self, name: str | None = None) -> Reference:
        """The named reference (default ``drift.reference``), or a clear error."""
        name = name or self.settings.reference
        found = await self.store.load_reference(name)
        if found is None:
            raise InputError(f"no drift reference named {name!r}; capture one with "
                             f"`advanced-rag drift reference capture --name {name} ...` or "
                             "pipeline.capture_reference()")
        return found

    async def compare(self, reference: Reference, current: Reference, *,
                      corpus_reference: np.ndarray | None = None,
                      corpus_current: np.ndarray | None = None) -> DriftReport:
        """Run the detector on two windows (in a worker thread)."""
        return await asyncio.to_thread(
            detect, to_window(reference), to_window(current, current.name), self.settings,
            corpus_reference=corpus_reference, corpus_current=corpus_current)
