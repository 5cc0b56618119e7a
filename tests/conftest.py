"""Shared fixtures. Heavy models load once per session; every Milvus Lite database lives in
a temporary folder of its own."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    from advanced_rag.embed.sentence_transformers import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder()
    yield model
    model.close()


@pytest.fixture
def milvus_uri(tmp_path: Path) -> str:
    return str(tmp_path / "milvus.db")


@pytest.fixture
async def rag(embedder, milvus_uri: str) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    from advanced_rag import AdvancedRAGPipeline
    from advanced_rag.config import validate_config

    config = validate_config({"data_dir": str(Path(milvus_uri).parent), "milvus": {"uri": milvus_uri},
                              "chunking": {"max_tokens": 64, "min_tokens": 4}})
    async with AdvancedRAGPipeline(config, embedder=embedder) as pipeline:
        yield pipeline


def _minilm_cross_encoder(tmp_path_factory: pytest.TempPathFactory, num_labels: int) -> str:
    """A real CrossEncoder built from the packaged MiniLM weights (untrained head, fixed seed),
    saved to a folder as a user's model would be."""
    import torch
    from sentence_transformers import CrossEncoder

    from advanced_rag.embed.sentence_transformers import resolve_model_path

    torch.manual_seed(0)
    model = CrossEncoder(resolve_model_path("all-MiniLM-L6-v2"), num_labels=num_labels,
                         local_files_only=True)
    target = tmp_path_factory.mktemp(f"cross-encoder-{num_labels}")
    model.save(str(target))
    return str(target)


@pytest.fixture(scope="session")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A one-label cross-encoder. No pretrained cross-encoder installs offline; this one
    exercises the loading, batching and ordering code for real, not reranking quality."""
    return _minilm_cross_encoder(tmp_path_factory, 1)


@pytest.fixture(scope="session")
def nli_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A three-label cross-encoder standing in for an NLI model (plumbing, not judging)."""
    return _minilm_cross_encoder(tmp_path_factory, 3)
