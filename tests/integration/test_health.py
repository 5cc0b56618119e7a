"""``rag.health()`` and ``advanced-rag health`` against real dependencies: the audit store and
Milvus Lite in a temporary folder, the packaged MiniLM, and the fake provider (a real HTTP
server speaking the Cohere and OpenAI wire formats) as the hosted reranker.

What is pinned: every configured dependency gets a check; a required one that is down makes
the report (and the command's exit code) unhealthy; a fallback chain is up while any member
is; checks write nothing to the audit trail."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from advanced_rag import AdvancedRAGPipeline
from advanced_rag.cli import main
from advanced_rag.config import PipelineConfig, validate_config
from advanced_rag.health import HealthCheck, HealthReport
from tests.providers.fake_server import FakeProvider, Fault, fake_provider, provider  # noqa: F401

pytestmark = pytest.mark.integration

LOCAL_CHECKS = {"audit_store", "milvus", "embedder", "reranker", "generator", "judge"}
REPO = Path(__file__).resolve().parents[2]


def config_data(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    data_dir = tmp_path / "data"
    return {"data_dir": str(data_dir), "milvus": {"uri": str(data_dir / "m.db")}, **sections}


def cohere(url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "cohere", "model": "rerank-test", "base_url": url, **extra}


def by_name(report: HealthReport) -> dict[str, HealthCheck]:
    names = [c.name for c in report.checks]
    assert len(names) == len(set(names)), names
    return {c.name: c for c in report.checks}


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: bound by us, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OPENAI_API_KEY", "CO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield


async def _health(config: PipelineConfig, embedder: Any,
                  timeout_s: float = 5.0) -> tuple[HealthReport, AdvancedRAGPipeline]:
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        before = len(await rag.compliance.query_audit_logs(limit=100_000))
        report = await rag.health(timeout_s=timeout_s)
        after = len(await rag.compliance.query_audit_logs(limit=100_000))
    assert after == before, "a health check writes nothing to the audit trail"
    return report, rag


# --------------------------------------------------------------------------- rag.health()


async def test_default_local_config_is_healthy(embedder: Any, tmp_path: Path) -> None:
    report, _ = await _health(validate_config(config_data(tmp_path)), embedder)
    checks = by_name(report)
    assert set(checks) == LOCAL_CHECKS
    assert all(c.ok and c.required and c.latency_ms >= 0 for c in checks.values()), checks
    assert report.ok and report.failed == ()
    assert report.breakers == ()  # nothing remote was called
    assert checks["embedder"].detail.endswith("384-d")
    assert "loaded (local)" in checks["generator"].detail
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["ok"] is True and {c["name"] for c in as_json["checks"]} == LOCAL_CHECKS


async def test_hosted_reranker_is_probed_and_reported_down_when_it_fails(
        embedder: Any, tmp_path: Path, provider: FakeProvider) -> None:  # noqa: F811
    config = validate_config(config_data(tmp_path, reranker=cohere(provider.cohere_url)))
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        report = await rag.health(timeout_s=5)
        checks = by_name(report)
        assert set(checks) == LOCAL_CHECKS
        assert report.ok and checks["reranker"].ok and checks["reranker"].required
        assert checks["reranker"].detail == "API key valid"
        assert len(provider.state.requests_to("/v1/check-api-key")) == 1
        assert provider.state.requests_to("/v2/rerank") == []  # the probe costs no search unit

        provider.state.always = "503"
        report = await rag.health(timeout_s=5)
    checks = by_name(report)
    assert not report.ok
    assert [c.name for c in report.failed] == ["reranker"]
    down = checks["reranker"]
    assert down.required and "503" in down.detail and "ProviderError" in down.detail
    assert all(c.ok for name, c in checks.items() if name != "reranker")


async def test_a_fallback_chain_is_up_while_a_member_serves(
        embedder: Any, tmp_path: Path, provider: FakeProvider) -> None:  # noqa: F811
    provider.state.always = Fault("503")
    config = validate_config(config_data(
        tmp_path, reranker=cohere(provider.cohere_url, fallback=[{"kind": "none"}])))
    report, _ = await _health(config, embedder)
    checks = by_name(report)
    assert set(checks) == (LOCAL_CHECKS - {"reranker"}) | {
        "reranker", "reranker.fallback[0]", "reranker chain"}
    primary, fallback, chain = (checks["reranker"], checks["reranker.fallback[0]"],
                                checks["reranker chain"])
    assert (primary.ok, primary.required) == (False, False) and "503" in primary.detail
    assert (fallback.ok, fallback.required) == (True, False)
    assert (chain.ok, chain.required) == (True, True)
    assert "reranker.fallback[0]" in chain.detail and "primary is down" in chain.detail
    assert report.ok, "a member that is not required being down leaves the pipeline healthy"
    assert [c.name for c in report.failed] == ["reranker"]


async def test_an_unreachable_provider_is_down(embedder: Any, tmp_path: Path,
                                               closed_port: int) -> None:
    config = validate_config(config_data(
        tmp_path, reranker=cohere(f"http://127.0.0.1:{closed_port}", timeout_s=2)))
    report, _ = await _health(config, embedder, timeout_s=5)
    down = by_name(report)["reranker"]
    assert not report.ok and not down.ok and down.required
    assert "ProviderError" in down.detail and f"127.0.0.1:{closed_port}" in down.detail
    assert down.latency_ms < 5000  # refused at once, not timed out


# --------------------------------------------------------------------------- the command


def _write_config(folder: Path, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_health_command_exit_codes_and_json(tmp_path: Path, provider: FakeProvider,  # noqa: F811
                                            closed_port: int) -> None:
    healthy = _write_config(tmp_path / "up", config_data(
        tmp_path / "up", reranker=cohere(provider.cohere_url)))
    down = _write_config(tmp_path / "down", config_data(
        tmp_path / "down", reranker=cohere(f"http://127.0.0.1:{closed_port}", timeout_s=2)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                         if p)}
    for name in ("OPENAI_API_KEY", "CO_API_KEY"):
        env.pop(name, None)
    # both at once: each starts Python and loads MiniLM
    runs = {label: subprocess.Popen(
        [sys.executable, "-m", "advanced_rag.cli", "health", "--config", str(config), "--json",
         "--timeout", "10"], cwd=config.parent, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for label, config in (("up", healthy), ("down", down))}
    results = {label: (proc.communicate(timeout=180), proc.returncode)
               for label, proc in runs.items()}

    (out, err), code = results["up"]
    assert code == 0, err[-2000:]
    report = json.loads(out)
    assert report["ok"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == LOCAL_CHECKS
    assert checks["reranker"]["ok"] is True and checks["reranker"]["detail"] == "API key valid"
    assert len(provider.state.requests_to("/v1/check-api-key")) == 1

    (out, err), code = results["down"]
    assert code == 1, err[-2000:]
    report = json.loads(out)
    assert report["ok"] is False
    failed = [c for c in report["checks"] if not c["ok"]]
    assert [(c["name"], c["required"]) for c in failed] == [("reranker", True)]
    assert f"127.0.0.1:{closed_port}" in failed[0]["detail"]
    assert (tmp_path / "down" / "data" / "audit.db").is_file()  # data_dir from the config


def test_health_help_names_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["health", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit 0 healthy, 1 a required dependency is down" in text
    assert "--json" in text and "--timeout" in text and "--config" in text
