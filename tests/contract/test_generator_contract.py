"""Every Generator honours the same contract: the offline extractive generator, and the
OpenAI chat adapter against a real HTTP server on 127.0.0.1 speaking chat completions (its
reply is a stand-in that quotes the first passage with ``[1]``: the adapter is under test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from advanced_rag.generate import REFUSAL, ExtractiveGenerator, Generator, OpenAIChatGenerator
from advanced_rag.types import Hit, HitScores
from tests.providers.fake_server import FakeProvider

pytestmark = pytest.mark.integration

HITS = [Hit("c1", "kyc-001", 2, "Enhanced due diligence applies when the risk score exceeds 70.",
            {}, "handbook", "internal", HitScores(fused=0.9)),
        Hit("c2", "aml-004", 1, "Cash deposits above 10,000 EUR are reported to the FIU.",
            {}, "handbook", "internal", HitScores(fused=0.5))]
QUESTION = "When does enhanced due diligence apply?"


@pytest.fixture(params=["extractive", "openai"])
async def generator(request: pytest.FixtureRequest, embedder: Any,
                    provider: FakeProvider) -> AsyncIterator[Generator]:
    if request.param == "extractive":
        yield ExtractiveGenerator(embedder)
        return
    remote = OpenAIChatGenerator("chat-test", base_url=provider.openai_url)
    yield remote
    await remote.aclose()


async def test_cited_answer_from_the_hits(generator: Generator) -> None:
    assert isinstance(generator, Generator) and generator.name
    generation = await generator.generate(QUESTION, HITS)
    assert not generation.refused and generation.text.strip()
    assert generation.citations and generation.citations[0].chunk_id == "c1"
    by_id = {h.chunk_id: h for h in HITS}
    for citation in generation.citations:
        hit = by_id[citation.chunk_id]
        assert (citation.doc_id, citation.doc_version) == (hit.doc_id, hit.doc_version)
        assert HITS[citation.number - 1] is hit
    assert generation.latency_ms >= 0 and generation.model


async def test_no_hits_is_a_refusal_without_a_call(generator: Generator,
                                                   provider: FakeProvider) -> None:
    generation = await generator.generate(QUESTION, [])
    assert generation.refused and generation.text == REFUSAL and generation.citations == ()
    assert provider.state.requests == []


async def test_deterministic(generator: Generator) -> None:
    first = await generator.generate(QUESTION, HITS)
    second = await generator.generate(QUESTION, HITS)
    assert (first.text, first.citations) == (second.text, second.citations)
