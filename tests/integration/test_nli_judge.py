"""NLIJudge plumbing with a real CrossEncoder built from the packaged MiniLM weights and an
untrained 3-label head (fixed seed). No pretrained NLI model installs offline, so these tests
check windows, label mapping, evidence spans and determinism — not judging quality."""

from __future__ import annotations

from pathlib import Path

import pytest

from advanced_rag.errors import ConfigError
from advanced_rag.scoring.base import Verdict
from advanced_rag.scoring.claims import split_claims
from advanced_rag.scoring.nli_judge import NLIJudge, windows

pytestmark = pytest.mark.integration

CONTEXTS = ["Loans above 250,000 euros go to the credit committee. The committee meets weekly. "
            "Smaller loans are approved by the branch manager. Appeals go to the board.",
            "Complaints are acknowledged within two business days."]
ANSWER = "Large loans go to the credit committee [1]. Complaints are answered in two days [2]."


def test_windows_cover_every_sentence_with_overlap() -> None:
    spans = windows(CONTEXTS[0], sentences=2, stride=1)
    assert [CONTEXTS[0][s:e].split(".")[0] for s, e in spans] == [
        "Loans above 250,000 euros go to the credit committee", "The committee meets weekly",
        "Smaller loans are approved by the branch manager"]
    assert windows(CONTEXTS[1]) == [(0, len(CONTEXTS[1]))]
    assert windows("   ") == []


async def test_one_judgement_per_claim_with_real_evidence(nli_dir: str) -> None:
    judge = NLIJudge(nli_dir, max_length=128)
    claims = split_claims(ANSWER)
    result = await judge.judge(claims, CONTEXTS)
    assert [j.claim for j in result.claims] == claims
    for j in result.claims:
        assert 0.0 <= j.support <= 1.0 and j.evidence is not None
        assert CONTEXTS[j.evidence.context_index][j.evidence.start:j.evidence.end] == j.evidence.text
        assert j.verdict in set(Verdict)
        assert j.signals["entailment"] == j.support
    assert result.hallucination_risk == pytest.approx(1 - min(j.support for j in result.claims))
    again = await judge.judge(claims, CONTEXTS)
    assert again == result  # deterministic
    assert (await judge.judge([], CONTEXTS)).hallucination_risk is None
    assert (await judge.judge(claims, [])).claims == ()
    judge.close()


async def test_label_mapping_picks_the_columns(nli_dir: str) -> None:
    claims = split_claims(ANSWER)
    a = await NLIJudge(nli_dir, max_length=128).judge(claims, CONTEXTS)
    swapped = {"contradiction": 1, "entailment": 0, "neutral": 2}
    b = await NLIJudge(nli_dir, max_length=128, labels=swapped).judge(claims, CONTEXTS)
    for x, y in zip(a.claims, b.claims, strict=True):  # the columns swap, claim by claim
        assert y.signals["contradiction"] == pytest.approx(x.signals["entailment"])
        assert y.signals["entailment"] == pytest.approx(x.signals["contradiction"])
    with pytest.raises(ConfigError) as info:
        NLIJudge(nli_dir, labels={"entailment": 0, "contradiction": 1})
    assert info.value.key == "judge.labels"


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    from advanced_rag.errors import RerankerError

    with pytest.raises(RerankerError, match="cannot load NLI model"):
        NLIJudge(str(tmp_path / "no-such-model"))
