from __future__ import annotations

import json
from pathlib import Path

import pytest

from advanced_rag.cli.evaluate import set_pipeline_values
from advanced_rag.config import load_config
from advanced_rag.errors import DocumentError, InputError
from advanced_rag.eval.beir import evidence_qrels, load_beir
from advanced_rag.sources import read_documents
from advanced_rag.types import Classification, Document


def test_markdown_front_matter(tmp_path: Path) -> None:
    (tmp_path / "kyc.md").write_text(
        "---\ntitle: KYC\nclassification: confidential\nsource: handbook\nowner: risk\n---\n"
        "# KYC\n\nBody.\n", encoding="utf-8")
    (doc,) = list(read_documents([tmp_path]))
    assert isinstance(doc, Document)
    assert doc.id == "kyc" and doc.classification is Classification.CONFIDENTIAL
    assert doc.source == "handbook" and doc.metadata == {"title": "KYC", "owner": "risk"}
    assert doc.text.startswith("# KYC")


def test_jsonl_shapes_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"_id": "1", "title": "T", "text": "body"}\n'
                     b'{"id": "x", "text": "plain", "classification": "public"}\n'
                     b"not json\n"
                     b'{"text": "no id"}\n'
                     b'\xff\xfe\n')
    items = list(read_documents([path]))
    assert [type(i) for i in items] == [Document, Document, DocumentError, DocumentError,
                                        DocumentError]
    beir = items[0]
    assert isinstance(beir, Document) and beir.text == "body" and beir.metadata["title"] == "T"
    assert isinstance(items[2], DocumentError) and ":3" in items[2].doc_id


def test_non_utf8_text_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9")
    (item,) = list(read_documents([tmp_path]))
    assert isinstance(item, DocumentError) and "UTF-8" in item.reason


def test_missing_and_unsupported_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        list(read_documents([tmp_path / "nope"]))
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(InputError, match="unsupported"):
        list(read_documents([tmp_path / "x.pdf"]))


def test_evidence_qrels_exclude_test_queries(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text("", encoding="utf-8")
    rows = [{"_id": "1", "text": "q1", "metadata": {"10": [{"label": "SUPPORT"}]}},
            {"_id": "2", "text": "q2", "metadata": {"20": [{"label": "SUPPORT"}]}},
            {"_id": "3", "text": "q3", "metadata": {}}]
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in rows),
                                            encoding="utf-8")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\t10\t1\n",
                                                 encoding="utf-8")
    dataset = load_beir(tmp_path)
    assert dataset.qrels == {"1": {"10": 1}}
    assert evidence_qrels(dataset) == {"2": {"20": 1}}


def test_tune_writer_keeps_comments_and_validates(tmp_path: Path) -> None:
    text = Path("config.template.yaml").read_text(encoding="utf-8")
    updated = set_pipeline_values(text, {"fusion": "rrf", "rrf_k": 20})
    assert updated.count("# How hybrid search fuses") == 1
    path = tmp_path / "c.yaml"
    path.write_text(updated, encoding="utf-8")
    config = load_config(path)
    assert config.pipeline.fusion == "rrf" and config.pipeline.rrf_k == 20
    assert config.pipeline.top_k == 20
    fresh = set_pipeline_values("milvus:\n  uri: x.db\n", {"hybrid_alpha": 0.4})
    path.write_text(fresh, encoding="utf-8")
    assert load_config(path).pipeline.hybrid_alpha == 0.4
