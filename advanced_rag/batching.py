"""Coalesce concurrent single requests into one batched call.

A sentence-transformers model on a CPU spends much of a one-query call on fixed per-call work,
and Milvus Lite answers several hybrid searches in one call for less than in as many calls
(ad hoc on 2 cores: MiniLM 9.1 ms per query alone vs 4.8 in batches of 8; Lite hybrid search
46 vs 32.5 ms per query; benchmarks/peers.py measures the effect on throughput).
``MicroBatcher`` gives each caller its own result while one batch at a time runs: a request
that arrives while a batch is in flight waits for it to end and goes into the next with every
other request that arrived meanwhile. Nothing waits on a timer, so a lone caller pays nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from .errors import AdvancedRagError

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Batch ``submit(item)`` calls made while a ``run(items)`` is in flight.

    ``run`` returns one result per item, in order. Example::

        batcher = MicroBatcher(encode_many, max_batch=32)
        vectors = await asyncio.gather(*(batcher.submit(q) for q in queries))

    A ``run`` failure fails exactly the requests of that batch; a cancelled caller's item is
    dropped if its batch has not started. ``batches`` and ``requests`` count what ran.
    """

    def __init__(self, run: Callable[[list[T]], Awaitable[Sequence[R]]], *,
                 max_batch: int = 32, error_type: type[AdvancedRagError] = AdvancedRagError,
                 name: str = "micro-batch") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self._error_type = error_type
        self._name = name
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.requests = 0

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch in flight."""
        return not self._pending and (self._worker is None or self._worker.done())

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        worker = self._worker
        if worker is None or worker.done() or worker.get_loop() is not loop:
            self._worker = loop.create_task(self._drain(), name=self._name)
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = [(i, f) for i, f in self._pending[:self._max_batch] if not f.done()]
            del self._pending[:self._max_batch]
            if not batch:
                continue
            self.batches += 1
            self.requests += len(batch)
            try:
                results = await self._run([item for item, _ in batch])
            except asyncio.CancelledError:  # the loop is shutting down: nobody gets a result
                for _, future in [*batch, *self._pending]:
                    future.cancel()
                self._pending.clear()
                raise
            except Exception as exc:  # handed to this batch's callers
                _settle(batch, error=exc)
                continue
            if len(results) != len(batch):
                _settle(batch, error=self._error_type(
                    f"a batched call returned {len(results)} results for {len(batch)} requests"))
                continue
            _settle(batch, results=results)


def _settle(batch: Sequence[tuple[Any, asyncio.Future[Any]]], *,
            results: Sequence[Any] | None = None, error: BaseException | None = None) -> None:
    for i, (_, future) in enumerate(batch):
        if future.done():  # its caller was cancelled
            continue
        if error is not None:
            future.set_exception(error)
        else:
            assert results is not None
            future.set_result(results[i])
