"""Pure parts of the remote layer: HTTP facts, token estimates, judge replies, config."""

from __future__ import annotations

import json

import pytest

from advanced_rag.config import validate_config
from advanced_rag.embed.remote import approximate_tokens
from advanced_rag.errors import ConfigError, ProviderError
from advanced_rag.remote.calls import Attempt, CallLog, FallbackTaken, ProviderCall
from advanced_rag.remote.http import NO_KEY, api_key_from_env, parse_retry_after, scrub, status_kind
from advanced_rag.remote.identity import remote_identity
from advanced_rag.scoring.base import Verdict
from advanced_rag.scoring.claims import split_claims
from advanced_rag.scoring.openai_judge import numbered_sentences, parse_verdicts


@pytest.mark.parametrize("headers,expected", [
    ({"Retry-After": "2"}, 2.0), ({"retry-after": "0.25"}, 0.25), ({"retry-after-ms": "150"}, 0.15),
    ({"Retry-After": "Thu, 01 Jan 1970 00:00:10 GMT"}, 10.0), ({"Retry-After": "-3"}, 0.0),
    ({"Retry-After": "soon"}, None), ({"Retry-After": "nan"}, None), ({}, None), (None, None),
])
def test_parse_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    assert parse_retry_after(headers, now=0.0) == expected


@pytest.mark.parametrize("status,kind", [(429, "rate_limited"), (401, "auth"), (403, "auth"),
                                         (500, "server"), (503, "server"), (408, "server"),
                                         (400, "client"), (404, "client"), (422, "client")])
def test_status_kind(status: int, kind: str) -> None:
    assert status_kind(status) == kind


def test_keys_come_from_the_environment_and_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PROVIDER_KEY", "sk-live-123")
    assert api_key_from_env("TEST_PROVIDER_KEY", required=True, setting="x") == "sk-live-123"
    monkeypatch.delenv("TEST_PROVIDER_KEY")
    assert api_key_from_env("TEST_PROVIDER_KEY", required=False, setting="x") == NO_KEY
    with pytest.raises(ConfigError, match="TEST_PROVIDER_KEY"):
        api_key_from_env("TEST_PROVIDER_KEY", required=True, setting="reranker.api_key_env")
    assert scrub("Bearer sk-live-123 rejected", "sk-live-123") == "Bearer *** rejected"
    assert scrub("fine", NO_KEY) == "fine"


def test_approximate_tokens() -> None:
    assert approximate_tokens("") == 0
    assert approximate_tokens("hello world") == 2
    assert approximate_tokens("GDPR, Art. 17") == 5
    assert approximate_tokens("internationalisation") == 4  # 20 characters: 4 pieces of <= 6


def test_remote_identity_changes_with_endpoint_model_and_dimension() -> None:
    a = remote_identity("openai", "https://x/v1", "m", 384)
    assert a.name == "openai:m" and len(a.sha256) == 64 and a.endpoint == "https://x/v1"
    assert len({a.sha256, remote_identity("openai", "https://y/v1", "m", 384).sha256,
                remote_identity("openai", "https://x/v1", "n", 384).sha256,
                remote_identity("openai", "https://x/v1", "m", 768).sha256}) == 4


def test_call_log_payload_has_no_free_text() -> None:
    log = CallLog()
    assert not log and log.payload() == {}
    log.calls.append(ProviderCall("cohere", "https://api.cohere.com", "rerank", "rerank-v3.5", "ok",
                                  (Attempt(1, "rate_limited", 12.3456, status=429,
                                           retry_after_s=1.0, wait_s=1.0, error="ProviderError"),
                                   Attempt(2, "ok", 30.0)), {"search_units": 1.0}))
    log.fallbacks.append(FallbackTaken("reranker", "cohere:rerank-v3.5", "none", "ProviderError/server"))
    payload = log.payload()
    assert payload["provider_calls"][0]["attempts"] == [
        {"n": 1, "outcome": "rate_limited", "latency_ms": 12.346, "status": 429,
         "retry_after_s": 1.0, "error": "ProviderError", "wait_s": 1.0},
        {"n": 2, "outcome": "ok", "latency_ms": 30.0}]
    assert payload["fallbacks"] == [{"role": "reranker", "failed": "cohere:rerank-v3.5",
                                     "used": "none", "error": "ProviderError/server"}]
    assert log.since(1, 1).payload() == {}


CONTEXTS = ["Complaints are acknowledged within three business days. Escalations go to the COO.",
            "Breaches are reported within 72 hours."]


def _verdicts(*items: dict[str, object]) -> str:
    return json.dumps({"verdicts": list(items)})


def test_parse_verdicts_maps_evidence_to_exact_spans() -> None:
    claims = split_claims("Complaints are acknowledged within three business days. "
                          "Breaches are reported within 24 hours.")
    sentences = numbered_sentences(CONTEXTS, 100)
    reply = _verdicts({"claim": 1, "verdict": "contradicted", "evidence": 3, "confidence": 0.8},
                      {"claim": 0, "verdict": "supported", "evidence": 1, "confidence": 0.9})
    first, second = parse_verdicts(reply, claims, sentences, [0, 1], "test")
    assert (first.verdict, first.support) == (Verdict.SUPPORTED, 0.9)
    assert second.verdict is Verdict.CONTRADICTED and second.support == pytest.approx(0.2)
    for judgement in (first, second):
        ev = judgement.evidence
        assert ev is not None and CONTEXTS[ev.context_index][ev.start:ev.end] == ev.text
    assert second.evidence is not None and second.evidence.context_index == 1


@pytest.mark.parametrize("reply", [
    "not json", json.dumps([1, 2]), json.dumps({"verdicts": "no"}),
    _verdicts({"claim": 0, "verdict": "supported", "evidence": 1, "confidence": 0.9}),  # claim 1?
    _verdicts({"claim": 0, "verdict": "maybe", "evidence": 1, "confidence": 0.9},
              {"claim": 1, "verdict": "supported", "evidence": 1, "confidence": 0.9}),
    _verdicts({"claim": 0, "verdict": "supported", "evidence": 1, "confidence": 1.5},
              {"claim": 1, "verdict": "supported", "evidence": 1, "confidence": 0.9}),
    _verdicts({"claim": 0, "verdict": "supported", "evidence": 1, "confidence": 0.9},
              {"claim": 0, "verdict": "supported", "evidence": 1, "confidence": 0.9}),
])
def test_parse_verdicts_rejects_malformed_replies(reply: str) -> None:
    claims = split_claims("Complaints are acknowledged within three business days. "
                          "Breaches are reported within 24 hours.")
    with pytest.raises(ProviderError) as info:
        parse_verdicts(reply, claims, numbered_sentences(CONTEXTS, 100), [0, 1], "test")
    assert info.value.kind == "malformed" and not info.value.retriable


def test_an_out_of_range_evidence_number_gives_no_evidence() -> None:
    claims = split_claims("Complaints are acknowledged within three business days.")
    [judgement] = parse_verdicts(
        _verdicts({"claim": 0, "verdict": "unsupported", "evidence": 99, "confidence": 0.6}),
        claims, numbered_sentences(CONTEXTS, 100), [0, 1], "test")
    assert judgement.evidence is None and judgement.support == pytest.approx(0.4)


def test_config_for_hosted_providers() -> None:
    config = validate_config({
        "embedder": {"kind": "openai", "model": "text-embedding-3-small", "dimension": 1536},
        "reranker": {"kind": "cohere", "model": "rerank-v3.5", "fallback": [{"kind": "none"}]},
        "judge": {"kind": "openai", "model": "gpt-4o-mini", "fallback": [{"kind": "feature"}]},
        "resilience": {"retry": {"attempts": 5}, "breaker": {"failure_threshold": 2}}})
    assert config.reranker.fallback[0].kind == "none" and config.resilience.retry.attempts == 5
    with pytest.raises(ConfigError, match="dimension is required"):
        validate_config({"embedder": {"kind": "cohere", "model": "embed-v4.0"}})
    with pytest.raises(ConfigError, match="must name the openai model"):
        validate_config({"embedder": {"kind": "openai", "dimension": 8}})
    with pytest.raises(ConfigError, match="reranker.model is required"):
        validate_config({"reranker": {"kind": "cohere"}})
    with pytest.raises(ConfigError, match="cannot have a fallback of their own"):
        validate_config({"judge": {"kind": "openai", "model": "m", "fallback": [
            {"kind": "feature", "fallback": [{"kind": "feature"}]}]}})
    with pytest.raises(ConfigError, match="resilience.retry.attempts"):
        validate_config({"resilience": {"retry": {"attempts": 0}}})
