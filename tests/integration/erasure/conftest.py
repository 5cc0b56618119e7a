"""Erasure tests run on SQLite and (with ``AUDIT_TEST_POSTGRES_URL``) on PostgreSQL, with the
audit tests' backends: a file per test, or a fresh schema per test dropped afterwards."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from advanced_rag.config import PipelineConfig, validate_config
from tests.integration.audit.conftest import Backend, _postgres, _sqlite

KEK_ENV = "ADVANCED_RAG_TEST_KEK"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield _sqlite(tmp_path)
        return
    with _postgres() as pg:
        yield pg


def make_config(backend: Backend, tmp_path: Path, **erasure: Any) -> PipelineConfig:
    audit: dict[str, Any] = {"url": backend.url}
    if backend.schema is not None:
        audit["schema"] = backend.schema
    return validate_config({"data_dir": str(tmp_path), "audit": audit,
                            "erasure": {"key_encryption_key_env": KEK_ENV, **erasure}})


@pytest.fixture
def kek(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A fresh key-encryption key in the environment variable the test configs name."""
    key = os.urandom(32)
    monkeypatch.setenv(KEK_ENV, base64.b64encode(key).decode())
    return key


@pytest.fixture
def config(backend: Backend, tmp_path: Path, kek: bytes) -> PipelineConfig:
    return make_config(backend, tmp_path)
