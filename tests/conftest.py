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


@pytest.fixture(scope="session")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real CrossEncoder built from the packaged MiniLM weights (untrained head, fixed seed).

    No pretrained cross-encoder can be installed offline; this one exercises the loading,
    batching and ordering code for real. It says nothing about reranking quality.
    """
    import torch
    from sentence_transformers import CrossEncoder

    from advanced_rag.embed.sentence_transformers import resolve_model_path

    torch.manual_seed(0)
    model = CrossEncoder(resolve_model_path("all-MiniLM-L6-v2"), num_labels=1,
                         local_files_only=True)
    target = tmp_path_factory.mktemp("cross-encoder")
    model.save(str(target))
    return str(target)
