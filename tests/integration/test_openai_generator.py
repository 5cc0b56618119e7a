"""OpenAIChatGenerator against a real local HTTP server speaking the chat-completions wire format."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from advanced_rag.config import ResilienceSettings, RetrySettings
from advanced_rag.errors import BackendError, ConfigError, MissingDependencyError
from advanced_rag.generate import REFUSAL, Citation, Generator, OpenAIChatGenerator
from advanced_rag.remote import Resilience
from advanced_rag.types import Hit, HitScores

pytestmark = pytest.mark.integration

SECRET = "sk-test-0123456789abcdef"
# These tests pin how one failed attempt is reported; retries are tested in tests/providers.
ONE_ATTEMPT = Resilience(ResilienceSettings(retry=RetrySettings(attempts=1)))
MODEL = "test-chat-model"


@dataclass
class ServerState:
    mode: str = "answer"
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _completion(model: str, content: str | None, *, choices: bool = True) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}] if choices else [],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
    }


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
            pass

        def _send(self, status: int, payload: object) -> None:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length))
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.requests.append({"path": self.path, "headers": headers, "body": request})
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                return
            model = request["model"]
            question = request["messages"][-1]["content"].rsplit("Question: ", 1)[-1]
            mode = state.mode
            if mode == "slow":
                state.release.wait(5.0)
                mode = "answer"
            if mode == "answer":
                reply = (f"You asked: {question} The passages answer it [1]. "
                         f"Passage [9] does not exist; see also [2].")
                self._send(200, _completion(model, reply))
            elif mode == "refuse":
                self._send(200, _completion(model, f"{REFUSAL}."))
            elif mode == "500":
                self._send(500, {"error": {"message": "upstream exploded", "type": "server_error"}})
            elif mode == "400":
                self._send(400, {"error": {"message": "unknown parameter", "type": "invalid_request_error"}})
            elif mode == "no_choices":
                self._send(200, _completion(model, None, choices=False))
            elif mode == "no_content":
                self._send(200, _completion(model, None))
            elif mode == "not_json":
                self._send(200, b"<html>definitely not json</html>")
            else:  # pragma: no cover
                self._send(500, {"error": {"message": f"unknown mode {mode}"}})

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    try:
        yield f"http://{host!s}:{port}/v1", state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def state(server: tuple[str, ServerState]) -> ServerState:
    _, state = server
    state.mode = "answer"
    state.requests.clear()
    state.release.clear()
    return state


@pytest.fixture
async def generator(server: tuple[str, ServerState], state: ServerState,
                    monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenAIChatGenerator]:
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    gen = OpenAIChatGenerator(MODEL, base_url=server[0], api_key_env="TEST_LLM_KEY", timeout_s=0.5,
                              resilience=ONE_ATTEMPT)
    yield gen
    state.release.set()
    await gen.aclose()


def _hit(n: int, doc: str, version: int, text: str) -> Hit:
    return Hit(chunk_id=f"{doc}:v{version}:{n}", doc_id=doc, doc_version=version, text=text,
               metadata={}, source="handbook", classification="internal",
               scores=HitScores(fused=1.0 / n))


HITS = [
    _hit(1, "kyc-001", 2, "Customers with a risk score above 0.7 need enhanced due diligence."),
    _hit(2, "aml-004", 1, "Cash deposits above 10,000 EUR are reported to the FIU."),
]
QUESTION = "Who needs enhanced due diligence?"


async def test_answer_with_citations_and_request_shape(generator: OpenAIChatGenerator,
                                                       state: ServerState) -> None:
    assert isinstance(generator, Generator)
    generation = await generator.generate(QUESTION, HITS)

    assert generation.refused is False
    assert generation.text.startswith(f"You asked: {QUESTION}")
    assert generation.citations == (
        Citation(1, "kyc-001:v2:1", "kyc-001", 2),
        Citation(2, "aml-004:v1:2", "aml-004", 1),
    )  # [9] is out of range: ignored
    assert generation.model == MODEL
    assert (generation.prompt_tokens, generation.completion_tokens) == (42, 7)
    assert generation.latency_ms > 0

    [request] = state.requests
    body = request["body"]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {SECRET}"
    assert body["model"] == MODEL
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 512
    system, user = body["messages"]
    assert system["role"] == "system" and REFUSAL in system["content"]
    assert "[n]" in system["content"] or "[1]" in system["content"]
    assert user["role"] == "user"
    assert "[1] (kyc-001 v2) Customers with a risk score above 0.7" in user["content"]
    assert "[2] (aml-004 v1) Cash deposits above 10,000 EUR" in user["content"]
    assert user["content"].endswith(f"Question: {QUESTION}")


async def test_key_is_never_shown(generator: OpenAIChatGenerator) -> None:
    assert SECRET not in repr(generator)
    assert SECRET not in str(generator)
    assert SECRET not in repr(vars(generator) if hasattr(generator, "__dict__") else "")
    assert "TEST_LLM_KEY" in repr(generator) and MODEL in repr(generator)


async def test_refusal(generator: OpenAIChatGenerator, state: ServerState) -> None:
    state.mode = "refuse"
    generation = await generator.generate("When did Vesuvius erupt?", HITS)
    assert generation.refused is True
    assert generation.citations == ()


async def test_no_hits_refuses_without_calling(generator: OpenAIChatGenerator,
                                               state: ServerState) -> None:
    generation = await generator.generate(QUESTION, [])
    assert generation.refused is True and generation.text == REFUSAL
    assert state.requests == []


async def test_http_500_is_retriable(generator: OpenAIChatGenerator, state: ServerState) -> None:
    state.mode = "500"
    with pytest.raises(BackendError) as info:
        await generator.generate(QUESTION, HITS)
    assert info.value.retriable is True
    assert "500" in str(info.value) and MODEL in str(info.value) and "127.0.0.1" in str(info.value)
    assert SECRET not in str(info.value)
    assert len(state.requests) == 1  # one attempt: the SDK's own retries are off


async def test_http_400_is_not_retriable(generator: OpenAIChatGenerator, state: ServerState) -> None:
    state.mode = "400"
    with pytest.raises(BackendError) as info:
        await generator.generate(QUESTION, HITS)
    assert info.value.retriable is False
    assert "400" in str(info.value) and SECRET not in str(info.value)


async def test_timeout_is_retriable(generator: OpenAIChatGenerator, state: ServerState) -> None:
    state.mode = "slow"
    started = time.perf_counter()
    with pytest.raises(BackendError) as info:
        await generator.generate(QUESTION, HITS)
    assert time.perf_counter() - started < 3.0
    assert info.value.retriable is True
    message = str(info.value)
    assert "timed out" in message and MODEL in message and "127.0.0.1" in message
    assert SECRET not in message


@pytest.mark.parametrize("mode", ["no_choices", "no_content", "not_json"])
async def test_malformed_response(generator: OpenAIChatGenerator, state: ServerState, mode: str) -> None:
    state.mode = mode
    with pytest.raises(BackendError) as info:
        await generator.generate(QUESTION, HITS)
    assert "malformed" in str(info.value) or "failed" in str(info.value)
    assert info.value.retriable is False


async def test_connection_refused_is_retriable(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    gen = OpenAIChatGenerator(MODEL, base_url=f"http://127.0.0.1:{port}/v1", timeout_s=2.0,
                              resilience=ONE_ATTEMPT)
    try:
        with pytest.raises(BackendError) as info:
            await gen.generate(QUESTION, HITS)
    finally:
        await gen.aclose()
    assert info.value.retriable is True
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_local_server_without_key(server: tuple[str, ServerState], state: ServerState,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    gen = OpenAIChatGenerator(MODEL, base_url=server[0], temperature=0.0)
    try:
        generation = await gen.generate(QUESTION, HITS)
    finally:
        await gen.aclose()
    assert generation.citations[0].number == 1
    assert state.requests[0]["headers"]["authorization"] == "Bearer not-needed"


def test_openai_api_without_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIChatGenerator(MODEL)


def test_missing_openai_raises_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # "import openai" now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"advanced-rag\[openai\]"):
        OpenAIChatGenerator(MODEL, base_url="http://127.0.0.1:1/v1")


def test_package_imports_without_openai() -> None:
    code = ("import sys; sys.modules['openai'] = None; import advanced_rag.generate as g; "
            "print(g.OpenAIChatGenerator.__name__, g.ExtractiveGenerator.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["OpenAIChatGenerator", "ExtractiveGenerator"]
