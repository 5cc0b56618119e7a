"""Pruning the oldest audit events without losing verifiability: signed prune points.

Redaction (``payload`` → NULL) keeps every row; pruning deletes whole rows, so verification can
no longer start at seq 1 from ``GENESIS``. Instead, in **one transaction**:

1. the hash at the last pruned seq ``P`` (``entry_hash`` of row ``P``) is signed with the
   checkpoint key (the same Ed25519 message as a checkpoint: "the chain had ``H`` at ``P``")
   and stored in ``audit_prunes`` with the signing public key;
2. rows ``seq <= P`` are deleted; the database allows this DELETE only for ``seq <=`` the newest
   prune point (guards.py), and a prune point only for an existing row, past the previous one,
   before the head, whose ``entry_hash`` it states correctly.

After the commit the prune point is appended to the anchor file (if any), like a checkpoint.

:func:`~compliance.audit.verify.verify_chain` then starts at ``P + 1`` with ``prev_hash = H``
after checking the signature (against the pinned keys or the anchor's, when given) and any
anchor line at ``P``. Every remaining row must still link to ``H`` and to each other, so an edit,
deletion, insertion or reordering after the prune point is detected exactly as before; the
signed ``H`` is what stops a forged replacement prefix. Without a signing key there is no
pruning (:class:`~compliance.errors.AuditWriteError`): use redaction instead.

Example::

    point = await store.prune(through_seq=10_000)         # signs with the store's signer
    point.through_seq, point.entry_hash, point.key_id
    report = await verify_chain(store, public_key=signer.public_key_hex)
    report.pruned_through                                  # 10000
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select

from ..errors import AuditIntegrityError, AuditWriteError, ComplianceError
from .checkpoints import CheckpointSigner, key_id_of, load_public_key, signature_valid
from .engine import WRITE_OPTION
from .models import AuditEventRow, AuditHeadRow, AuditPruneRow, Checkpoint

__all__ = ["PrunePoint", "check_prune_point", "prune_rows", "read_prune_point"]

_EVENTS = AuditEventRow.__table__  # type: ignore[attr-defined]
_PRUNES = AuditPruneRow.__table__  # type: ignore[attr-defined]
_HEAD = AuditHeadRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class PrunePoint:
    """"Events up to ``through_seq`` were deleted; the chain had ``entry_hash`` there", signed.

    ``events_deleted`` is how many rows the prune that wrote it deleted (``None`` when read
    back from the database)."""

    through_seq: int
    entry_hash: str
    created_at: datetime
    signature: str
    key_id: str
    public_key: str
    events_deleted: int | None = None

    @property
    def checkpoint(self) -> Checkpoint:
        """The same statement as a :class:`Checkpoint` (what the signature covers)."""
        return Checkpoint(seq=self.through_seq, head_hash=self.entry_hash,
                          created_at=self.created_at, signature=self.signature,
                          key_id=self.key_id)


def read_prune_point(engine: Engine) -> PrunePoint | None:
    """The newest prune point, or ``None`` when the chain was never pruned."""
    with engine.connect() as conn:
        row = conn.execute(select(_PRUNES).order_by(_PRUNES.c.through_seq.desc())
                           .limit(1)).first()
    if row is None:
        return None
    return PrunePoint(through_seq=int(row.through_seq), entry_hash=row.entry_hash,
                      created_at=row.created_at, signature=row.signature, key_id=row.key_id,
                      public_key=row.public_key)


def prune_rows(engine: Engine, through_seq: int, signer: CheckpointSigner) -> PrunePoint:
    """Sign the hash at ``through_seq``, store it as the newest prune point and delete every row
    up to it, in one transaction (run on the store's writer thread)."""
    if type(through_seq) is not int or through_seq < 1:
        raise AuditWriteError(f"through_seq must be a positive integer, got {through_seq!r}")
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        head = conn.execute(select(_HEAD.c.seq).where(_HEAD.c.id == 1)).scalar()
        if head is None or through_seq >= int(head):
            raise AuditWriteError(f"cannot prune through seq {through_seq}: the chain head "
                                  f"(seq {head}) must stay")
        entry_hash = conn.execute(select(_EVENTS.c.entry_hash).where(
            _EVENTS.c.seq == through_seq)).scalar()
        if entry_hash is None:
            raise AuditWriteError(f"cannot prune through seq {through_seq}: no such row "
                                  "(already pruned?)")
        point = signer.sign(through_seq, str(entry_hash), datetime.now(UTC))
        conn.execute(insert(_PRUNES).values(
            through_seq=through_seq, entry_hash=point.head_hash, created_at=point.created_at,
            signature=point.signature, key_id=point.key_id, public_key=signer.public_key_hex))
        deleted = conn.execute(delete(_EVENTS).where(_EVENTS.c.seq <= through_seq)).rowcount
        count = int(conn.execute(select(func.count()).select_from(_EVENTS).where(
            _EVENTS.c.seq <= through_seq)).scalar() or 0)
        if count:  # a trigger that silently skipped rows would leave the chain half pruned
            raise AuditWriteError(f"prune through seq {through_seq} left {count} rows")
    return PrunePoint(through_seq, point.head_hash, point.created_at, point.signature,
                      point.key_id, signer.public_key_hex, events_deleted=int(deleted or 0))


def check_prune_point(point: PrunePoint, trusted: dict[str, Any]) -> bool:
    """Raise :class:`AuditIntegrityError` unless ``point`` is signed by the public key it names
    (and, when ``trusted`` key ids are given, one of them). True when checked against a
    trusted key, False when only against the key stored with it."""
    try:
        key = load_public_key(point.public_key)
    except ComplianceError as exc:
        raise AuditIntegrityError(point.through_seq, None, point.public_key,
                                  "prune point: unreadable public key") from exc
    key_id = key_id_of(key)
    if key_id != point.key_id:
        raise AuditIntegrityError(point.through_seq, key_id, point.key_id,
                                  "prune point: key_id does not match its public key")
    if trusted and key_id not in trusted:
        raise AuditIntegrityError(point.through_seq, None, key_id,
                                  "prune point signed by an untrusted key")
    if not signature_valid(key, point.checkpoint):
        raise AuditIntegrityError(point.through_seq, None, point.signature,
                                  "prune point signature invalid")
    return bool(trusted)
