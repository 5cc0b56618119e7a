"""The identity recorded (``model_loaded``) for a model served by a hosted API."""

from __future__ import annotations

import hashlib

from ..types import ModelIdentity

__all__ = ["remote_identity"]


def remote_identity(provider: str, endpoint: str, model: str,
                    dimension: int | None = None) -> ModelIdentity:
    """A hosted model's weights are not visible, so its digest is the SHA-256 of
    ``provider|endpoint|model|dimension``: it changes when any of them does.

    Example::

        >>> remote_identity("cohere", "https://api.cohere.com", "rerank-v3.5").name
        'cohere:rerank-v3.5'
    """
    text = f"{provider}|{endpoint}|{model}|{'' if dimension is None else dimension}"
    return ModelIdentity(f"{provider}:{model}", hashlib.sha256(text.encode()).hexdigest(),
                         dimension, endpoint=endpoint)
