"""JSONL export of a range of the audit chain that an auditor re-verifies without the database.

:func:`export_jsonl` verifies the whole chain first (refusing a store that does not verify),
then writes a *contiguous* seq range, one sorted-key compact UTF-8 JSON object per line: a
``header`` (``first_seq``, ``last_seq``, the ``prev_hash`` the first event links to, filters),
one ``event`` per record (``payload`` parsed, ``null`` once redacted), the ``checkpoint`` rows
in the range and a ``trailer`` (event count, the store's verification report). A time range
runs from the first record with ``occurred_at >= start_time`` to the last with ``occurred_at <
end_time`` (times are only roughly monotone: an edge record may lie outside the window).
:func:`verify_export` re-checks a file with hashing.py through :func:`check_record`, exactly as
:func:`verify_chain` does; the export's ``sha256`` is the receipt pinning the whole file.

Example::

    async with AuditStore("sqlite:///audit.db") as store:
        report = await export_jsonl(store, "audit-2024-03.jsonl",
                                    start_time=datetime(2024, 3, 1, tzinfo=UTC),
                                    end_time=datetime(2024, 4, 1, tzinfo=UTC))
    check = verify_export("audit-2024-03.jsonl")  # later, elsewhere, without the database
    assert (check.events, check.last_seq) == (report.events, report.last_seq)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from advanced_rag.errors import InputError

from ..errors import AuditIntegrityError
from .checkpoints import PublicKeyLike
from .hashing import GENESIS, canonical_json, rfc3339
from .models import AuditRecord
from .store import AuditStore
from .verify import VerificationReport, check_record, verify_chain

__all__ = ["ExportCheck", "ExportReport", "export_jsonl", "verify_export"]

FORMAT = "advanced-rag-audit-export/1"
_EVENT_KEYS = frozenset({"kind", "seq", "event_id", "occurred_at", "event_type", "actor", "tenant",
                         "request_id", "parent_event_id", "payload", "payload_digest", "prev_hash",
                         "entry_hash"})
_CHECKPOINT_KEYS = frozenset({"kind", "seq", "head_hash", "created_at", "signature", "key_id"})
_REPORTED = ("events_checked", "head_hash", "last_seq", "checkpoints_checked", "signatures_checked",
             "anchor_lines_checked", "redacted_events")


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What :func:`export_jsonl` wrote; ``sha256`` (hex, of the UTF-8 bytes) is the receipt."""

    path: Path | None
    events: int
    first_seq: int | None
    last_seq: int | None
    verification: VerificationReport
    sha256: str


@dataclass(frozen=True, slots=True)
class ExportCheck:
    """What :func:`verify_export` re-verified; ``head_hash`` is the last event's entry hash."""

    events: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str | None
    redacted: int


def _time(when: str) -> datetime:
    """An RFC 3339 text exactly as :func:`rfc3339` writes it (one spelling per instant)."""
    value = datetime.fromisoformat(when)
    if rfc3339(value) != when:
        raise ValueError(f"{when!r} is not RFC 3339 UTC with six fractional digits")
    return value


class _Checker:
    """Re-verifies export lines one by one: used by :func:`verify_export` and by the exporter on
    what it writes. Keeps 32 bytes per event for checkpoint lines, or, when ``wanted`` names
    the checkpointed seqs in advance, only theirs."""

    def __init__(self, wanted: frozenset[int] | None = None) -> None:
        self.wanted, self.kept, self.all = wanted, dict[int, str](), bytearray()
        self.stage, self.first, self.last, self.checkpoint_seq = "start", 0, 0, 0
        self.expected, self.prev, self.events, self.redacted = 0, GENESIS, 0, 0

    def bad(self, why: str, seq: int | None = None, expected: str | None = None,
            actual: str | None = None) -> AuditIntegrityError:
        return AuditIntegrityError(self.expected if seq is None else seq, expected, actual, why)

    def feed(self, obj: Any) -> None:
        kind = obj.get("kind") if isinstance(obj, dict) else None
        if self.stage == "start" and kind == "header":
            self._header(obj)
        elif self.stage == "events" and kind == "event":
            self._event(obj)
        elif self.stage in ("events", "checkpoints") and kind in ("checkpoint", "trailer"):
            if self.expected <= self.last:
                raise self.bad(f"event lines missing: seq {self.expected}..{self.last} are not in the "
                               "file", expected=f"seq {self.expected}", actual=f"a {kind} line")
            self._checkpoint(obj) if kind == "checkpoint" else self._trailer(obj)
        else:
            raise self.bad(f"unexpected {kind!r} line in stage {self.stage!r} (lines reordered, "
                           "added, or the header or trailer lost)")

    def _header(self, obj: dict[str, Any]) -> None:
        first, last, prev = obj.get("first_seq"), obj.get("last_seq"), obj.get("prev_hash")
        if obj.get("format") != FORMAT:
            raise self.bad(f"unknown export format {obj.get('format')!r}", 0, FORMAT)
        if first is None and last is None and prev is None:  # an empty selection
            self.last = -1
        elif (type(first) is int and type(last) is int and 1 <= first <= last
              and isinstance(prev, str) and len(prev) == 64 and (first > 1 or prev == GENESIS)):
            self.first, self.last, self.expected, self.prev = first, last, first, prev
        else:
            raise self.bad(f"malformed header: first_seq {first!r}, last_seq {last!r}, "
                           f"prev_hash {prev!r}", first if type(first) is int else 0)
        self.stage = "events"

    def _event(self, obj: dict[str, Any]) -> None:
        seq, payload = obj.get("seq"), obj.get("payload")
        if type(seq) is not int or seq != self.expected or seq > self.last:
            raise self.bad("event line missing, out of order or past the header's last_seq",
                           expected=f"seq {self.expected}", actual=f"seq {seq}")
        if set(obj) != _EVENT_KEYS:
            raise self.bad(f"event fields differ: {sorted(set(obj) ^ _EVENT_KEYS)}")
        try:
            if payload is not None and not isinstance(payload, dict):
                raise TypeError(f"payload must be an object or null, got {type(payload).__name__}")
            row = (seq, obj["event_id"], _time(obj["occurred_at"]), obj["event_type"], obj["actor"],
                   obj["tenant"], obj["request_id"], obj["parent_event_id"],
                   None if payload is None else canonical_json(payload), obj["payload_digest"],
                   obj["prev_hash"], obj["entry_hash"])
        except (TypeError, ValueError) as exc:
            raise self.bad(f"unreadable field: {exc}") from exc
        self.prev = check_record(row, seq, self.prev)  # the hashing verify_chain uses
        if self.wanted is None:
            self.all += bytes.fromhex(self.prev)
        elif seq in self.wanted:
            self.kept[seq] = self.prev
        self.expected, self.events = seq + 1, self.events + 1
        self.redacted += payload is None

    def _checkpoint(self, obj: dict[str, Any]) -> None:
        self.stage, seq = "checkpoints", obj.get("seq")
        if (set(obj) != _CHECKPOINT_KEYS or type(seq) is not int
                or not max(self.first, self.checkpoint_seq) <= seq <= self.last):
            raise self.bad(f"malformed or misplaced checkpoint line (seq {seq!r})",
                           seq if type(seq) is int else None)
        self.checkpoint_seq, at = seq, (seq - self.first) * 32
        found = self.kept.get(seq) if self.wanted is not None else self.all[at:at + 32].hex()
        if found != obj["head_hash"]:
            raise self.bad("checkpoint head differs from the exported chain", seq, found,
                           str(obj["head_hash"]))

    def _trailer(self, obj: dict[str, Any]) -> None:
        count, report = obj.get("events"), obj.get("verification")
        if type(count) is not int or count != self.events:  # name the first seq they disagree on
            at = self.first + min(count if type(count) is int and count >= 0 else 0, self.events)
            raise self.bad(f"trailer counts {count!r} events, the file holds {self.events}", at,
                           str(self.events), str(count))
        if not isinstance(report, dict) or set(obj) != {"kind", "events", "verification"}:
            raise self.bad("malformed trailer")
        if self.events and report.get("last_seq") == self.last and report.get("head_hash") != self.prev:
            raise self.bad("the verified head differs from the last exported event", self.last,
                           self.prev, str(report.get("head_hash")))
        self.stage = "done"

    def result(self) -> ExportCheck:
        if self.stage != "done":
            raise self.bad("no trailer: the export is truncated")
        if not self.events:
            return ExportCheck(0, None, None, None, 0)
        return ExportCheck(self.events, self.first, self.last, self.prev, self.redacted)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def verify_export(path: str | Path | Iterable[str]) -> ExportCheck:
    """Re-verify an export (a file path, or its lines) with no database: payload digests, entry
    hashes, links from the header's ``prev_hash``, seq contiguity, checkpoint heads against the
    exported hashes, and the trailer count. Raises :class:`AuditIntegrityError`
    naming the first bad seq. Memory: 32 bytes per event.

    Example::

        check = verify_export("audit-2024-03.jsonl")
        check.events, check.last_seq, check.head_hash
    """
    checker, line_no = _Checker(), 0
    handle = open(path, encoding="utf-8") if isinstance(path, str | os.PathLike) else None
    try:
        for line_no, line in enumerate(handle or path, start=1):  # type: ignore[arg-type]  # noqa: B007
            if line.strip():
                try:
                    obj = json.loads(line, object_pairs_hook=_pairs)
                except ValueError as exc:
                    raise checker.bad(f"not a JSON line: {exc}") from exc
                checker.feed(obj)
    except AuditIntegrityError as exc:
        raise AuditIntegrityError(exc.seq, exc.expected, exc.actual,
                                  f"line {line_no}: {exc.reason}") from exc
    except UnicodeDecodeError as exc:
        raise checker.bad(f"after line {line_no}: not UTF-8 ({exc})") from exc
    finally:
        if handle is not None:
            handle.close()
    return checker.result()


class _Sink:
    """Writes lines to ``fh`` once the checker passed them, hashing their UTF-8 bytes."""

    def __init__(self, fh: IO[str], checker: _Checker) -> None:
        self.fh, self.checker, self.sha = fh, checker, hashlib.sha256()

    def put(self, objs: Iterable[dict[str, Any]]) -> None:
        lines = []
        for obj in objs:
            self.checker.feed(obj)
            lines.append(canonical_json(obj) + "\n")
        data = "".join(lines)
        self.sha.update(data.encode("utf-8"))
        self.fh.write(data)

    def events(self, records: list[AuditRecord]) -> None:
        self.put({"kind": "event", "seq": r.seq, "event_id": r.event_id,
                  "occurred_at": rfc3339(r.occurred_at), "event_type": r.event_type.value,
                  "actor": r.actor, "tenant": r.tenant, "request_id": r.request_id,
                  "parent_event_id": r.parent_event_id,
                  "payload": None if r.payload_json is None else json.loads(r.payload_json),
                  "payload_digest": r.payload_digest, "prev_hash": r.prev_hash,
                  "entry_hash": r.entry_hash} for r in records)


def _open_temp(target: Path) -> tuple[Path, IO[str]]:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    return Path(name), os.fdopen(fd, "w", encoding="utf-8", newline="\n")


def _commit(tmp: Path, fh: IO[str], target: Path, overwrite: bool) -> None:
    """fsync, then move into place atomically (never replacing a file unless ``overwrite``)."""
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
    if overwrite:
        os.replace(tmp, target)
    else:
        try:
            os.link(tmp, target)  # atomic, and fails if the name was taken meanwhile
        except FileExistsError as exc:
            raise InputError(f"{target} exists; pass overwrite=True to replace it") from exc
        except OSError:  # no hard links on this filesystem: check, then rename
            if target.exists():
                raise InputError(f"{target} exists; pass overwrite=True to replace it") from None
            os.replace(tmp, target)
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _check_args(start_time: datetime | None, end_time: datetime | None, start_seq: int | None,
                end_seq: int | None, batch: int) -> None:
    if any(t is not None and (not isinstance(t, datetime) or t.utcoffset() is None)
           for t in (start_time, end_time)):
        raise InputError(f"start_time/end_time must be timezone-aware, got {start_time!r}, {end_time!r}")
    if any(n is not None and (type(n) is not int or n < 1) for n in (start_seq, end_seq, batch)):
        raise InputError(f"start_seq/end_seq/batch must be integers >= 1, got {start_seq!r}, "
                         f"{end_seq!r}, {batch!r}")
    if ((start_time and end_time and start_time >= end_time)
            or (start_seq and end_seq and start_seq > end_seq)):
        raise InputError("empty range: the start must come before the end")


async def export_jsonl(store: AuditStore, out: str | Path | IO[str], *,
                       start_time: datetime | None = None, end_time: datetime | None = None,
                       start_seq: int | None = None, end_seq: int | None = None,
                       anchor: str | Path | None = None,
                       public_key: PublicKeyLike | Sequence[PublicKeyLike] | None = None,
                       batch: int = 5000, overwrite: bool = False) -> ExportReport:
    """Verify the whole chain, then write the selected contiguous range, ``batch`` records at a
    time, to ``out``: a path (written beside it, fsynced, then renamed; refused if it exists
    unless ``overwrite``) or an open text stream. Every line is re-checked as it is written
    (a record changed after verification raises too). Raises :class:`AuditIntegrityError`
    or :class:`InputError`. Example: see the module docstring.
    """
    _check_args(start_time, end_time, start_seq, end_seq, batch)
    target = Path(out) if isinstance(out, str | os.PathLike) else None
    if target is not None and not overwrite and await asyncio.to_thread(target.exists):
        raise InputError(f"{target} exists; pass overwrite=True to replace it")
    report = await verify_chain(store, anchor=anchor, public_key=public_key, batch=batch)
    last = report.last_seq or 0
    floor = report.pruned_through or 0  # events up to it were pruned by retention
    lo, hi = max(start_seq or 1, floor + 1), min(end_seq or last, last)
    if start_time is not None:
        found = await store.query(start_time=start_time, limit=1)
        lo = max(lo, found[0].seq if found else hi + 1)
    if end_time is not None:
        found = await store.query(end_time=end_time, limit=1, descending=True)
        hi = min(hi, found[0].seq if found else 0)
    prev: str | None = None if lo > hi else GENESIS
    if 1 < lo <= hi:
        before = await store.get(lo - 1)
        point = await store.prune_point() if before is None and lo - 1 == floor else None
        if before is not None:
            prev = before.entry_hash
        elif point is not None and point.through_seq == floor:  # links to the signed hash
            prev = point.entry_hash
        else:
            raise AuditIntegrityError(lo - 1, None, None, "row missing before the exported range")
    checkpoints = await store.checkpoints(start=lo, end=hi) if lo <= hi else []
    header: dict[str, Any] = {
        "kind": "header", "format": FORMAT, "exported_at": rfc3339(datetime.now(UTC)),
        "first_seq": lo if lo <= hi else None, "last_seq": hi if lo <= hi else None, "prev_hash": prev,
        "filters": {"start_time": start_time and rfc3339(start_time), "start_seq": start_seq,
                    "end_time": end_time and rfc3339(end_time), "end_seq": end_seq}}
    last_cp = report.last_valid_checkpoint
    trailer: dict[str, Any] = {"kind": "trailer", "events": max(hi - lo + 1, 0), "verification": {
        name: getattr(report, name) for name in _REPORTED} | {
        "last_valid_checkpoint_seq": None if last_cp is None else last_cp.seq}}
    tmp, fh = (None, cast(IO[str], out)) if target is None else await asyncio.to_thread(_open_temp, target)
    sink = _Sink(fh, _Checker(wanted=frozenset(cp.seq for cp in checkpoints)))
    try:
        await asyncio.to_thread(sink.put, [header])
        pending: list[AuditRecord] = []
        async for record in store.iter_records(lo, hi, batch):  # nothing when lo > hi
            pending.append(record)
            if len(pending) >= batch:
                await asyncio.to_thread(sink.events, pending)
                pending = []
        await asyncio.to_thread(sink.events, pending)
        await asyncio.to_thread(sink.put, [
            {"kind": "checkpoint", "seq": cp.seq, "head_hash": cp.head_hash,
             "created_at": cp.created_at_text, "signature": cp.signature, "key_id": cp.key_id}
            for cp in checkpoints] + [trailer])
        check = sink.checker.result()
        if target is not None and tmp is not None:
            await asyncio.to_thread(_commit, tmp, fh, target, overwrite)
    except BaseException:
        if tmp is not None:  # never leave a partial file behind (a stream keeps what it got)
            fh.close()
            tmp.unlink(missing_ok=True)
        raise
    return ExportReport(target, check.events, check.first_seq, check.last_seq, report,
                        sink.sha.hexdigest())
