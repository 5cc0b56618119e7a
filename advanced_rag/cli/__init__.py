"""``advanced-rag`` command line: init, ingest, query, answer, score, eval, tune, demo, audit,
scheduler, drift, retention, erasure, report, db, health.

Exit codes: 0 success, 1 the work failed (a backend error, documents that failed to
ingest, a bar not met), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import PipelineConfig, load_config
from ..errors import AdvancedRagError, ConfigError, InputError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = "config.yaml"


def _load(path: str | None) -> PipelineConfig:
    """``--config`` if given, else ./config.yaml when present, else the embedded defaults."""
    if path is not None:
        return load_config(path)
    if Path(DEFAULT_CONFIG).is_file():
        return load_config(DEFAULT_CONFIG)
    return PipelineConfig()


def default_actor() -> str:
    """``cli:<login name>``: the audit log's actor for commands run by hand or cron."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli:unknown"


def template_text() -> str:
    return (resources.files("advanced_rag") / "templates" / "config.template.yaml").read_text(
        encoding="utf-8")


def _progress(total: int, desc: str, enabled: bool = True) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="doc", disable=not enabled or total == 0,
                file=sys.stderr, dynamic_ncols=True)


def _print(text: str = "") -> None:
    sys.stdout.write(text + "\n")


CONFIG_HELP = f"YAML config (default: ./{DEFAULT_CONFIG} if present, else built-in defaults)"
SubCommand = Callable[..., argparse.ArgumentParser]


def subcommands(group: argparse.ArgumentParser, title: str = "what") -> SubCommand:
    """The ``sub(name, text, handler)`` that adds sub-commands to a command group
    (``advanced-rag audit verify``): each takes ``--config``; the group alone prints its help.
    ``handler=None`` makes a nested group (pass the result to :func:`subcommands` again);
    ``short`` is the one-line help when ``text`` is long; ``config=False`` for commands that
    read no config (key generation, offline checks)."""
    group.set_defaults(help_parser=group)
    inner = group.add_subparsers(title=title, metavar=title.upper())

    def sub(name: str, text: str, handler: Any, *, short: str | None = None,
            config: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = inner.add_parser(name, help=short or text,
                                                           description=text)
        if handler is not None and config:
            parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
        parser.set_defaults(handler=handler)
        return parser

    return sub


# -- commands -------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.output)
    if target.exists() and not args.force:
        sys.stderr.write(f"{target} exists; pass --force to overwrite\n")
        return EXIT_USAGE
    target.write_text(template_text(), encoding="utf-8")
    load_config(target)  # the written file must validate
    _print(f"wrote {target}")
    return EXIT_OK


async def cmd_ingest(args: argparse.Namespace) -> int:
    from ..pipeline import AdvancedRAGPipeline
    from ..sources import read_documents
    from ..types import Document, IngestFailure

    config = _load(args.config)
    items = list(read_documents(args.paths))
    documents = [d for d in items if isinstance(d, Document)]
    unreadable = [IngestFailure(e.doc_id, e.reason) for e in items if not isinstance(e, Document)]
    async with AdvancedRAGPipeline.from_config(config) as rag:
        with _progress(len(documents), "ingest", not args.quiet) as bar:
            report = await rag.ingest(documents, tenant=args.tenant, actor=args.actor,
                                      progress=bar.update)
    failures = [*unreadable, *report.failed]
    if args.json:
        _print(json.dumps({
            "tenant": report.tenant, "new": len(report.new), "updated": len(report.updated),
            "unchanged": len(report.unchanged),
            "failed": [{"doc_id": f.doc_id, "reason": f.reason} for f in failures],
            "chunks_written": report.chunks_written, "chunks_deleted": report.chunks_deleted,
            "stage_seconds": report.stage_seconds}, indent=2))
    else:
        _print(f"tenant {report.tenant}: {len(report.new)} new, {len(report.updated)} updated, "
               f"{len(report.unchanged)} unchanged, {len(failures)} failed; "
               f"{report.chunks_written} chunks written, {report.chunks_deleted} deleted")
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in report.stage_seconds.items())
        _print(f"stages: {stages}")
        for failure in failures:
            _print(f"FAILED {failure.doc_id}: {failure.reason}")
    return EXIT_FAILED if failures else EXIT_OK


def _hit_rows(result: Any) -> list[dict[str, Any]]:
    return [{"rank": i, "doc_id": h.doc_id, "doc_version": h.doc_version, "chunk_id": h.chunk_id,
             "score": h.score, "dense": h.scores.dense, "bm25": h.scores.bm25,
             "fused": h.scores.fused, "rerank": h.scores.rerank, "source": h.source,
             "classification": h.classification, "text": h.text}
            for i, h in enumerate(result.hits, 1)]


def print_result(result: Any, *, width: int = 100) -> None:
    metrics = result.metrics
    _print(f"query: {result.query}")
    stages = "  ".join(f"{k} {v:.1f} ms" for k, v in metrics.stage_ms.items())
    sla = "met" if metrics.sla_met else "MISSED"
    _print(f"  {result.search_type.value}: {len(result.hits)} hits  {stages}  total "
           f"{metrics.total_ms:.1f} ms (target {metrics.target_latency_ms:.0f} ms: {sla})")
    if metrics.hallucination_risk is not None:
        _print(f"  retrieval risk (P(nothing relevant in these hits)): "
               f"{metrics.hallucination_risk:.2f}")
    elif metrics.hallucination_risk_reason:
        _print(f"  retrieval risk: n/a ({metrics.hallucination_risk_reason})")
    for row in _hit_rows(result):
        snippet = " ".join(row["text"].split())
        snippet = snippet[: width - 3] + "..." if len(snippet) > width else snippet
        _print(f"  {row['rank']:>2}. {row['score']:8.4f}  {row['doc_id']} v{row['doc_version']}"
               f"  [{row['classification']}]")
        _print(f"      {snippet}")


async def cmd_query(args: argparse.Namespace) -> int:
    from ..pipeline import AdvancedRAGPipeline
    from ..types import MetadataFilter

    config = _load(args.config)
    filters = None
    if args.source or args.classification or args.doc_id:
        filters = MetadataFilter(sources=tuple(args.source) if args.source else None,
                                 classifications=tuple(args.classification)
                                 if args.classification else None,
                                 doc_ids=tuple(args.doc_id) if args.doc_id else None)
    async with AdvancedRAGPipeline.from_config(config) as rag:
        result = await rag.retrieve(args.query, tenant=args.tenant, top_k=args.top_k,
                                    filters=filters, search_type=args.search_type,
                                    actor=args.actor)
    if args.json:
        _print(json.dumps({"query": result.query, "tenant": result.tenant,
                           "search_type": result.search_type.value, "hits": _hit_rows(result),
                           "metrics": {"stage_ms": dict(result.metrics.stage_ms),
                                       "total_ms": result.metrics.total_ms,
                                       "sla_met": result.metrics.sla_met,
                                       "hallucination_risk": result.metrics.hallucination_risk,
                                       "hallucination_risk_reason":
                                           result.metrics.hallucination_risk_reason}}, indent=2))
    else:
        print_result(result)
    return EXIT_OK


def report_error(exc: AdvancedRagError) -> int:
    """Print ``error: ...`` and return the exit code: 2 for bad usage or configuration
    (:class:`ConfigError`, :class:`InputError`), 1 for work that failed."""
    sys.stderr.write(f"error: {exc}\n")
    return EXIT_USAGE if isinstance(exc, ConfigError | InputError) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        (getattr(args, "help_parser", None) or parser).print_help(sys.stderr)
        return EXIT_USAGE
    try:
        outcome = args.handler(args)
        if asyncio.iscoroutine(outcome):
            outcome = asyncio.run(outcome)
        return int(outcome)
    except AdvancedRagError as exc:
        return report_error(exc)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="advanced-rag",
        description="Compliance-focused hybrid retrieval on Milvus. "
                    "Exit codes: 0 ok, 1 failed, 2 usage or configuration error.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if handler is not None:  # a group of sub-commands takes --config on each of them
            p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
        p.set_defaults(handler=handler)
        return p

    p = command("init", "Write a commented config file from the template.", cmd_init)
    p.add_argument("--output", default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"where to write it (default: {DEFAULT_CONFIG})")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = command("ingest", "Ingest .txt, .md and .jsonl files (or folders of them); "
                          "unchanged documents are skipped.", cmd_ingest)
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--tenant", help="tenant id (default: pipeline.default_tenant)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--actor", default=default_actor(), help="who is ingesting, as recorded in "
                                                           "the audit log (default: %(default)s)")

    p = command("query", "Retrieve the chunks that best answer a question.", cmd_query)
    p.add_argument("query", help="the question")
    p.add_argument("--tenant", help="tenant id (default: pipeline.default_tenant)")
    p.add_argument("--top-k", type=int, help="hits to return (default: pipeline.top_k)")
    p.add_argument("--search-type", choices=["hybrid", "dense", "keyword"],
                   help="default: pipeline.search_type")
    p.add_argument("--source", action="append", help="only these sources (repeatable)")
    p.add_argument("--classification", action="append",
                   choices=["public", "internal", "confidential", "restricted"],
                   help="only these classifications (repeatable)")
    p.add_argument("--doc-id", action="append", help="only these documents (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--actor", default=default_actor(), help="who is asking, as recorded in "
                                                           "the audit log (default: %(default)s)")

    from . import answer, audit, db, drift, erasure, evaluate, health, report, retention, scheduler

    answer.add_commands(command)
    evaluate.add_commands(command)
    audit.add_commands(command)
    scheduler.add_commands(command)
    drift.add_commands(command)
    retention.add_commands(command)
    erasure.add_commands(command)
    report.add_commands(command)
    db.add_commands(command)
    health.add_commands(command)
    return parser

