"""Chain verification: recompute every digest and hash, check checkpoints and the anchor file.

What each check catches (the first failure raises :class:`AuditIntegrityError` naming its seq):

========================================  ==================================================
check                                     catches
========================================  ==================================================
seq is 1, 2, 3, … without holes           a deleted row (names the first missing seq)
``prev_hash`` = previous ``entry_hash``   reordered, swapped or inserted rows
SHA-256(payload) = ``payload_digest``     an edited payload (a NULL payload is a redaction)
recomputed ``entry_hash`` = stored one    any edited field: time, type, actor, tenant, digest
``audit_head`` = last entry, no row past  a deleted tail (head not rolled back), a forged row
signed checkpoints match the chain        a tail deletion or rewrite that did not re-sign
anchor file lines match the chain         a full rewrite with every hash recomputed and the
                                          checkpoint rows dropped: only an anchor outside the
                                          database can prove the old head existed
signed prune point (chain pruned)         the first remaining row must link to the signed
                                          hash of the last pruned one: a forged prefix, or a
                                          prune point whose signature or key does not check
========================================  ==================================================

After retention pruned the oldest rows (pruning.py), verification starts at the newest prune
point: its Ed25519 signature is checked (against the pinned or anchored keys when given, else
against the key stored with it) and an anchor line at its seq must agree; from there on every
check above applies unchanged.

Limits: events appended after the last anchored checkpoint can be removed without trace by
someone who can rewrite the database, so anchor often (``checkpoint_every``) and keep the
anchor file on storage the database host cannot rewrite. And anyone who can write the chain
can append new, correctly hashed events at its end: the chain proves that what was recorded
has not been altered, not that every event is genuine (that is access control's job).

How it runs: rows stream ``batch`` at a time (memory stays flat in the number of events;
anchor lines are held in memory, one small object per checkpoint), the next batch is fetched
while the current one is hashed in a worker thread, and the per-event work is the small pure
:func:`check_entry` (one SHA-256 of the payload, two of the chain). On SQLite the database
builds each entry's canonical bytes in the same query (see engine.sqlite_entry_sql). Any row
:func:`check_entry` does not pass is fetched raw and re-checked by :func:`check_record`, the
reference implementation, which raises the precise error, so the fast path can only speed
verification up, never decide it.

Example::

    report = await verify_chain(store, anchor=Path("audit-anchor.jsonl"),
                                public_key=signer.public_key_hex)
    print(report.events_checked, report.head_hash, report.last_valid_checkpoint)
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import AuditIntegrityError, ComplianceError
from .checkpoints import PublicKeyLike, key_id_of, load_public_key, read_anchor, signature_valid
from .hashing import (
    _LEAF_STATE,
    _LINK_STATE,
    GENESIS,
    chain_hash,
    digest_text,
    encode_entry,
    occurred_text,
)
from .models import Checkpoint
from .pruning import check_prune_point
from .store import AuditStore, ChainRow

__all__ = ["EntryRow", "VerificationReport", "check_entries", "check_entry", "check_record",
           "verify_chain"]

EntryRow = Sequence[Any]
"""(seq, payload bytes or None, payload_digest, prev_hash, entry_hash, entry bytes or None)."""

_sha256 = hashlib.sha256
_PREFETCH = 1  # two fetches in flight were slower in benchmarks/audit.py on 2 cores: each
# fetching thread retakes the GIL per row, and two of them plus the hashing thread thrash


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """What a successful :func:`verify_chain` checked."""

    events_checked: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str
    last_valid_checkpoint: Checkpoint | None
    seconds: float
    checkpoints_checked: int = 0
    signatures_checked: int = 0
    anchor_lines_checked: int = 0
    redacted_events: int = 0
    pruned_through: int | None = None
    """Events up to this seq were pruned; verification started after it (signed prune point)."""

    @property
    def events_per_second(self) -> float | None:
        return self.events_checked / self.seconds if self.seconds > 0 else None


def check_entry(row: EntryRow, expected_seq: int, prev_hash: str) -> str | None:
    """The per-event hot path: ``row``'s entry hash if it verifies, else ``None``.

    ``row`` is (seq, payload bytes or None, payload_digest, prev_hash, entry_hash, encoded
    entry bytes or None) as :meth:`AuditStore.entry_rows` returns it. ``None`` means "look
    closer": :func:`check_record` then re-checks the raw row and names the problem.
    """
    seq, payload, digest, stored_prev, stored_hash, entry = row
    if seq != expected_seq or stored_prev != prev_hash or entry is None:
        return None
    if payload is not None and _sha256(payload).hexdigest() != digest:
        return None
    leaf = _LEAF_STATE.copy()
    leaf.update(entry)
    link = _LINK_STATE.copy()
    link.update(bytes.fromhex(prev_hash))
    link.update(leaf.digest())
    computed: str = link.hexdigest()
    return computed if computed == stored_hash else None


def check_entries(rows: Sequence[EntryRow], start: int, first_seq: int, prev_hash: str,
                  into: list[str]) -> tuple[int, int]:
    """Fast-check ``rows[start:]`` (``rows[start]`` has ``first_seq``), appending each verified
    entry hash to ``into``. Returns the index of the first row that needs a closer look (or
    ``len(rows)``) and how many verified rows were redacted."""
    append = into.append
    redacted = 0
    seq, index, count = first_seq, start, len(rows)
    while index < count:
        row = rows[index]
        entry_hash = check_entry(row, seq, prev_hash)
        if entry_hash is None:
            return index, redacted
        append(entry_hash)
        prev_hash = entry_hash
        if row[1] is None:
            redacted += 1
        seq += 1
        index += 1
    return count, redacted


def check_record(row: ChainRow, expected_seq: int, prev_hash: str) -> str:
    """Check one raw stored row against its predecessor's hash with the reference encoding of
    hashing.py; return its entry hash or raise :class:`AuditIntegrityError` saying what is wrong.
    """
    (seq, event_id, occurred, event_type, actor, tenant, request_id, parent, payload, digest,
     stored_prev, stored_hash) = row
    if seq != expected_seq:
        raise AuditIntegrityError(expected_seq, f"seq {expected_seq}", f"seq {seq}",
                                  "row missing: the sequence has a gap")
    if stored_prev != prev_hash:
        raise AuditIntegrityError(seq, prev_hash, stored_prev,
                                  "prev_hash does not link to the previous entry (this row or "
                                  "the one before it was inserted, removed or reordered)")
    try:
        found = None if payload is None else digest_text(payload)
        computed = chain_hash(prev_hash, encode_entry(
            seq=seq, event_id=event_id, occurred_at=occurred_text(occurred),
            event_type=event_type, actor=actor, tenant=tenant, request_id=request_id,
            parent_event_id=parent, payload_digest=digest))
    except (TypeError, ValueError, AttributeError) as exc:  # a value of the wrong type or form
        raise AuditIntegrityError(seq, None, None, f"unreadable field: {exc}") from exc
    if found is not None and found != digest:
        raise AuditIntegrityError(seq, digest, found, "payload does not match its digest")
    if computed != stored_hash:
        raise AuditIntegrityError(seq, computed, stored_hash,
                                  "entry hash mismatch: a field of this event was changed")
    return computed


def _trusted_keys(public_key: PublicKeyLike | Sequence[PublicKeyLike] | None,
                  ) -> dict[str, Ed25519PublicKey]:
    if public_key is None:
        return {}
    if isinstance(public_key, Ed25519PublicKey | bytes | str):
        keys = [load_public_key(public_key)]
    else:
        keys = [load_public_key(k) for k in public_key]
    return {key_id_of(k): k for k in keys}


def _load_anchor(path: Path, keys: dict[str, Ed25519PublicKey], pinned: bool) -> list[Checkpoint]:
    """Read and signature-check every anchor line; trusted keys are added to ``keys``."""
    out: list[Checkpoint] = []
    for line in read_anchor(path):
        cp, where = line.checkpoint, f"anchor {path} line {line.line_no}"
        try:
            key = load_public_key(line.public_key_hex)
        except ComplianceError as exc:
            raise AuditIntegrityError(cp.seq, None, line.public_key_hex,
                                      f"{where}: unreadable public key") from exc
        key_id = key_id_of(key)
        if key_id != cp.key_id:
            raise AuditIntegrityError(cp.seq, key_id, cp.key_id,
                                      f"{where}: key_id does not match its public key")
        if pinned and key_id not in keys:
            raise AuditIntegrityError(cp.seq, None, key_id, f"{where}: signed by an untrusted key")
        if not signature_valid(key, cp):
            raise AuditIntegrityError(cp.seq, None, cp.signature, f"{where}: invalid signature")
        keys.setdefault(key_id, key)
        out.append(cp)
    out.sort(key=lambda c: c.seq)
    return out


@dataclass(slots=True)
class _Tally:
    """Mutable running totals of one verification."""

    keys: dict[str, Ed25519PublicKey]
    anchors: list[Checkpoint]
    next_anchor: int = 0
    checkpoints: int = 0
    signatures: int = 0
    anchor_lines: int = 0
    redacted: int = 0
    last_good: Checkpoint | None = None
    last_good_anchor: int = 0

    def signed(self, cp: Checkpoint) -> None:
        if not self.keys:
            return  # nothing to check against: reported as signatures_checked == 0
        key = self.keys.get(cp.key_id)
        if key is None:
            raise AuditIntegrityError(cp.seq, None, cp.key_id, "checkpoint signed by an unknown key")
        if not signature_valid(key, cp):
            raise AuditIntegrityError(cp.seq, None, cp.signature, "checkpoint signature invalid")
        self.signatures += 1

    def matched(self, cp: Checkpoint, found: str, source: str) -> None:
        if found != cp.head_hash:
            since = ""
            if source == "anchored" and self.last_good_anchor:
                since = f", after seq {self.last_good_anchor} (the last anchored head that matched)"
            raise AuditIntegrityError(cp.seq, cp.head_hash, found,
                                      f"chain differs from the {source} head: rewritten at or "
                                      f"before seq {cp.seq}{since}")
        if source == "anchored":
            self.last_good_anchor = cp.seq
        if self.last_good is None or cp.seq >= self.last_good.seq:
            self.last_good = cp

    def check_range(self, lo: int, hashes: list[str], stored: list[Checkpoint]) -> None:
        """Checkpoints and anchor lines whose seq falls in ``lo .. lo+len(hashes)-1``."""
        hi = lo + len(hashes) - 1
        while self.next_anchor < len(self.anchors) and self.anchors[self.next_anchor].seq <= hi:
            cp = self.anchors[self.next_anchor]
            self.next_anchor += 1
            if cp.seq >= lo:
                self.matched(cp, hashes[cp.seq - lo], "anchored")
                self.anchor_lines += 1
        for cp in stored:
            self.signed(cp)
            self.matched(cp, hashes[cp.seq - lo], "checkpointed")
            self.checkpoints += 1


async def _check_batch(store: AuditStore, rows: list[EntryRow], first: int, prev: str,
                       tally: _Tally) -> list[str]:
    """Entry hashes of one batch: fast checks in a worker thread, and for any row they do not
    pass, the raw row re-checked by :func:`check_record` (which raises, naming the seq)."""
    hashes: list[str] = []
    index = 0
    try:
        while True:
            index, redacted = await asyncio.to_thread(
                check_entries, rows, index, first + index, hashes[-1] if hashes else prev, hashes)
            tally.redacted += redacted
            if index == len(rows):
                return hashes
            seq = first + index
            raw = await store.chain_rows(after=seq - 1, end=seq, limit=1)
            if not raw:
                raise AuditIntegrityError(seq, f"seq {seq}", None,
                                          "row missing: the sequence has a gap")
            hashes.append(check_record(raw[0], seq, hashes[-1] if hashes else prev))
            tally.redacted += raw[0][8] is None
            index += 1
    except AuditIntegrityError:
        if hashes:  # a signed head inside the verified prefix may name an earlier seq
            tally.check_range(first, hashes,
                              await store.checkpoints(start=first, end=first + len(hashes) - 1))
        raise


async def _prev_hash(store: AuditStore, first: int) -> str:
    if first == 1:
        return GENESIS
    rows = await store.chain_rows(after=first - 2, end=first - 1, limit=1)
    if not rows:
        raise AuditIntegrityError(first - 1, None, None, "row missing before the verified range")
    return str(rows[0][11])


async def _check_beyond(store: AuditStore, stop: int, tally: _Tally) -> None:
    """Heads promised past the verified range must at least exist (tail deletion)."""
    promised = [cp.seq for cp in await store.checkpoints(start=stop + 1)]
    promised += [cp.seq for cp in tally.anchors if cp.seq > stop]
    last = await store.max_seq()  # read after the checkpoints: a concurrent one is <= last
    if promised and max(promised) > last:
        raise AuditIntegrityError(last + 1, f"events up to seq {max(promised)}",
                                  f"chain ends at seq {last}",
                                  "events missing: a checkpoint or anchor names a later head "
                                  "(tail deleted)")


async def verify_chain(store: AuditStore, *, anchor: str | Path | None = None,
                       public_key: PublicKeyLike | Sequence[PublicKeyLike] | None = None,
                       start: int | None = None, end: int | None = None,
                       batch: int = 5000) -> VerificationReport:
    """Verify ``start``..``end`` (default: the whole chain up to the recorded head).

    ``public_key`` (one or several; object, raw bytes, hex or PEM) pins the keys checkpoints
    and anchor lines must be signed with. Without it, keys named in the anchor file are
    trusted (their key_id must match), and with neither, checkpoint signatures cannot be
    checked: ``signatures_checked`` is then 0 and only head hashes are compared. A range
    starting after 1 trusts the stored hash of ``start - 1``. On a pruned chain verification
    starts after the newest prune point, from its signed hash (``pruned_through``).

    Example::

        report = await verify_chain(store, anchor=Path("anchor.jsonl"), public_key=pub_hex)
        assert report.last_seq == (await store.head()).seq
    """
    began = time.perf_counter()
    keys = _trusted_keys(public_key)
    anchors = [] if anchor is None else await asyncio.to_thread(
        _load_anchor, Path(anchor), keys, bool(keys))
    tally = _Tally(keys=keys, anchors=anchors)
    head = await store.head()
    first = max(start or 1, 1)
    # Only a chain whose first rows are gone can have been pruned: look for a prune point then
    # (so verifiers of a never-pruned chain need no access to audit_prunes).
    point = None
    if first <= head.seq and not await store.chain_rows(
            after=first - 2 if first > 1 else 0, end=max(first - 1, 1), limit=1):
        point = await store.prune_point()
    pruned: str | None = None
    if point is not None and first <= point.through_seq:
        if check_prune_point(point, tally.keys):
            tally.signatures += 1
        for cp in anchors:
            if cp.seq == point.through_seq:
                tally.matched(cp, point.entry_hash, "anchored")
                tally.anchor_lines += 1
        first, pruned = point.through_seq + 1, point.entry_hash
    stop = head.seq if end is None else min(end, head.seq)
    if pruned is not None:
        prev = pruned
    else:
        prev = await _prev_hash(store, first) if first <= stop else GENESIS
    expected = first
    # Batches are fetched ahead by seq range (up to _PREFETCH at once: SQLite builds entries
    # while the GIL is free, so the next fetch overlaps the hashing). A range is only used
    # once every batch before it verified, i.e. once the seqs before it are known gap-free.
    ahead: deque[asyncio.Task[Any]] = deque()
    next_after = expected - 1
    try:
        while expected <= stop:
            if not ahead:  # after a short batch (rows missing): fetch from where we are
                next_after = expected - 1
            while len(ahead) < _PREFETCH and next_after < stop:
                ahead.append(asyncio.ensure_future(
                    store.entry_rows(after=next_after, end=stop, limit=batch)))
                next_after += batch
            rows: list[EntryRow] = await ahead.popleft()
            if not rows:
                raise AuditIntegrityError(expected, None, None,
                                          f"row missing: the chain ends at seq {expected - 1}, "
                                          f"the head says {stop}")
            nxt = expected + len(rows)
            hashes = await _check_batch(store, rows, expected, prev, tally)
            tally.check_range(expected, hashes, await store.checkpoints(start=expected, end=nxt - 1))
            prev, expected = hashes[-1], nxt
    finally:
        for task in ahead:
            task.cancel()
    checked = expected - first
    if end is None:
        if head.seq >= first and prev != head.entry_hash:
            raise AuditIntegrityError(head.seq, prev, head.entry_hash,
                                      "audit_head disagrees with the last entry")
        last = await store.max_seq()
        recorded = await store.head()  # read after max_seq: appends move both in one commit
        if last > recorded.seq:
            raise AuditIntegrityError(recorded.seq + 1, None, f"row at seq {last}",
                                      "rows past the recorded chain head (forged or head rolled back)")
    await _check_beyond(store, max(stop, first - 1), tally)
    return VerificationReport(
        events_checked=checked, first_seq=first if checked else None,
        last_seq=expected - 1 if checked else None, head_hash=prev,
        last_valid_checkpoint=tally.last_good, seconds=time.perf_counter() - began,
        checkpoints_checked=tally.checkpoints, signatures_checked=tally.signatures,
        anchor_lines_checked=tally.anchor_lines, redacted_events=tally.redacted,
        pruned_through=point.through_seq if pruned is not None and point is not None else None)
