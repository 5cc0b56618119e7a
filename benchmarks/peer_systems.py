"""The systems ``benchmarks/peers.py`` compares in this virtualenv: raw pymilvus (the floor),
advanced-rag, and langchain-milvus. (llama-index runs from peer_llamaindex.py in its own.)

Each one indexes the same chunks of the same SciFact documents: ``ingest_live`` encodes with
the packaged MiniLM and writes (timed); ``build`` writes the whole corpus from vectors that
model computed once (so four systems do not spend 4 x 6 minutes re-encoding identical text);
``searcher`` answers queries, encoding each query live.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from _peer_harness import CANDIDATES, TOP_K, Chunk, Search, Workload

TENANT = "peers"
COLLECTION = "peers"
INSERT_BATCH = 1000
ENCODE_BATCH = 32


class PeerSystem(Protocol):
    name: str

    async def ingest_live(self, workload: Workload, db: Path) -> int: ...
    async def build(self, workload: Workload, db: Path) -> None: ...
    async def searcher(self, workload: Workload, db: Path) -> Search: ...
    async def close(self) -> None: ...


def start_lite_server(db: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``milvus-lite server`` on ``db`` as docs/lite_server.md sets it up (127.0.0.1, one
    worker): the process and its uri."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).with_name("milvus-lite")), "server", "--data-dir",
               str(db), "--host", "127.0.0.1", "--port", str(port), "--max-workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"http://127.0.0.1:{port}"
        time.sleep(0.2)
    process.kill()
    raise SystemExit("milvus-lite server did not start within 60 s")


def stop_lite_server(process: subprocess.Popen[bytes] | None) -> None:
    """SIGINT, the server's clean shutdown; killed if it has not exited after 15 s (the
    measurements are taken by then, and the benchmark's databases are rebuilt next run)."""
    if process is None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        print("  milvus-lite server did not stop on SIGINT within 15 s; killed", flush=True)
        process.kill()
        process.wait()


def scifact_documents() -> list[Any]:
    """The SciFact corpus as this library's Documents (what advanced-rag ingests)."""
    from _report import DATA

    from advanced_rag.eval.beir import load_beir
    from advanced_rag.sources import read_jsonl
    from advanced_rag.types import Document

    return [d for d in read_jsonl(load_beir(DATA / "retrieval" / "scifact").corpus_path)
            if isinstance(d, Document)]


# -- raw pymilvus: what a careful hand-written app does -----------------------------------

class RawPymilvus:
    """Hand-written pymilvus: the same schema essentials as advanced-rag (dense HNSW cosine,
    built-in BM25 with the same analyzer), ``encode`` on a worker thread, AsyncMilvusClient."""

    name = "raw pymilvus (floor)"

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        self._model_cls = SentenceTransformer
        self._model: Any = None
        self._client: Any = None

    def _load(self, workload: Workload) -> Any:
        if self._model is None:
            self._model = self._model_cls(workload.model_path, device="cpu", local_files_only=True)
        return self._model

    @staticmethod
    def _create(db: Path, dimension: int) -> Any:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        client = MilvusClient(str(db))
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=512)
        schema.add_field("text", DataType.VARCHAR, max_length=65535, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard", "filter": ["lowercase"]})
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                     input_field_names=["text"], output_field_names=["sparse"]))
        index = client.prepare_index_params()
        index.add_index("dense", index_type="HNSW", metric_type="COSINE",
                        params={"M": 16, "efConstruction": 200})
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        client.create_collection(COLLECTION, schema=schema, index_params=index)
        return client

    @staticmethod
    def _insert(client: Any, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        for start in range(0, len(chunks), INSERT_BATCH):
            client.insert(COLLECTION, [
                {"id": c.id, "doc_id": c.doc_id, "text": c.text, "dense": v.tolist()}
                for c, v in zip(chunks[start:start + INSERT_BATCH],
                                vectors[start:start + INSERT_BATCH], strict=True)])

    async def ingest_live(self, workload: Workload, db: Path) -> int:
        chunks = workload.chunks[:workload.live_chunks]
        model = self._load(workload)
        vectors = model.encode([c.text for c in chunks], batch_size=ENCODE_BATCH,
                               normalize_embeddings=True, convert_to_numpy=True)
        client = self._create(db, vectors.shape[1])
        self._insert(client, chunks, vectors)
        client.close()
        return len(chunks)

    async def build(self, workload: Workload, db: Path) -> None:
        client = self._create(db, workload.vectors.shape[1])
        self._insert(client, workload.chunks, workload.vectors)
        client.close()

    async def searcher(self, workload: Workload, db: Path) -> Search:
        from pymilvus import AnnSearchRequest, AsyncMilvusClient, MilvusClient, RRFRanker

        model = self._load(workload)
        sync = MilvusClient(str(db))
        sync.load_collection(COLLECTION)
        sync.close()
        self._client = client = AsyncMilvusClient(str(db))
        ranker = RRFRanker(60)

        async def search(query: str) -> list[str]:
            vector = (await asyncio.to_thread(model.encode, [query], normalize_embeddings=True,
                                              convert_to_numpy=True))[0]
            reqs = [AnnSearchRequest(data=[vector.tolist()], anns_field="dense",
                                     param={"metric_type": "COSINE", "params": {"ef": CANDIDATES}},
                                     limit=CANDIDATES),
                    AnnSearchRequest(data=[query], anns_field="sparse",
                                     param={"metric_type": "BM25", "params": {}},
                                     limit=CANDIDATES)]
            raw = await client.hybrid_search(COLLECTION, reqs, ranker, limit=TOP_K,
                                             output_fields=["doc_id", "text"])
            return [h["entity"]["doc_id"] for h in raw[0]]

        return search

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


# -- advanced-rag ----------------------------------------------------------------------------

class CachedVectors:
    """An Embedder that answers document texts from vectors the same model computed earlier
    (same identity, so the index records the real model) and encodes queries live. With
    ``noise``, each repeat of a text (a copy of its document) gets the cached vector plus
    seeded Gaussian noise, renormalised, so an index of copies holds no exact duplicates."""

    def __init__(self, embedder: Any, workload: Workload, *, noise: float = 0.0) -> None:
        self._embedder = embedder
        self._vectors = {c.text: v for c, v in zip(workload.chunks, workload.vectors, strict=True)}
        self._noise = noise
        self._seen: dict[str, int] = {}
        self._rng = np.random.default_rng(20261122)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t[:60] for t in texts if t not in self._vectors]
        if missing:
            raise SystemExit(f"advanced-rag chunked differently from the prepared corpus: "
                             f"{missing[:3]}")
        out = []
        for text in texts:
            vector = self._vectors[text]
            copies = self._seen.get(text, 0)
            self._seen[text] = copies + 1
            if copies and self._noise:
                vector = vector + self._rng.normal(0.0, self._noise, vector.shape).astype(np.float32)
                vector = vector / np.linalg.norm(vector)
            out.append(vector)
        return np.stack(out).astype(np.float32)


class AdvancedRag:
    """This library with its default config (hybrid, weighted fusion as tuned, audit on);
    ``overrides`` change settings for an ablation; ``server`` serves the database from a
    separate ``milvus-lite server`` process instead of embedding Lite in this one."""

    def __init__(self, name: str = "advanced-rag", overrides: dict[str, Any] | None = None,
                 server: bool = False) -> None:
        self.name = name
        self._overrides = overrides or {}
        self._server = server
        self._process: subprocess.Popen[bytes] | None = None
        self._rag: Any = None

    def _config(self, db: Path, uri: str | None = None) -> Any:
        from advanced_rag.config import validate_config

        raw: dict[str, Any] = {"milvus": {"uri": uri or str(db), "collection": COLLECTION},
                               "data_dir": str(db.with_suffix(".data"))}
        for section, values in self._overrides.items():
            for key, value in values.items():
                if isinstance(value, dict):
                    raw.setdefault(section, {}).setdefault(key, {}).update(value)
                else:
                    raw.setdefault(section, {})[key] = value
        return validate_config(raw)

    @staticmethod
    def _documents(workload: Workload, limit: int | None) -> list[Any]:
        docs = scifact_documents()
        if limit is None:
            return docs
        wanted = {c.doc_id for c in workload.chunks[:limit]}
        return [d for d in docs if d.id in wanted]

    async def ingest_live(self, workload: Workload, db: Path) -> int:
        from advanced_rag import AdvancedRAGPipeline

        async with AdvancedRAGPipeline.from_config(self._config(db)) as rag:
            report = await rag.ingest(self._documents(workload, workload.live_chunks),
                                      tenant=TENANT)
        return report.chunks_written

    async def build(self, workload: Workload, db: Path) -> None:
        from advanced_rag import AdvancedRAGPipeline
        from advanced_rag.embed.sentence_transformers import SentenceTransformerEmbedder

        embedder = CachedVectors(SentenceTransformerEmbedder(workload.model_path), workload)
        async with AdvancedRAGPipeline(self._config(db), embedder=embedder) as rag:
            report = await rag.ingest(self._documents(workload, None), tenant=TENANT)
        if report.chunks_written != len(workload.chunks):
            raise SystemExit(f"advanced-rag wrote {report.chunks_written} chunks, "
                             f"the prepared corpus has {len(workload.chunks)}")

    async def searcher(self, workload: Workload, db: Path) -> Search:
        from advanced_rag import AdvancedRAGPipeline

        uri = None
        if self._server:
            self._process, uri = start_lite_server(db)
        self._rag = rag = await AdvancedRAGPipeline.from_config(self._config(db, uri)).open()

        async def search(query: str) -> list[str]:
            result = await rag.retrieve(query, tenant=TENANT, top_k=TOP_K)
            return [h.doc_id for h in result.hits]

        return search

    async def close(self) -> None:
        if self._rag is not None:
            await self._rag.close()
        stop_lite_server(self._process)


# -- langchain-milvus -------------------------------------------------------------------------

class LangChain:
    """langchain-milvus hybrid: dense + ``BM25BuiltInFunction``, RRF k=60, its async API.

    Its default index and search parameters for the BM25 field are refused by Milvus Lite, so
    they are passed explicitly, as a Lite user must."""

    def __init__(self, name: str = "langchain-milvus", server: bool = False) -> None:
        self.name = name
        self._server = server
        self._process: subprocess.Popen[bytes] | None = None
        self._embeddings: Any = None

    def _store(self, workload: Workload, db: Path, *, uri: str | None = None) -> Any:
        from langchain_huggingface import HuggingFaceEmbeddings
        from langchain_milvus import BM25BuiltInFunction, Milvus

        if self._embeddings is None:
            self._embeddings = HuggingFaceEmbeddings(
                model_name=workload.model_path, model_kwargs={"device": "cpu"},
                encode_kwargs={"normalize_embeddings": True, "batch_size": ENCODE_BATCH})
        return Milvus(
            embedding_function=self._embeddings,
            builtin_function=BM25BuiltInFunction(),
            vector_field=["dense", "sparse"],
            collection_name=COLLECTION,
            connection_args={"uri": uri or str(db)},
            # langchain's defaults for the BM25 field (AUTOINDEX to build, drop_ratio_build to
            # search) are refused by Milvus Lite: both spelled out, dense left at its default.
            index_params=[{"metric_type": "L2", "index_type": "AUTOINDEX", "params": {}},
                          {"metric_type": "BM25", "index_type": "SPARSE_INVERTED_INDEX",
                           "params": {}}],
            search_params=[{"metric_type": "L2", "params": {}},
                           {"metric_type": "BM25", "params": {}}],
            consistency_level="Strong",
            auto_id=False,
        )

    @staticmethod
    def _metadatas(chunks: Sequence[Chunk]) -> list[dict[str, str]]:
        return [{"doc_id": c.doc_id} for c in chunks]

    async def ingest_live(self, workload: Workload, db: Path) -> int:
        chunks = workload.chunks[:workload.live_chunks]
        store = self._store(workload, db)
        await store.aadd_texts([c.text for c in chunks], self._metadatas(chunks),
                               ids=[c.id for c in chunks])
        return len(chunks)

    async def build(self, workload: Workload, db: Path) -> None:
        store = self._store(workload, db)
        store.add_embeddings([c.text for c in workload.chunks],
                             [v.tolist() for v in workload.vectors],
                             self._metadatas(workload.chunks), ids=[c.id for c in workload.chunks],
                             batch_size=INSERT_BATCH)

    async def searcher(self, workload: Workload, db: Path) -> Search:
        uri = None
        if self._server:
            self._process, uri = start_lite_server(db)
        store = self._store(workload, db, uri=uri)

        async def search(query: str) -> list[str]:
            docs = await store.asimilarity_search(query, k=TOP_K, fetch_k=CANDIDATES,
                                                  ranker_type="rrf", ranker_params={"k": 60})
            return [d.metadata["doc_id"] for d in docs]

        return search

    async def close(self) -> None:
        stop_lite_server(self._process)


# Before issue 9's changes: no coalescing, torch's default threads, no BM25 stop words.
_PLAIN = {"embedder": {"query_micro_batch": 1, "query_threads": None},
          "milvus": {"search_micro_batch": 1, "bm25": {"stop_words": "none"}}}
SYSTEMS: dict[str, Callable[[], PeerSystem]] = {
    "raw": RawPymilvus,
    "advanced-rag": AdvancedRag,
    "advanced-rag-plain": lambda: AdvancedRag(
        "advanced-rag, no coalescing, torch default threads, no stop words", _PLAIN),
    "advanced-rag-server": lambda: AdvancedRag("advanced-rag, milvus-lite server process",
                                               server=True),
    "langchain": LangChain,
    "langchain-server": lambda: LangChain("langchain-milvus, milvus-lite server process",
                                          server=True),
}
# Variants query the index another system built (same config for ingest, nothing to re-time).
SHARES_INDEX = {"advanced-rag-server": "advanced-rag", "langchain-server": "langchain"}
