"""Features, calibration maths and FeatureJudge logic with a deterministic bag-of-words encoder."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pytest

from advanced_rag.scoring import calibration as cal
from advanced_rag.scoring.base import Claim, Verdict
from advanced_rag.scoring.feature_judge import FeatureJudge
from advanced_rag.scoring.features import (
    ANSWER_FEATURES,
    CLAIM_FEATURES,
    answer_features,
    build_context_index,
    claim_features,
    context_sentences,
    extract_numbers,
    lcs_length,
    split_sentences,
    word_tokens,
)

CONTEXT = (
    "The bank approved 1,250,000 loans in 2021. Customers must verify their identity before "
    "opening an account. The fee increased by 5 percent after the merger."
)


class HashEncoder:
    """Bag-of-words hashing vectors, L2-normalised: a fast, deterministic stand-in for MiniLM."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for token in word_tokens(text):
                out[i, int(hashlib.md5(token.encode()).hexdigest()[:6], 16) % 64] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


def features(claim: str, contexts: Sequence[str] = (CONTEXT,)) -> tuple[dict[str, float], int, bool]:
    encoder = HashEncoder()
    index = build_context_index(contexts, encoder.encode([s[3] for s in context_sentences(contexts)]))
    result = claim_features(claim, encoder.encode([claim])[0], index)
    return dict(result.values), result.best, result.contradiction_cue


def test_numbers_are_normalised() -> None:
    values = [v for v, _ in extract_numbers("1,250,000 and 1.25 million, 5% or 5 percent, two, the 1990s")]
    assert values.count(1_250_000.0) == 2 and values.count(5.0) == 2 and 2.0 in values and 1990.0 in values


def test_changed_number_fires_and_copied_sentence_is_best() -> None:
    values, best, cue = features("The bank approved 1,350,000 loans in 2021.")
    assert values["num_missing"] == 1.0 and values["num_missing_frac"] == 0.5
    assert best == 0 and cue
    same, _, same_cue = features("The bank approved 1.25 million loans in 2021.")
    assert same["num_missing"] == 0.0 and not same_cue


def test_verbatim_sentence_has_full_coverage() -> None:
    values, best, _ = features("Customers must verify their identity before opening an account.")
    assert values["cov_best"] == 1.0 and values["lcs_best"] == 1.0 and values["cov_context"] == 1.0
    assert best == 1 and values["neg_mismatch"] == 0.0


def test_negation_antonym_and_quantifier_mismatch() -> None:
    negated = features("Customers must not verify their identity before opening an account.")[0]
    assert negated["neg_mismatch"] == 1.0
    swapped = features("Customers must verify their identity after opening an account.")[0]
    assert swapped["antonym_mismatch"] == 1.0
    assert features("The fee always increased by 5 percent after the merger.")[0]["quant_change"] == 1.0


def test_missing_entity() -> None:
    values, _, _ = features("Barclays approved 1,250,000 loans in 2021.")
    assert values["ent_missing"] == 1.0


def test_sentences_and_lcs() -> None:
    text = "Born in Paris.First for Women is a magazine. Mr. Smith said no."
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Born in Paris.",
        "First for Women is a magazine.",
        "Mr. Smith said no.",
    ]
    assert lcs_length("a b c d".split(), "a x c d".split()) == 3
    assert lcs_length([], ["a"]) == 0


def test_features_never_nan_and_answer_aggregation() -> None:
    for claim in ("", "   ", "42", "Who?"):
        values, _, _ = features(claim)
        assert set(values) == set(CLAIM_FEATURES) and all(math.isfinite(v) for v in values.values())
    no_context, best, _ = features("Anything at all.", contexts=("",))
    assert best == -1 and all(math.isfinite(v) for v in no_context.values())
    row = answer_features([features("The fee increased.")[0], features("Nothing here.")[0]])
    assert tuple(row) == ANSWER_FEATURES and all(math.isfinite(v) for v in row.values())
    assert answer_features([]) == {}


def test_logistic_and_calibration_are_monotone_and_bounded() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(float)
    model = cal.fit_logistic(x, y, l2=1.0)
    assert model.coefs[0] > 1.0 and abs(model.coefs[1]) < 0.5
    logits = model.logit(x)
    a, b = cal.fit_platt(logits, y)
    grid = np.linspace(-20, 20, 101)
    p = cal.platt(grid, a, b)
    assert a > 0 and np.all(np.diff(p) >= 0) and p.min() >= 0 and p.max() <= 1
    xs, ys = cal.fit_isotonic(logits, y)
    q = cal.isotonic(grid, xs, ys)
    assert np.all(np.diff(ys) >= 0) and np.all(np.diff(q) >= 0) and q.min() >= 0 and q.max() <= 1
    assert cal.auroc(y, logits) > 0.85


def test_metrics() -> None:
    y = np.array([0, 0, 1, 1])
    assert cal.auroc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert cal.auroc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert cal.auroc(np.array([1, 1]), np.array([0.1, 0.2])) == 0.5
    assert cal.balanced_accuracy(y, np.array([0.9, 0.1, 0.9, 0.9])) == 0.75
    assert cal.f1(y, np.array([0.1, 0.1, 0.9, 0.1])) == pytest.approx(2 / 3)
    assert cal.ece(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0
    # all predictions 0.8 in one bin, observed rate 0.5 -> ECE 0.3
    assert cal.ece(y, np.full(4, 0.8)) == pytest.approx(0.3)
    assert cal.ece(np.array([]), np.array([])) == 0.0


async def test_judge_flags_changed_number_with_copied_evidence() -> None:
    judge = FeatureJudge(HashEncoder())
    claims = [
        Claim(0, "Customers must verify their identity before opening an account.", 0, 10),
        Claim(1, "The bank approved 1,350,000 loans in 2021.", 11, 20),
    ]
    result = await judge.judge(claims, ["Unrelated text about weather.", CONTEXT])
    good, bad = result.claims
    assert good.verdict == Verdict.SUPPORTED and good.support > bad.support
    assert bad.verdict != Verdict.SUPPORTED
    assert bad.evidence is not None and bad.evidence.context_index == 1
    assert bad.evidence.text == "The bank approved 1,250,000 loans in 2021."
    assert CONTEXT[bad.evidence.start : bad.evidence.end] == bad.evidence.text
    assert result.hallucination_risk is not None and 0.0 <= result.hallucination_risk <= 1.0
    again = await FeatureJudge(HashEncoder()).judge(claims, ["Unrelated text about weather.", CONTEXT])
    assert again == result


async def test_judge_empty_inputs_give_none() -> None:
    judge = FeatureJudge(HashEncoder())
    assert (await judge.judge([], [CONTEXT])).hallucination_risk is None
    result = await judge.judge([Claim(0, "Anything.", 0, 9)], [])
    assert result.hallucination_risk is None and result.claims[0].verdict == Verdict.UNSUPPORTED
    assert judge.name == "feature-judge" and judge.version.startswith("1+")
