"""A real local HTTP server speaking the OpenAI and Cohere v2 wire formats, with fault injection.

Why: adapters for remote providers must be tested through the official ``openai`` and
``cohere`` SDKs (their retries, timeouts, error classes and parsing), not through mocks of
those SDKs. This module runs a standard-library ``ThreadingHTTPServer`` on ``127.0.0.1``
(port 0, daemon threads) that answers the endpoints the project uses with the exact JSON
shapes of the real APIs, records every request, and can be told to fail in provider-typical
ways (rate limits, 5xx, slowness, malformed bodies, dropped connections, wrong dimensions).

What it is not: a model. Answers are deterministic stand-ins so tests can assert on them:

* chat replies repeat the first sentence of the first context passage (or say
  ``"I cannot answer."``), JSON-mode replies come from a pluggable callable;
* embeddings are hashed bag-of-words vectors (texts sharing words are more similar);
* rerank scores are the Jaccard overlap of lowercase words of query and document.

Endpoints (``FakeProvider.openai_url`` ends in ``/v1``; ``FakeProvider.cohere_url`` is the root):

* ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models``,
  ``GET /v1/models/{id}`` (OpenAI);
* ``POST /v2/rerank``, ``POST /v2/embed``, ``POST /v1/check-api-key`` (Cohere).

Using it from another test folder: either re-export the fixtures in that folder's
``conftest.py``::

    from tests.providers.fake_server import fake_provider, provider  # noqa: F401

or drive the server directly::

    with FakeProvider() as server:
        server.state.add_faults(Fault("429", path="/v1/embeddings", retry_after="0.2"))
        client = openai.AsyncOpenAI(base_url=server.openai_url, api_key="k", max_retries=0)
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest

__all__ = [
    "DEFAULT_DIMENSION",
    "DEFAULT_MODELS",
    "FAULT_KINDS",
    "Fault",
    "FaultKind",
    "FakeProvider",
    "ProviderState",
    "RecordedRequest",
    "default_chat_json",
    "default_chat_text",
    "fake_provider",
    "jaccard",
    "provider",
    "provider_server",
    "pseudo_embedding",
    "word_count",
    "words",
]

FaultKind = Literal[
    "slow", "429", "500", "503", "400", "401", "malformed", "wrong_dimension", "empty", "disconnect"
]
FAULT_KINDS: frozenset[str] = frozenset(
    {"slow", "429", "500", "503", "400", "401", "malformed", "wrong_dimension", "empty", "disconnect"}
)
"""Every fault kind the server understands (see :class:`Fault`)."""

DEFAULT_DIMENSION = 64
"""Dimension of the pseudo-embeddings unless ``state.dimension`` is changed."""

DEFAULT_MODELS: tuple[str, ...] = ("fake-chat-model", "fake-embedding-model", "fake-rerank-model")
"""Model ids listed by ``GET /v1/models`` unless ``state.models`` is changed."""

MALFORMED_BODY = b'{"this is": not json'
"""The body sent with status 200 by the ``malformed`` fault."""

_REFUSAL_TEXT = "I cannot answer."
_WORD = re.compile(r"\w+")
_HASHES_PER_WORD = 3
_COHERE_PATHS = ("/v2/", "/v1/check-api-key")

JSONDict = dict[str, Any]


# --------------------------------------------------------------------------- deterministic stand-ins


def words(text: str) -> list[str]:
    """Lowercase word tokens (``\\w+``) of ``text``; the unit for embeddings, scores and usage."""
    return _WORD.findall(text.lower())


def word_count(text: str) -> int:
    """Whitespace-separated words of ``text``: the fake's stand-in for a token count."""
    return len(text.split())


def pseudo_embedding(text: str, dimension: int) -> list[float]:
    """A deterministic, L2-normalised bag-of-hashed-words vector. Not a model.

    Each lowercase word adds ``±1`` to a few dimensions chosen by a SHA-256 of the word, so texts
    that share words get a higher cosine similarity than texts that do not. Text without words
    hashes a fixed sentinel so the vector is never all zeros.
    """
    if dimension < 1:
        raise ValueError(f"dimension must be positive, got {dimension}")
    vector = [0.0] * dimension
    for word in words(text) or ["\x00empty"]:
        digest = hashlib.sha256(word.encode()).digest()
        for slot in range(_HASHES_PER_WORD):
            chunk = int.from_bytes(digest[slot * 4:slot * 4 + 4], "little")
            sign = 1.0 if chunk & 1 else -1.0
            vector[(chunk >> 1) % dimension] += sign
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0.0:  # hash collisions cancelled out: fall back to a fixed unit vector
        return [1.0] + [0.0] * (dimension - 1)
    return [value / norm for value in vector]


def jaccard(query: str, document: str) -> float:
    """Jaccard overlap in ``[0, 1]`` of the lowercase word sets; the fake's rerank score."""
    left, right = set(words(query)), set(words(document))
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def _message_text(message: Any) -> str:
    """The text of one chat message, whether ``content`` is a string or a list of parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content
                        if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def default_chat_text(request: JSONDict) -> str:
    """Deterministic stand-in reply: the first sentence of the first context passage, cited.

    Looks at the last user message; if it has a ``Context passages:`` section (the layout of
    ``advanced_rag.generate.openai_chat.build_messages``), returns that passage's first sentence
    ending with its marker, e.g. ``"KYC applies to new customers [1]."``. Otherwise returns
    ``"I cannot answer."``.
    """
    messages = request.get("messages") or []
    user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    text = _message_text(user)
    if "Context passages:" not in text:
        return _REFUSAL_TEXT
    section = text.split("Context passages:", 1)[1].split("\n\nQuestion:", 1)[0].strip()
    match = re.match(r"\[(\d+)\]\s*(?:\([^)]*\)\s*)?(.*)", section.split("\n\n", 1)[0], re.DOTALL)
    if match is None:
        return _REFUSAL_TEXT
    number, passage = match.group(1), " ".join(match.group(2).split())
    sentence = re.split(r"(?<=[.!?])\s", passage, maxsplit=1)[0].rstrip(".!? ")
    return f"{sentence} [{number}]." if sentence else _REFUSAL_TEXT


def default_chat_json(request: JSONDict) -> JSONDict:
    """Stand-in JSON-mode reply: an empty object. Tests plug in their own ``state.chat_json``."""
    return {}


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class Fault:
    """One injected failure, consumed by the first request whose path starts with ``path``.

    Kinds (:data:`FAULT_KINDS`):

    * ``slow``: wait ``delay_s`` (woken early by ``state.release``), then answer normally;
    * ``429``: rate limit with ``Retry-After: retry_after`` (and ``retry-after-ms`` if given);
    * ``500``, ``503``, ``400``, ``401``: that status with a provider-style error body;
    * ``malformed``: status 200, ``Content-Type: application/json``, body ``{"this is": not json``;
    * ``wrong_dimension``: embeddings of ``state.dimension + 1`` (no effect on other endpoints);
    * ``empty``: 200 with a valid but empty result (no choices / no data / no results);
    * ``disconnect``: close the connection without any response.
    """

    kind: str
    path: str | None = None
    delay_s: float = 2.0
    retry_after: float | str | None = 1
    retry_after_ms: float | str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")

    def matches(self, path: str) -> bool:
        """Whether this fault applies to a request for ``path`` (a fault without path matches all)."""
        return self.path is None or path.startswith(self.path)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it. ``body`` is the parsed JSON (``None`` if there was none)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    time: float
    """Arrival time from :func:`time.monotonic`."""


def _as_fault(fault: Fault | str) -> Fault:
    return fault if isinstance(fault, Fault) else Fault(fault)


@dataclass
class ProviderState:
    """Everything a test may configure or inspect; shared by all handler threads.

    ``faults`` is a FIFO consumed one per matching request; mutate it through
    :meth:`add_faults` (or while holding ``lock``). ``always`` (a kind or a :class:`Fault`)
    applies to every matching request while set, after queued faults. ``require_key``, when a
    string, makes requests without ``Authorization: Bearer <key>`` fail with 401 before any
    fault is considered.
    """

    dimension: int = DEFAULT_DIMENSION
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    require_key: str | None = None
    chat_text: Callable[[JSONDict], str] = default_chat_text
    chat_json: Callable[[JSONDict], JSONDict] = default_chat_json
    embed_fn: Callable[[list[str]], list[list[float]]] | None = None
    """When set, embeddings come from it (e.g. a real local model) instead of the
    pseudo-embeddings; ``wrong_dimension`` then appends one extra component."""
    faults: list[Fault] = field(default_factory=list)
    always: Fault | str | None = None
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_faults(self, *faults: Fault | str) -> None:
        """Queue faults (a bare string is ``Fault(kind)``), in order, thread-safely."""
        queued = [_as_fault(fault) for fault in faults]
        with self.lock:
            self.faults.extend(queued)

    def pending_faults(self) -> list[Fault]:
        """A snapshot of the faults not consumed yet."""
        with self.lock:
            return list(self.faults)

    def take_fault(self, path: str) -> Fault | None:
        """Remove and return the first queued fault matching ``path``, else the ``always`` fault."""
        with self.lock:
            for position, fault in enumerate(self.faults):
                if fault.matches(path):
                    return self.faults.pop(position)
            always = self.always
        if always is None:
            return None
        fault = _as_fault(always)
        return fault if fault.matches(path) else None

    def record(self, request: RecordedRequest) -> None:
        """Append a request to ``requests`` thread-safely."""
        with self.lock:
            self.requests.append(request)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests whose path starts with ``path``, in arrival order."""
        with self.lock:
            return [request for request in self.requests if request.path.startswith(path)]

    def reset(self) -> None:
        """Back to defaults. Wakes handlers still sleeping in a ``slow`` fault of an earlier test
        (by setting the old ``release``) and installs a fresh, unset event."""
        self.release.set()
        with self.lock:
            self.faults.clear()
            self.requests.clear()
            self.always = None
            self.release = threading.Event()
            self.dimension = DEFAULT_DIMENSION
            self.models = list(DEFAULT_MODELS)
            self.require_key = None
            self.chat_text = default_chat_text
            self.chat_json = default_chat_json
            self.embed_fn = None


# --------------------------------------------------------------------------- wire formats


def _is_cohere(path: str) -> bool:
    return path.startswith(_COHERE_PATHS)


_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
    429: "requests", 500: "server_error", 503: "server_error",
}
_OPENAI_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
_DEFAULT_MESSAGES = {
    400: "Invalid request (injected fault).",
    401: "Incorrect API key provided (injected fault).",
    429: "Rate limit reached (injected fault).",
    500: "The server had an error while processing your request (injected fault).",
    503: "The service is temporarily overloaded (injected fault).",
}


def _error_body(path: str, status: int, message: str) -> JSONDict:
    """The provider's error envelope: OpenAI nests ``error``; Cohere sends a flat ``message``."""
    if _is_cohere(path):
        return {"message": message}
    return {"error": {"message": message, "type": _OPENAI_ERROR_TYPES.get(status, "server_error"),
                      "param": None, "code": _OPENAI_ERROR_CODES.get(status)}}


def _format_seconds(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _BadRequest(Exception):
    """A client error detected while building a normal answer (becomes a 400)."""


def _chat_completion(state: ProviderState, body: JSONDict, *, empty: bool) -> JSONDict:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty list")
    if body.get("stream"):
        raise _BadRequest("streaming is not supported by the fake provider")
    response_format = body.get("response_format")
    json_mode = isinstance(response_format, dict) and response_format.get("type") in {
        "json_schema", "json_object"}
    content = json.dumps(state.chat_json(body)) if json_mode else state.chat_text(body)
    prompt_tokens = sum(word_count(_message_text(message)) for message in messages)
    completion_tokens = 0 if empty else word_count(content)
    choices = [] if empty else [{"index": 0, "message": {"role": "assistant", "content": content,
                                                         "refusal": None},
                                 "logprobs": None, "finish_reason": "stop"}]
    return {
        "id": f"chatcmpl-fake-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "")),
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _openai_inputs(body: JSONDict) -> list[str]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        return list(raw)
    if isinstance(raw, list) and raw and all(isinstance(item, int) for item in raw):
        return [" ".join(str(item) for item in raw)]  # one pre-tokenised input
    raise _BadRequest("'input' must be a string or a non-empty list of strings")


def _openai_embeddings(state: ProviderState, body: JSONDict, *, empty: bool,
                       wrong_dimension: bool) -> JSONDict:
    texts = _openai_inputs(body)
    requested = body.get("dimensions")
    dimension = requested if isinstance(requested, int) and requested > 0 else state.dimension
    encoding = body.get("encoding_format", "float")
    if encoding not in {"float", "base64"}:
        raise _BadRequest(f"unsupported encoding_format {encoding!r}")
    data: list[JSONDict] = []
    vectors = _vectors(state, [] if empty else texts, dimension, wrong_dimension)
    for index, vector in enumerate(vectors):
        embedding: list[float] | str = vector
        if encoding == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(word_count(text) for text in texts)
    return {"object": "list", "data": data, "model": str(body.get("model", "")),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _model(model_id: str) -> JSONDict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "test"}


def _cohere_meta(**billed: int) -> JSONDict:
    return {"api_version": {"version": "2"}, "billed_units": billed}


def _document_text(document: Any) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, dict) and isinstance(document.get("text"), str):
        return str(document["text"])
    raise _BadRequest("each document must be a string")


def _cohere_rerank(body: JSONDict, *, empty: bool) -> JSONDict:
    query, documents = body.get("query"), body.get("documents")
    if not isinstance(query, str) or not isinstance(documents, list):
        raise _BadRequest("'query' (string) and 'documents' (list) are required")
    limit = body.get("max_tokens_per_doc")
    texts = [_document_text(document) for document in documents]
    if isinstance(limit, int) and limit > 0:
        texts = [" ".join(text.split()[:limit]) for text in texts]
    scored = sorted(((jaccard(query, text), index) for index, text in enumerate(texts)),
                    key=lambda pair: (-pair[0], pair[1]))
    top_n = body.get("top_n")
    if isinstance(top_n, int) and top_n >= 0:
        scored = scored[:top_n]
    results = [] if empty else [{"index": index, "relevance_score": score} for score, index in scored]
    return {"id": str(uuid.uuid4()), "results": results, "meta": _cohere_meta(search_units=1)}


def _quantise(vector: list[float], kind: str) -> list[int]:
    signed = [max(-128, min(127, round(value * 127))) for value in vector]
    return signed if kind == "int8" else [value + 128 for value in signed]


def _vectors(state: ProviderState, texts: list[str], dimension: int,
             wrong_dimension: bool) -> list[list[float]]:
    """``embed_fn``'s vectors if set, else pseudo-embeddings; one component too many for
    the ``wrong_dimension`` fault."""
    if state.embed_fn is not None:
        vectors = [[float(x) for x in v] for v in state.embed_fn(texts)] if texts else []
        return [v + [0.1] for v in vectors] if wrong_dimension else vectors
    size = dimension + (1 if wrong_dimension else 0)
    return [pseudo_embedding(text, size) for text in texts]


def _cohere_embed(state: ProviderState, body: JSONDict, *, empty: bool, wrong_dimension: bool) -> JSONDict:
    texts = body.get("texts")
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise _BadRequest("'texts' must be a list of strings")
    kinds = body.get("embedding_types") or ["float"]
    unsupported = [kind for kind in kinds if kind not in {"float", "int8", "uint8"}]
    if unsupported:
        raise _BadRequest(f"embedding_types {unsupported} are not supported by the fake provider")
    vectors = _vectors(state, [] if empty else list(texts), state.dimension, wrong_dimension)
    embeddings: JSONDict = {
        kind: vectors if kind == "float" else [_quantise(vector, kind) for vector in vectors]
        for kind in kinds
    }
    return {"id": str(uuid.uuid4()), "response_type": "embeddings_by_type", "embeddings": embeddings,
            "texts": [] if empty else list(texts),
            "meta": _cohere_meta(input_tokens=sum(word_count(text) for text in texts))}


# --------------------------------------------------------------------------- server


class _Handler(BaseHTTPRequestHandler):
    """Routes one request: record, authorise, apply a fault, then answer in the provider's format."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body writes
    timeout = 30  # idle keep-alive connections end on their own
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    # -- plumbing

    def _send_bytes(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. its timeout)
            self.close_connection = True

    def _send(self, status: int, payload: JSONDict, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), headers)

    def _send_error(self, path: str, status: int, message: str,
                    headers: dict[str, str] | None = None) -> None:
        self._send(status, _error_body(path, status, message), headers)

    def _drop(self) -> None:
        """Close the connection without writing a single byte of response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_body(self) -> tuple[bytes, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw:
            return raw, None
        try:
            return raw, json.loads(raw)
        except ValueError:
            return raw, _BadRequest("request body is not valid JSON")

    # -- dispatch

    def _handle(self) -> None:
        state = self.server.state
        arrival = time.monotonic()
        path, _, query = self.path.partition("?")
        _, body = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        state.record(RecordedRequest(self.command, path, query, headers,
                                     None if isinstance(body, _BadRequest) else body, arrival))

        key = state.require_key
        if isinstance(key, str) and headers.get("authorization") != f"Bearer {key}":
            self._send_error(path, 401, "Missing or invalid API key.")
            return

        fault = state.take_fault(path)
        if fault is not None and self._apply_fault(path, fault):
            return

        if isinstance(body, _BadRequest):
            self._send_error(path, 400, str(body))
            return
        try:
            payload = self._route(state, path, body if isinstance(body, dict) else {}, fault)
        except _BadRequest as error:
            self._send_error(path, 400, str(error))
            return
        if payload is None:
            self._send_error(path, 404, f"Unknown request URL: {self.command} {path}.")
            return
        self._send(200, payload)

    def _apply_fault(self, path: str, fault: Fault) -> bool:
        """Carry out ``fault``; True when the response is complete, False to answer normally."""
        kind = fault.kind
        if kind == "slow":
            self.server.state.release.wait(fault.delay_s)
            return False
        if kind == "disconnect":
            self._drop()
            return True
        if kind == "malformed":
            self._send_bytes(200, MALFORMED_BODY)
            return True
        if kind in {"429", "500", "503", "400", "401"}:
            status = int(kind)
            headers: dict[str, str] = {}
            if status == 429 and fault.retry_after is not None:
                headers["Retry-After"] = _format_seconds(fault.retry_after)
            if status == 429 and fault.retry_after_ms is not None:
                headers["retry-after-ms"] = _format_seconds(fault.retry_after_ms)
            self._send_error(path, status, fault.message or _DEFAULT_MESSAGES[status], headers)
            return True
        return False  # "empty" and "wrong_dimension" shape the normal answer

    def _route(self, state: ProviderState, path: str, body: JSONDict, fault: Fault | None) -> JSONDict | None:
        empty = fault is not None and fault.kind == "empty"
        wrong_dimension = fault is not None and fault.kind == "wrong_dimension"
        method = self.command
        if method == "POST" and path == "/v1/chat/completions":
            return _chat_completion(state, body, empty=empty)
        if method == "POST" and path == "/v1/embeddings":
            return _openai_embeddings(state, body, empty=empty, wrong_dimension=wrong_dimension)
        if method == "GET" and path == "/v1/models":
            return {"object": "list", "data": [] if empty else [_model(name) for name in state.models]}
        if method == "GET" and path.startswith("/v1/models/"):
            model_id = path.removeprefix("/v1/models/")
            return _model(model_id) if model_id in state.models else None
        if method == "POST" and path == "/v2/rerank":
            return _cohere_rerank(body, empty=empty)
        if method == "POST" and path == "/v2/embed":
            return _cohere_embed(state, body, empty=empty, wrong_dimension=wrong_dimension)
        if method == "POST" and path == "/v1/check-api-key":
            if empty:
                return {"valid": False}
            return {"valid": True, "organization_id": "test-org", "owner_id": "test-owner"}
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: ProviderState) -> None:
        self.state = state
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (its timeout cut a ``slow`` reply) is expected here: stay
        quiet about broken connections, report anything else as usual."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class FakeProvider:
    """The fake OpenAI + Cohere server: ``start()``/``stop()`` or use as a context manager.

    ``openai_url`` is what ``openai.AsyncOpenAI(base_url=...)`` needs (ends in ``/v1``);
    ``cohere_url`` is what ``cohere.AsyncClientV2(base_url=...)`` needs (the root).
    """

    def __init__(self, host: str = "127.0.0.1", state: ProviderState | None = None) -> None:
        self.host = host
        self.state = state if state is not None else ProviderState()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the server listens on port 0, so the OS picks a free one)."""
        if self._server is None:
            raise RuntimeError("FakeProvider is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def cohere_url(self) -> str:
        return self.base_url

    def start(self) -> FakeProvider:
        if self._server is not None:
            return self
        self._server = _Server((self.host, 0), self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake sleeping handlers, stop serving, close the socket and join the serving thread."""
        self.state.release.set()
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)

    def reset(self) -> None:
        """Clear faults, requests, ``always`` and ``release``; restore default settings."""
        self.state.reset()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- pytest fixtures


def provider_server() -> Iterator[FakeProvider]:
    """A started :class:`FakeProvider`, stopped when the generator is closed (fixture body)."""
    with FakeProvider() as server:
        yield server


@pytest.fixture(scope="module")
def fake_provider() -> Iterator[FakeProvider]:
    """One fake provider server per test module."""
    yield from provider_server()


@pytest.fixture
def provider(fake_provider: FakeProvider) -> Iterator[FakeProvider]:
    """The module's server, reset to defaults for this test; slow handlers are woken afterwards."""
    fake_provider.reset()
    yield fake_provider
    fake_provider.state.release.set()
