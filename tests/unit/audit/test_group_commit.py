"""GroupCommitter's coordination, with a recording writer standing in for the database (the
real store is exercised by tests/integration/audit)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from compliance.audit import AuditEvent
from compliance.audit.writer import AppendUnit, GroupCommitter
from compliance.errors import AuditWriteError


class SlowWriter:
    """Returns each event's payload "i" as its record; every transaction takes 20 ms."""

    def __init__(self) -> None:
        self.transactions: list[int] = []
        self.threads: set[str] = set()

    def write(self, units: Sequence[Any]) -> list[object]:
        time.sleep(0.02)
        self.threads.add(threading.current_thread().name)
        self.transactions.append(sum(len(u.events) for u in units))
        out: list[object] = []
        for u in units:
            assert isinstance(u, AppendUnit)
            if any(e.payload.get("fail") for e in u.events):
                out.append(AuditWriteError("refused"))
            else:
                out.append([e.payload["i"] for e in u.events])
        return out


def event(i: int, **extra: Any) -> AuditEvent:
    return AuditEvent("retrieval", "svc", {"i": i, **extra})


@pytest.fixture
def executor() -> Any:
    pool = ThreadPoolExecutor(1, thread_name_prefix="audit-writer")
    yield pool
    pool.shutdown(wait=True)


async def test_concurrent_appends_share_transactions_and_get_their_own_results(
        executor: ThreadPoolExecutor) -> None:
    writer = SlowWriter()
    committer = GroupCommitter(writer, executor)  # type: ignore[arg-type]
    committer.start()
    results = await asyncio.gather(*(committer.submit_append([event(i)]) for i in range(50)))
    assert results == [[i] for i in range(50)]
    assert sum(writer.transactions) == 50
    assert len(writer.transactions) <= 3  # the first alone, then everyone who queued meanwhile
    assert writer.threads == {"audit-writer_0"}


async def test_one_failing_unit_fails_only_its_caller(executor: ThreadPoolExecutor) -> None:
    committer = GroupCommitter(SlowWriter(), executor)  # type: ignore[arg-type]
    committer.start()
    ok, bad = await asyncio.gather(committer.submit_append([event(1)]),
                                   committer.submit_append([event(2, fail=True)]),
                                   return_exceptions=True)
    assert ok == [1] and isinstance(bad, AuditWriteError)


async def test_close_commits_what_is_queued_then_refuses(executor: ThreadPoolExecutor) -> None:
    writer = SlowWriter()
    committer = GroupCommitter(writer, executor)  # type: ignore[arg-type]
    committer.start()
    pending = [asyncio.ensure_future(committer.submit_append([event(i)])) for i in range(5)]
    await asyncio.sleep(0)  # let them enqueue
    await committer.close()
    assert [await p for p in pending] == [[i] for i in range(5)]
    with pytest.raises(AuditWriteError, match="not open"):
        await committer.submit_append([event(9)])


async def test_a_cancelled_caller_does_not_stall_the_others(executor: ThreadPoolExecutor) -> None:
    committer = GroupCommitter(SlowWriter(), executor)  # type: ignore[arg-type]
    committer.start()
    first = asyncio.ensure_future(committer.submit_append([event(1)]))
    second = asyncio.ensure_future(committer.submit_append([event(2)]))
    await asyncio.sleep(0)
    second.cancel()
    assert await first == [1]
    assert await committer.submit_append([event(3)]) == [3]
    await committer.close()
