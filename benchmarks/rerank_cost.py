"""What a CPU cross-encoder costs per request: rerank time vs candidates and passage length.

A MiniLM-L6 cross-encoder (the packaged all-MiniLM-L6-v2 weights with a fresh one-label head:
no pretrained cross-encoder installs offline, and the arithmetic — hence the cost — is the
same as a trained MS MARCO MiniLM-L6's) scores (query, passage) pairs for 5–40 candidates
truncated to 128/256/512 tokens. Passages are the example corpus's chunks, repeated and cut
to ~210 tokens as in the issue's estimate. This is the cost model behind
``reranker.budget: adaptive`` (how many candidates fit ``pipeline.target_latency_ms``).

    python benchmarks/rerank_cost.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import REPO, environment_line, write_section  # noqa: E402

CANDIDATES = (5, 10, 20, 40)
LENGTHS = (128, 256, 512)


def _cross_encoder(folder: str) -> str:
    import torch
    from sentence_transformers import CrossEncoder

    from advanced_rag.embed.sentence_transformers import resolve_model_path

    torch.manual_seed(0)
    model = CrossEncoder(resolve_model_path("all-MiniLM-L6-v2"), num_labels=1,
                         local_files_only=True)
    model.save(folder)
    return folder


def _passages(count: int) -> list[str]:
    words: list[str] = []
    for path in sorted((REPO / "examples" / "corpus").glob("*.md")):
        words.extend(path.read_text(encoding="utf-8").split())
    size = 160  # ~210 MiniLM tokens of this prose
    chunks = [" ".join(words[i:i + size]) for i in range(0, len(words) - size, size)]
    return [chunks[i % len(chunks)] for i in range(count)]


async def measure(model_dir: str, repeats: int) -> list[tuple[int, int, float, float]]:
    from advanced_rag.rerank import CrossEncoderReranker
    from advanced_rag.types import Hit, HitScores

    rows = []
    query = "When must a complaint be acknowledged and who handles escalations?"
    for length in LENGTHS:
        reranker = CrossEncoderReranker(model_dir, max_length=length, batch_size=16)
        hits = [Hit(f"c{i}", f"d{i}", 1, text, {}, "", "internal", HitScores(fused=1.0))
                for i, text in enumerate(_passages(max(CANDIDATES)))]
        await reranker.rerank(query, hits[:5], 5)  # warm-up
        for n in CANDIDATES:
            samples = []
            for _ in range(repeats):
                began = time.perf_counter()
                await reranker.rerank(query, hits[:n], 5)
                samples.append((time.perf_counter() - began) * 1000)
            median = statistics.median(samples)
            rows.append((length, n, median, median / n))
        reranker.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(measure(_cross_encoder(tmp), args.repeats))
    lines = ["## Rerank cost on CPU (`python benchmarks/rerank_cost.py`)", "",
             f"{environment_line()}; MiniLM-L6 cross-encoder, batch 16, median of "
             f"{args.repeats} runs, passages of ~210 tokens cut to `max_length`.", "",
             "| max_length | candidates | rerank ms | ms per passage |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {length} | {n} | {ms:.1f} | {per:.2f} |" for length, n, ms, per in rows]
    lines += ["", "With `reranker.budget: adaptive` the pipeline reranks the first-stage top that "
              "fits what is left of `pipeline.target_latency_ms` at the measured ms per passage "
              "(never fewer than `reranker.min_candidates`); the decision is in the metrics "
              "and the `rerank` audit event."]
    body = "\n".join(lines)
    print(body)
    write_section("rerank-cost", body)


if __name__ == "__main__":
    main()
