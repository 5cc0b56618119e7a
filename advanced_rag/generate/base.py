"""The generation seam: a question and its retrieved hits in, a cited answer out.

Every :class:`Generator` answers only from the hits it is handed. Each sentence of an answer
carries citation markers ``[n]``; :attr:`Generation.citations` maps every ``n`` used to the
chunk it stands for. When the hits do not support an answer, the generator returns exactly
:data:`REFUSAL` with ``refused=True`` and no citations.

Example::

    generation = await generator.generate("Who needs enhanced due diligence?", hits)
    if not generation.refused:
        print(generation.text)                      # "... above 0.7 [1]"
        print(generation.citations[0].chunk_id)     # the chunk behind [1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..types import Hit

__all__ = ["REFUSAL", "Citation", "Generation", "Generator"]

REFUSAL = "insufficient support in the provided documents"
"""The exact sentence a generator answers when the hits do not contain the answer."""


@dataclass(frozen=True, slots=True)
class Citation:
    """What the marker ``[number]`` of an answer points to: one chunk of one document version.

    Example::

        Citation(number=1, chunk_id="kyc-001:v2:0", doc_id="kyc-001", doc_version=2)
    """

    number: int
    chunk_id: str
    doc_id: str
    doc_version: int


@dataclass(frozen=True, slots=True)
class Generation:
    """One generated answer.

    ``citations`` are ordered by first use in ``text`` and hold each marker number once.
    ``refused`` is true when the answer is (or contains) :data:`REFUSAL`. Token counts are
    ``None`` where the generator has no tokenizer-level usage to report (e.g. extractive).
    ``latency_ms`` is wall-clock time spent inside :meth:`Generator.generate`.

    Example::

        Generation(text="KYC applies to all new customers. [1]",
                   citations=(Citation(1, "kyc-001:v1:0", "kyc-001", 1),),
                   model="extractive:all-MiniLM-L6-v2", refused=False,
                   prompt_tokens=None, completion_tokens=None, latency_ms=12.5)
    """

    text: str
    citations: tuple[Citation, ...]
    model: str
    refused: bool
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float


@runtime_checkable
class Generator(Protocol):
    """Answers a question from retrieved hits only, citing them; refuses when they do not suffice.

    Example::

        assert isinstance(ExtractiveGenerator(embedder), Generator)
        generation = await generator.generate(question, hits)
    """

    @property
    def name(self) -> str: ...

    async def generate(self, question: str, hits: Sequence[Hit]) -> Generation: ...
