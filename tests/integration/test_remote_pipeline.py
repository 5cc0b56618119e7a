"""The whole pipeline with hosted providers: Cohere rerank, OpenAI chat, OpenAI judge and
OpenAI embeddings, served by the fake provider (a real HTTP server speaking both wire formats
through the official SDKs), with Milvus Lite, the packaged MiniLM and the audit trail real.

What is pinned: every remote call and fallback lands in the audit event of its request, with
each attempt; transient errors are retried, permanent ones are not; a provider that stays down
is served by the configured fallback until its circuit breaker opens, and the breaker closes
again once the provider answers; API keys never reach the audit trail, the logs or a ``repr``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from advanced_rag import AdvancedRAGPipeline, Document
from advanced_rag.answering import Decision
from advanced_rag.config import PipelineConfig, validate_config
from advanced_rag.errors import ProviderError
from compliance.audit import AuditEventType
from compliance.audit.models import AuditRecord
from tests.providers.fake_server import FakeProvider, Fault, fake_provider, provider  # noqa: F401

pytestmark = pytest.mark.integration

TENANT = "bank-a"
DOCS = [
    Document("loans", "Loans above 250,000 euros are approved by the credit committee. "
                      "Smaller loans are approved by the branch manager within five business "
                      "days."),
    Document("complaints", "Complaints are acknowledged within two business days. A final "
                           "response is sent within fifteen business days."),
    Document("kyc", "Customer due diligence is required before opening an account. Enhanced "
                    "due diligence applies to politically exposed persons."),
    Document("travel", "Business travel must be booked through the travel desk. Economy class "
                       "is used for flights under six hours."),
]
QUESTION = "Who approves loans above 250,000 euros?"
RESET_AFTER_S = 0.5
RESILIENCE = {"retry": {"attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.05},
              "breaker": {"failure_threshold": 3, "reset_after_s": RESET_AFTER_S}}


def remote_config(tmp_path: Path, server: FakeProvider, **sections: Any) -> PipelineConfig:
    """Cohere rerank → none, OpenAI chat → extractive, OpenAI judge → feature, fast retries."""
    data: dict[str, Any] = {
        "data_dir": str(tmp_path), "milvus": {"uri": str(tmp_path / "m.db")},
        "chunking": {"max_tokens": 64, "min_tokens": 4},
        "pipeline": {"top_k": 3},
        "reranker": {"kind": "cohere", "model": "rerank-test", "base_url": server.cohere_url,
                     "fallback": [{"kind": "none"}]},
        "generator": {"kind": "openai", "model": "chat-test", "base_url": server.openai_url,
                      "fallback": [{"kind": "extractive"}]},
        "judge": {"kind": "openai", "model": "judge-test", "base_url": server.openai_url,
                  "fallback": [{"kind": "feature"}]},
        "resilience": RESILIENCE,
    }
    data.update(sections)
    return validate_config(data)


def supported_verdicts(request: dict[str, Any]) -> dict[str, Any]:
    """A well-formed judge reply: every claim listed in the user message (numbered from 0)
    is supported by sentence S1 with confidence 0.9."""
    user = request["messages"][-1]["content"]
    listed = user.split("\n\nClaims:\n", 1)[1]
    numbers = [int(n) for n in re.findall(r"^(\d+): ", listed, flags=re.MULTILINE)]
    assert numbers == list(range(len(numbers))) and numbers
    return {"verdicts": [{"claim": n, "verdict": "supported", "evidence": 1, "confidence": 0.9}
                         for n in numbers]}


async def events(rag: AdvancedRAGPipeline, kind: AuditEventType | None = None) -> list[AuditRecord]:
    return await rag.compliance.query_audit_logs(kind, limit=100_000)


async def last(rag: AdvancedRAGPipeline, kind: AuditEventType) -> dict[str, Any]:
    records = await rag.compliance.query_audit_logs(kind, limit=1, newest_first=True)
    assert records and records[0].payload is not None
    return dict(records[0].payload)


def judge_requests(server: FakeProvider) -> list[Any]:
    """Chat requests made by the judge (it asks for JSON output; the generator does not)."""
    return [r for r in server.state.requests_to("/v1/chat/completions")
            if isinstance(r.body, dict) and "response_format" in r.body]


@pytest.fixture
def clean_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """No API key from the developer's environment leaks into these tests."""
    for name in ("OPENAI_API_KEY", "CO_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def rag(embedder: Any, tmp_path: Path, provider: FakeProvider,  # noqa: F811
              clean_keys: None) -> AsyncIterator[AdvancedRAGPipeline]:
    provider.state.chat_json = supported_verdicts
    async with AdvancedRAGPipeline(remote_config(tmp_path, provider),
                                   embedder=embedder) as pipeline:
        await pipeline.ingest(DOCS, tenant=TENANT)
        yield pipeline


# --------------------------------------------------------------------------- happy path


async def test_remote_calls_are_audited_with_attempts_and_usage(
        rag: AdvancedRAGPipeline, provider: FakeProvider) -> None:  # noqa: F811
    result = await rag.retrieve(QUESTION, tenant=TENANT, actor="alice")
    assert result.hits and result.hits[0].doc_id == "loans"
    assert all(h.scores.rerank is not None for h in result.hits)
    assert len(provider.state.requests_to("/v2/rerank")) == 1

    retrieval = await last(rag, AuditEventType.RETRIEVAL)
    [call] = retrieval["provider_calls"]
    assert call["provider"] == "cohere" and call["operation"] == "rerank"
    assert call["endpoint"] == provider.cohere_url and call["model"] == "rerank-test"
    assert call["outcome"] == "ok" and call["usage"] == {"search_units": 1.0}
    [attempt] = call["attempts"]
    assert attempt["n"] == 1 and attempt["outcome"] == "ok" and attempt["latency_ms"] >= 0
    assert "wait_s" not in attempt and "status" not in attempt
    assert "fallbacks" not in retrieval
    rerank = await last(rag, AuditEventType.RERANK)
    assert rerank["reranker"] == "cohere:rerank-test"
    assert rerank["results"]["chunk_id"] == [h.chunk_id for h in result.hits]
    assert rerank["results"]["scores"]["rerank"] == [h.scores.rerank for h in result.hits]
    # a hosted reranker is never cut down by the latency budget: its cost is the round trip
    assert rerank["budget"]["reranked"] == rerank["budget"]["candidates"]
    assert result.metrics.rerank is not None
    assert "not a local cross-encoder" in result.metrics.rerank["reason"]

    answer = await rag.answer(QUESTION, tenant=TENANT, actor="alice")
    assert answer.text is not None and "credit committee" in answer.text
    assert answer.citations and answer.citations[0].doc_id == "loans"
    assert answer.quality.judge == "openai:judge-test"
    assert answer.quality.hallucination_risk == pytest.approx(0.1)
    assert answer.decision is Decision.RETURNED
    assert len(judge_requests(provider)) == 1
    assert len(provider.state.requests_to("/v1/chat/completions")) == 2

    generation = await last(rag, AuditEventType.GENERATION)
    [chat] = generation["provider_calls"]
    assert (chat["provider"], chat["operation"], chat["model"], chat["outcome"]) == (
        "openai", "chat", "chat-test", "ok")
    assert chat["endpoint"] == provider.openai_url
    assert [a["outcome"] for a in chat["attempts"]] == ["ok"]
    usage = chat["usage"]
    assert usage["prompt_tokens"] == generation["prompt_tokens"] > 0
    assert usage["completion_tokens"] == generation["completion_tokens"] > 0
    assert generation["generator"] == "chat-test" and "fallbacks" not in generation

    scoring = await last(rag, AuditEventType.SCORING)
    [judged] = scoring["provider_calls"]
    assert (judged["provider"], judged["operation"], judged["model"], judged["outcome"]) == (
        "openai", "judge", "judge-test", "ok")
    assert judged["usage"]["prompt_tokens"] > 0
    assert scoring["judge"] == "openai:judge-test" and "fallbacks" not in scoring
    assert scoring["hallucination_risk"] == pytest.approx(0.1)

    # the retrieval of answer() has its own rerank call; no event holds another's calls
    retrievals = await events(rag, AuditEventType.RETRIEVAL)
    assert len(retrievals) == 2
    assert all(len(r.payload["provider_calls"]) == 1 for r in retrievals if r.payload)


async def test_model_loaded_names_hosted_models_and_fallback_members(
        rag: AdvancedRAGPipeline, provider: FakeProvider) -> None:  # noqa: F811
    loaded = {r.payload["role"]: r.payload for r in await events(rag, AuditEventType.MODEL_LOADED)
              if r.payload}
    assert loaded["reranker"]["model"] == "cohere:rerank-test"
    assert loaded["reranker"]["endpoint"] == provider.cohere_url
    assert loaded["judge"]["model"] == "openai:judge-test"
    assert loaded["judge"]["endpoint"] == provider.openai_url
    assert loaded["judge.fallback[0]"]["model"].startswith("feature-judge")
    assert "endpoint" not in loaded["judge.fallback[0]"]  # local: digest of its weights
    assert "endpoint" not in loaded["embedder"]


async def test_model_loaded_names_the_hosted_chat_model(
        rag: AdvancedRAGPipeline, provider: FakeProvider) -> None:  # noqa: F811
    loaded = {r.payload["role"]: r.payload for r in await events(rag, AuditEventType.MODEL_LOADED)
              if r.payload}
    assert loaded["generator"]["model"] == "openai:chat-test"
    assert loaded["generator"]["endpoint"] == provider.openai_url


# --------------------------------------------------------------------------- retries, fallbacks


async def test_a_server_error_is_retried_and_every_attempt_audited(
        rag: AdvancedRAGPipeline, provider: FakeProvider) -> None:  # noqa: F811
    provider.state.add_faults(Fault("500", path="/v2/rerank"))
    result = await rag.retrieve(QUESTION, tenant=TENANT)
    assert result.hits[0].doc_id == "loans" and result.hits[0].scores.rerank is not None
    assert len(provider.state.requests_to("/v2/rerank")) == 2

    retrieval = await last(rag, AuditEventType.RETRIEVAL)
    [call] = retrieval["provider_calls"]
    assert call["outcome"] == "ok" and call["usage"] == {"search_units": 1.0}
    first, second = call["attempts"]
    assert (first["n"], first["outcome"], first["status"], first["error"]) == (
        1, "server", 500, "ProviderError")
    assert 0.0 <= first["wait_s"] <= 0.01  # full jitter under initial_backoff_s
    assert (second["n"], second["outcome"]) == (2, "ok") and "wait_s" not in second
    assert "fallbacks" not in retrieval


async def test_a_reranker_that_stays_down_falls_back_then_the_breaker_opens_and_closes(
        rag: AdvancedRAGPipeline, provider: FakeProvider) -> None:  # noqa: F811
    state = provider.state
    state.always = Fault("503", path="/v2/rerank")
    fallback = {"role": "reranker", "failed": "cohere:rerank-test", "used": "none"}

    result = await rag.retrieve(QUESTION, tenant=TENANT)
    retrieval = await last(rag, AuditEventType.RETRIEVAL)
    assert result.hits, "the fallback serves the request"
    assert all(h.scores.rerank is None for h in result.hits)
    first_stage = retrieval["results"]["chunk_id"]  # the candidates, in first-stage order
    assert [h.chunk_id for h in result.hits] == first_stage[:len(result.hits)]
    assert retrieval["fallbacks"] == [{**fallback, "error": "ProviderError/server"}]
    [call] = retrieval["provider_calls"]
    assert call["outcome"] == "server" and call["usage"] == {}
    assert [(a["n"], a["outcome"], a.get("status")) for a in call["attempts"]] == [
        (1, "server", 503), (2, "server", 503), (3, "server", 503)]
    assert "wait_s" in call["attempts"][0] and "wait_s" not in call["attempts"][-1]
    assert len(state.requests_to("/v2/rerank")) == 3

    # three consecutive provider faults open the breaker: calls are refused without a request
    for _ in range(5):
        sent = len(state.requests_to("/v2/rerank"))
        result = await rag.retrieve(QUESTION, tenant=TENANT)
        retrieval = await last(rag, AuditEventType.RETRIEVAL)
        if retrieval["provider_calls"][-1]["outcome"] == "circuit_open":
            break
    else:
        pytest.fail("the circuit breaker never opened")
    assert len(state.requests_to("/v2/rerank")) == sent, "an open breaker sends nothing"
    [call] = retrieval["provider_calls"]
    [attempt] = call["attempts"]
    assert (attempt["n"], attempt["outcome"], attempt["error"]) == (
        1, "circuit_open", "CircuitOpenError")
    assert "status" not in attempt and "wait_s" not in attempt
    assert retrieval["fallbacks"] == [{**fallback, "error": "CircuitOpenError/circuit_open"}]
    assert result.hits and all(h.scores.rerank is None for h in result.hits)
    report = await rag.health(timeout_s=5)
    [breaker] = [b for b in report.breakers if b.name.startswith("cohere ")]
    assert breaker.state == "open"

    # the provider recovers; after reset_after_s one trial call goes through and closes it
    state.always = None
    await asyncio.sleep(RESET_AFTER_S + 0.1)
    sent = len(state.requests_to("/v2/rerank"))
    result = await rag.retrieve(QUESTION, tenant=TENANT)
    retrieval = await last(rag, AuditEventType.RETRIEVAL)
    assert len(state.requests_to("/v2/rerank")) == sent + 1
    [call] = retrieval["provider_calls"]
    assert call["outcome"] == "ok" and [a["outcome"] for a in call["attempts"]] == ["ok"]
    assert "fallbacks" not in retrieval
    assert result.hits[0].doc_id == "loans" and result.hits[0].scores.rerank is not None
    report = await rag.health(timeout_s=5)
    [breaker] = [b for b in report.breakers if b.name.startswith("cohere ")]
    assert breaker.state == "closed" and breaker.consecutive_failures == 0


async def test_a_malformed_judge_reply_is_not_retried_and_the_feature_judge_scores(
        rag: AdvancedRAGPipeline, provider: FakeProvider) -> None:  # noqa: F811
    provider.state.chat_json = lambda request: {"verdict": "looks fine to me"}  # no 'verdicts'
    answer = await rag.answer(QUESTION, tenant=TENANT)

    assert len(judge_requests(provider)) == 1, "a malformed reply is not retried"
    assert answer.text is not None and "credit committee" in answer.text  # the chat model's
    assert answer.quality.judge == "feature-judge"
    assert answer.quality.hallucination_risk is not None

    scoring = await last(rag, AuditEventType.SCORING)
    assert scoring["judge"] == "feature-judge"
    assert scoring["judge_version"] == answer.quality.judge_version
    assert scoring["fallbacks"] == [{"role": "judge", "failed": "openai:judge-test",
                                     "used": "feature-judge",
                                     "error": "ProviderError/malformed"}]
    [call] = scoring["provider_calls"]
    assert (call["operation"], call["outcome"]) == ("judge", "malformed")
    assert [(a["n"], a["outcome"], a["error"]) for a in call["attempts"]] == [
        (1, "malformed", "ProviderError")]
    generation = await last(rag, AuditEventType.GENERATION)
    assert [c["outcome"] for c in generation["provider_calls"]] == ["ok"]
    assert "fallbacks" not in generation


# --------------------------------------------------------------------------- API keys


def _everything_written(data_dir: Path) -> bytes:
    """Every byte the pipeline wrote under its data_dir (audit, lineage, drift, Milvus)."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


async def test_api_keys_reach_only_the_provider(
        embedder: Any, tmp_path: Path, provider: FakeProvider,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cohere_key = "co-SECRET-1d6f0c9e7b2a4485"
    openai_key = "sk-SECRET-93b1e0d2c4a54f77"
    monkeypatch.setenv("CO_API_KEY", cohere_key)
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    caplog.set_level(logging.DEBUG)
    state = provider.state
    state.chat_json = supported_verdicts
    data_dir = tmp_path / "data"
    config = remote_config(data_dir, provider)

    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        await rag.ingest(DOCS, tenant=TENANT)
        state.require_key = cohere_key  # the reranker's key is right, the chat models' wrong
        await rag.retrieve(QUESTION, tenant=TENANT)
        [rerank_request] = state.requests_to("/v2/rerank")
        assert rerank_request.headers["authorization"] == f"Bearer {cohere_key}"
        retrieval = await last(rag, AuditEventType.RETRIEVAL)
        assert retrieval["provider_calls"][0]["outcome"] == "ok"

        answer = await rag.answer(QUESTION, tenant=TENANT)
        chats = state.requests_to("/v1/chat/completions")
        assert len(chats) == 2, "401 is not retried: one request by the generator, one by the judge"
        assert {r.headers["authorization"] for r in chats} == {f"Bearer {openai_key}"}
        assert answer.quality.judge == "feature-judge"  # the fallbacks served
        generation = await last(rag, AuditEventType.GENERATION)
        assert generation["generator"] != "chat-test"  # the extractive fallback answered
        assert generation["fallbacks"] == [{"role": "generator", "failed": "openai-chat",
                                            "used": "extractive", "error": "ProviderError/auth"}]
        [chat] = generation["provider_calls"]
        assert chat["outcome"] == "auth"
        assert [(a["n"], a["outcome"], a["status"]) for a in chat["attempts"]] == [
            (1, "auth", 401)]
        scoring = await last(rag, AuditEventType.SCORING)
        assert scoring["fallbacks"] == [{"role": "judge", "failed": "openai:judge-test",
                                         "used": "feature-judge", "error": "ProviderError/auth"}]
        assert [a["status"] for a in scoring["provider_calls"][0]["attempts"]] == [401]

        state.require_key = openai_key  # now the reranker's key is the wrong one
        await rag.answer(QUESTION, tenant=TENANT)
        assert len(state.requests_to("/v2/rerank")) == 3  # one more each, not retried
        retrieval = await last(rag, AuditEventType.RETRIEVAL)
        assert retrieval["fallbacks"] == [{"role": "reranker", "failed": "cohere:rerank-test",
                                           "used": "none", "error": "ProviderError/auth"}]
        assert [(a["outcome"], a["status"]) for a in
                retrieval["provider_calls"][0]["attempts"]] == [("auth", 401)]
        assert (await last(rag, AuditEventType.SCORING))["judge"] == "openai:judge-test"

        report = await rag.health(timeout_s=5)
        texts = [repr(rag), repr(rag.config), str(rag.config.model_dump()), repr(report),
                 json.dumps(report.to_dict())]
        for component in (rag.embedder, rag._reranker, rag._generator, rag._judge):
            texts.append(repr(component))
            texts.extend(repr(m) for m in getattr(component, "members", ()))
            texts.extend(repr(getattr(m, "endpoint", None))
                         for m in getattr(component, "members", ()))
        audit = await events(rag)
        texts.extend(r.payload_json or "" for r in audit)
        texts.extend(repr(r.payload) for r in audit)  # personal-data fields decrypted
    assert len(audit) > 10
    texts.append(caplog.text)
    texts.extend(str(record.args) for record in caplog.records)
    written = _everything_written(data_dir)
    assert written
    for secret in (cohere_key, openai_key):
        leaks = [t[:200] for t in texts if secret in t]
        assert not leaks, f"the key leaked into: {leaks}"
        assert secret.encode() not in written


async def test_a_rejected_key_is_not_retried_and_surfaces_as_an_auth_error(
        embedder: Any, tmp_path: Path, provider: FakeProvider,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "co-WRONG-5a0e1c7d3b9f4e21"
    monkeypatch.setenv("CO_API_KEY", wrong)
    config = remote_config(
        tmp_path, provider, generator={"kind": "extractive"}, judge={"kind": "feature"},
        reranker={"kind": "cohere", "model": "rerank-test", "base_url": provider.cohere_url})
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        await rag.ingest(DOCS, tenant=TENANT)
        provider.state.require_key = "co-the-right-key"
        for attempt in range(1, 5):  # more than failure_threshold: auth says nothing of health
            with pytest.raises(ProviderError) as raised:
                await rag.retrieve(QUESTION, tenant=TENANT, actor="alice")
            assert (raised.value.kind, raised.value.status) == ("auth", 401)
            assert raised.value.provider == "cohere"
            assert len(provider.state.requests_to("/v2/rerank")) == attempt
        failures = await events(rag, AuditEventType.RETRIEVAL)
    assert len(failures) == 4
    payload = failures[-1].payload
    assert payload is not None
    assert (payload["outcome"], payload["error"]) == ("error", "ProviderError")
    assert "401" in payload["message"] and wrong not in payload["message"]
    [call] = payload["provider_calls"]
    assert (call["provider"], call["operation"], call["outcome"]) == ("cohere", "rerank", "auth")
    assert [(a["n"], a["outcome"], a["status"], a["error"]) for a in call["attempts"]] == [
        (1, "auth", 401, "ProviderError")]
    assert "fallbacks" not in payload
    assert all(wrong not in (r.payload_json or "") for r in failures)


# --------------------------------------------------------------------------- hosted embedder


async def test_ingest_with_a_hosted_embedder_audits_each_batch_and_retries_a_rate_limit(
        embedder: Any, tmp_path: Path, provider: FakeProvider,  # noqa: F811
        clean_keys: None) -> None:
    state = provider.state
    state.embed_fn = lambda texts: embedder.encode(texts).tolist()  # real MiniLM vectors
    state.add_faults(Fault("429", path="/v1/embeddings", retry_after=0.05))
    config = remote_config(
        tmp_path, provider, ingest={"batch_size": 2},
        embedder={"kind": "openai", "model": "emb-test", "dimension": 384,
                  "base_url": provider.openai_url},
        reranker={"kind": "none"}, generator={"kind": "extractive"}, judge={"kind": "feature"})

    async with AdvancedRAGPipeline(config) as rag:  # the factory builds the OpenAIEmbedder
        assert rag.embedder.dimension == 384
        report = await rag.ingest(DOCS, tenant=TENANT, actor="loader")
        assert not report.failed
        assert sorted(report.new) == sorted(d.id for d in DOCS)
        assert await rag.store.count(TENANT) == report.chunks_written > 0
        embeds = state.requests_to("/v1/embeddings")
        assert len(embeds) == 3  # the 429, its retry, the second batch
        assert {r.body["model"] for r in embeds} == {"emb-test"}

        batches = [r.payload for r in await events(rag, AuditEventType.PROVIDER_CALLS)]
        assert [b["doc_ids"] for b in batches if b] == [["loans", "complaints"],
                                                        ["kyc", "travel"]]
        first, second = (b for b in batches if b)
        assert first["operation"] == second["operation"] == "ingest"
        [call] = first["provider_calls"]
        assert (call["provider"], call["operation"], call["model"], call["outcome"]) == (
            "openai", "embed", "emb-test", "ok")
        limited, retried = call["attempts"]
        assert (limited["n"], limited["outcome"], limited["status"]) == (1, "rate_limited", 429)
        assert limited["retry_after_s"] == pytest.approx(0.05)
        assert limited["wait_s"] == pytest.approx(0.05)  # Retry-After honoured, not the back-off
        assert (retried["n"], retried["outcome"]) == (2, "ok")
        assert call["usage"]["prompt_tokens"] > 0
        [call] = second["provider_calls"]
        assert [a["outcome"] for a in call["attempts"]] == ["ok"]

        result = await rag.retrieve("When is enhanced due diligence required?", tenant=TENANT)
        assert result.hits[0].doc_id == "kyc"
        retrieval = await last(rag, AuditEventType.RETRIEVAL)
        [call] = retrieval["provider_calls"]
        assert (call["operation"], call["outcome"]) == ("embed", "ok")
        loaded = {r.payload["role"]: r.payload
                  for r in await events(rag, AuditEventType.MODEL_LOADED) if r.payload}
    assert loaded["embedder"]["model"] == "openai:emb-test"
    assert loaded["embedder"]["endpoint"] == provider.openai_url
    assert loaded["embedder"]["dimension"] == 384
