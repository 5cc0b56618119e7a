from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from advanced_rag.errors import FilterError, TenantError
from advanced_rag.store.filters import check_tenant, compile_filter, string_literal
from advanced_rag.types import MetadataFilter


def _unquote(literal: str) -> str:
    import json

    return json.loads(literal)


def test_tenant_clause_always_first() -> None:
    expr = compile_filter("bank-a", MetadataFilter(sources=("handbook",)))
    assert expr == 'tenant_id == "bank-a" and source in ["handbook"]'


def test_injection_attempt_stays_a_literal() -> None:
    attack = 'x" or tenant_id != "a'
    expr = compile_filter("a", MetadataFilter(sources=(attack,)))
    assert expr == 'tenant_id == "a" and source in ["x\\" or tenant_id != \\"a"]'
    # Exactly one unescaped quote pair around the attack: the literal round-trips.
    literal = expr.split(" in [", 1)[1][:-1]
    assert _unquote(literal) == attack


_UNESCAPABLE = set("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15"
                   "\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f")


@given(st.text().filter(lambda s: not set(s) & _UNESCAPABLE))
def test_any_string_round_trips_through_its_literal(value: str) -> None:
    literal = string_literal(value)
    assert literal.startswith('"') and literal.endswith('"')
    assert _unquote(literal) == value
    body = literal[1:-1]
    # every double quote inside the body is escaped
    i = 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        assert body[i] != '"'
        i += 1


@pytest.mark.parametrize("tenant", ["", None, 'a" or "1"=="1', "a b", "x" * 65, "-lead"])
def test_bad_tenants_are_refused(tenant: str | None) -> None:
    with pytest.raises(TenantError):
        check_tenant(tenant)


@pytest.mark.parametrize("key", ['a"]', "a b", "", "1abc", 'k"] or 1==1 or metadata["k'])
def test_bad_metadata_keys_are_refused(key: str) -> None:
    with pytest.raises(FilterError):
        compile_filter("t", MetadataFilter(metadata_equals={key: "v"}))


def test_metadata_values_and_dates() -> None:
    after = datetime(2024, 1, 1, tzinfo=UTC)
    expr = compile_filter("t", MetadataFilter(
        classifications=("public", "internal"), created_after=after,
        metadata_equals={"year": 2024, "ok": True, "score": 0.5, "owner": 'O"Brien'}))
    assert 'classification in ["public", "internal"]' in expr
    assert f"created_at >= {int(after.timestamp())}" in expr
    assert 'metadata["ok"] == true' in expr and 'metadata["year"] == 2024' in expr
    assert 'metadata["score"] == 0.5' in expr and 'metadata["owner"] == "O\\"Brien"' in expr


def test_refusals() -> None:
    with pytest.raises(FilterError, match="finite"):
        compile_filter("t", MetadataFilter(metadata_equals={"x": math.nan}))
    with pytest.raises(FilterError, match="timezone"):
        compile_filter("t", MetadataFilter(created_before=datetime(2024, 1, 1)))
    with pytest.raises(FilterError, match="empty list"):
        compile_filter("t", MetadataFilter(sources=()))
    with pytest.raises(FilterError, match="64 bits"):
        compile_filter("t", MetadataFilter(metadata_equals={"x": 2**63}))
    with pytest.raises(FilterError, match="limited to"):
        compile_filter("t", MetadataFilter(doc_ids=("x" * 5000,)))
    for control in ("a\x00b", "a\x08b", "\x0c", "x\x1f"):  # Milvus cannot parse their escapes
        with pytest.raises(FilterError, match="control characters"):
            compile_filter("t", MetadataFilter(sources=(control,)))
    with pytest.raises(FilterError, match="unsupported"):
        compile_filter("t", MetadataFilter(metadata_equals={"x": [1]}))  # type: ignore[dict-item]
