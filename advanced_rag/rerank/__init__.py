"""Second-stage rerankers behind the :class:`~advanced_rag.protocols.Reranker` Protocol."""

from .cross_encoder import CrossEncoderReranker
from .passthrough import NoReranker

__all__ = ["CrossEncoderReranker", "NoReranker"]
