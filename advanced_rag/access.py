"""Who may do what: the :class:`Principal` of a call, and the access rules (pure functions).

A principal is an actor acting for one tenant, with roles and a classification clearance
(``public < internal < confidential < restricted``). Every pipeline call takes one
(``principal=``) or uses the one bound with :meth:`AdvancedRAGPipeline.bind`; a call without
any runs as ``actor`` with the configured ``access.default_clearance`` (and is refused when
``access.require_principal`` is on).

Isolation does not rest on any single check:

* the tenant clause is always the first conjunct of the compiled Milvus expression and the
  tenant id is the collection's partition key;
* the clearance becomes a mandatory ``classification in [...]`` clause of that expression;
* a filter that asks for a class above the clearance, a tenant other than the principal's,
  or an operation the principal's roles do not allow is refused with
  :class:`~advanced_rag.errors.AccessDeniedError` and recorded as ``access_denied``;
* every returned hit is checked again (tenant and class) before it leaves the pipeline.

Example::

    analyst = Principal("alice@bank-a", "bank-a", roles=("analyst",),
                        clearance=Classification.CONFIDENTIAL)
    hits, metrics = await rag.retrieve("KYC thresholds", principal=analyst)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import AccessDeniedError, InputError, VectorStoreError
from .store.filters import check_tenant
from .types import Classification, Hit, MetadataFilter

if TYPE_CHECKING:
    from .config import AccessSettings

__all__ = ["CLEARANCE_ORDER", "Principal", "authorize", "check_classifications", "check_hits",
           "check_roles", "readable"]

CLEARANCE_ORDER: tuple[Classification, ...] = (
    Classification.PUBLIC, Classification.INTERNAL, Classification.CONFIDENTIAL,
    Classification.RESTRICTED)
_RANK = {c: n for n, c in enumerate(CLEARANCE_ORDER)}


@dataclass(frozen=True, slots=True)
class Principal:
    """An actor acting for one tenant, with roles and a classification clearance."""

    actor: str
    tenant: str
    roles: frozenset[str]
    clearance: Classification

    def __init__(self, actor: str, tenant: str, roles: Iterable[str] = (),
                 clearance: Classification | str = Classification.INTERNAL) -> None:
        if not isinstance(actor, str) or not actor.strip():
            raise InputError(f"a principal needs an actor, got {actor!r}")
        if isinstance(roles, str) or not all(isinstance(r, str) and r for r in roles):
            raise InputError(f"roles must be an iterable of non-empty strings, got {roles!r}")
        try:
            level = Classification(clearance)
        except ValueError:
            raise InputError(f"clearance {clearance!r} is not one of "
                             f"{', '.join(c.value for c in CLEARANCE_ORDER)}") from None
        object.__setattr__(self, "actor", actor)
        object.__setattr__(self, "tenant", tenant)
        object.__setattr__(self, "roles", frozenset(roles))
        object.__setattr__(self, "clearance", level)


def readable(clearance: Classification) -> tuple[str, ...]:
    """The classifications a clearance may read, lowest first.

    Example::

        >>> readable(Classification.INTERNAL)
        ('public', 'internal')
    """
    return tuple(c.value for c in CLEARANCE_ORDER[: _RANK[Classification(clearance)] + 1])


def check_classifications(spec: MetadataFilter | None, clearance: Classification) -> None:
    """Refuse a filter that asks for a class above ``clearance`` (asking is refused, not
    silently narrowed: the caller must learn that they cannot see it)."""
    if spec is None or spec.classifications is None:
        return
    allowed = set(readable(clearance))
    above = sorted({str(c) for c in spec.classifications} - allowed)
    if above:
        raise AccessDeniedError(f"clearance {clearance.value!r} may not read classification "
                                f"{', '.join(repr(a) for a in above)}")


def check_roles(operation: str, roles: frozenset[str],
                required: Mapping[str, Sequence[str]] | None) -> None:
    """Refuse ``operation`` unless the principal holds one of its required roles (no rule for
    the operation, or no rules at all: allowed)."""
    if not required or operation not in required:
        return
    needed = tuple(required[operation])
    if needed and not roles & set(needed):
        raise AccessDeniedError(f"{operation} needs one of the roles {', '.join(needed)}; "
                                f"the principal has {', '.join(sorted(roles)) or 'none'}")


def authorize(principal: Principal | None, actor: str, tenant: str | None, operation: str, *,
              settings: AccessSettings, default_tenant: str | None) -> tuple[str, Classification]:
    """The tenant and clearance a call runs with, or the refusal.

    ``tenant`` (what the caller asked for) defaults to the principal's tenant, else
    ``default_tenant``. Raises :class:`~advanced_rag.errors.TenantError` for a missing or
    malformed id and :class:`~advanced_rag.errors.AccessDeniedError` when the principal is
    required but absent, belongs to another tenant, is not allowed the tenant by
    ``access.actor_tenants``, or lacks a role the operation needs.
    """
    if principal is None and settings.require_principal:
        raise AccessDeniedError(f"{operation} needs a Principal (access.require_principal)")
    fallback = principal.tenant if principal is not None else default_tenant
    tenant_id = check_tenant(tenant if tenant is not None else fallback)
    if principal is not None and tenant_id != principal.tenant:
        raise AccessDeniedError(f"a principal of tenant {principal.tenant!r} may not access "
                                f"tenant {tenant_id!r}")
    rules = settings.actor_tenants
    if rules is not None:
        allowed = rules.get(actor, ())
        if tenant_id not in allowed and "*" not in allowed:
            raise AccessDeniedError(f"actor {actor!r} may not access tenant {tenant_id!r}")
    check_roles(operation, principal.roles if principal is not None else frozenset(),
                settings.operation_roles)
    clearance = (principal.clearance if principal is not None
                 else Classification(settings.default_clearance))
    return tenant_id, clearance


def check_hits(hits: Sequence[Hit], tenant: str, clearance: Classification | None) -> None:
    """Defence in depth after the store answered: every hit is of ``tenant`` (when the store
    reports it) and readable at ``clearance`` (``None``: every class). A violation means the
    store ignored the filter — never the caller's fault — so it fails the request loudly."""
    allowed = None if clearance is None else set(readable(clearance))
    for hit in hits:
        if hit.tenant is not None and hit.tenant != tenant:
            raise VectorStoreError(f"isolation breach: the store returned chunk {hit.chunk_id!r} "
                                   f"of tenant {hit.tenant!r} for tenant {tenant!r}")
        if allowed is not None and hit.classification not in allowed:
            raise VectorStoreError(f"isolation breach: the store returned chunk {hit.chunk_id!r} "
                                   f"classified {hit.classification!r} above clearance "
                                   f"{clearance!s}")
