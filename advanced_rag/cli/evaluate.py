"""``eval retrieval``, ``tune`` and ``demo``: commands that measure or show the pipeline."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import PipelineConfig, load_config
from ..errors import InputError
from ..eval.beir import BeirDataset, evidence_qrels, load_beir, read_qrels
from ..eval.metrics import Qrels
from ..types import Document, SearchType

DEMO_TENANT = "demo"


def eval_config(config: PipelineConfig, dataset: Path) -> PipelineConfig:
    """The same config on a collection of its own, so benchmark data never mixes with yours."""
    name = "eval_" + re.sub(r"[^A-Za-z0-9_]", "_", dataset.resolve().name)[:200]
    milvus = config.milvus.model_copy(update={"collection": name})
    return config.model_copy(update={"milvus": milvus})


def _subset(queries: Mapping[str, str], qrels: Qrels, limit: int | None) -> dict[str, str]:
    ids = sorted(q for q in qrels if q in queries)
    if limit is not None:
        ids = ids[:limit]
    return {q: queries[q] for q in ids}


def _count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


async def _indexed(config: PipelineConfig, dataset: BeirDataset, quiet: bool) -> Any:
    from ..eval.runner import index_corpus
    from ..pipeline import AdvancedRAGPipeline
    from . import _print, _progress

    rag = await AdvancedRAGPipeline.from_config(config).open()
    total = await asyncio.to_thread(_count_lines, dataset.corpus_path)
    with _progress(total, "index corpus", not quiet) as bar:
        report = await index_corpus(rag, dataset, progress=bar.update)
    _print(f"corpus: {len(report.new)} new, {len(report.updated)} updated, "
           f"{len(report.unchanged)} unchanged, {len(report.failed)} failed, "
           f"{report.chunks_written} chunks written ({config.milvus.collection})")
    return rag


async def cmd_eval_retrieval(args: argparse.Namespace) -> int:
    from ..eval.runner import evaluate, format_table
    from . import EXIT_OK, _load, _print

    dataset = load_beir(args.dataset, args.split)
    config = eval_config(_load(args.config), Path(args.dataset))
    queries = _subset(dataset.queries, dataset.qrels, args.max_queries)
    qrels = {q: dataset.qrels[q] for q in queries}
    rag = await _indexed(config, dataset, args.quiet)
    try:
        rows = []
        for kind in args.search_type or [t.value for t in SearchType]:
            rows.append(await evaluate(rag, queries, qrels, search_type=SearchType(kind),
                                       label=kind))
    finally:
        await rag.close()
    _print(f"\n{dataset.root.name} ({args.split}, {len(queries)} queries), document-level "
           "(best chunk per document):")
    _print(format_table(rows))
    return EXIT_OK


def tuning_judgments(dataset: BeirDataset, split: str | None) -> tuple[Qrels, str]:
    """Judgments to tune on, never the reported ones: a named split, else SciFact-style
    evidence in the query metadata for queries outside the test qrels."""
    for name in [split] if split else ["train", "dev"]:
        path = dataset.root / "qrels" / f"{name}.tsv"
        if path.is_file():
            return read_qrels(path), f"qrels/{name}.tsv"
    if split:
        raise InputError(f"{dataset.root}/qrels/{split}.tsv does not exist")
    qrels = evidence_qrels(dataset)
    if not qrels:
        raise InputError(f"{dataset.root} has no qrels/train.tsv or qrels/dev.tsv and no "
                         "evidence in queries.jsonl metadata to tune on")
    return qrels, "evidence in queries.jsonl metadata (queries outside the test qrels)"


def set_pipeline_values(text: str, values: Mapping[str, object]) -> str:
    """Set keys of the ``pipeline:`` section in YAML text, keeping comments and layout."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"^pipeline:\s*(#.*)?$", line)),
                 None)
    if start is None:
        block = "pipeline:\n" + "".join(f"  {k}: {v}\n" for k, v in values.items())
        return text.rstrip("\n") + "\n\n" + block
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].strip() and not lines[i].startswith((" ", "\t", "#"))), len(lines))
    missing = dict(values)
    for i in range(start + 1, end):
        match = re.match(r"^(\s+)([A-Za-z_]+):(\s*)([^#\n]*?)(\s*#.*)?$", lines[i].rstrip("\n"))
        if match and match.group(2) in missing:
            value = missing.pop(match.group(2))
            lines[i] = f"{match.group(1)}{match.group(2)}: {value}{match.group(5) or ''}\n"
    extra = "".join(f"  {k}: {v}\n" for k, v in missing.items())
    return "".join(lines[:end]) + extra + "".join(lines[end:])


async def cmd_tune(args: argparse.Namespace) -> int:
    from ..eval.runner import EvalRow, evaluate, format_table
    from . import EXIT_OK, _load, _print, template_text

    dataset = load_beir(args.dataset, "test")
    qrels, origin = tuning_judgments(dataset, args.split)
    queries = _subset(dataset.queries, qrels, args.max_queries)
    qrels = {q: qrels[q] for q in queries}
    base = _load(args.config)
    config = eval_config(base, Path(args.dataset))
    rag = await _indexed(config, dataset, args.quiet)
    grid: list[tuple[str, dict[str, Any]]] = [
        (f"weighted alpha={a:g}", {"fusion": "weighted", "hybrid_alpha": a}) for a in args.alphas
    ] + [(f"rrf k={k}", {"fusion": "rrf", "rrf_k": k}) for k in args.rrf_ks]
    rows: list[EvalRow] = []
    try:
        for label, settings in grid:
            sibling = rag.with_settings(**settings)
            rows.append(await evaluate(sibling, queries, qrels, search_type=SearchType.HYBRID,
                                       label=label))
            _print(f"  {label}: nDCG@10 {rows[-1].scores.ndcg_at_10:.4f}")
    finally:
        await rag.close()
    best_index = max(range(len(rows)), key=lambda i: rows[i].scores.ndcg_at_10)
    best = grid[best_index][1]
    _print(f"\ntuned on {len(queries)} queries of {dataset.root.name}: {origin}")
    _print(format_table(rows))
    chosen: dict[str, object] = {"fusion": best["fusion"]}
    if best["fusion"] == "weighted":
        chosen["hybrid_alpha"] = best["hybrid_alpha"]
    else:
        chosen["rrf_k"] = best["rrf_k"]
    target = write_tuned(Path(args.output or args.config or "config.yaml"), chosen,
                         template_text())
    _print(f"best: {rows[best_index].label} -> wrote {chosen} to {target}")
    return EXIT_OK


def write_tuned(target: Path, chosen: Mapping[str, object], template: str) -> Path:
    """Update (or create from the template) a config file with tuned values; re-validate it."""
    text = target.read_text(encoding="utf-8") if target.exists() else template
    target.write_text(set_pipeline_values(text, chosen), encoding="utf-8")
    load_config(target)
    return target


def demo_inputs(corpus: Path, questions_file: Path) -> tuple[list[Document], list[str]]:
    """The demo's documents and questions (one question per line)."""
    from ..sources import read_documents

    if not corpus.is_dir():
        raise InputError(f"demo corpus {corpus} not found: run from the repository root or pass "
                         "--corpus")
    questions = ["Within how many business days must a complaint be acknowledged?"]
    if questions_file.is_file():
        lines = questions_file.read_text(encoding="utf-8").splitlines()
        questions = [q.strip() for q in lines if q.strip()]
    documents = [d for d in read_documents([corpus]) if isinstance(d, Document)]
    return documents, questions


async def cmd_eval_faithfulness(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .. import factory
    from ..embed.sentence_transformers import SentenceTransformerEmbedder
    from ..eval.faithfulness import evaluate, load_dataset
    from . import EXIT_OK, _load, _print, _progress

    config = _load(args.config)
    items = load_dataset(args.dataset, data_root=Path(args.data_root))[: args.limit]
    embedder = await asyncio.to_thread(SentenceTransformerEmbedder, config.embedder.model,
                                       device=config.embedder.device)
    judge = await factory.build_judge(config.judge, embedder=embedder,
                                      device=config.embedder.device)
    with _progress(len(items), "judge", not args.quiet) as bar:
        report = await evaluate(judge, items, progress=bar.update)
    embedder.close()
    if args.json:
        _print(json.dumps({"dataset": args.dataset, "judge": judge.name,
                           "judge_version": judge.version, **asdict(report)}, indent=2))
        return EXIT_OK
    _print(f"{args.dataset}: {report.n} answers, judge {judge.name} {judge.version}")
    _print(f"  balanced accuracy {report.balanced_accuracy:.3f}  F1 (hallucinated) "
           f"{report.f1_hallucinated:.3f}  AUROC {report.auroc:.3f}  ECE {report.ece:.3f}")
    _print(f"  baselines AUROC: answer length {report.length_auroc:.3f}, token coverage "
           f"{report.coverage_auroc:.3f}")
    _print(f"  latency per answer p50 {report.latency_p50_ms:.0f} ms, p95 "
           f"{report.latency_p95_ms:.0f} ms")
    return EXIT_OK


async def cmd_demo(args: argparse.Namespace) -> int:
    from ..pipeline import AdvancedRAGPipeline
    from . import EXIT_FAILED, EXIT_OK, _load, _print, print_result

    corpus = Path(args.corpus)
    documents, questions = demo_inputs(corpus, Path(args.questions))
    config = _load(args.config)
    _print(f"advanced-rag demo: {len(documents)} documents from {corpus} into "
           f"{config.milvus.uri} (collection {config.milvus.collection}, tenant {DEMO_TENANT})")
    async with AdvancedRAGPipeline.from_config(config) as rag:
        _print(f"embedder: {rag.embedder.identity.name} sha256 {rag.embedder.identity.sha256[:16]}…")
        report = await rag.ingest(documents, tenant=DEMO_TENANT)
        _print(f"ingest: {len(report.new)} new, {len(report.updated)} updated, "
               f"{len(report.unchanged)} unchanged, {len(report.failed)} failed, "
               f"{report.chunks_written} chunks written\n")
        await rag.retrieve("warm-up", tenant=DEMO_TENANT)  # first call loads lazy state
        rag.reset_performance()
        for question in questions:
            result = await rag.retrieve(question, tenant=DEMO_TENANT, top_k=args.top_k)
            print_result(result)
            answer = await rag.answer(question, tenant=DEMO_TENANT, top_k=args.top_k)
            risk = answer.quality.hallucination_risk
            _print(f"  answer ({answer.decision}"
                   f"{'' if risk is None else f', hallucination risk {risk:.2f}'}): "
                   f"{answer.text if answer.text is not None else '[withheld]'}")
            _print()
        perf = rag.performance_report()
        if rag.config.audit.enabled:
            audit = await rag.compliance.verify_audit_log(actor="demo")
    _print("latency over the demo queries (ms):")
    for stage, s in perf.stage_latencies.items():
        _print(f"  {stage:<8} p50 {s.p50:7.1f}  p95 {s.p95:7.1f}  p99 {s.p99:7.1f}  (n={s.count})")
    rate = perf.sla_compliance.compliance_rate
    _print(f"  SLA {perf.sla_compliance.target_latency_ms:.0f} ms met by "
           f"{(rate or 0) * 100:.0f}% of queries")
    if config.audit.enabled:
        _print(f"\naudit trail {config.audit.resolved_url(config.data_dir)}: "
               f"{audit.events_checked:,} events verified, head {audit.head_hash[:16]}… "
               "(`advanced-rag audit tail` shows the latest)")
    return EXIT_FAILED if report.failed else EXIT_OK


def add_commands(command: Callable[[str, str, Any], argparse.ArgumentParser]) -> None:
    p = command("eval", "Measure retrieval (nDCG@10, Recall@100, MRR@10 on a BEIR folder) or "
                        "the faithfulness judge (on labelled answers).", None)
    p.set_defaults(help_parser=p)
    inner = p.add_subparsers(title="what", metavar="WHAT")
    r = inner.add_parser("retrieval", help="retrieval quality per search type",
                         description="Index DIR/corpus.jsonl in a collection of its own and "
                                     "score keyword, dense and hybrid retrieval.")
    r.add_argument("--config", metavar="FILE", help="YAML config")
    r.add_argument("--dataset", required=True, metavar="DIR", help="BEIR folder")
    r.add_argument("--split", default="test", help="qrels split to score (default: test)")
    r.add_argument("--search-type", action="append", choices=[t.value for t in SearchType],
                   help="repeatable (default: all three)")
    r.add_argument("--max-queries", type=int, metavar="N", help="score only the first N queries")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(handler=cmd_eval_retrieval)

    f = inner.add_parser("faithfulness", help="accuracy of the configured judge on labelled answers",
                         description="Score labelled answers with the configured judge: balanced "
                                     "accuracy and F1 at the calibrated 0.5, AUROC, ECE, latency, "
                                     "and the answer-length and token-coverage baselines.")
    f.add_argument("--config", metavar="FILE", help="YAML config (judge: section)")
    f.add_argument("--dataset", required=True, metavar="NAME|FILE",
                   help="halueval-qa, faithbench, or a JSONL file of {answer, contexts, label}")
    f.add_argument("--data-root", default="../shared/data", metavar="DIR",
                   help="folder holding faithfulness/ (default: ../shared/data)")
    f.add_argument("--limit", type=int, metavar="N", help="score only the first N answers")
    f.add_argument("--json", action="store_true", help="print the report as JSON")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(handler=cmd_eval_faithfulness)

    p = command("tune", "Fit hybrid_alpha and rrf_k on a dataset's training judgments and "
                        "write the best into a config file.", cmd_tune)
    p.add_argument("--dataset", required=True, metavar="DIR", help="BEIR folder")
    p.add_argument("--split", help="qrels split to tune on (default: train, dev, else "
                                   "SciFact-style evidence of non-test queries)")
    p.add_argument("--alphas", type=_floats, default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
                   help="comma-separated dense weights to try")
    p.add_argument("--rrf-ks", type=_ints, default=[10, 20, 40, 60, 100],
                   help="comma-separated RRF k values to try")
    p.add_argument("--max-queries", type=int, metavar="N", help="tune on the first N queries")
    p.add_argument("--output", metavar="FILE",
                   help="config file to update (default: --config, else config.yaml)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = command("demo", "Ingest the example bank-policy corpus into Milvus Lite and answer a "
                        "few questions: ranked hits, a cited extractive answer with its "
                        "hallucination risk, per-stage latency, the verified audit trail.",
                cmd_demo)
    p.add_argument("--corpus", default="examples/corpus", metavar="DIR")
    p.add_argument("--questions", default="examples/questions.txt", metavar="FILE")
    p.add_argument("--top-k", type=int, default=3, help="hits shown per question")


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError("alphas must lie in [0, 1]")
    return values


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("k values must be positive")
    return values

