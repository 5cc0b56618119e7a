"""The ONNX Runtime backend reproduces the torch embedder: fp32 to float precision, int8
closely enough to keep rankings; exports are cached; unsupported pipelines are refused."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from advanced_rag.embed import onnx as onnx_backend  # noqa: E402
from advanced_rag.embed.onnx import OnnxEmbedder  # noqa: E402
from advanced_rag.embed.sentence_transformers import resolve_model_path  # noqa: E402
from advanced_rag.errors import EmbedderError, MissingDependencyError  # noqa: E402

pytestmark = pytest.mark.integration

LONG = " ".join(f"Clause {i}: the controller retains records of each transaction for audit."
                for i in range(60))
TEXTS = [
    "KYC applies to every new customer.",
    "Wie lange werden Transaktionsdaten aufbewahrt? Zehn Jahre, gemäß §147 AO.",
    "",
    "GDPR Art. 17 — right to erasure (\"right to be forgotten\"), 30-day deadline!",
    "a",
    LONG,
]
TRIPLES = [  # (anchor, similar, dissimilar)
    ("How do I reset my password?", "Steps to change a forgotten account password.",
     "The recipe needs two cups of flour and one egg."),
    ("Customer complaints must be acknowledged within five days.",
     "We confirm receipt of every complaint in under a week.",
     "The satellite entered a geostationary orbit last night."),
    ("Anti-money-laundering checks for large cash deposits.",
     "Screening big cash payments for money laundering.",
     "Tomatoes grow best in warm, sunny gardens."),
]


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def fp32(cache_dir: Path) -> Iterator[OnnxEmbedder]:
    model = OnnxEmbedder(cache_dir=cache_dir, batch_size=4)
    yield model
    model.close()


@pytest.fixture(scope="module")
def int8(cache_dir: Path) -> Iterator[OnnxEmbedder]:
    model = OnnxEmbedder(cache_dir=cache_dir, quantize=True, batch_size=4)
    yield model
    model.close()


def test_fp32_matches_torch_including_truncated_text(fp32: OnnxEmbedder, embedder) -> None:  # type: ignore[no-untyped-def]
    assert fp32.count_tokens(LONG) > fp32.max_tokens  # the long text really is truncated
    ours, theirs = fp32.encode(TEXTS), embedder.encode(TEXTS)
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), 384)
    assert np.abs(ours - theirs).max() < 1e-4
    assert _cosine_rows(ours, theirs).min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batch_composition_does_not_change_vectors(fp32: OnnxEmbedder) -> None:
    together = fp32.encode(TEXTS)  # padded to the long text's 256 tokens in one batch
    alone = np.vstack([fp32.encode([t]) for t in TEXTS])
    assert np.abs(together - alone).max() < 1e-5
    assert fp32.encode([]).shape == (0, 384)


def test_int8_stays_close_and_keeps_rankings(int8: OnnxEmbedder, embedder) -> None:  # type: ignore[no-untyped-def]
    assert _cosine_rows(int8.encode(TEXTS), embedder.encode(TEXTS)).min() > 0.98
    for anchor, similar, dissimilar in TRIPLES:
        a, s, d = int8.encode([anchor, similar, dissimilar])
        assert float(a @ s) > float(a @ d) + 0.1, anchor


def test_identity_tells_backend_and_precision_apart(fp32: OnnxEmbedder, int8: OnnxEmbedder,  # type: ignore[no-untyped-def]
                                                    embedder) -> None:
    names = {embedder.identity.name, fp32.identity.name, int8.identity.name}
    shas = {embedder.identity.sha256, fp32.identity.sha256, int8.identity.sha256}
    assert names == {"all-MiniLM-L6-v2", "all-MiniLM-L6-v2 (onnx fp32)",
                     "all-MiniLM-L6-v2 (onnx int8)"}
    assert len(shas) == 3 and all(len(s) == 64 for s in shas)
    assert fp32.source_sha256 == int8.source_sha256 == embedder.identity.sha256
    assert fp32.identity.sha256 == onnx_backend.file_sha256(fp32.onnx_path)
    assert fp32.identity.dimension == int8.identity.dimension == 384
    assert int8.onnx_path.stat().st_size < fp32.onnx_path.stat().st_size / 2


def test_export_is_cached(fp32: OnnxEmbedder, int8: OnnxEmbedder, cache_dir: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    sha = fp32.source_sha256
    assert sorted(p.name for p in cache_dir.iterdir()) == [f"{sha}-fp32.onnx", f"{sha}-int8.onnx"]
    mtimes = {p: p.stat().st_mtime_ns for p in cache_dir.iterdir()}

    def refuse(*_: object) -> None:
        raise AssertionError("exported or quantized again despite the cache")

    monkeypatch.setattr(onnx_backend, "export_onnx", refuse)
    monkeypatch.setattr(onnx_backend, "quantize_int8", refuse)
    again = OnnxEmbedder(cache_dir=cache_dir, quantize=True)
    try:
        assert again.identity == int8.identity
        np.testing.assert_array_equal(again.encode(TEXTS[:2]), int8.encode(TEXTS[:2]))
    finally:
        again.close()
    assert {p: p.stat().st_mtime_ns for p in cache_dir.iterdir()} == mtimes


async def test_concurrent_queries_match_sequential(fp32: OnnxEmbedder) -> None:
    queries = [f"question {i}: {t}" for i, t in enumerate(TEXTS + [a for a, _, _ in TRIPLES])]
    sequential = [await fp32.embed_query(q) for q in queries]
    concurrent = await asyncio.gather(*(fp32.embed_query(q) for q in queries))
    assert np.abs(np.vstack(concurrent) - np.vstack(sequential)).max() < 1e-5
    assert np.abs(np.vstack(sequential) - fp32.encode(queries)).max() < 1e-5


def test_non_mean_pooling_is_refused(tmp_path: Path) -> None:
    """The packaged model with a CLS pooling config: torch would embed it, ONNX must refuse
    rather than mean-pool it silently, and must export nothing."""
    source = Path(resolve_model_path("all-MiniLM-L6-v2"))
    model = tmp_path / "cls-model"
    model.mkdir()
    for item in source.iterdir():
        if item.is_file():
            (model / item.name).symlink_to(item)
    (model / "1_Pooling").mkdir()
    (model / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 384, "pooling_mode_cls_token": True,
         "pooling_mode_mean_tokens": False}), encoding="utf-8")
    cache = tmp_path / "cache"
    with pytest.raises(EmbedderError, match="pooling is 'cls'"):
        OnnxEmbedder(str(model), cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())


def test_missing_onnxruntime_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"advanced-rag\[onnx\]"):
        OnnxEmbedder(cache_dir=tmp_path)
