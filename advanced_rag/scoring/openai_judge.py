"""OpenAIJudge: claims checked by a chat model with structured JSON output.

The contexts are split into sentences (the same splitter the other judges use) and numbered
``S1..Sn``; the claims are numbered ``0..m-1``. The model is asked, at temperature 0, for one
verdict per claim — ``supported``, ``contradicted`` or ``unsupported`` — the number of the
sentence that decides it, and its confidence, in a JSON object that the request constrains
with a JSON schema (``response_format: json_schema``; ``structured_output: json_object`` for
servers that only know JSON mode). The evidence span is then *our* sentence span, so
``contexts[i][start:end] == evidence.text`` holds exactly as for the local judges.

A reply that is not that JSON (missing claims, unknown verdicts, a claim judged twice) is a
``malformed`` :class:`~advanced_rag.errors.ProviderError`: the resilience policy does not
retry it, and a configured fallback (e.g. the offline FeatureJudge) serves the answer instead.

The probabilities are the model's stated confidence, **not calibrated** on this project's
data: ``support`` is the confidence for a supported claim and one minus it otherwise;
``hallucination_risk`` is ``1 - min(support)``, the conservative summary NLIJudge uses.

Example::

    judge = OpenAIJudge("gpt-4o-mini", resilience=Resilience())        # key: $OPENAI_API_KEY
    result = await judge.judge(split_claims(answer), contexts)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ProviderError
from ..remote.identity import remote_identity
from ..remote.openai_sdk import OpenAIEndpoint, openai_usage
from ..remote.resilience import Resilience
from ..types import ModelIdentity
from .base import Claim, ClaimJudgement, Evidence, JudgeResult, Verdict
from .claims import split_sentences

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ["JUDGE_SCHEMA", "JUDGE_SYSTEM_PROMPT", "OpenAIJudge", "judge_messages", "parse_verdicts"]

JUDGE_SYSTEM_PROMPT = (
    "You are a strict fact-checker for a compliance team. You receive numbered context "
    "sentences S1..Sn and numbered claims. For EVERY claim decide, using ONLY the context "
    "sentences and no other knowledge: 'supported' if the sentences state or directly imply it; "
    "'contradicted' if a sentence states the opposite or a different value; 'unsupported' "
    "otherwise. Give the number of the one sentence that decides the verdict (null if none) "
    "and your confidence in the verdict between 0 and 1. Reply with JSON only: "
    '{"verdicts": [{"claim": <claim number>, "verdict": "supported|contradicted|unsupported", '
    '"evidence": <sentence number or null>, "confidence": <0..1>}, ...]}'
)

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"verdicts": {"type": "array", "items": {
        "type": "object",
        "properties": {
            "claim": {"type": "integer"},
            "verdict": {"type": "string", "enum": ["supported", "contradicted", "unsupported"]},
            "evidence": {"type": ["integer", "null"]},
            "confidence": {"type": "number"},
        },
        "required": ["claim", "verdict", "evidence", "confidence"],
        "additionalProperties": False}}},
    "required": ["verdicts"],
    "additionalProperties": False,
}

Sentence = tuple[int, int, int, str]  # context index, start, end, text


def numbered_sentences(contexts: Sequence[str], limit: int) -> list[Sentence]:
    """The first ``limit`` sentences of the contexts, in order."""
    out: list[Sentence] = []
    for ci, context in enumerate(contexts):
        for start, end in split_sentences(context):
            if len(out) == limit:
                return out
            out.append((ci, start, end, context[start:end]))
    return out


def judge_messages(claims: Sequence[Claim], sentences: Sequence[Sentence]) -> list[dict[str, str]]:
    """The system and user messages for one judging request."""
    context = "\n".join(f"S{n} (passage {s[0] + 1}): {' '.join(s[3].split())}"
                        for n, s in enumerate(sentences, start=1))
    listed = "\n".join(f"{n}: {c.text}" for n, c in enumerate(claims))
    user = f"Context sentences:\n{context}\n\nClaims:\n{listed}"
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_verdicts(text: str, claims: Sequence[Claim], sentences: Sequence[Sentence],
                   contexts_positions: Sequence[int], where: str) -> tuple[ClaimJudgement, ...]:
    """Judgements from the model's JSON reply; ``malformed`` ProviderError when it is not
    exactly one valid verdict per claim."""

    def bad(why: str) -> ProviderError:
        return ProviderError(f"malformed judge reply from {where}: {why}", provider="openai",
                             kind="malformed")

    try:
        data = json.loads(text)
    except ValueError:
        raise bad("not JSON") from None
    items = data.get("verdicts") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise bad("no 'verdicts' list")
    by_claim: dict[int, ClaimJudgement] = {}
    for item in items:
        if not isinstance(item, dict):
            raise bad("a verdict is not an object")
        number, verdict, confidence = item.get("claim"), item.get("verdict"), item.get("confidence")
        if not isinstance(number, int) or not 0 <= number < len(claims) or number in by_claim:
            raise bad(f"claim number {number!r} unknown or repeated")
        if not isinstance(verdict, str):
            raise bad(f"verdict {verdict!r}")
        try:
            kind = Verdict(verdict)
        except ValueError:
            raise bad(f"verdict {verdict!r}") from None
        if not isinstance(confidence, int | float) or isinstance(confidence, bool) \
                or not 0.0 <= float(confidence) <= 1.0:
            raise bad(f"confidence {confidence!r} is not a number in [0, 1]")
        support = float(confidence) if kind is Verdict.SUPPORTED else 1.0 - float(confidence)
        evidence = None
        ref = item.get("evidence")
        if isinstance(ref, int) and not isinstance(ref, bool) and 1 <= ref <= len(sentences):
            ci, start, end, sentence = sentences[ref - 1]
            evidence = Evidence(contexts_positions[ci], start, end, sentence)
        by_claim[number] = ClaimJudgement(claims[number], support, kind, evidence,
                                          {"confidence": float(confidence)})
    if len(by_claim) != len(claims):
        missing = sorted(set(range(len(claims))) - set(by_claim))
        raise bad(f"no verdict for claims {missing[:10]}")
    return tuple(by_claim[n] for n in range(len(claims)))


class OpenAIJudge:
    """Judges claims with an OpenAI-compatible chat model (see the module docstring)."""

    def __init__(self, model: str, *, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0,
                 max_tokens: int = 2048, max_sentences: int = 400,
                 structured_output: Literal["json_schema", "json_object"] = "json_schema",
                 resilience: Resilience | None = None) -> None:
        self._endpoint = OpenAIEndpoint(model, base_url=base_url, api_key_env=api_key_env,
                                        timeout_s=timeout_s, setting="judge")
        self._max_tokens = max_tokens
        self._max_sentences = max_sentences
        self._structured = structured_output
        self._resilience = resilience or Resilience()
        prompt = hashlib.sha256((JUDGE_SYSTEM_PROMPT + json.dumps(JUDGE_SCHEMA, sort_keys=True))
                                .encode()).hexdigest()[:12]
        self._version = f"openai-judge-1+{prompt}"
        self._identity = remote_identity("openai", self._endpoint.endpoint, model)

    @property
    def name(self) -> str:
        return f"openai:{self._endpoint.model}"

    @property
    def version(self) -> str:
        """Changes with the prompt or the schema (the model is named in :attr:`name`)."""
        return self._version

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    def __repr__(self) -> str:
        return f"OpenAIJudge({self._endpoint!r}, structured_output={self._structured!r})"

    def _response_format(self) -> dict[str, Any]:
        if self._structured == "json_object":
            return {"type": "json_object"}
        return {"type": "json_schema",
                "json_schema": {"name": "claim_verdicts", "strict": True, "schema": JUDGE_SCHEMA}}

    async def judge(self, claims: Sequence[Claim], contexts: Sequence[str]) -> JudgeResult:
        claims = tuple(claims)
        if not claims:
            return JudgeResult((), None)
        positions = [i for i, c in enumerate(contexts) if c.strip()]
        usable = [contexts[i] for i in positions]
        if not usable:
            return JudgeResult(tuple(ClaimJudgement(c, 0.0, Verdict.UNSUPPORTED, None)
                                     for c in claims), None)
        sentences = numbered_sentences(usable, self._max_sentences)
        system, user = judge_messages(claims, sentences)
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system["content"]},
            {"role": "user", "content": user["content"]}]
        endpoint = self._endpoint
        where = endpoint.where
        response_format: Any = self._response_format()

        async def attempt() -> tuple[tuple[ClaimJudgement, ...], Any]:
            try:
                response = await endpoint.client.chat.completions.create(
                    model=endpoint.model, messages=messages, temperature=0.0,
                    max_tokens=self._max_tokens, response_format=response_format)
            except endpoint.sdk_errors as exc:
                raise endpoint.error(exc, "judge") from exc
            choices = getattr(response, "choices", None)
            content = getattr(getattr(choices[0], "message", None), "content", None) \
                if isinstance(choices, list) and choices else None
            if not isinstance(content, str):
                raise ProviderError(f"malformed judge reply from {where}: no message content",
                                    provider="openai", kind="malformed")
            return parse_verdicts(content, claims, sentences, positions, where), response

        judgements, _ = await self._resilience.call(endpoint.target, "judge", attempt,
                                                    usage=lambda r: openai_usage(r[1]))
        risk = 1.0 - min(j.support for j in judgements)
        return JudgeResult(judgements, risk)

    async def probe(self) -> str:
        return await self._endpoint.probe()

    async def aclose(self) -> None:
        await self._endpoint.aclose()
