"""Every Embedder honours the same contract: the local sentence-transformers model, and the
hosted OpenAI and Cohere adapters talking to a real HTTP server on 127.0.0.1 that speaks
their wire format and serves the same packaged MiniLM's embeddings (``embed_fn``) — so the
semantic checks below hold for the adapters exactly when they pass vectors through intact."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from advanced_rag.embed.remote import CohereEmbedder, OpenAIEmbedder
from advanced_rag.protocols import Embedder
from tests.providers.fake_server import FakeProvider

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sentence-transformers", "openai", "cohere"])
async def any_embedder(request: pytest.FixtureRequest, embedder: Embedder,
                       provider: FakeProvider) -> AsyncIterator[Embedder]:
    if request.param == "sentence-transformers":
        yield embedder
        return
    provider.state.embed_fn = lambda texts: embedder.encode(texts).tolist()  # type: ignore[attr-defined]
    remote: OpenAIEmbedder | CohereEmbedder
    if request.param == "openai":
        remote = OpenAIEmbedder("emb-test", dimension=embedder.dimension,
                                base_url=provider.openai_url, batch_size=2)
    else:
        remote = CohereEmbedder("embed-test", dimension=embedder.dimension,
                                base_url=provider.cohere_url, batch_size=2)
    yield remote
    await remote.aclose()


async def test_vectors_are_normalised_and_deterministic(any_embedder: Embedder) -> None:
    texts = ["Enhanced due diligence applies from a risk score of 70.", "Ein deutscher Satz.", "x"]
    first = await any_embedder.embed_documents(texts)
    again = await any_embedder.embed_documents(texts)
    assert first.shape == (3, any_embedder.dimension) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-4)
    assert np.allclose(first, again, atol=1e-5)
    query = await any_embedder.embed_query(texts[0])
    assert np.allclose(query, first[0], atol=1e-4)
    assert (await any_embedder.embed_documents([])).shape == (0, any_embedder.dimension)


async def test_concurrent_queries_get_their_own_vectors(any_embedder: Embedder) -> None:
    """Concurrent embed_query calls (coalesced into shared model calls where the embedder
    does that) return what one call at a time returns, each to its own caller."""
    import asyncio

    queries = [f"Question {i}: which retention period applies to record class {i}?"
               for i in range(9)] + ["x", "A much longer query " * 12]
    alone = [await any_embedder.embed_query(q) for q in queries]
    together = await asyncio.gather(*(any_embedder.embed_query(q) for q in queries))
    for a, b in zip(alone, together, strict=True):
        assert a.shape == (any_embedder.dimension,)
        assert np.allclose(a, b, atol=1e-4)
    assert not np.allclose(together[0], together[1], atol=1e-3)


async def test_similar_texts_are_closer(any_embedder: Embedder) -> None:
    a, b, c = await any_embedder.embed_documents([
        "Complaints must be acknowledged within three business days.",
        "We confirm receipt of a complaint in 3 working days.",
        "The HNSW graph degree is sixteen."])
    assert float(a @ b) > float(a @ c) + 0.2


def test_identity_and_tokens(any_embedder: Embedder) -> None:
    identity = any_embedder.identity
    assert identity.name and identity.dimension == any_embedder.dimension
    assert len(identity.sha256) == 64 and identity.sha256 != "unknown"
    assert any_embedder.count_tokens("") == 0
    assert any_embedder.count_tokens("hello world") == 2


def test_packaged_model_resolves_offline() -> None:
    from pathlib import Path

    from advanced_rag.embed.sentence_transformers import resolve_model_path, weights_sha256

    path = resolve_model_path("all-MiniLM-L6-v2")
    assert Path(path, "model.safetensors").is_file()
    assert resolve_model_path("/some/local/model") == "/some/local/model"
    assert weights_sha256(path) == weights_sha256(path)
