"""The hosted adapters under injected faults, through the official SDKs and a real HTTP
server on 127.0.0.1: what is retried, how long the client waits, what fails at once, and
what ends up in the call log (the audit payload)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest

from advanced_rag.config import BreakerSettings, ResilienceSettings, RetrySettings
from advanced_rag.embed.remote import CohereEmbedder, OpenAIEmbedder
from advanced_rag.errors import CircuitOpenError, MissingDependencyError, ProviderError
from advanced_rag.generate import OpenAIChatGenerator
from advanced_rag.remote import Resilience, collecting
from advanced_rag.rerank.cohere import CohereReranker
from advanced_rag.types import Hit, HitScores
from tests.providers.fake_server import DEFAULT_DIMENSION, FakeProvider, Fault

pytestmark = pytest.mark.integration

HITS = [Hit(f"c{i}", f"d{i}", 1, text, {}, "s", "internal", HitScores(fused=1.0 - i / 10))
        for i, text in enumerate(["complaints are acknowledged in three days",
                                  "breaches are notified in 72 hours",
                                  "the committee approves large loans"])]


def fast(attempts: int = 3, threshold: int = 5, reset_s: float = 30.0) -> Resilience:
    return Resilience(ResilienceSettings(
        retry=RetrySettings(attempts=attempts, initial_backoff_s=0.05, max_backoff_s=0.2,
                            max_retry_after_s=2.0, deadline_s=10.0),
        breaker=BreakerSettings(failure_threshold=threshold, reset_after_s=reset_s)))


@pytest.fixture
async def reranker(provider: FakeProvider) -> AsyncIterator[CohereReranker]:
    r = CohereReranker("rerank-test", base_url=provider.cohere_url, timeout_s=0.3,
                       resilience=fast())
    yield r
    await r.aclose()


async def test_429_honours_retry_after(provider: FakeProvider, reranker: CohereReranker) -> None:
    provider.state.add_faults(Fault("429", path="/v2/rerank", retry_after="0.4"))
    with collecting() as log:
        out = await reranker.rerank("complaints acknowledged", HITS, 2)
    assert out[0].chunk_id == "c0"
    first, second = provider.state.requests_to("/v2/rerank")
    assert second.time - first.time >= 0.4  # the server-side gap: the client really waited
    [call] = log.calls
    assert [(a.outcome, a.status, a.retry_after_s) for a in call.attempts] == [
        ("rate_limited", 429, 0.4), ("ok", None, None)]
    assert call.attempts[0].wait_s == 0.4 and call.usage == {"search_units": 1.0}


async def test_500_then_success_backs_off_within_bounds(provider: FakeProvider,
                                                         reranker: CohereReranker) -> None:
    provider.state.add_faults(Fault("500", path="/v2/rerank"), Fault("503", path="/v2/rerank"))
    with collecting() as log:
        await reranker.rerank("complaints", HITS, 1)
    attempts = log.calls[0].attempts
    assert [a.outcome for a in attempts] == ["server", "server", "ok"]
    assert [a.status for a in attempts[:2]] == [500, 503]
    assert attempts[0].wait_s is not None and 0 <= attempts[0].wait_s <= 0.05
    assert attempts[1].wait_s is not None and 0 <= attempts[1].wait_s <= 0.1


async def test_slow_response_times_out_and_is_retried(provider: FakeProvider,
                                                      reranker: CohereReranker) -> None:
    provider.state.add_faults(Fault("slow", path="/v2/rerank", delay_s=3.0))
    with collecting() as log:
        await reranker.rerank("complaints", HITS, 1)
    assert [a.outcome for a in log.calls[0].attempts] == ["timeout", "ok"]
    assert log.calls[0].attempts[0].latency_ms < 1500  # cut at the 0.3 s timeout, not 3 s


@pytest.mark.parametrize("fault,kind", [("malformed", "malformed"), ("empty", "malformed"),
                                        ("400", "client"), ("401", "auth")])
async def test_not_retried(provider: FakeProvider, reranker: CohereReranker, fault: str,
                           kind: str) -> None:
    provider.state.add_faults(Fault(fault, path="/v2/rerank"))
    with collecting() as log, pytest.raises(ProviderError) as info:
        await reranker.rerank("complaints", HITS, 2)
    assert info.value.kind == kind and len(provider.state.requests_to("/v2/rerank")) == 1
    assert log.calls[0].outcome == kind


async def test_disconnect_is_retried(provider: FakeProvider, reranker: CohereReranker) -> None:
    provider.state.add_faults(Fault("disconnect", path="/v2/rerank"))
    with collecting() as log:
        await reranker.rerank("complaints", HITS, 1)
    assert [a.outcome for a in log.calls[0].attempts] == ["connection", "ok"]


async def test_breaker_opens_then_closes_against_the_server(provider: FakeProvider) -> None:
    reranker = CohereReranker("rerank-test", base_url=provider.cohere_url,
                              resilience=fast(attempts=1, threshold=2, reset_s=0.5))
    provider.state.always = Fault("503", path="/v2/rerank")
    for _ in range(2):
        with pytest.raises(ProviderError):
            await reranker.rerank("q", HITS, 1)
    with pytest.raises(CircuitOpenError):
        await reranker.rerank("q", HITS, 1)
    assert len(provider.state.requests_to("/v2/rerank")) == 2  # the open breaker sent nothing
    provider.state.always = None
    import asyncio

    await asyncio.sleep(0.55)
    assert len(await reranker.rerank("q", HITS, 1)) == 1  # the half-open trial succeeds
    assert len(provider.state.requests_to("/v2/rerank")) == 3
    await reranker.aclose()


@pytest.mark.parametrize("kind", ["openai", "cohere"])
async def test_wrong_dimension_is_malformed_not_stored(provider: FakeProvider, kind: str) -> None:
    embedder: OpenAIEmbedder | CohereEmbedder
    if kind == "openai":
        embedder = OpenAIEmbedder("emb", dimension=DEFAULT_DIMENSION, base_url=provider.openai_url,
                                  resilience=fast())
    else:
        embedder = CohereEmbedder("emb", dimension=DEFAULT_DIMENSION, base_url=provider.cohere_url,
                                  resilience=fast())
    assert (await embedder.embed_documents(["a b", "c"])).shape == (2, DEFAULT_DIMENSION)
    provider.state.add_faults("wrong_dimension")
    with pytest.raises(ProviderError, match="dimensional embeddings") as info:
        await embedder.embed_documents(["a b"])
    assert info.value.kind == "malformed"
    provider.state.add_faults("empty")
    with pytest.raises(ProviderError, match="embeddings for 1 texts"):
        await embedder.embed_query("a b")
    await embedder.aclose()


async def test_embedders_batch_and_report_usage(provider: FakeProvider) -> None:
    embedder = OpenAIEmbedder("emb", dimension=DEFAULT_DIMENSION, base_url=provider.openai_url,
                              batch_size=2, resilience=fast())
    with collecting() as log:
        vectors = await embedder.embed_documents(["one two", "three", "four five six"])
    assert vectors.shape == (3, DEFAULT_DIMENSION)
    bodies = [r.body for r in provider.state.requests_to("/v1/embeddings")]
    assert [b["input"] for b in bodies] == [["one two", "three"], ["four five six"]]
    assert all(b["encoding_format"] == "float" for b in bodies)
    assert [c.usage["prompt_tokens"] for c in log.calls] == [3.0, 3.0]
    await embedder.aclose()

    cohere = CohereEmbedder("emb", dimension=DEFAULT_DIMENSION, base_url=provider.cohere_url,
                            resilience=fast())
    await cohere.embed_query("who approves loans")
    await cohere.embed_documents(["loans are approved by the committee"])
    first, second = [r.body for r in provider.state.requests_to("/v2/embed")]
    assert (first["input_type"], second["input_type"]) == ("search_query", "search_document")
    assert first["embedding_types"] == ["float"] and first["truncate"] == "NONE"
    await cohere.aclose()


async def test_chat_generator_retries_a_429(provider: FakeProvider) -> None:
    generator = OpenAIChatGenerator("chat", base_url=provider.openai_url, resilience=fast())
    provider.state.add_faults(Fault("429", path="/v1/chat/completions", retry_after="0.1"))
    with collecting() as log:
        generation = await generator.generate("when are complaints acknowledged?", HITS)
    assert not generation.refused and generation.citations
    [call] = log.calls
    assert [a.outcome for a in call.attempts] == ["rate_limited", "ok"]
    assert call.usage["prompt_tokens"] > 0 and call.usage["completion_tokens"] > 0
    await generator.aclose()


@pytest.mark.parametrize("package,build", [
    ("openai", lambda: OpenAIEmbedder("m", dimension=8, base_url="http://127.0.0.1:1/v1")),
    ("cohere", lambda: CohereReranker("m", base_url="http://127.0.0.1:1")),
    ("cohere", lambda: CohereEmbedder("m", dimension=8, base_url="http://127.0.0.1:1")),
])
def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch, package: str,
                                     build: object) -> None:
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(MissingDependencyError, match=rf"advanced-rag\[{package}\]"):
        build()  # type: ignore[operator]


def test_hosted_api_without_a_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from advanced_rag.errors import ConfigError

    monkeypatch.delenv("CO_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="CO_API_KEY"):
        CohereReranker("rerank-v3.5")
