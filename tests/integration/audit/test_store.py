"""AuditStore behaviour on real databases: append, group commit, queries, checkpoints."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compliance.audit import (
    AuditEvent,
    AuditEventType,
    AuditStore,
    ChainHead,
    CheckpointSigner,
    verify_chain,
)
from compliance.audit.hashing import GENESIS
from compliance.errors import AuditIntegrityError, AuditWriteError

from .conftest import Backend

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)


async def test_append_returns_the_committed_record_and_links_it(backend: Backend) -> None:
    async with backend.store() as store:
        assert await store.head() == ChainHead(0, GENESIS)
        parent = AuditEvent(AuditEventType.RETRIEVAL, "svc", {"q": "é", "when": T0},
                            tenant="acme", request_id="r-1", occurred_at=T0)
        first = await store.append(parent)
        child = await store.append(AuditEvent("rerank", "svc", {"kept": 5},
                                              parent_event_id=parent.event_id))
        assert (first.seq, child.seq) == (1, 2)
        assert first.prev_hash == GENESIS and child.prev_hash == first.entry_hash
        assert await store.head() == ChainHead(2, child.entry_hash)
        stored = await store.get(1)
        assert stored == first
        assert stored is not None and stored.payload == {"q": "é", "when": "2024-03-01T00:00:00.000000Z"}
        assert stored.occurred_at == T0 and stored.occurred_at.tzinfo is UTC
        assert (await store.get(2)) is not None and (await store.get(3)) is None
        assert (await store.get(2)).parent_event_id == parent.event_id  # type: ignore[union-attr]


async def test_records_survive_reopening(backend: Backend) -> None:
    async with backend.store() as store:
        written = await store.append_many([AuditEvent("retrieval", "svc", {"i": i})
                                           for i in range(10)])
    async with backend.store() as store:
        assert [r async for r in store.iter_records()] == written
        assert (await store.append(AuditEvent("rerank", "svc", {}))).seq == 11


async def test_append_many_is_atomic(backend: Backend) -> None:
    async with backend.store() as store:
        await store.append(AuditEvent("retrieval", "svc", {"i": 0}))
        dup = AuditEvent("retrieval", "svc", {"i": 1})
        with pytest.raises(AuditWriteError):
            await store.append_many([AuditEvent("retrieval", "svc", {"i": 2}), dup, dup])
        assert (await store.head()).seq == 1
        assert await store.append_many([]) == []
        assert (await verify_chain(store)).events_checked == 1


async def test_a_bad_event_fails_only_its_own_caller_in_a_shared_group(backend: Backend) -> None:
    async with backend.store() as store:
        existing = await store.append(AuditEvent("retrieval", "svc", {}))
        clash = AuditEvent("retrieval", "svc", {"dup": True}, event_id=existing.event_id)
        good = [AuditEvent("rerank", "svc", {"i": i}) for i in range(20)]
        results = await asyncio.gather(*(store.append(e) for e in [*good[:10], clash, *good[10:]]),
                                       return_exceptions=True)
        assert isinstance(results[10], AuditWriteError)
        ok = [r for r in results if not isinstance(r, BaseException)]
        assert sorted(r.seq for r in ok) == list(range(2, 22))  # type: ignore[union-attr]
        assert (await verify_chain(store)).events_checked == 21


async def test_query_filters(backend: Backend) -> None:
    async with backend.store() as store:
        events = []
        for i in range(12):
            kind = AuditEventType.ACCESS_DENIED if i % 3 == 0 else AuditEventType.RETRIEVAL
            events.append(AuditEvent(kind, f"user-{i % 2}", {"i": i},
                                     tenant="acme" if i < 6 else "globex",
                                     occurred_at=T0 + timedelta(hours=i)))
        await store.append_many(events)
        denied = await store.query(event_type="access_denied")
        assert [r.seq for r in denied] == [1, 4, 7, 10]
        assert [r.seq for r in await store.query(tenant="globex", actor="user-1")] == [8, 10, 12]
        window = await store.query(start_time=T0 + timedelta(hours=2),
                                   end_time=T0 + timedelta(hours=5))
        assert [r.seq for r in window] == [3, 4, 5]
        assert [r.seq for r in await store.query(limit=3, descending=True)] == [12, 11, 10]
        assert [r.seq for r in await store.query(event_type=AuditEventType.ACCESS_DENIED,
                                                 tenant="acme", limit=1)] == [1]
        assert await store.query(tenant="nobody") == []


async def test_iter_records_streams_ranges_in_batches(backend: Backend) -> None:
    async with backend.store() as store:
        await store.append_many([AuditEvent("retrieval", "svc", {"i": i}) for i in range(25)])
        assert [r.seq async for r in store.iter_records(batch=4)] == list(range(1, 26))
        assert [r.seq async for r in store.iter_records(start=5, end=12, batch=3)] == list(
            range(5, 13))
        assert [r.seq async for r in store.iter_records(start=30)] == []


async def test_checkpoints_manual_automatic_and_anchored(backend: Backend, tmp_path: Path,
                                                         signer: CheckpointSigner) -> None:
    anchor = tmp_path / "anchor" / "audit.jsonl"
    async with backend.store(signer=signer, checkpoint_every=100, anchor=anchor) as store:
        with pytest.raises(AuditWriteError, match="empty"):
            await store.checkpoint()
        await store.append_many([AuditEvent("retrieval", "svc", {"i": i}) for i in range(99)])
        assert await store.checkpoints() == []
        await store.append_many([AuditEvent("retrieval", "svc", {"i": i}) for i in range(3)])
        automatic = await store.checkpoints()
        assert [c.seq for c in automatic] == [102]
        manual = await store.checkpoint(anchor=tmp_path / "other.jsonl")
        assert manual.seq == 102 and manual.head_hash == (await store.head()).entry_hash
        assert manual.key_id == signer.key_id
        assert [c.seq for c in await store.checkpoints(start=100, end=200)] == [102, 102]
    line = json.loads(anchor.read_text().splitlines()[0])
    assert line["seq"] == 102 and line["public_key"] == signer.public_key_hex
    assert line["head_hash"] == automatic[0].head_hash
    assert len((tmp_path / "other.jsonl").read_text().splitlines()) == 1
    async with backend.store() as store:
        report = await verify_chain(store, anchor=anchor, public_key=[signer.public_key_hex])
        assert report.checkpoints_checked == 2 and report.signatures_checked == 2
        assert report.last_valid_checkpoint in (automatic[0], manual)
        assert report.anchor_lines_checked == 1
        with pytest.raises(AuditIntegrityError, match="unknown key"):
            await verify_chain(store, public_key=CheckpointSigner.generate().public_key)


async def test_verify_reports_an_empty_chain(backend: Backend) -> None:
    async with backend.store() as store:
        report = await verify_chain(store)
    assert (report.events_checked, report.first_seq, report.last_seq) == (0, None, None)
    assert report.head_hash == GENESIS and report.last_valid_checkpoint is None


async def test_sqlite_default_location_and_pragmas(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with AuditStore() as store:
        await store.append(AuditEvent("config_loaded", "cli", {"path": "config.yaml"}))
        assert store.dialect == "sqlite"
    assert (tmp_path / ".advanced-rag" / "audit.db").is_file()
    import sqlite3

    conn = sqlite3.connect(tmp_path / ".advanced-rag" / "audit.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
