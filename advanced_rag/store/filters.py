"""Compile a typed :class:`MetadataFilter` into a Milvus boolean expression (pure functions).

No user text is ever pasted into an expression: strings become escaped literals, metadata
keys must match a conservative pattern, numbers must be finite, and the tenant clause is
always the first conjunct so no filter can widen the search beyond one tenant.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from ..errors import FilterError, TenantError
from ..types import MetadataFilter, MetadataValue

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_METADATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_MAX_LIST = 1024
MAX_LITERAL_CHARS = 4096
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def check_tenant(tenant: str | None) -> str:
    """Return ``tenant`` if it is a well-formed tenant id; raise :class:`TenantError` otherwise."""
    if tenant is None or tenant == "":
        raise TenantError("a tenant id is required (pass tenant=...)")
    if not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant):
        raise TenantError(
            f"tenant id {tenant!r} is not allowed: use 1-64 characters from A-Z a-z 0-9 _ . : - "
            "starting with a letter or digit"
        )
    return tenant


def string_literal(value: str) -> str:
    """A double-quoted Milvus string literal with quotes and backslashes escaped.

    Milvus's expression parser knows the escapes ``\\"``, ``\\\\``, ``\\n``, ``\\t`` and
    ``\\r`` but not ``\\b``, ``\\f`` or ``\\uXXXX`` (measured on Milvus Lite): a value with
    any other control character is refused here, as a :class:`FilterError`, rather than
    sent to fail inside the store.
    """
    if not isinstance(value, str):
        raise FilterError(f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_LITERAL_CHARS:
        raise FilterError(f"strings in filters are limited to {MAX_LITERAL_CHARS:,} characters")
    bad = _CONTROL.search(value)
    if bad is not None:
        raise FilterError(f"strings in filters must not contain control characters "
                          f"(found U+{ord(bad.group()):04X})")
    return json.dumps(value, ensure_ascii=False)


def value_literal(value: MetadataValue) -> str:
    """A Milvus literal for a metadata value: string, integer, finite float or boolean."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise FilterError("metadata filter integers must fit in 64 bits")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError("metadata filter values must be finite numbers")
        return repr(value)
    if isinstance(value, str):
        return string_literal(value)
    raise FilterError(f"unsupported metadata filter value type {type(value).__name__}")


def in_list(field: str, values: Iterable[str]) -> str:
    items = list(values)
    if not items:
        raise FilterError(f"an empty list for {field} would match nothing; pass None instead")
    if len(items) > _MAX_LIST:
        raise FilterError(f"at most {_MAX_LIST} values are allowed for {field}")
    return f"{field} in [{', '.join(string_literal(v) for v in items)}]"


def epoch_seconds(moment: datetime) -> int:
    """UTC epoch seconds; naive datetimes are refused (ambiguous in an audit trail)."""
    if moment.tzinfo is None:
        raise FilterError("created_after/created_before must be timezone-aware datetimes")
    return int(moment.astimezone(UTC).timestamp())


def compile_filter(tenant: str, spec: MetadataFilter | None = None, *,
                   readable: Iterable[str] | None = None) -> str:
    """The Milvus expression for one tenant, the classes its caller may read (``readable``,
    from the clearance: a mandatory second conjunct) and an optional typed filter.

    Example::

        compile_filter("bank-a", MetadataFilter(sources=("policy-handbook",)))
        # 'tenant_id == "bank-a" and source in ["policy-handbook"]'
    """
    clauses = [f"tenant_id == {string_literal(check_tenant(tenant))}"]
    if readable is not None:
        clauses.append(in_list("classification", readable))
    if spec is None:
        return " and ".join(clauses)
    if spec.sources is not None:
        clauses.append(in_list("source", spec.sources))
    if spec.classifications is not None:
        clauses.append(in_list("classification", spec.classifications))
    if spec.doc_ids is not None:
        clauses.append(in_list("doc_id", spec.doc_ids))
    if spec.created_after is not None:
        clauses.append(f"created_at >= {epoch_seconds(spec.created_after)}")
    if spec.created_before is not None:
        clauses.append(f"created_at < {epoch_seconds(spec.created_before)}")
    for key, value in sorted(spec.metadata_equals.items()):
        if not isinstance(key, str) or not _METADATA_KEY.match(key):
            raise FilterError(
                f"metadata key {key!r} is not allowed in filters: use 1-64 characters from "
                "A-Z a-z 0-9 _ - starting with a letter or underscore"
            )
        clauses.append(f'metadata["{key}"] == {value_literal(value)}')
    return " and ".join(clauses)
