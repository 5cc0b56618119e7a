"""Canonical encoding and chain hashing: edge cases, a pinned vector, and properties."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum
from types import MappingProxyType
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.audit.engine import sqlite_entry_sql
from compliance.audit.hashing import (
    ENTRY_VERSION,
    GENESIS,
    canonical_bytes,
    canonical_json,
    chain_hash,
    digest_text,
    encode_entry,
    leaf_hash,
    link_hash,
    occurred_text,
    payload_digest,
    rfc3339,
)
from compliance.audit.verify import check_entries, check_entry, check_record
from compliance.errors import AuditIntegrityError

EVENT_ID = "00000000-0000-4000-8000-000000000000"


def entry_fields(**override: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "seq": 1, "event_id": EVENT_ID, "occurred_at": "2024-01-01T00:00:00.000000Z",
        "event_type": "retrieval", "actor": "svc", "tenant": None, "request_id": None,
        "parent_event_id": None, "payload_digest": payload_digest({"query": "q"}),
    }
    fields.update(override)
    return fields


# -- canonical JSON: edge cases ----------------------------------------------------------------

def test_sorted_compact_utf8_without_ascii_escapes() -> None:
    assert canonical_json({"b": 1, "a": "é", "c": [1, {"z": None, "y": True}]}) == (
        '{"a":"é","b":1,"c":[1,{"y":true,"z":null}]}')
    assert canonical_bytes({"a": "é"}) == '{"a":"é"}'.encode()


def test_control_characters_and_quotes_are_escaped_like_json() -> None:
    text = 'tab\tnl\nquote"back\\slash\x01\u2028'
    assert json.loads(canonical_json({"t": text}))["t"] == text
    assert canonical_json({"t": "\x01"}) == '{"t":"\\u0001"}'


def test_datetimes_become_rfc3339_utc_with_z_and_six_digits() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert canonical_json({"t": datetime(2024, 5, 1, 12, 0, tzinfo=plus2)}) == (
        '{"t":"2024-05-01T10:00:00.000000Z"}')
    assert rfc3339(datetime(2024, 1, 1, 0, 0, 0, 7, tzinfo=UTC)) == "2024-01-01T00:00:00.000007Z"
    assert canonical_json({"d": date(2024, 2, 29)}) == '{"d":"2024-02-29"}'


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        canonical_json({"t": datetime(2024, 1, 1)})
    with pytest.raises(ValueError, match="naive"):
        rfc3339(datetime(2024, 1, 1))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": bad})
    with pytest.raises(ValueError):
        canonical_json({"x": [1, {"y": bad}]})


@pytest.mark.parametrize("bad", [{1: "a"}, {"a": {2: "b"}}, {"a": [{None: 1}]}, {"a": {1, 2}},
                                 {"a": b"bytes"}, {"a": object()}])
def test_values_without_one_obvious_encoding_are_refused(bad: dict[Any, Any]) -> None:
    with pytest.raises(TypeError):
        canonical_json(bad)


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        canonical_json({"x": "\ud800"})


def test_tuples_mappings_uuids_and_str_enums_have_plain_encodings() -> None:
    class Colour(StrEnum):
        RED = "red"

    value = {"t": (1, 2), "m": MappingProxyType({"b": 2, "a": 1}),
             "u": UUID(EVENT_ID), "e": Colour.RED}
    assert canonical_json(value) == (
        f'{{"e":"red","m":{{"a":1,"b":2}},"t":[1,2],"u":"{EVENT_ID}"}}')


def test_bool_int_and_float_stay_distinct() -> None:
    digests = {payload_digest({"x": v}) for v in (True, 1, 1.0, "1")}
    assert len(digests) == 4


# -- chain hashing ---------------------------------------------------------------------------

def test_pinned_vector() -> None:
    """Changing the entry layout or the hashing breaks every stored chain: this must fail."""
    entry = encode_entry(**entry_fields())
    assert entry == (
        b'{"actor":"svc","event_id":"00000000-0000-4000-8000-000000000000",'
        b'"event_type":"retrieval","occurred_at":"2024-01-01T00:00:00.000000Z",'
        b'"parent_event_id":null,"payload_digest":'
        b'"cf11c31927352aeaa5b9ef86ce8f95a954bcd8e6a415f8cd3922101d92dba903",'
        b'"request_id":null,"seq":1,"tenant":null,"v":1}')
    leaf = hashlib.sha256(b"\x00" + entry).digest()
    by_spec = hashlib.sha256(b"\x01" + bytes(32) + leaf).hexdigest()
    assert chain_hash(GENESIS, entry) == by_spec == (
        "8e67a754d54f1f1f33cb3bba8aee2ddb95cd6e8ac46d842660a3a0e6e1fe6434")


def test_domain_separation() -> None:
    entry = encode_entry(**entry_fields())
    assert GENESIS == "0" * 64
    assert leaf_hash(entry) != hashlib.sha256(entry).digest()
    assert link_hash(GENESIS, leaf_hash(entry)) != hashlib.sha256(
        bytes(32) + leaf_hash(entry)).hexdigest()


def test_entry_commits_to_the_digest_not_the_payload() -> None:
    digest = payload_digest({"secret": "x"})
    assert digest_text(canonical_json({"secret": "x"})) == digest
    assert b"secret" not in encode_entry(**entry_fields(payload_digest=digest))


def test_encode_entry_accepts_a_datetime() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    assert encode_entry(**entry_fields(occurred_at=when)) == encode_entry(**entry_fields())


def test_occurred_text_reads_sqlite_text_and_datetimes() -> None:
    assert occurred_text("2024-01-01 00:00:00.000007") == "2024-01-01T00:00:00.000007Z"
    for other_spelling in ("2024-01-01T00:00:00.000007", "2024-01-01 00:00:00.000007+00:00",
                           "2024-01-01 00:00:00", "2024-13-01 00:00:00.000007"):
        with pytest.raises(ValueError):
            occurred_text(other_spelling)
    assert occurred_text(datetime(2024, 1, 1)) == "2024-01-01T00:00:00.000000Z"


# -- properties ------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
payloads = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
opt_text = st.none() | st.text(min_size=1, max_size=20)
fields = st.fixed_dictionaries({
    "seq": st.integers(1, 2**62), "event_id": st.uuids().map(str),
    "occurred_at": st.datetimes(timezones=st.just(UTC)).map(rfc3339),
    "event_type": st.sampled_from(["retrieval", "rerank", "erasure"]),
    "actor": st.text(min_size=1, max_size=20), "tenant": opt_text, "request_id": opt_text,
    "parent_event_id": st.none() | st.uuids().map(str),
    "payload_digest": payloads.map(payload_digest),
})


@given(payloads)
def test_encoding_is_deterministic_and_round_trips(payload: dict[str, Any]) -> None:
    text = canonical_json(payload)
    assert canonical_json(payload) == text
    assert json.loads(text) == payload
    assert canonical_json(json.loads(text)) == text


@given(payloads, st.randoms())
def test_key_order_does_not_matter(payload: dict[str, Any], rnd: Any) -> None:
    items = list(payload.items())
    rnd.shuffle(items)
    assert payload_digest(dict(items)) == payload_digest(payload)


@given(fields)
def test_fast_entry_layout_equals_canonical_json_of_the_fields(f: dict[str, Any]) -> None:
    assert encode_entry(**f) == canonical_bytes({**f, "v": ENTRY_VERSION})


@settings(max_examples=300)
@given(fields, fields, st.sampled_from(sorted(
    ["seq", "event_id", "occurred_at", "event_type", "actor", "tenant", "request_id",
     "parent_event_id", "payload_digest"])))
def test_any_field_change_changes_the_hash(a: dict[str, Any], b: dict[str, Any], name: str) -> None:
    changed = {**a, name: b[name]}
    if changed[name] == a[name]:
        return
    assert chain_hash(GENESIS, encode_entry(**changed)) != chain_hash(GENESIS, encode_entry(**a))


@given(fields, st.binary(min_size=32, max_size=32))
def test_prev_hash_change_changes_the_hash(f: dict[str, Any], prev: bytes) -> None:
    entry = encode_entry(**f)
    if prev.hex() != GENESIS:
        assert chain_hash(prev.hex(), entry) != chain_hash(GENESIS, entry)


@pytest.fixture(scope="module")
def sqlite_events() -> Iterator[sqlite3.Connection]:
    """An in-memory table shaped like audit_events, to run the verification query on."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, event_id, occurred_at, "
                 "event_type, actor, tenant, request_id, parent_event_id, payload, "
                 "payload_digest, prev_hash, entry_hash)")
    yield conn
    conn.close()


@settings(max_examples=300)
@given(st.lists(st.tuples(fields, payloads), min_size=1, max_size=5))
def test_sqlite_built_entries_equal_the_reference_encoding(
        sqlite_events: sqlite3.Connection, items: list[Any]) -> None:
    """Fast verification hashes entries SQLite builds with json_quote; they must be the bytes
    encode_entry makes, for any text (control characters, quotes, non-BMP...)."""
    sqlite_events.execute("DELETE FROM audit_events")
    rows, prev = [], GENESIS
    for seq, (f, payload) in enumerate(items, start=1):
        text = canonical_json(payload)
        f = {**f, "seq": seq, "payload_digest": digest_text(text)}
        entry_hash = chain_hash(prev, encode_entry(**f))
        sqlite_time = f["occurred_at"][:10] + " " + f["occurred_at"][11:-1]
        rows.append((seq, f["event_id"], sqlite_time, f["event_type"], f["actor"], f["tenant"],
                     f["request_id"], f["parent_event_id"], text, f["payload_digest"], prev,
                     entry_hash))
        prev = entry_hash
    sqlite_events.executemany("INSERT INTO audit_events VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    built = sqlite_events.execute(sqlite_entry_sql(), (0, len(rows), len(rows))).fetchall()
    for row, (f, _) in zip(built, items, strict=True):
        assert row[5] == encode_entry(**{**f, "seq": row[0], "payload_digest": row[2]})
    hashes: list[str] = []
    assert check_entries(built, 0, 1, GENESIS, hashes) == (len(rows), 0)
    assert hashes[-1] == prev
    assert [check_record(r, r[0], r[10]) for r in rows] == [r[11] for r in rows]


def test_check_entries_stops_at_the_first_row_needing_a_closer_look() -> None:
    good = _row()
    entry = encode_entry(**entry_fields())
    fast = (1, good[8].encode(), good[9], GENESIS, good[11], entry)
    assert check_entry(fast, 1, GENESIS) == good[11]
    assert check_entry((*fast[:5], None), 1, GENESIS) is None  # unreadable field
    assert check_entry((1, b"{}", *fast[2:]), 1, GENESIS) is None  # payload edited
    assert check_entry(fast, 2, GENESIS) is None  # gap
    assert check_entry((1, None, *fast[2:]), 1, GENESIS) == good[11]  # redacted
    hashes: list[str] = []
    assert check_entries([fast, fast], 0, 1, GENESIS, hashes) == (1, 0)
    assert hashes == [good[11]]


def _row(**override: Any) -> tuple[Any, ...]:
    f = entry_fields()
    text = canonical_json({"query": "q"})
    row = {"seq": 1, "event_id": f["event_id"], "occurred": "2024-01-01 00:00:00.000000",
           "event_type": "retrieval", "actor": "svc", "tenant": None, "request_id": None,
           "parent": None, "payload": text, "digest": f["payload_digest"], "prev": GENESIS,
           "hash": chain_hash(GENESIS, encode_entry(**f))}
    row.update(override)
    return tuple(row.values())


def test_check_record_accepts_a_good_row_and_a_redacted_one() -> None:
    assert check_record(_row(), 1, GENESIS) == _row()[-1]
    assert check_record(_row(payload=None), 1, GENESIS) == _row()[-1]


@pytest.mark.parametrize(("override", "reason"), [
    ({"seq": 2}, "gap"),
    ({"prev": "1" * 64}, "prev_hash"),
    ({"payload": '{"query":"Q"}'}, "payload does not match"),
    ({"occurred": "2024-01-01 00:00:00.000001"}, "entry hash mismatch"),
    ({"actor": "svc2"}, "entry hash mismatch"),
    ({"tenant": "acme"}, "entry hash mismatch"),
    ({"actor": None}, "unreadable"),
    ({"occurred": "garbage"}, "unreadable"),
    ({"occurred": 20240101}, "unreadable"),
    ({"payload": b'{"query":"q"}'}, "unreadable"),
])
def test_check_record_names_the_seq_and_the_reason(override: dict[str, Any], reason: str) -> None:
    with pytest.raises(AuditIntegrityError, match=reason) as info:
        check_record(_row(**override), 1, GENESIS)
    assert info.value.seq == 1
    assert "seq 1" in str(info.value)
