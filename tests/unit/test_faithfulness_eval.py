"""Faithfulness evaluation: loaders and the evaluation loop with a judge whose answers are
known (the real judges are measured by benchmarks/faithfulness.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from advanced_rag.errors import InputError
from advanced_rag.eval.faithfulness import baseline_aurocs, evaluate, load_dataset
from advanced_rag.scoring.base import Claim, JudgeResult


class LengthJudge:
    """Risk = 1 for answers longer than five words: a stand-in with predictable output."""

    name, version = "length", "1"

    async def judge(self, claims: Sequence[Claim], contexts: Sequence[str]) -> JudgeResult:
        words = sum(len(c.text.split()) for c in claims)
        return JudgeResult((), 1.0 if words > 5 else 0.0)


def write(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


async def test_own_jsonl_is_scored_with_metrics_and_baselines(tmp_path: Path) -> None:
    path = write(tmp_path, [
        {"answer": "Paris.", "context": "Paris is the capital of France.", "label": "faithful"},
        {"answer": "Berlin is the capital of France since 1990.", "contexts": ["Paris is the "
         "capital of France."], "label": "hallucinated"},
        {"answer": "Rome.", "contexts": ["Rome is the capital of Italy."], "label": 0},
        {"answer": "Madrid is the capital of Portugal and Spain.", "contexts": ["Madrid is the "
         "capital of Spain."], "label": 1}])
    items = load_dataset(str(path), data_root=tmp_path)
    assert [i.label for i in items] == [0, 1, 0, 1] and items[0].contexts == (
        "Paris is the capital of France.",)
    report = await evaluate(LengthJudge(), items)
    assert (report.n, report.balanced_accuracy, report.auroc) == (4, 1.0, 1.0)
    assert report.f1_hallucinated == 1.0 and report.ece == 0.0
    assert baseline_aurocs(items) == (report.length_auroc, report.coverage_auroc)
    assert report.length_auroc == 1.0


def test_bad_rows_and_one_class_sets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="answers.jsonl:1"):
        load_dataset(str(write(tmp_path, [{"answer": "x", "label": 1}])), data_root=tmp_path)
    with pytest.raises(InputError, match="both"):
        load_dataset(str(write(tmp_path, [{"answer": "x", "context": "y", "label": 1}])),
                     data_root=tmp_path)
    with pytest.raises(InputError, match="no data set"):
        load_dataset("faithbench", data_root=tmp_path)


SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "faithfulness").is_dir(), reason="shared data not present")
def test_shared_sets_load_with_the_documented_sizes() -> None:
    qa = load_dataset("halueval-qa", data_root=SHARED)
    fb = load_dataset("faithbench", data_root=SHARED)
    assert len(qa) == 1000 and sum(i.label for i in qa) == 500
    assert len(fb) == 800 and {i.group for i in fb} == {"Consistent", "Benign", "Questionable",
                                                         "Unwanted"}
