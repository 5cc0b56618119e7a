"""Tampering behind the library's back (raw sqlite3 / psycopg, triggers dropped first) must be
detected, and the error must name the first bad sequence number.

Every test builds the same chain: 30 events, appended 5 at a time, signed checkpoints at
seq 10, 20 and 30 in the database and in an anchor file outside it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from compliance.audit import AuditEvent, CheckpointSigner, VerificationReport, verify_chain
from compliance.audit.hashing import GENESIS, chain_hash, digest_text, encode_entry, occurred_text
from compliance.errors import AuditIntegrityError

from .conftest import Backend

pytestmark = pytest.mark.integration

EVENTS = 30
COLUMNS = ("seq, event_id, occurred_at, event_type, actor, tenant, request_id, parent_event_id, "
           "payload, payload_digest, prev_hash, entry_hash")


@pytest.fixture
async def chain(backend: Backend, signer: CheckpointSigner, anchor: Path) -> Backend:
    async with backend.store(signer=signer, checkpoint_every=10, anchor=anchor) as store:
        for start in range(0, EVENTS, 5):
            await store.append_many([
                AuditEvent("retrieval", f"user-{i % 3}", {"query": f"question {i}", "k": i},
                           tenant="acme", request_id=f"r-{i}") for i in range(start, start + 5)])
        assert len(await store.checkpoints()) == 3
    assert len(anchor_lines(anchor)) == 3
    backend.drop_guards()
    return backend


def anchor_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


async def verify(backend: Backend, **kwargs: Any) -> VerificationReport:
    async with backend.store() as store:
        return await verify_chain(store, **kwargs)


async def broken_at(backend: Backend, **kwargs: Any) -> AuditIntegrityError:
    with pytest.raises(AuditIntegrityError) as info:
        await verify(backend, **kwargs)
    return info.value


def rows(backend: Backend) -> list[tuple[Any, ...]]:
    return backend.sql(f"SELECT {COLUMNS} FROM audit_events ORDER BY seq")


def rewrite_from(backend: Backend, seq: int, payload: str) -> None:
    """The strong attacker: change a payload, then recompute every digest and hash after it."""
    prev = GENESIS
    for row in rows(backend):
        if row[0] < seq:
            prev = row[11]
            continue
        text = payload if row[0] == seq else row[8]
        digest = digest_text(text)
        entry = encode_entry(seq=row[0], event_id=row[1], occurred_at=occurred_text(row[2]),
                             event_type=row[3], actor=row[4], tenant=row[5], request_id=row[6],
                             parent_event_id=row[7], payload_digest=digest)
        new_hash = chain_hash(prev, entry)
        backend.sql("UPDATE audit_events SET payload = ?, payload_digest = ?, prev_hash = ?, "
                    "entry_hash = ? WHERE seq = ?", (text, digest, prev, new_hash, row[0]))
        prev = new_hash
    backend.sql("UPDATE audit_head SET entry_hash = ? WHERE id = 1", (prev,))


async def test_untouched_chain_verifies_with_checkpoints_and_anchor(
        chain: Backend, anchor: Path, signer: CheckpointSigner) -> None:
    report = await verify(chain, anchor=anchor, public_key=signer.public_key_hex)
    assert (report.events_checked, report.first_seq, report.last_seq) == (EVENTS, 1, EVENTS)
    assert report.checkpoints_checked == 3 and report.signatures_checked == 3
    assert report.anchor_lines_checked == 3
    assert report.last_valid_checkpoint is not None and report.last_valid_checkpoint.seq == 30
    assert report.head_hash == rows(chain)[-1][11]


async def test_one_changed_payload_byte(chain: Backend) -> None:
    payload = chain.sql("SELECT payload FROM audit_events WHERE seq = 7")[0][0]
    chain.sql("UPDATE audit_events SET payload = ? WHERE seq = 7",
              (payload.replace("question 6", "question 9"),))
    error = await broken_at(chain)
    assert error.seq == 7 and "payload" in error.reason


async def test_changed_timestamp(chain: Backend) -> None:
    value = chain.sql("SELECT occurred_at FROM audit_events WHERE seq = 12")[0][0]
    if isinstance(value, str):  # SQLite stores text
        changed: Any = (datetime.fromisoformat(value) + timedelta(seconds=1)).isoformat(
            sep=" ", timespec="microseconds")
    else:
        changed = value + timedelta(seconds=1)
    chain.sql("UPDATE audit_events SET occurred_at = ? WHERE seq = 12", (changed,))
    error = await broken_at(chain)
    assert error.seq == 12 and "entry hash" in error.reason


async def test_same_instant_spelled_differently_is_refused(chain: Backend) -> None:
    """SQLite keeps times as text and range queries compare that text: another spelling of the
    same instant could hide a row from them, so verification refuses it."""
    if chain.name != "sqlite":
        pytest.skip("PostgreSQL stores timestamptz, not text")
    value = chain.sql("SELECT occurred_at FROM audit_events WHERE seq = 4")[0][0]
    chain.sql("UPDATE audit_events SET occurred_at = ? WHERE seq = 4", (value.replace(" ", "T"),))
    error = await broken_at(chain)
    assert error.seq == 4 and "stored form" in error.reason


async def test_python_built_entries_detect_the_same_tampering(chain: Backend) -> None:
    """The path PostgreSQL (and SQLite without JSON functions) takes."""
    chain.sql("UPDATE audit_events SET tenant = 'globex' WHERE seq = 17")
    async with chain.store() as store:
        store._sqlite_json = False  # force the fallback
        with pytest.raises(AuditIntegrityError) as info:
            await verify_chain(store)
    assert info.value.seq == 17


async def test_changed_actor_even_with_a_recomputed_digest(chain: Backend) -> None:
    chain.sql("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 3")
    assert (await broken_at(chain)).seq == 3


async def test_deleted_middle_row(chain: Backend) -> None:
    chain.sql("DELETE FROM audit_events WHERE seq = 15")
    error = await broken_at(chain)
    assert error.seq == 15 and "missing" in error.reason


async def test_deleted_tail_with_head_left_alone(chain: Backend) -> None:
    chain.sql("DELETE FROM audit_events WHERE seq > 25")
    assert (await broken_at(chain)).seq == 26


async def test_deleted_tail_with_head_rolled_back_is_caught_by_the_checkpoint(chain: Backend) -> None:
    tail_hash = chain.sql("SELECT entry_hash FROM audit_events WHERE seq = 25")[0][0]
    chain.sql("DELETE FROM audit_events WHERE seq > 25")
    chain.sql("UPDATE audit_head SET seq = 25, entry_hash = ? WHERE id = 1", (tail_hash,))
    error = await broken_at(chain)
    assert error.seq == 26 and "tail deleted" in error.reason


async def test_deleted_tail_and_checkpoints_is_caught_only_by_the_anchor(
        chain: Backend, anchor: Path) -> None:
    tail_hash = chain.sql("SELECT entry_hash FROM audit_events WHERE seq = 25")[0][0]
    chain.sql("DELETE FROM audit_events WHERE seq > 25")
    chain.sql("DELETE FROM audit_checkpoints WHERE seq > 25")
    chain.sql("UPDATE audit_head SET seq = 25, entry_hash = ? WHERE id = 1", (tail_hash,))
    assert (await verify(chain)).last_seq == 25  # the database alone cannot tell
    error = await broken_at(chain, anchor=anchor)
    assert error.seq == 26 and "tail deleted" in error.reason


async def test_forged_row_inserted_in_the_middle(chain: Backend) -> None:
    for seq in range(EVENTS, 9, -1):  # make room at seq 10, top down to keep seq unique
        chain.sql("UPDATE audit_events SET seq = seq + 1 WHERE seq = ?", (seq,))
    original = rows(chain)[9]  # the old seq 10, now at 11
    forged = (10, "11111111-1111-4111-8111-111111111111", *original[2:8],
              '{"forged":true}', digest_text('{"forged":true}'), original[10], original[11])
    chain.sql(f"INSERT INTO audit_events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", forged)
    chain.sql("UPDATE audit_head SET seq = seq + 1 WHERE id = 1")
    assert (await broken_at(chain)).seq == 10


async def test_forged_row_with_valid_hashes_is_caught_by_the_checkpoint(chain: Backend) -> None:
    for seq in range(EVENTS, 9, -1):
        chain.sql("UPDATE audit_events SET seq = seq + 1 WHERE seq = ?", (seq,))
    prev = chain.sql("SELECT entry_hash FROM audit_events WHERE seq = 9")[0][0]
    original = rows(chain)[9]
    digest = digest_text('{"forged":true}')
    fields = dict(seq=10, event_id="11111111-1111-4111-8111-111111111111",
                  occurred_at=occurred_text(original[2]), event_type=original[3],
                  actor=original[4], tenant=original[5], request_id=original[6],
                  parent_event_id=None, payload_digest=digest)
    forged = (10, fields["event_id"], original[2], *original[3:7], None, '{"forged":true}',
              digest, prev, chain_hash(prev, encode_entry(**fields)))
    chain.sql(f"INSERT INTO audit_events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", forged)
    # row 10 links to 9 correctly; row 11 no longer links, but the signed head at 10 names 10
    assert (await broken_at(chain)).seq == 10


async def test_forged_row_appended_past_the_head(chain: Backend) -> None:
    last = rows(chain)[-1]
    forged = (31, "22222222-2222-4222-8222-222222222222", *last[2:8], last[8], last[9],
              last[11], "ab" * 32)
    chain.sql(f"INSERT INTO audit_events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", forged)
    error = await broken_at(chain)
    assert error.seq == 31 and "past the recorded chain head" in error.reason


async def test_two_rows_swapped(chain: Backend) -> None:
    five, six = rows(chain)[4], rows(chain)[5]
    chain.sql("UPDATE audit_events SET seq = -6 WHERE seq = 6")
    chain.sql("UPDATE audit_events SET seq = 6 WHERE seq = 5")
    chain.sql("UPDATE audit_events SET seq = 5 WHERE seq = -6")
    assert rows(chain)[4][1] == six[1] and rows(chain)[5][1] == five[1]
    error = await broken_at(chain)
    assert error.seq == 5 and "prev_hash" in error.reason


async def test_full_rewrite_with_recomputed_hashes_is_caught_only_by_the_anchor(
        chain: Backend, anchor: Path, signer: CheckpointSigner) -> None:
    rewrite_from(chain, 8, '{"k":7,"query":"nothing to see"}')
    chain.sql("DELETE FROM audit_checkpoints")
    assert (await verify(chain)).events_checked == EVENTS  # perfect forgery for the database
    error = await broken_at(chain, anchor=anchor)
    assert error.seq == 10 and "anchored head" in error.reason
    error = await broken_at(chain, anchor=anchor, public_key=signer.public_key_hex)
    assert error.seq == 10


async def test_full_rewrite_keeping_checkpoint_rows_is_caught_by_them(chain: Backend) -> None:
    rewrite_from(chain, 8, '{"k":7,"query":"nothing to see"}')
    error = await broken_at(chain)
    assert error.seq == 10 and "checkpointed head" in error.reason


async def test_rewrite_re_signed_with_another_key(chain: Backend, anchor: Path,
                                                  signer: CheckpointSigner) -> None:
    rewrite_from(chain, 8, '{"k":7,"query":"nothing to see"}')
    forger = CheckpointSigner.generate()
    for seq, _ in chain.sql("SELECT seq, id FROM audit_checkpoints ORDER BY seq"):
        head = chain.sql("SELECT entry_hash FROM audit_events WHERE seq = ?", (seq,))[0][0]
        fake = forger.sign(seq, head, datetime.fromisoformat("2030-01-01T00:00:00+00:00"))
        chain.sql("UPDATE audit_checkpoints SET head_hash = ?, signature = ?, key_id = ? "
                  "WHERE seq = ?", (fake.head_hash, fake.signature, fake.key_id, seq))
    error = await broken_at(chain, public_key=signer.public_key_hex)
    assert error.seq == 10 and "unknown key" in error.reason
    assert (await broken_at(chain, anchor=anchor)).seq == 10


async def test_edited_checkpoint_signature_is_caught(chain: Backend, signer: CheckpointSigner) -> None:
    chain.sql("UPDATE audit_checkpoints SET signature = ? WHERE seq = 20", ("00" * 64,))
    error = await broken_at(chain, public_key=signer.public_key_hex)
    assert error.seq == 20 and "signature" in error.reason


async def test_edited_anchor_line_is_caught(chain: Backend, anchor: Path) -> None:
    lines = anchor_lines(anchor)
    lines[1] = lines[1].replace('"seq":20', '"seq":19')
    write_lines(anchor, lines)
    error = await broken_at(chain, anchor=anchor)
    assert error.seq == 19 and "invalid signature" in error.reason


async def test_anchor_from_an_untrusted_key_is_refused(chain: Backend, anchor: Path) -> None:
    other = CheckpointSigner.generate()
    error = await broken_at(chain, anchor=anchor, public_key=other.public_key_hex)
    assert error.seq == 10 and "untrusted" in error.reason


async def test_range_verification_finds_a_tamper_inside_the_range(chain: Backend) -> None:
    chain.sql("UPDATE audit_events SET actor = 'x' WHERE seq = 22")
    assert (await verify(chain, start=1, end=21)).last_seq == 21
    report = await verify(chain, start=5, end=15, batch=4)
    assert (report.first_seq, report.last_seq, report.events_checked) == (5, 15, 11)
    with pytest.raises(AuditIntegrityError) as info:
        await verify(chain, start=21, end=25, batch=2)
    assert info.value.seq == 22


@pytest.mark.parametrize("batch", [1, 4, 7])
async def test_small_batches_give_the_same_answers(chain: Backend, anchor: Path, batch: int) -> None:
    """Prefetching batches by seq range must not change what is found, or where."""
    report = await verify(chain, anchor=anchor, batch=batch)
    assert report.events_checked == EVENTS and report.checkpoints_checked == 3
    assert report.anchor_lines_checked == 3
    chain.drop_guards()  # opening the store (as the owner) reinstalled them
    chain.sql("UPDATE audit_events SET actor = 'x' WHERE seq = 23")
    chain.sql("DELETE FROM audit_events WHERE seq = 27")
    assert (await broken_at(chain, batch=batch)).seq == 23
    chain.drop_guards()
    chain.sql("DELETE FROM audit_events WHERE seq >= 13")
    assert (await broken_at(chain, batch=batch)).seq == 13
