"""One exception tree for the whole library.

::

    AdvancedRagError
    ├── ConfigError                 bad or unknown configuration key (names key, file, line)
    ├── MissingDependencyError      an optional extra is not installed (names the pip command)
    ├── InputError                  a caller handed us something we refuse
    │   ├── DocumentError           one document is unusable (names the document id)
    │   ├── FilterError             a metadata filter cannot be compiled safely
    │   └── AccessDeniedError       the principal may not do this (tenant, clearance, role)
    ├── TenantError                 missing or malformed tenant id
    └── BackendError(retriable)     a backend failed; ``retriable`` says whether to try again
        ├── VectorStoreError        Milvus refused or failed
        │   └── UnsupportedBackendError   the server lacks a feature we need (names its version)
        ├── EmbedderError           the embedding model failed or could not be loaded
        ├── RerankerError           the reranker failed or could not be loaded
        └── ProviderError           a remote API call failed (provider, kind, HTTP status)
            └── CircuitOpenError    the provider's circuit breaker is open: not attempted

Callers catch :class:`AdvancedRagError` for "anything this library raised on purpose".
SDK errors are wrapped with ``raise ... from exc`` so the original stays attached.
"""

from __future__ import annotations


class AdvancedRagError(Exception):
    """Root of every error this library raises on purpose."""


class ConfigError(AdvancedRagError):
    """Invalid configuration: the message names the key and, when known, the file and line."""

    def __init__(self, message: str, *, key: str | None = None, path: str | None = None,
                 line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}" + (f":{line}" if line is not None else "")
        prefix = ": ".join(p for p in (where, key) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.key = key
        self.path = path
        self.line = line


class MissingDependencyError(AdvancedRagError):
    """An optional dependency is missing; the message gives the install command."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'advanced-rag[{extra}]'"
        )
        self.package = package
        self.extra = extra


class InputError(AdvancedRagError):
    """The caller passed input the library refuses (never a crash, never a partial write)."""


class DocumentError(InputError):
    """One document cannot be ingested; ``doc_id`` names it."""

    def __init__(self, doc_id: str, reason: str) -> None:
        super().__init__(f"document {doc_id!r}: {reason}")
        self.doc_id = doc_id
        self.reason = reason


class FilterError(InputError):
    """A metadata filter that cannot be compiled into a safe Milvus expression."""


class AccessDeniedError(InputError):
    """The call's principal may not do this: another tenant, a classification above its
    clearance, or an operation its roles do not allow. Always recorded as ``access_denied``."""


class TenantError(InputError):
    """A tenant id is missing or not of the allowed form."""


class BackendError(AdvancedRagError):
    """A backend failed. ``retriable`` tells whether the same call may succeed later."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class VectorStoreError(BackendError):
    """Milvus (Lite or server) refused or failed a call."""


class UnsupportedBackendError(VectorStoreError):
    """The Milvus server lacks a feature the configuration needs (e.g. BM25 before 2.5)."""

    def __init__(self, feature: str, version: str, needed: str) -> None:
        super().__init__(
            f"{feature} needs Milvus >= {needed}, but the server reports version {version}; "
            f"upgrade the server or set pipeline.search_type to 'dense'",
            retriable=False,
        )
        self.feature = feature
        self.version = version
        self.needed = needed


class EmbedderError(BackendError):
    """The embedding model could not be loaded or failed to encode."""


class RerankerError(BackendError):
    """The reranker could not be loaded or failed to score."""


class ProviderError(BackendError):
    """A remote API call (Cohere, OpenAI or an OpenAI-compatible server) failed.

    ``kind`` is one of :data:`PROVIDER_ERROR_KINDS`: ``timeout``, ``connection``,
    ``rate_limited`` (HTTP 429), ``server`` (5xx, 408, 409), ``client`` (other 4xx),
    ``auth`` (401/403) or ``malformed`` (a response that is not what the API promises:
    not JSON, no results, wrong embedding dimension...). ``retry_after_s`` is the server's
    ``Retry-After``, when it sent one. The message names the provider, endpoint and model,
    never the API key.
    """

    def __init__(self, message: str, *, provider: str, kind: str, status: int | None = None,
                 retry_after_s: float | None = None, retriable: bool | None = None) -> None:
        if kind not in PROVIDER_ERROR_KINDS:
            raise ValueError(f"unknown provider error kind {kind!r}")
        super().__init__(message, retriable=kind in _TRANSIENT if retriable is None else retriable)
        self.provider = provider
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s


class CircuitOpenError(ProviderError):
    """The provider failed repeatedly and its circuit breaker is open: the call was refused
    without contacting it. It is retried only after ``resilience.breaker.reset_after_s``."""

    def __init__(self, provider: str, reopens_in_s: float) -> None:
        super().__init__(f"{provider}: circuit breaker open after repeated failures; next "
                         f"attempt allowed in {max(reopens_in_s, 0.0):.1f} s",
                         provider=provider, kind="circuit_open", retriable=True)
        self.reopens_in_s = reopens_in_s


PROVIDER_ERROR_KINDS = frozenset({"timeout", "connection", "rate_limited", "server", "client",
                                  "auth", "malformed", "circuit_open"})
_TRANSIENT = frozenset({"timeout", "connection", "rate_limited", "server"})
