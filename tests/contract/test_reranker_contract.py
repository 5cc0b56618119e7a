"""Every Reranker honours the same contract."""

from __future__ import annotations

import pytest

from advanced_rag.protocols import Reranker
from advanced_rag.rerank import CrossEncoderReranker, NoReranker
from advanced_rag.types import Hit, HitScores

pytestmark = pytest.mark.integration

TEXTS = ["Complaints are acknowledged within 3 business days.", "Loans above 250,000 euros go "
         "to the credit committee.", "Personal data breaches are notified within 72 hours.",
         "The cat sat on the mat."]


def _hits() -> list[Hit]:
    return [Hit(f"c{i}", f"d{i}", 1, t, {"i": i}, "s", "internal", HitScores(fused=1.0 - i / 10))
            for i, t in enumerate(TEXTS)]


@pytest.fixture(params=["none", "cross-encoder"])
def reranker(request: pytest.FixtureRequest, cross_encoder_dir: str) -> Reranker:
    if request.param == "none":
        return NoReranker()
    return CrossEncoderReranker(cross_encoder_dir, max_length=128, batch_size=2)


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
