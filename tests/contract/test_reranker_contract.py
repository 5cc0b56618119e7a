"""Every Reranker honours the same contract: no reranking, a local cross-encoder, and the
Cohere rerank adapter against a real HTTP server on 127.0.0.1 speaking ``/v2/rerank``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from advanced_rag.protocols import Reranker
from advanced_rag.rerank import CrossEncoderReranker, NoReranker
from advanced_rag.rerank.cohere import CohereReranker
from advanced_rag.types import Hit, HitScores
from tests.providers.fake_server import FakeProvider

pytestmark = pytest.mark.integration

TEXTS = ["Complaints are acknowledged within 3 business days.", "Loans above 250,000 euros go "
         "to the credit committee.", "Personal data breaches are notified within 72 hours.",
         "The cat sat on the mat."]


def _hits() -> list[Hit]:
    return [Hit(f"c{i}", f"d{i}", 1, t, {"i": i}, "s", "internal", HitScores(fused=1.0 - i / 10))
            for i, t in enumerate(TEXTS)]


@pytest.fixture(params=["none", "cross-encoder", "cohere"])
async def reranker(request: pytest.FixtureRequest, cross_encoder_dir: str,
                   provider: FakeProvider) -> AsyncIterator[Reranker]:
    if request.param == "none":
        yield NoReranker()
    elif request.param == "cross-encoder":
        yield CrossEncoderReranker(cross_encoder_dir, max_length=128, batch_size=2)
    else:  # the Cohere API adapter against a local server speaking /v2/rerank
        cohere = CohereReranker("rerank-test", base_url=provider.cohere_url)
        yield cohere
        await cohere.aclose()


async def test_returns_at_most_top_k_of_the_input(reranker: Reranker) -> None:
    hits = _hits()
    out = await reranker.rerank("complaint deadline", hits, 2)
    assert len(out) == 2
    by_id = {h.chunk_id: h for h in hits}
    for hit in out:
        original = by_id[hit.chunk_id]
        assert (hit.doc_id, hit.text, hit.metadata) == (original.doc_id, original.text,
                                                        original.metadata)
        assert hit.scores.fused == original.scores.fused
    assert isinstance(reranker, Reranker) and reranker.name


async def test_empty_input(reranker: Reranker) -> None:
    assert await reranker.rerank("q", [], 5) == []


async def test_cross_encoder_orders_by_its_own_scores(cross_encoder_dir: str) -> None:
    from sentence_transformers import CrossEncoder

    reranker = CrossEncoderReranker(cross_encoder_dir, max_length=128, batch_size=3)
    query = "how fast are complaints acknowledged"
    out = await reranker.rerank(query, _hits(), 4)
    reference = CrossEncoder(cross_encoder_dir, max_length=128, local_files_only=True)
    expected = reference.predict([(query, t) for t in TEXTS])
    want = sorted(range(len(TEXTS)), key=lambda i: -float(expected[i]))
    assert [h.chunk_id for h in out] == [f"c{i}" for i in want]
    for hit in out:
        i = int(hit.chunk_id[1:])
        assert hit.scores.rerank == pytest.approx(float(expected[i]), rel=1e-4, abs=1e-5)
    assert [h.scores.rerank for h in out] == sorted((h.scores.rerank for h in out), reverse=True)
    reranker.close()


def test_missing_model_is_a_reranker_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from advanced_rag.errors import RerankerError

    with pytest.raises(RerankerError, match="cannot load model"):
        CrossEncoderReranker(str(tmp_path / "no-such-model"))


async def test_rerank_scores_are_set_and_ordered(reranker: Reranker) -> None:
    out = await reranker.rerank("complaint deadline", _hits(), 4)
    scores = [h.scores.rerank for h in out]
    if isinstance(reranker, NoReranker):
        assert scores == [None] * 4 and [h.chunk_id for h in out] == ["c0", "c1", "c2", "c3"]
    else:
        assert all(isinstance(s, float) for s in scores)
        assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]


async def test_cohere_keeps_the_apis_ranking_and_bills(provider: FakeProvider) -> None:
    from advanced_rag.remote import collecting
    from tests.providers.fake_server import jaccard

    query = "how fast are complaints acknowledged"
    cohere = CohereReranker("rerank-test", base_url=provider.cohere_url, max_tokens_per_doc=64)
    with collecting() as log:
        out = await cohere.rerank(query, _hits(), 2)
    await cohere.aclose()
    want = sorted(range(len(TEXTS)), key=lambda i: -jaccard(query, TEXTS[i]))[:2]
    assert [h.chunk_id for h in out] == [f"c{i}" for i in want]
    [request] = provider.state.requests_to("/v2/rerank")
    assert request.body == {"model": "rerank-test", "query": query, "documents": TEXTS,
                            "top_n": 2, "max_tokens_per_doc": 64}
    [call] = log.calls
    assert (call.provider, call.operation, call.outcome) == ("cohere", "rerank", "ok")
    assert call.usage == {"search_units": 1.0}
