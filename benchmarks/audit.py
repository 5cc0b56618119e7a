"""Audit store throughput: appends (one await per event, append_many, group commit) and
chain verification.

    python benchmarks/audit.py            # ~1-2 min on 2 cores
    AUDIT_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python benchmarks/audit.py

Append rows run on SQLite (a fresh file under .advanced-rag/bench/audit/) and, when
``AUDIT_TEST_POSTGRES_URL`` is set, on PostgreSQL (a fresh schema, dropped afterwards).
Events are built before the clock starts, so the figures are the store's; building an
``AuditEvent`` (validation, canonical JSON, digest) is timed on its own row.
Verification runs over a SQLite chain of ``--verify-events`` events with a signed checkpoint
every 10,000 events and an anchor file, so it checks signatures and the anchor too.

Writes the ``audit`` section of docs/benchmarks.md; exit 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import BENCH_DIR, environment_line, write_section  # noqa: E402

from compliance.audit import AuditEvent, AuditStore, CheckpointSigner, verify_chain  # noqa: E402

PG_ENV = "AUDIT_TEST_POSTGRES_URL"
WORK = BENCH_DIR / "audit"
SINGLE, BATCH, BATCHES, TASKS, PER_TASK = 1_000, 1_000, 20, 50, 200
BAR_BATCHED, BAR_VERIFY = 10_000, 100_000

Row = tuple[str, str, int, float]  # backend, mode, events, seconds


def make_events(n: int, tag: str) -> list[AuditEvent]:
    """Retrieval events shaped like the pipeline's: ~330 bytes of canonical payload."""
    out = []
    for i in range(n):
        digest = hashlib.sha256(f"{tag}-{i}".encode()).hexdigest()
        out.append(AuditEvent("retrieval", "svc-rag", {
            "query_sha256": digest, "top_k": 20, "search_type": "hybrid",
            "hits": [f"doc-{(i * 7 + j) % 5000}" for j in range(10)],
            "latency_ms": round(10 + (i % 50) / 3, 3), "filters": {"lang": "en"},
        }, tenant=f"tenant-{i % 4}", request_id=f"req-{tag}-{i}"))
    return out


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    began = time.perf_counter()
    await work()
    return time.perf_counter() - began


async def append_rows(backend: str, url: str, schema: str | None) -> list[Row]:
    single = make_events(SINGLE, "single")
    batches = [make_events(BATCH, f"batch{b}") for b in range(BATCHES)]
    per_task = [make_events(PER_TASK, f"task{t}") for t in range(TASKS)]
    async with AuditStore(url, schema=schema) as store:
        async def one_by_one() -> None:
            for event in single:
                await store.append(event)

        async def many() -> None:
            for batch in batches:
                await store.append_many(batch)

        async def group() -> None:
            async def task(events: list[AuditEvent]) -> None:
                for event in events:
                    await store.append(event)

            await asyncio.gather(*(task(events) for events in per_task))

        rows = [(backend, "append, one await per event", SINGLE, await timed(one_by_one)),
                (backend, f"append_many({BATCH})", BATCH * BATCHES, await timed(many)),
                (backend, f"{TASKS} tasks x append (group commit)", TASKS * PER_TASK,
                 await timed(group))]
        report = await verify_chain(store)  # the benchmark must not have broken anything
        assert report.events_checked == SINGLE + BATCH * BATCHES + TASKS * PER_TASK
    return rows


async def verify_rows(events: int) -> list[Row]:
    url = f"sqlite:///{WORK / 'verify.db'}"
    signer = CheckpointSigner.generate()
    anchor = WORK / "verify-anchor.jsonl"
    async with AuditStore(url, signer=signer, checkpoint_every=10_000, anchor=anchor) as store:
        for start in range(0, events, 5_000):
            await store.append_many(make_events(min(5_000, events - start), f"v{start}"))
    rows: list[Row] = []
    async with AuditStore(url) as store:
        for run in (1, 2):  # second run: warm page cache, as a nightly job on a busy host sees
            report = await verify_chain(store, anchor=anchor, public_key=signer.public_key_hex)
            assert report.events_checked == events
            rows.append(("sqlite", f"verify_chain, run {run} (+ {report.anchor_lines_checked} "
                         "signed checkpoints, anchor)", events, report.seconds))
    return rows


def build_rate() -> Row:
    began = time.perf_counter()
    make_events(20_000, "build")
    return ("-", "AuditEvent(...) construction", 20_000, time.perf_counter() - began)


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1),
                         autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def table(rows: list[Row]) -> str:
    lines = ["| backend | mode | events | seconds | events/s |", "|---|---|---:|---:|---:|"]
    lines += [f"| {b} | {m} | {n:,} | {s:.2f} | {n / s:,.0f} |" for b, m, n, s in rows]
    return "\n".join(lines)


async def main(verify_events: int) -> int:
    load = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    rows = [build_rate()]
    rows += await append_rows("sqlite", f"sqlite:///{WORK / 'append.db'}", None)
    pg_url = os.environ.get(PG_ENV)
    if pg_url:
        schema = f"audit_bench_{uuid.uuid4().hex[:8]}"
        try:
            rows += await append_rows("postgresql", pg_url, schema)
        finally:
            drop_schema(pg_url, schema)
    verify = await verify_rows(verify_events)
    rows += verify
    best_verify = max(verify, key=lambda r: r[2] / r[3])
    bars = [(f"batched appends on SQLite, {r[1]}", r[2] / r[3], BAR_BATCHED) for r in rows[2:4]]
    bars.append((f"verification on SQLite, {verify_events:,} events (best of 2 runs)",
                 best_verify[2] / best_verify[3], BAR_VERIFY))
    verdicts = [f"{'PASS' if rate >= bar else 'FAIL'}  {name}: {rate:,.0f} events/s "
                f"(bar {bar:,})" for name, rate, bar in bars]
    text = table(rows)
    print(f"1-minute load average at start: {load:.2f}")
    print(text)
    print("\n".join(verdicts))
    sqlite_version = __import__("sqlite3").sqlite_version
    write_section("audit", f"""## Audit store (`python benchmarks/audit.py`)

{environment_line()}, SQLAlchemy {version('sqlalchemy')}, SQLite {sqlite_version};
1-minute load average when the run started: {load:.2f}.
{"" if pg_url else "(PostgreSQL rows skipped: AUDIT_TEST_POSTGRES_URL was not set)"}

{text}

{chr(10).join("- " + v for v in verdicts)}

SQLite runs in WAL mode with `synchronous=FULL`: every acknowledged append is on disk (the
WAL is fsynced at each commit). One await per event pays one transaction per event; group
commit shares each transaction among the appends queued while the previous one ran (with 50
tasks, 50 events per commit), and `append_many` writes the whole list in one transaction.
Every row is inserted through the append-only triggers, which check that it extends the chain.
Verification recomputes every payload digest and chain hash, checks every signed checkpoint
and anchor line, and streams 5,000 rows per query, fetching up to two batches ahead while it
hashes (SQLite builds each entry's canonical bytes inside the query).
""")
    return 0 if all(rate >= bar for _, rate, bar in bars) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verify-events", type=int, default=200_000)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.verify_events)))
