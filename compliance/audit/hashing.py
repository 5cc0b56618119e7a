"""Canonical encoding and the hash chain: pure functions, no I/O.

The chain follows RFC 6962/9162's domain separation so a leaf can never be confused with a link:

* ``payload_digest = SHA-256(canonical_json(payload))``
* ``leaf = SHA-256(0x00 ‖ encode_entry(event fields + payload_digest))``
* ``entry_hash = link = SHA-256(0x01 ‖ prev_hash ‖ leaf)`` with ``prev_hash = GENESIS`` for seq 1

The entry commits to the payload *digest*, not the payload, so erasing a payload later
(retention, GDPR erasure) leaves every hash verifiable: the digest stays, the text goes.

Canonical JSON is sorted-key, compact (``","`` and ``":"``), UTF-8 without ``\\u`` escapes for
non-ASCII, datetimes as RFC 3339 UTC with six fractional digits and ``Z``. NaN and infinities,
naive datetimes, non-string keys, sets and bytes are refused (``ValueError``/``TypeError``):
each has more than one plausible encoding, and an audit hash must have exactly one.

Example::

    >>> canonical_json({"b": 1, "a": "é"})
    '{"a":"é","b":1}'
    >>> d = payload_digest({"query": "q"})
    >>> entry = encode_entry(seq=1, event_id="00000000-0000-4000-8000-000000000000",
    ...     occurred_at="2024-01-01T00:00:00.000000Z", event_type="retrieval", actor="svc",
    ...     tenant=None, request_id=None, parent_event_id=None, payload_digest=d)
    >>> len(chain_hash(GENESIS, entry))
    64
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from json.encoder import encode_basestring
from typing import Any
from uuid import UUID

__all__ = [
    "ENTRY_VERSION",
    "GENESIS",
    "canonical_bytes",
    "canonical_json",
    "chain_hash",
    "digest_text",
    "encode_entry",
    "entry_bytes",
    "leaf_hash",
    "link_hash",
    "occurred_text",
    "payload_digest",
    "rfc3339",
]

GENESIS = "0" * 64
"""``prev_hash`` of seq 1: 32 zero bytes, hex."""

ENTRY_VERSION = 1
"""Version of :func:`encode_entry`'s layout; part of every leaf so a new layout cannot collide."""

_LEAF = b"\x00"
_LINK = b"\x01"
# Hash states already fed the domain prefix; ``.copy()`` is cheaper than a fresh sha256(prefix + data).
_LEAF_STATE = hashlib.sha256(_LEAF)
_LINK_STATE = hashlib.sha256(_LINK)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False, check_circular=True, default=lambda v: _default(v))
_ENTRY_TEMPLATE = (
    '{"actor":%s,"event_id":%s,"event_type":%s,"occurred_at":%s,"parent_event_id":%s,'
    '"payload_digest":%s,"request_id":%s,"seq":%d,"tenant":%s,"v":%d}'
)


def rfc3339(value: datetime) -> str:
    """``value`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six fractional digits).

    Naive datetimes are refused: an audit timestamp whose zone is a guess is not evidence.

    Example::

        >>> from datetime import timezone, timedelta
        >>> rfc3339(datetime(2024, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))))
        '2024-01-01T00:00:00.000000Z'
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()!r}: give a timezone (UTC)")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def occurred_text(value: str | datetime) -> str:
    """:func:`rfc3339` of a stored ``occurred_at``: a datetime (PostgreSQL) or SQLite's text.

    SQLite text must be exactly the form the store writes (``YYYY-MM-DD HH:MM:SS.ffffff``,
    naive UTC): time-range queries compare that text, so another spelling of the same instant
    could hide a row from them and is refused (``ValueError``), not normalised.

    Example::

        >>> occurred_text("2024-01-01 00:00:00.000007")
        '2024-01-01T00:00:00.000007Z'
    """
    if isinstance(value, str):
        if len(value) != 26 or value[10] != " " or value[19] != ".":
            raise ValueError(f"occurred_at {value!r} is not in the stored form "
                             "'YYYY-MM-DD HH:MM:SS.ffffff'")
        datetime.fromisoformat(value)  # the digits must make a real time
        return value[:10] + "T" + value[11:] + "Z"
    return rfc3339(value if value.tzinfo is not None else value.replace(tzinfo=UTC))


_CONTAINERS = (dict, list, tuple)


def _check_keys(value: Any) -> None:
    """Refuse non-string keys anywhere (json would turn ``1`` into ``"1"`` and sort by int).

    Iterative, visiting containers only: this runs on every event the pipeline records, on
    the request path.
    """
    stack = [value] if isinstance(value, _CONTAINERS) else []
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in node:
                if type(key) is not str:
                    raise TypeError(f"payload keys must be strings, got {type(key).__name__} "
                                    f"{key!r}")
            stack += [item for item in node.values() if isinstance(item, _CONTAINERS)]
        else:
            stack += [item for item in node if isinstance(item, _CONTAINERS)]


def _default(value: Any) -> Any:
    """What the JSON encoder calls for types it does not know."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        plain = dict(value)
        _check_keys(plain)
        return plain
    raise TypeError(f"{type(value).__name__} has no canonical JSON encoding; convert it first "
                    "(bytes: hex or base64; set: sorted list; Decimal: str)")


def canonical_json(value: Any) -> str:
    """Sorted-key compact JSON of ``value``; identical input always gives identical text.

    Example::

        >>> canonical_json({"z": [1, 2.5, None], "a": True})
        '{"a":true,"z":[1,2.5,null]}'
    """
    _check_keys(value)
    text = _ENCODER.encode(value)
    text.encode("utf-8")  # lone surrogates have no UTF-8 form: refuse them here, not at hashing
    return text


def canonical_bytes(value: Any) -> bytes:
    """UTF-8 bytes of :func:`canonical_json`."""
    return canonical_json(value).encode("utf-8")


def digest_text(canonical: str) -> str:
    """Hex SHA-256 of an already canonical JSON text (what is stored in ``payload``)."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def payload_digest(payload: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical encoding of ``payload``.

    Example::

        >>> payload_digest({"b": 1, "a": 2}) == payload_digest({"a": 2, "b": 1})
        True
    """
    return hashlib.sha256(canonical_bytes(payload)).hexdigest()


def _opt(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def encode_entry(*, seq: int, event_id: str, occurred_at: datetime | str, event_type: str,
                 actor: str, tenant: str | None, request_id: str | None,
                 parent_event_id: str | None, payload_digest: str) -> bytes:
    """The bytes a leaf hashes: canonical JSON of the event fields and the payload *digest*.

    ``occurred_at`` is a datetime or its :func:`rfc3339` text. The layout equals
    ``canonical_bytes({...fields..., "v": ENTRY_VERSION})``; it is spelled out here because
    it runs once per event (a unit test pins the two together).
    """
    when = occurred_at if isinstance(occurred_at, str) else rfc3339(occurred_at)
    return entry_bytes(seq, event_id, when, event_type, actor, tenant, request_id,
                       parent_event_id, payload_digest)


def entry_bytes(seq: int, event_id: str, occurred_at: str, event_type: str, actor: str,
                tenant: str | None, request_id: str | None, parent_event_id: str | None,
                payload_digest: str) -> bytes:
    """:func:`encode_entry` with positional arguments and RFC 3339 text (the write hot path)."""
    return (_ENTRY_TEMPLATE % (
        encode_basestring(actor), encode_basestring(event_id), encode_basestring(event_type),
        encode_basestring(occurred_at), _opt(parent_event_id), encode_basestring(payload_digest),
        _opt(request_id), seq, _opt(tenant), ENTRY_VERSION,
    )).encode("utf-8")


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 ‖ entry)``, raw 32 bytes."""
    state = _LEAF_STATE.copy()
    state.update(entry)
    return state.digest()


def link_hash(prev_hash: str, leaf: bytes) -> str:
    """``SHA-256(0x01 ‖ prev ‖ leaf)`` as hex; ``prev_hash`` is hex (``GENESIS`` for seq 1)."""
    state = _LINK_STATE.copy()
    state.update(bytes.fromhex(prev_hash))
    state.update(leaf)
    return state.hexdigest()


def chain_hash(prev_hash: str, entry: bytes) -> str:
    """The ``entry_hash`` of an entry whose predecessor's hash is ``prev_hash``."""
    return link_hash(prev_hash, leaf_hash(entry))
