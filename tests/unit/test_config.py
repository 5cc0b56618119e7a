from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from advanced_rag.config import PipelineConfig, interpolate, load_config
from advanced_rag.errors import ConfigError

TEMPLATE = Path(__file__).resolve().parents[2] / "config.template.yaml"


def _model_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for name, field in model.model_fields.items():
        annotation, key = field.annotation, field.alias or name
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths |= _model_paths(annotation, f"{prefix}{key}.")
        else:
            paths.add(prefix + key)
    return paths


def _yaml_paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict) and value:  # an empty mapping is a value (e.g. {})
            paths |= _yaml_paths(value, f"{prefix}{key}.")
        else:
            paths.add(prefix + key)
    return paths


def test_template_documents_exactly_the_model_keys() -> None:
    data = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    in_template, in_models = _yaml_paths(data), _model_paths(PipelineConfig)
    assert in_models - in_template == set(), "keys missing from config.template.yaml"
    assert in_template - in_models == set(), "keys in the template the models do not know"


def test_template_loads_and_has_a_comment_for_every_key() -> None:
    config = load_config(TEMPLATE)
    assert config.pipeline.target_latency_ms == 80.0
    assert config.pipeline.top_k == 20 and config.pipeline.rerank_top_k == 5
    lines = [ln.strip() for ln in TEMPLATE.read_text(encoding="utf-8").splitlines()]

    def is_leaf(line: str) -> bool:
        return bool(line) and not line.startswith("#") and not line.endswith(":")

    for i, line in enumerate(lines):
        if not is_leaf(line):
            continue
        j = i - 1
        while j >= 0 and is_leaf(lines[j]):  # keys grouped under one comment
            j -= 1
        assert j >= 0 and lines[j].startswith("#"), f"no comment above {line!r}"


def test_defaults_match_the_seed() -> None:
    config = PipelineConfig()
    assert config.pipeline.hybrid_alpha == 0.2
    assert config.milvus.index.M == 16 and config.milvus.index.efConstruction == 200
    assert config.reranker.kind == "none"


def test_unknown_key_is_named_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("pipeline:\n  top_k: 10\n  topk: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "pipeline.topk" in str(err.value)
    assert f"{path}:3" in str(err.value)
    assert err.value.line == 3


def test_bad_value_names_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("milvus:\n  uri: x.db\n  index:\n    M: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "milvus.index.M" and err.value.line == 4


def test_env_interpolation_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TOPK", "7")
    monkeypatch.delenv("RAG_UNSET", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text("pipeline:\n  top_k: ${RAG_TOPK}\n  rrf_k: ${RAG_UNSET:-42}\n", encoding="utf-8")
    config = load_config(path)
    assert config.pipeline.top_k == 7 and config.pipeline.rrf_k == 42


def test_unset_variable_without_default_is_an_error(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAG_MISSING", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text("milvus:\n  uri: ${RAG_MISSING}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="RAG_MISSING") as err:
        load_config(path)
    assert err.value.line == 2 and err.value.key == "milvus.uri"


def test_interpolation_does_not_reparse_yaml() -> None:
    # An environment value can never inject structure.
    assert interpolate("${X}", {"X": "a: b\nc: [d]"}) == "a: b\nc: [d]"


def test_invalid_yaml_and_duplicate_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline:\n  top_k: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text("pipeline:\n  top_k: 1\n  top_k: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="duplicate key") as err:
        load_config(dup)
    assert err.value.line == 3


def test_cross_field_rules() -> None:
    from advanced_rag.config import validate_config

    with pytest.raises(ConfigError, match="reranker.model is required"):
        validate_config({"reranker": {"kind": "cross-encoder"}})
    with pytest.raises(ConfigError, match="overlap_tokens"):
        validate_config({"chunking": {"max_tokens": 50, "overlap_tokens": 50}})


def test_config_is_frozen() -> None:
    config = PipelineConfig()
    with pytest.raises(ValidationError):
        config.pipeline.top_k = 3  # type: ignore[misc]
