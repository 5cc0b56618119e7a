"""``advanced-rag answer`` and ``advanced-rag score``.

``answer`` exits 0 when an answer is returned (flagged or not) or refused, 1 when the risk
policy withheld it; ``score`` exits 0 after printing the scores (it judges, it does not gate).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError

EXIT_OK, EXIT_FAILED = 0, 1


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def quality_dict(quality: Any) -> dict[str, Any]:
    return {"faithfulness_score": quality.faithfulness_score,
            "hallucination_risk": quality.hallucination_risk, "judge": quality.judge,
            "judge_version": quality.judge_version, "reason": quality.reason,
            "claims": [{"text": c.claim.text, "start": c.claim.start, "end": c.claim.end,
                        "verdict": str(c.verdict), "support": c.support,
                        "evidence": None if c.evidence is None else {
                            "context_index": c.evidence.context_index,
                            "text": c.evidence.text}} for c in quality.claims]}


def print_quality(quality: Any) -> None:
    if quality.hallucination_risk is None:
        _out(f"not scored: {quality.reason}")
        return
    _out(f"faithfulness {quality.faithfulness_score:.3f}  hallucination risk "
         f"{quality.hallucination_risk:.3f}  ({quality.judge} {quality.judge_version})")
    for c in quality.claims:
        mark = "ok " if str(c.verdict) == "supported" else "!! "
        _out(f"  {mark}{c.verdict:<12} {c.support:.2f}  {c.claim.text}")
        if mark == "!! " and c.evidence is not None:
            _out(f"      closest evidence [context {c.evidence.context_index + 1}]: "
                 f"{c.evidence.text[:140]}")


async def cmd_answer(args: argparse.Namespace) -> int:
    from ..pipeline import AdvancedRAGPipeline
    from . import _load

    async with AdvancedRAGPipeline.from_config(_load(args.config)) as rag:
        answer = await rag.answer(args.query, tenant=args.tenant, top_k=args.top_k,
                                  actor=args.actor)
    if args.json:
        _out(json.dumps({"text": answer.text, "decision": str(answer.decision),
                         "citations": [{"number": c.number, "doc_id": c.doc_id,
                                        "doc_version": c.doc_version, "chunk_id": c.chunk_id}
                                       for c in answer.citations],
                         "quality": quality_dict(answer.quality),
                         "latency_ms": dict(answer.latency_ms),
                         "request_id": answer.request_id}, indent=2))
    else:
        _out(answer.text if answer.text is not None else
             "[answer withheld: hallucination risk above pipeline.max_hallucination_risk]")
        for c in answer.citations:
            _out(f"  [{c.number}] {c.doc_id} v{c.doc_version}")
        _out(f"decision: {answer.decision}")
        print_quality(answer.quality)
    return EXIT_FAILED if answer.withheld else EXIT_OK


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None


async def cmd_score(args: argparse.Namespace) -> int:
    from ..pipeline import AdvancedRAGPipeline
    from . import _load

    answer = args.answer if args.answer is not None else _read(args.answer_file)
    contexts = [_read(p) for p in args.context_file]
    async with AdvancedRAGPipeline.from_config(_load(args.config)) as rag:
        quality = await rag.score(args.question, answer, contexts, tenant=args.tenant,
                                  actor=args.actor)
    if args.json:
        _out(json.dumps(quality_dict(quality), indent=2))
    else:
        print_quality(quality)
    return EXIT_OK


def add_commands(command: Callable[[str, str, Any], argparse.ArgumentParser]) -> None:
    from . import default_actor

    p = command("answer", "Answer a question from the indexed documents, with citations, "
                          "claim-by-claim faithfulness scores and the risk decision "
                          "(exit 1 when withheld).", cmd_answer)
    p.add_argument("query", help="the question")
    p.add_argument("--tenant", help="tenant id (default: pipeline.default_tenant)")
    p.add_argument("--top-k", type=int, help="hits to answer from (default: pipeline.top_k)")
    p.add_argument("--actor", default=default_actor(), help="recorded in the audit log")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("score", "Score an answer from your own LLM against its contexts, claim by "
                         "claim.", cmd_score)
    p.add_argument("--question", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--answer", help="the answer text")
    group.add_argument("--answer-file", metavar="FILE", help="read the answer from a file")
    p.add_argument("--context-file", action="append", required=True, metavar="FILE",
                   help="a context passage the answer should rest on (repeatable)")
    p.add_argument("--tenant", help="tenant the call is recorded under")
    p.add_argument("--actor", default=default_actor(), help="recorded in the audit log")
    p.add_argument("--json", action="store_true", help="print JSON")
