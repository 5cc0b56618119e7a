"""Shared plumbing of the benchmark scripts: where the data is, and writing docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import platform
import re
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DOC = REPO / "docs" / "benchmarks.md"
BENCH_DIR = REPO / ".advanced-rag" / "bench"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module: a benchmark reuses its training script's splits and
    settings instead of restating them."""
    path = REPO / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def environment_line() -> str:
    import os

    return (f"Python {platform.python_version()}, pymilvus {version('pymilvus')}, "
            f"milvus-lite {version('milvus-lite')}, sentence-transformers "
            f"{version('sentence-transformers')}, torch {version('torch')}, "
            f"{os.cpu_count()} CPU cores")


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else (
        "# Benchmarks\n\nEvery table below is written by the script named in its section; "
        "rerun it to reproduce. Nothing here is edited by hand.\n")
    block = f"<!-- {name}:start -->\n{body.rstrip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->",
                         re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + block + "\n")
    DOC.write_text(text, encoding="utf-8")
