"""JSONL export of the audit chain and its re-verification without the database.

Every test builds the same SQLite chain: 30 events, one a minute from T0, appended 5 at a time,
except seq 8, which claims to have happened a day earlier (clocks drift); signed checkpoints
at seq 10, 20 and 30, in the database and in an anchor file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from advanced_rag.errors import InputError
from compliance.audit import AuditEvent, AuditRecord, AuditStore, CheckpointSigner
from compliance.audit.export import ExportCheck, export_jsonl, verify_export
from compliance.audit.hashing import GENESIS
from compliance.errors import AuditIntegrityError

from .conftest import Backend

pytestmark = pytest.mark.integration

EVENTS = 30
T0 = datetime(2024, 3, 1, tzinfo=UTC)
FORMAT = "advanced-rag-audit-export/1"


def when(i: int) -> datetime:
    return T0 - timedelta(days=1) if i == 7 else T0 + timedelta(minutes=i)


@pytest.fixture
async def chain(sqlite_backend: Backend, signer: CheckpointSigner, anchor: Path) -> Backend:
    async with sqlite_backend.store(signer=signer, checkpoint_every=10, anchor=anchor) as store:
        for start in range(0, EVENTS, 5):
            await store.append_many([
                AuditEvent("retrieval", f"user-{i % 3}", {"query": f"question {i}", "k": i},
                           tenant="acme", request_id=f"r-{i}", occurred_at=when(i))
                for i in range(start, start + 5)])
    return sqlite_backend


def hashes(backend: Backend) -> dict[int, str]:
    return dict(backend.sql("SELECT seq, entry_hash FROM audit_events ORDER BY seq"))


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


async def export(backend: Backend, out: Any, **kwargs: Any) -> Any:
    async with backend.store() as store:
        return await export_jsonl(store, out, **kwargs)


async def test_export_everything(chain: Backend, tmp_path: Path, anchor: Path,
                                 signer: CheckpointSigner) -> None:
    target = tmp_path / "all.jsonl"
    report = await export(chain, target, anchor=anchor, public_key=signer.public_key_hex, batch=7)
    data = target.read_bytes()
    assert (report.path, report.events, report.first_seq, report.last_seq) == (target, 30, 1, 30)
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    v = report.verification
    assert (v.events_checked, v.checkpoints_checked, v.signatures_checked,
            v.anchor_lines_checked) == (30, 3, 3, 3)
    text = data.decode("utf-8").splitlines()
    assert len(text) == 1 + 30 + 3 + 1
    assert all(line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False) for line in text)
    lines, chained = lines_of(target), hashes(chain)
    header = lines[0]
    assert header["exported_at"].endswith("Z")
    assert {k: v for k, v in header.items() if k != "exported_at"} == {
        "kind": "header", "format": FORMAT, "first_seq": 1, "last_seq": 30, "prev_hash": GENESIS,
        "filters": {"start_time": None, "end_time": None, "start_seq": None, "end_seq": None}}
    async with chain.store() as store:
        first = await store.get(1)
    assert first is not None
    assert lines[1] == {
        "kind": "event", "seq": 1, "event_id": first.event_id,
        "occurred_at": "2024-03-01T00:00:00.000000Z", "event_type": "retrieval",
        "actor": "user-0", "tenant": "acme", "request_id": "r-0", "parent_event_id": None,
        "payload": {"k": 0, "query": "question 0"}, "payload_digest": first.payload_digest,
        "prev_hash": GENESIS, "entry_hash": chained[1]}
    assert [line["seq"] for line in lines[1:31]] == list(range(1, 31))
    assert [(line["kind"], line["seq"], line["head_hash"], line["key_id"]) for line in lines[31:34]] == [
        ("checkpoint", s, chained[s], signer.key_id) for s in (10, 20, 30)]
    assert lines[34] == {"kind": "trailer", "events": 30, "verification": {
        "events_checked": 30, "head_hash": chained[30], "last_seq": 30, "checkpoints_checked": 3,
        "signatures_checked": 3, "anchor_lines_checked": 3, "redacted_events": 0,
        "last_valid_checkpoint_seq": 30}}
    assert verify_export(target) == ExportCheck(30, 1, 30, chained[30], 0)
    assert verify_export(str(target)) == ExportCheck(30, 1, 30, chained[30], 0)
    assert leftovers(tmp_path) == []


async def test_time_range_is_a_contiguous_seq_range(chain: Backend, tmp_path: Path) -> None:
    target = tmp_path / "window.jsonl"
    start, end = T0 + timedelta(minutes=5), T0 + timedelta(minutes=12)
    report = await export(chain, target, start_time=start, end_time=end)
    lines, chained = lines_of(target), hashes(chain)
    assert (report.events, report.first_seq, report.last_seq) == (7, 6, 12)
    assert (lines[0]["first_seq"], lines[0]["last_seq"], lines[0]["prev_hash"]) == (6, 12, chained[5])
    assert lines[0]["filters"] == {"start_time": "2024-03-01T00:05:00.000000Z",
                                   "end_time": "2024-03-01T00:12:00.000000Z",
                                   "start_seq": None, "end_seq": None}
    events = [line for line in lines if line["kind"] == "event"]
    assert [e["seq"] for e in events] == [6, 7, 8, 9, 10, 11, 12]
    # seq 8 claims an earlier time, but the range stays contiguous so the links re-verify
    assert events[2]["occurred_at"] == "2024-02-29T00:00:00.000000Z"
    assert [(c["seq"], c["head_hash"]) for c in lines if c["kind"] == "checkpoint"] == [(10, chained[10])]
    assert lines[-1]["events"] == 7
    assert verify_export(target) == ExportCheck(7, 6, 12, chained[12], 0)


async def test_seq_range_and_combined_filters(chain: Backend, tmp_path: Path) -> None:
    chained = hashes(chain)
    report = await export(chain, tmp_path / "seq.jsonl", start_seq=11, end_seq=20)
    lines = lines_of(tmp_path / "seq.jsonl")
    assert (report.events, report.first_seq, report.last_seq) == (10, 11, 20)
    assert lines[0]["prev_hash"] == chained[10]
    assert [line["seq"] for line in lines[1:-1]] == [*range(11, 21), 20]  # events, then checkpoint 20
    assert verify_export(tmp_path / "seq.jsonl") == ExportCheck(10, 11, 20, chained[20], 0)

    report = await export(chain, tmp_path / "both.jsonl", start_seq=8,
                          end_time=T0 + timedelta(minutes=10))
    assert (report.events, report.first_seq, report.last_seq) == (3, 8, 10)
    assert verify_export(tmp_path / "both.jsonl") == ExportCheck(3, 8, 10, chained[10], 0)

    report = await export(chain, tmp_path / "tail.jsonl", start_seq=25, end_seq=99)
    assert (report.events, report.first_seq, report.last_seq) == (6, 25, 30)


async def test_empty_selection_still_exports_and_verifies(chain: Backend, tmp_path: Path) -> None:
    target = tmp_path / "empty.jsonl"
    report = await export(chain, target, start_time=T0 + timedelta(days=1))
    assert (report.events, report.first_seq, report.last_seq) == (0, None, None)
    lines = lines_of(target)
    assert [line["kind"] for line in lines] == ["header", "trailer"]
    assert (lines[0]["first_seq"], lines[0]["last_seq"], lines[0]["prev_hash"]) == (None, None, None)
    assert verify_export(target) == ExportCheck(0, None, None, None, 0)


async def test_export_to_a_stream(chain: Backend) -> None:
    buffer = io.StringIO()
    report = await export(chain, buffer, start_seq=1, end_seq=4, batch=2)
    text = buffer.getvalue()
    assert report.path is None and report.events == 4
    assert report.sha256 == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert verify_export(text.splitlines(keepends=True)) == ExportCheck(4, 1, 4, hashes(chain)[4], 0)


async def test_redacted_payload_exports_as_null_and_verifies(chain: Backend, tmp_path: Path) -> None:
    async with chain.store() as store:
        await store.redact_payload(4)
        report = await export_jsonl(store, tmp_path / "redacted.jsonl", end_seq=5)
    event = lines_of(tmp_path / "redacted.jsonl")[4]
    assert (event["seq"], event["payload"]) == (4, None)
    assert event["payload_digest"] == chain.sql("SELECT payload_digest FROM audit_events WHERE seq = 4")[0][0]
    assert report.verification.redacted_events == 1
    assert verify_export(tmp_path / "redacted.jsonl") == ExportCheck(5, 1, 5, hashes(chain)[5], 1)


def edited(path: Path, change: Any) -> list[str]:
    lines = path.read_text("utf-8").splitlines()
    change(lines)
    return lines


def broken(lines: list[str]) -> AuditIntegrityError:
    with pytest.raises(AuditIntegrityError) as info:
        verify_export(lines)
    return info.value


def swap(lines: list[str], a: int, b: int) -> None:
    lines[a], lines[b] = lines[b], lines[a]


@pytest.fixture
async def exported(chain: Backend, tmp_path: Path) -> Path:
    await export(chain, tmp_path / "all.jsonl")
    return tmp_path / "all.jsonl"


async def test_changed_payload_byte_is_named(exported: Path) -> None:
    lines = edited(exported, lambda ls: ls.__setitem__(7, ls[7].replace("question 6", "question 9")))
    error = broken(lines)
    assert error.seq == 7 and "payload does not match its digest" in error.reason


async def test_changed_field_is_named(exported: Path) -> None:
    lines = edited(exported, lambda ls: ls.__setitem__(12, ls[12].replace('"user-2"', '"user-1"')))
    error = broken(lines)
    assert error.seq == 12 and "entry hash mismatch" in error.reason


async def test_removed_line_is_named(exported: Path) -> None:
    error = broken(edited(exported, lambda ls: ls.pop(15)))
    assert error.seq == 15 and "missing" in error.reason
    error = broken(edited(exported, lambda ls: ls.pop(30)))  # the last event
    assert error.seq == 30 and "missing" in error.reason


async def test_reordered_lines_are_named(exported: Path) -> None:
    error = broken(edited(exported, lambda ls: swap(ls, 20, 21)))
    assert error.seq == 20 and error.actual == "seq 21"


@pytest.mark.parametrize(("count", "seq"), [(29, 30), (31, 31), (0, 1)])
async def test_changed_trailer_count_is_named(exported: Path, count: int, seq: int) -> None:
    trailer = f'"events":{count}'
    error = broken(edited(exported, lambda ls: ls.__setitem__(-1, ls[-1].replace('"events":30', trailer))))
    assert error.seq == seq and f"trailer counts {count} events, the file holds 30" in error.reason


async def test_other_file_damage_is_caught(exported: Path, chain: Backend) -> None:
    head_10 = hashes(chain)[10]
    error = broken(edited(exported, lambda ls: ls.__setitem__(31, ls[31].replace(head_10, "ab" * 32))))
    assert error.seq == 10 and "checkpoint head" in error.reason
    error = broken(edited(exported, lambda ls: ls.pop()))
    assert error.seq == 31 and "truncated" in error.reason
    error = broken(edited(exported, lambda ls: ls.__setitem__(1, ls[1].replace(
        '"kind":"event"', '"kind":"event","kind":"event"'))))
    assert error.seq == 1 and "duplicate key" in error.reason
    lines = edited(exported, lambda ls: ls.__setitem__(0, ls[0].replace(GENESIS, "11" * 32)))
    error = broken(lines)
    assert error.seq == 1 and "header" in error.reason


async def test_export_refuses_a_tampered_store(chain: Backend, tmp_path: Path) -> None:
    chain.drop_guards()
    chain.sql("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 12")
    target = tmp_path / "x.jsonl"
    with pytest.raises(AuditIntegrityError) as info:
        await export(chain, target, start_seq=1, end_seq=5)  # outside the range: still refused
    assert info.value.seq == 12
    assert not target.exists() and leftovers(tmp_path) == []


async def test_a_record_changed_after_verification_is_refused(chain: Backend, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    original = AuditStore.iter_records

    async def forged(self: AuditStore, *args: Any, **kwargs: Any) -> AsyncIterator[AuditRecord]:
        async for record in original(self, *args, **kwargs):
            yield dataclasses.replace(record, actor="mallory") if record.seq == 5 else record

    monkeypatch.setattr(AuditStore, "iter_records", forged)
    target = tmp_path / "x.jsonl"
    with pytest.raises(AuditIntegrityError) as info:
        await export(chain, target, batch=3)
    assert info.value.seq == 5 and "entry hash mismatch" in info.value.reason
    assert not target.exists() and leftovers(tmp_path) == []


async def test_existing_file_is_not_overwritten_unless_asked(chain: Backend, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    await export(chain, target)
    before = target.read_bytes()
    with pytest.raises(InputError, match="overwrite=True"):
        await export(chain, target, start_seq=1, end_seq=3)
    assert target.read_bytes() == before
    report = await export(chain, target, start_seq=1, end_seq=3, overwrite=True)
    assert report.events == 3 and verify_export(target) == ExportCheck(3, 1, 3, hashes(chain)[3], 0)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("kwargs", [
    {"start_time": datetime(2024, 3, 1)},
    {"end_time": datetime(2024, 3, 2)},
    {"start_time": T0 + timedelta(hours=1), "end_time": T0},
    {"start_seq": 0},
    {"start_seq": 5, "end_seq": 4},
    {"batch": 0},
])
async def test_bad_arguments_are_refused(chain: Backend, tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        await export(chain, tmp_path / "x.jsonl", **kwargs)
    assert not (tmp_path / "x.jsonl").exists()
