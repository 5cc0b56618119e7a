"""Every Judge honours the same contract: the offline FeatureJudge (real packaged MiniLM) and
OpenAIJudge against a real HTTP server on 127.0.0.1 speaking the chat-completions wire format.

The server's replies come from a word-overlap stand-in (:func:`overlap_verdicts`): it reads
the numbered sentences and claims out of the request the adapter built and answers in the
JSON schema the adapter asked for — so these tests check the adapter's request, parsing and
evidence mapping, not an LLM's judgement."""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from advanced_rag.scoring.base import Claim, Judge, JudgeResult, Verdict
from advanced_rag.scoring.claims import split_claims
from advanced_rag.scoring.feature_judge import FeatureJudge
from advanced_rag.scoring.openai_judge import OpenAIJudge
from tests.providers.fake_server import FakeProvider, jaccard

pytestmark = pytest.mark.integration

CONTEXTS = [
    "Complaints are acknowledged within three business days. Escalations go to the COO.",
    "",
    "Personal data breaches are notified to the regulator within 72 hours.",
]
ANSWER = ("Complaints are acknowledged within three business days. Personal data breaches are "
          "notified to the regulator within 72 hours. The moon is made of green cheese.")


def overlap_verdicts(request: dict[str, Any]) -> dict[str, Any]:
    """Verdicts by word overlap with the best sentence (a deterministic stand-in)."""
    user = request["messages"][-1]["content"]
    context, claims = user.split("\n\nClaims:\n")
    sentences = {int(m.group(1)): m.group(2)
                 for m in re.finditer(r"^S(\d+) \(passage \d+\): (.*)$", context, re.M)}
    verdicts = []
    for line in claims.splitlines():
        number, text = line.split(": ", 1)
        best = max(sentences, key=lambda n: jaccard(text, sentences[n]))
        score = jaccard(text, sentences[best])
        verdicts.append({"claim": int(number),
                         "verdict": "supported" if score >= 0.5 else "unsupported",
                         "evidence": best if score > 0 else None,
                         "confidence": round(0.5 + abs(score - 0.5), 3)})
    return {"verdicts": verdicts}


@pytest.fixture(params=["feature", "openai"])
async def judge(request: pytest.FixtureRequest, embedder: Any,
                provider: FakeProvider) -> AsyncIterator[Judge]:
    if request.param == "feature":
        yield FeatureJudge(embedder)
        return
    provider.state.chat_json = overlap_verdicts
    remote = OpenAIJudge("judge-test", base_url=provider.openai_url)
    yield remote
    await remote.aclose()


def _check(result: JudgeResult, claims: list[Claim]) -> None:
    assert [j.claim for j in result.claims] == claims
    for j in result.claims:
        assert isinstance(j.verdict, Verdict) and 0.0 <= j.support <= 1.0
        assert not math.isnan(j.support)
        if j.evidence is not None:
            ev = j.evidence
            assert CONTEXTS[ev.context_index][ev.start:ev.end] == ev.text and ev.text
    assert result.hallucination_risk is not None and 0.0 <= result.hallucination_risk <= 1.0


async def test_one_judgement_per_claim_with_exact_evidence(judge: Judge) -> None:
    assert isinstance(judge, Judge) and judge.name and judge.version
    claims = split_claims(ANSWER)
    result = await judge.judge(claims, CONTEXTS)
    _check(result, claims)
    # Structure, not accuracy (that is measured by benchmarks/faithfulness.py): a sentence
    # copied from a context is supported, and each claim's evidence is its own context.
    copied, breach, _ = result.claims
    assert copied.verdict is Verdict.SUPPORTED
    assert copied.evidence is not None and copied.evidence.context_index == 0
    assert breach.evidence is not None and breach.evidence.context_index == 2


async def test_deterministic(judge: Judge) -> None:
    claims = split_claims(ANSWER)
    assert await judge.judge(claims, CONTEXTS) == await judge.judge(claims, CONTEXTS)


async def test_nothing_to_judge(judge: Judge) -> None:
    empty = await judge.judge([], CONTEXTS)
    assert empty.claims == () and empty.hallucination_risk is None
    claims = split_claims(ANSWER)
    blind = await judge.judge(claims, ["", "  "])
    assert [j.verdict for j in blind.claims] == [Verdict.UNSUPPORTED] * len(claims)
    assert blind.hallucination_risk is None and all(j.support == 0.0 for j in blind.claims)


async def test_openai_judge_request_is_structured_and_temperature_zero(
        provider: FakeProvider) -> None:
    provider.state.chat_json = overlap_verdicts
    judge = OpenAIJudge("judge-test", base_url=provider.openai_url)
    await judge.judge(split_claims(ANSWER), CONTEXTS)
    await judge.aclose()
    [request] = provider.state.requests_to("/v1/chat/completions")
    body = request.body
    assert body["temperature"] == 0.0 and body["model"] == "judge-test"
    schema = body["response_format"]
    assert schema["type"] == "json_schema" and schema["json_schema"]["strict"] is True
    assert "S1 (passage 1): Complaints are acknowledged" in body["messages"][1]["content"]
    # empty contexts are skipped: passages are numbered among the non-empty ones
    assert "S3 (passage 2): Personal data breaches" in body["messages"][1]["content"]
    assert json.dumps(body).count("green cheese") == 1
