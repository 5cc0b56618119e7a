"""llama-index's MilvusVectorStore in hybrid mode, as a child of benchmarks/peers.py.

Runs in its own virtualenv (made by peers.py from requirements-llamaindex.txt):
llama-index-vector-stores-milvus requires pymilvus < 3 and this library >= 3. Hybrid here is
dense + the store's default sparse function, Milvus built-in BM25, RRF k=60; llama-index
fetches ``similarity_top_k`` candidates per signal (no separate fetch depth).
"""

from __future__ import annotations

import asyncio
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer_harness import (  # noqa: E402
    TOP_K,
    PeakRSS,
    Workload,
    child_arguments,
    measure_queries,
    merge_result,
)

NAME = "llama-index"
COLLECTION = "peers"
ENCODE_BATCH = 32


def _embed_model(workload: Workload) -> Any:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=workload.model_path, device="cpu",
                                embed_batch_size=ENCODE_BATCH, normalize=True,
                                local_files_only=True)


def _store(db: Path, dimension: int, *, overwrite: bool) -> Any:
    from llama_index.vector_stores.milvus import MilvusVectorStore

    return MilvusVectorStore(uri=str(db), collection_name=COLLECTION, dim=dimension,
                             overwrite=overwrite, enable_sparse=True,
                             similarity_metric="IP", consistency_level="Strong",
                             hybrid_ranker="RRFRanker", hybrid_ranker_params={"k": 60})


def _nodes(workload: Workload, count: int | None, *, with_vectors: bool) -> list[Any]:
    from llama_index.core.schema import TextNode

    chunks = workload.chunks if count is None else workload.chunks[:count]
    return [TextNode(id_=c.id, text=c.text, metadata={"doc_id": c.doc_id},
                     embedding=workload.vectors[i].tolist() if with_vectors else None)
            for i, c in enumerate(chunks)]


async def ingest(workload: Workload, work: Path, out: Path) -> None:
    from llama_index.core import StorageContext, VectorStoreIndex

    dimension = int(workload.vectors.shape[1])
    with PeakRSS() as rss:
        embed_model = _embed_model(workload)
        began = time.perf_counter()
        live = _store(work / "llamaindex-live.db", dimension, overwrite=True)
        VectorStoreIndex(_nodes(workload, workload.live_chunks, with_vectors=False),
                         storage_context=StorageContext.from_defaults(vector_store=live),
                         embed_model=embed_model)
        seconds = time.perf_counter() - began
        full = _store(work / "llamaindex.db", dimension, overwrite=True)
        full.add(_nodes(workload, None, with_vectors=True))
    print(f"  live ingest {workload.live_chunks:,} chunks in {seconds:.1f} s", flush=True)
    merge_result(out, name=NAME, ingest_chunks=workload.live_chunks, ingest_s=seconds,
                 ingest_rss_mb=rss.mb,
                 versions=(f"llama-index-core {version('llama-index-core')}, "
                           f"llama-index-vector-stores-milvus "
                           f"{version('llama-index-vector-stores-milvus')} (pymilvus "
                           f"{version('pymilvus')})"))


async def query(workload: Workload, work: Path, out: Path) -> None:
    from llama_index.core import VectorStoreIndex

    with PeakRSS() as rss:
        store = _store(work / "llamaindex.db", int(workload.vectors.shape[1]), overwrite=False)
        # A new process finds the collection released, and the store does not load it.
        store.client.load_collection(COLLECTION)
        index = VectorStoreIndex.from_vector_store(store, embed_model=_embed_model(workload))
        retriever = index.as_retriever(similarity_top_k=TOP_K, vector_store_query_mode="hybrid")

        async def search(text: str) -> list[str]:
            return [n.node.metadata["doc_id"] for n in await retriever.aretrieve(text)]

        measured = await measure_queries(search, workload)
    merge_result(out, query_rss_mb=rss.mb, **measured)


def main() -> int:
    args = child_arguments(__doc__ or NAME)
    workload = Workload.load(args.work)
    print(f"{NAME}: {args.phase}", flush=True)
    asyncio.run((ingest if args.phase == "ingest" else query)(workload, args.work, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
