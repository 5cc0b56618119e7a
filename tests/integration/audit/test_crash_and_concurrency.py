"""One linear chain under concurrency (tasks and processes), and nothing lost on SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest

from compliance.audit import AuditEvent, verify_chain

from .conftest import PYTHON, Backend, child_env

pytestmark = pytest.mark.integration

APPENDER = '''
import asyncio, sys
from compliance.audit import AuditEvent, AuditStore

async def main(url, schema, tasks, per_task, batch):
    async with AuditStore(url, schema=schema or None) as store:
        async def worker(k):
            i = 0
            while per_task < 0 or i < per_task:
                if batch > 1:
                    records = await store.append_many([
                        AuditEvent("retrieval", f"w{k}", {"i": i, "j": j, "pad": "x" * 100})
                        for j in range(batch)])
                    print(" ".join(str(r.seq) for r in records), flush=True)
                else:
                    record = await store.append(
                        AuditEvent("retrieval", f"w{k}", {"i": i, "pad": "x" * 100}))
                    print(record.seq, flush=True)
                i += 1
        await asyncio.gather(*(worker(k) for k in range(tasks)))

url, schema, tasks, per_task, batch = sys.argv[1:6]
asyncio.run(main(url, schema, int(tasks), int(per_task), int(batch)))
'''


def appender(tmp_path: Path, backend: Backend, *, tasks: int, per_task: int,
             batch: int = 1) -> subprocess.Popen[str]:
    script = tmp_path / "appender.py"
    script.write_text(APPENDER)
    return subprocess.Popen(
        [PYTHON, str(script), backend.url, backend.schema or "", str(tasks), str(per_task),
         str(batch)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())


def printed_lines(output: str) -> list[list[int]]:
    """Complete lines only: a line cut by the kill has no newline and proves nothing."""
    return [[int(x) for x in line.split()] for line in output.split("\n")[:-1] if line.strip()]


def kill_after(proc: subprocess.Popen[str], lines: int, timeout: float = 120.0) -> list[list[int]]:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while len(seen) < lines:
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate()
            pytest.fail(f"appender died early: {err[-2000:]}")
        seen.append(line)
        assert time.monotonic() < deadline, "appender too slow"
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return printed_lines("".join(seen) + rest)


async def test_sigkill_loses_nothing_that_was_acknowledged(sqlite_backend: Backend,
                                                           tmp_path: Path) -> None:
    proc = appender(tmp_path, sqlite_backend, tasks=8, per_task=-1)
    acknowledged = [seq for line in kill_after(proc, 400) for seq in line]
    assert len(acknowledged) >= 400 and len(set(acknowledged)) == len(acknowledged)
    async with sqlite_backend.store() as store:
        report = await verify_chain(store)
        assert report.last_seq is not None and report.last_seq >= max(acknowledged)
        present = {r.seq async for r in store.iter_records()}
        assert set(acknowledged) <= present
        # the store keeps working after the crash, on the same chain
        assert (await store.append(AuditEvent("rerank", "svc", {}))).seq == report.last_seq + 1


async def test_sigkill_never_leaves_half_an_append_many(sqlite_backend: Backend,
                                                        tmp_path: Path) -> None:
    proc = appender(tmp_path, sqlite_backend, tasks=2, per_task=-1, batch=50)
    acknowledged = [seq for line in kill_after(proc, 20) for seq in line]
    async with sqlite_backend.store() as store:
        report = await verify_chain(store)
    assert report.last_seq is not None and report.last_seq % 50 == 0
    assert report.last_seq >= max(acknowledged)


async def test_fifty_tasks_make_one_gap_free_chain(sqlite_backend: Backend) -> None:
    async with sqlite_backend.store() as store:
        async def task(k: int) -> list[int]:
            return [(await store.append(AuditEvent("retrieval", f"task-{k}", {"i": i}))).seq
                    for i in range(200)]

        per_task = await asyncio.gather(*(task(k) for k in range(50)))
        for seqs in per_task:
            assert seqs == sorted(seqs)  # each caller's events stay in its own order
        assert sorted(s for seqs in per_task for s in seqs) == list(range(1, 10_001))
        report = await verify_chain(store)
        assert report.events_checked == 10_000 and report.last_seq == 10_000


async def run_processes(backend: Backend, tmp_path: Path, processes: int, tasks: int,
                        per_task: int) -> list[int]:
    procs = [appender(tmp_path, backend, tasks=tasks, per_task=per_task) for _ in range(processes)]
    seqs: list[int] = []
    for proc in procs:
        out, err = await asyncio.to_thread(proc.communicate, timeout=300)
        assert proc.returncode == 0, err[-2000:]
        seqs += [seq for line in printed_lines(out) for seq in line]
    return seqs


async def test_processes_share_one_sqlite_chain(sqlite_backend: Backend, tmp_path: Path) -> None:
    seqs = await run_processes(sqlite_backend, tmp_path, processes=3, tasks=4, per_task=50)
    assert sorted(seqs) == list(range(1, 601))
    async with sqlite_backend.store() as store:
        assert (await verify_chain(store)).events_checked == 600


@pytest.mark.postgres
async def test_four_processes_make_one_gap_free_postgres_chain(pg_backend: Backend,
                                                               tmp_path: Path) -> None:
    seqs = await run_processes(pg_backend, tmp_path, processes=4, tasks=5, per_task=100)
    assert sorted(seqs) == list(range(1, 2001))
    async with pg_backend.store() as store:
        report = await verify_chain(store)
        assert report.events_checked == 2000 and report.last_seq == 2000
        actors = {r.actor async for r in store.iter_records()}
        assert actors == {f"w{k}" for k in range(5)}
