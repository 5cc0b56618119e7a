"""Remote providers: one resilience policy (retries, back-off, circuit breakers), the SDK
adapters' shared plumbing, the per-request call log, and fallback chains.

The adapters themselves live with their local counterparts:
:mod:`advanced_rag.embed.remote`, :mod:`advanced_rag.rerank.cohere`,
:mod:`advanced_rag.generate.openai_chat`, :mod:`advanced_rag.scoring.openai_judge`.
"""

from .calls import Attempt, CallLog, FallbackTaken, ProviderCall, collecting
from .identity import remote_identity
from .resilience import Resilience, Target

__all__ = ["Attempt", "CallLog", "FallbackTaken", "ProviderCall", "Resilience", "Target",
           "collecting", "remote_identity"]
