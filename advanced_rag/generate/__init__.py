"""Answer generation behind the :class:`~advanced_rag.generate.base.Generator` Protocol.

:class:`ExtractiveGenerator` (offline default) quotes the most relevant sentences of the hits;
:class:`OpenAIChatGenerator` asks an OpenAI-compatible chat model (needs the ``openai`` extra,
checked when it is constructed, so importing this package never needs ``openai``).

Example::

    from advanced_rag.generate import ExtractiveGenerator
    generation = await ExtractiveGenerator(embedder).generate(question, hits)
"""

from .base import REFUSAL, Citation, Generation, Generator
from .extractive import ExtractiveGenerator
from .openai_chat import OpenAIChatGenerator

__all__ = ["REFUSAL", "Citation", "ExtractiveGenerator", "Generation", "Generator",
           "OpenAIChatGenerator"]
