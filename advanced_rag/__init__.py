"""advanced-rag: compliance-focused async retrieval-augmented generation on Milvus.

Example::

    from advanced_rag import AdvancedRAGPipeline, Document, load_config

    async with AdvancedRAGPipeline.from_config(load_config("config.yaml")) as rag:
        await rag.ingest([Document(id="kyc-1", text="...")], tenant="bank-a")
        hits, metrics = await rag.retrieve("Who approves EDD?", tenant="bank-a")
"""

from typing import TYPE_CHECKING, Any

from .access import Principal
from .admin import MilvusIndexManager
from .config import PipelineConfig, load_config
from .errors import (
    AccessDeniedError,
    AdvancedRagError,
    BackendError,
    ConfigError,
    DocumentError,
    EmbedderError,
    FilterError,
    InputError,
    MissingDependencyError,
    ProviderError,
    RerankerError,
    TenantError,
    UnsupportedBackendError,
    VectorStoreError,
)
from .telemetry import PerformanceReport
from .types import (
    Chunk,
    Classification,
    Document,
    DocumentOutcome,
    DocumentStatus,
    Fusion,
    Hit,
    HitScores,
    IngestFailure,
    IngestReport,
    MetadataFilter,
    ModelIdentity,
    RetrievalMetrics,
    RetrievalResult,
    SearchType,
)

if TYPE_CHECKING:
    from .pipeline import AdvancedRAGPipeline

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The pipeline records into compliance.audit, whose errors derive from this package's:
    # importing it lazily lets `import compliance` (scripts, the audit tools) come first.
    if name == "AdvancedRAGPipeline":
        from .pipeline import AdvancedRAGPipeline

        return AdvancedRAGPipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AccessDeniedError",
    "AdvancedRAGPipeline",
    "AdvancedRagError",
    "BackendError",
    "Chunk",
    "Classification",
    "ConfigError",
    "Document",
    "DocumentError",
    "DocumentOutcome",
    "DocumentStatus",
    "EmbedderError",
    "FilterError",
    "Fusion",
    "Hit",
    "HitScores",
    "IngestFailure",
    "IngestReport",
    "InputError",
    "MetadataFilter",
    "MilvusIndexManager",
    "MissingDependencyError",
    "ModelIdentity",
    "PerformanceReport",
    "PipelineConfig",
    "Principal",
    "ProviderError",
    "RerankerError",
    "RetrievalMetrics",
    "RetrievalResult",
    "SearchType",
    "TenantError",
    "UnsupportedBackendError",
    "VectorStoreError",
    "__version__",
    "load_config",
]
