"""The access rules as pure functions: who may do what, and the hit re-check."""

from __future__ import annotations

import pytest

from advanced_rag import AccessDeniedError, Classification, MetadataFilter, Principal, TenantError
from advanced_rag.access import authorize, check_classifications, check_hits, readable
from advanced_rag.config import AccessSettings
from advanced_rag.errors import VectorStoreError
from advanced_rag.store.filters import compile_filter
from advanced_rag.types import Hit, HitScores

ALICE = Principal("alice", "bank-a", roles={"analyst"}, clearance="confidential")


def test_readable_classes_grow_with_clearance() -> None:
    assert [len(readable(c)) for c in Classification] == [1, 2, 3, 4]
    assert readable(Classification.CONFIDENTIAL) == ("public", "internal", "confidential")


def test_authorize_tenant_and_clearance() -> None:
    settings = AccessSettings()
    assert authorize(ALICE, "alice", None, "retrieve", settings=settings,
                     default_tenant="default") == ("bank-a", Classification.CONFIDENTIAL)
    assert authorize(None, "svc", None, "retrieve", settings=settings,
                     default_tenant="default") == ("default", Classification.RESTRICTED)
    with pytest.raises(AccessDeniedError, match="may not access tenant 'bank-b'"):
        authorize(ALICE, "alice", "bank-b", "retrieve", settings=settings, default_tenant=None)
    with pytest.raises(TenantError):
        authorize(None, "svc", 'a" or 1==1', "retrieve", settings=settings, default_tenant=None)
    strict = AccessSettings(require_principal=True, default_clearance="public")
    with pytest.raises(AccessDeniedError, match="needs a Principal"):
        authorize(None, "svc", "bank-a", "retrieve", settings=strict, default_tenant=None)


def test_roles_per_operation() -> None:
    settings = AccessSettings(operation_roles={"ingest": ("writer",), "forget_document": ("dpo",)})
    authorize(ALICE, "alice", None, "retrieve", settings=settings, default_tenant=None)
    with pytest.raises(AccessDeniedError, match="ingest needs one of the roles writer"):
        authorize(ALICE, "alice", None, "ingest", settings=settings, default_tenant=None)
    with pytest.raises(AccessDeniedError, match="the principal has none"):
        authorize(None, "svc", "bank-a", "forget_document", settings=settings, default_tenant=None)
    writer = Principal("w", "bank-a", roles={"writer"})
    authorize(writer, "w", None, "ingest", settings=settings, default_tenant=None)


def test_actor_tenants_still_apply_to_principals() -> None:
    settings = AccessSettings(actor_tenants={"alice": ("bank-z",)})
    with pytest.raises(AccessDeniedError, match="actor 'alice' may not access tenant 'bank-a'"):
        authorize(ALICE, "alice", None, "retrieve", settings=settings, default_tenant=None)


def test_asking_for_a_class_above_the_clearance_is_refused() -> None:
    check_classifications(MetadataFilter(classifications=("public", "internal")),
                          Classification.INTERNAL)
    with pytest.raises(AccessDeniedError, match="'restricted'"):
        check_classifications(MetadataFilter(classifications=("public", "restricted")),
                              Classification.INTERNAL)


def test_clearance_is_the_second_conjunct() -> None:
    expr = compile_filter("bank-a", MetadataFilter(sources=("s",)),
                          readable=readable(Classification.INTERNAL))
    assert expr == ('tenant_id == "bank-a" and classification in ["public", "internal"] '
                    'and source in ["s"]')


def _hit(tenant: str | None, classification: str) -> Hit:
    return Hit("c", "d", 1, "t", {}, "s", classification, HitScores(), tenant=tenant)


def test_check_hits_catches_what_the_store_should_have_filtered() -> None:
    check_hits([_hit("bank-a", "internal"), _hit(None, "public")], "bank-a",
               Classification.INTERNAL)
    check_hits([_hit("bank-a", "restricted")], "bank-a", None)
    with pytest.raises(VectorStoreError, match="isolation breach.*tenant 'bank-b'"):
        check_hits([_hit("bank-b", "public")], "bank-a", None)
    with pytest.raises(VectorStoreError, match="isolation breach.*above clearance"):
        check_hits([_hit("bank-a", "restricted")], "bank-a", Classification.CONFIDENTIAL)
