"""An optional in-process TTL cache of query embeddings and retrieval results.

Off by default (``cache.enabled``). Results are keyed by everything that decides them:
tenant, query text, search type, top_k, filters, clearance, the fusion and rerank settings,
and the tenant's *index generation* — a counter this process bumps on every ingest, delete
and erasure of that tenant, so a write here is never followed by a stale answer here. Writes
by other processes are not seen until ``ttl_s`` expires: keep it short, or leave the cache
off, where several processes write to one index.

The cache fails open: an error inside it is logged and the request goes to the models and
the store as if it were off. A served request is audited exactly like any other; its
``retrieval`` event says ``"cache": "hit"``.

Example::

    cache = QueryCache(ttl_s=60, max_entries=1024)
    key = cache.key(tenant, query, ...)
    hits = cache.results.get(key)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["QueryCache", "TTLCache"]

V = TypeVar("V")


@dataclass
class TTLCache(Generic[V]):
    """A least-recently-used map whose entries expire ``ttl_s`` after they were stored."""

    ttl_s: float
    max_entries: int
    clock: Callable[[], float] = time.monotonic
    _items: OrderedDict[Hashable, tuple[float, V]] = field(default_factory=OrderedDict)
    hits: int = 0
    misses: int = 0

    def get(self, key: Hashable) -> V | None:
        item = self._items.get(key)
        if item is None or self.clock() - item[0] >= self.ttl_s:
            if item is not None:
                del self._items[key]
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[1]

    def put(self, key: Hashable, value: V) -> None:
        self._items[key] = (self.clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class QueryCache:
    """Query embeddings (by text) and retrieval results (by full request and tenant index
    generation), each a :class:`TTLCache`."""

    def __init__(self, *, ttl_s: float, max_entries: int, embeddings: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.embeddings: TTLCache[object] | None = (
            TTLCache(ttl_s, max_entries, clock) if embeddings else None)
        self.results: TTLCache[object] = TTLCache(ttl_s, max_entries, clock)
        self._generation: dict[str, int] = {}

    def invalidate(self, tenant: str) -> None:
        """The tenant's index changed (ingest, delete, erasure): its cached results are dead."""
        self._generation[tenant] = self._generation.get(tenant, 0) + 1

    def key(self, tenant: str, *parts: Hashable) -> tuple[Hashable, ...]:
        """The result key of a request of ``tenant``: its parts plus the tenant's generation."""
        return (tenant, self._generation.get(tenant, 0), *parts)
