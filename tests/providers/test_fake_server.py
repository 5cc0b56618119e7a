"""Self-tests of the fake OpenAI/Cohere server, driven by the official ``openai`` and ``cohere`` SDKs.

Why: other tests trust this server to behave like the real APIs on the wire. These tests pin
down that the SDKs parse its answers into their own response objects and that every injected
fault surfaces as the exception each SDK really raises (observed, not assumed), including the
SDKs' own retry handling of ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Sequence
from typing import Any

import cohere
import httpx
import openai
import pytest
from cohere.base_client import AsyncBaseCohere
from cohere.core.api_error import ApiError

from tests.providers.fake_server import (
    DEFAULT_DIMENSION,
    DEFAULT_MODELS,
    MALFORMED_BODY,
    FakeProvider,
    Fault,
    ProviderState,
    jaccard,
    pseudo_embedding,
)

pytestmark = pytest.mark.integration

KEY = "k"
CONTEXT_MESSAGE = (
    "Context passages:\n[1] (kyc-001 v2) KYC applies to new customers. It is reviewed yearly.\n\n"
    "[2] (aml-004 v1) Cash deposits above 10,000 EUR are reported.\n\nQuestion: Who needs KYC?"
)
MESSAGES: list[Any] = [{"role": "system", "content": "Answer from the passages."},
                       {"role": "user", "content": CONTEXT_MESSAGE}]


def cosine(left: Sequence[float], right: Sequence[float]) -> float:
    dot = sum(a * b for a, b in zip(left, right, strict=True))
    return dot / (math.sqrt(sum(a * a for a in left)) * math.sqrt(sum(b * b for b in right)))


@pytest.fixture
async def oai(provider: FakeProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=provider.openai_url, api_key=KEY, max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def co(provider: FakeProvider) -> AsyncIterator[cohere.AsyncClientV2]:
    async with cohere.AsyncClientV2(api_key=KEY, base_url=provider.cohere_url, max_retries=0) as client:
        yield client


async def _chat(client: openai.AsyncOpenAI, **kwargs: Any) -> Any:
    return await client.chat.completions.create(model="fake-chat-model", messages=MESSAGES, **kwargs)


async def _rerank(client: cohere.AsyncClientV2, **kwargs: Any) -> Any:
    return await client.rerank(model="fake-rerank-model", query="who needs kyc",
                               documents=["KYC for new customers", "cash deposits"], **kwargs)


async def _co_embed(client: cohere.AsyncClientV2, texts: list[str], **kwargs: Any) -> Any:
    return await client.embed(model="fake-embed", input_type="search_document", texts=texts,
                              embedding_types=["float"], **kwargs)


# --------------------------------------------------------------------------- OpenAI: normal answers


async def test_chat_text_reply_usage_and_recorded_request(provider: FakeProvider,
                                                          oai: openai.AsyncOpenAI) -> None:
    completion = await _chat(oai, temperature=0.0)

    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.object == "chat.completion" and completion.model == "fake-chat-model"
    [choice] = completion.choices
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert choice.message.content == "KYC applies to new customers [1]."
    prompt_words = sum(len(message["content"].split()) for message in MESSAGES)
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt_words, 6)
    assert completion.usage.total_tokens == prompt_words + 6

    [request] = provider.state.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["x-stainless-retry-count"] == "0"
    assert request.body["messages"] == MESSAGES and request.body["temperature"] == 0.0
    assert request.time <= time.monotonic()


async def test_chat_without_context_and_pluggable_text(provider: FakeProvider,
                                                       oai: openai.AsyncOpenAI) -> None:
    plain = await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hello?"}])
    assert plain.choices[0].message.content == "I cannot answer."

    provider.state.chat_text = lambda body: f"echo {len(body['messages'])}"
    custom = await _chat(oai)
    assert custom.choices[0].message.content == "echo 2"


@pytest.mark.parametrize("response_format", [
    {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"name": "verdict", "strict": True, "schema": {
        "type": "object", "properties": {"supported": {"type": "boolean"}}, "required": ["supported"],
        "additionalProperties": False}}},
])
async def test_chat_json_mode(provider: FakeProvider, oai: openai.AsyncOpenAI,
                              response_format: dict[str, Any]) -> None:
    default = await _chat(oai, response_format=response_format)
    assert json.loads(default.choices[0].message.content or "") == {}

    provider.state.chat_json = lambda body: {"supported": True, "model": body["model"]}
    completion = await _chat(oai, response_format=response_format)
    content = completion.choices[0].message.content or ""
    assert json.loads(content) == {"supported": True, "model": "fake-chat-model"}
    assert completion.usage is not None and completion.usage.completion_tokens == len(content.split())
    assert provider.state.requests[-1].body["response_format"] == response_format


async def test_embeddings_float(provider: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    provider.state.dimension = 32
    texts = ["customer due diligence rules", "due diligence for customers", "volcano eruption dates"]
    response = await oai.embeddings.create(model="fake-embedding-model", input=texts, encoding_format="float")

    assert response.object == "list" and response.model == "fake-embedding-model"
    assert [item.index for item in response.data] == [0, 1, 2]
    vectors = [item.embedding for item in response.data]
    assert all(len(vector) == 32 for vector in vectors)
    assert all(math.isclose(cosine(vector, vector), 1.0) for vector in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert vectors[0] == pseudo_embedding(texts[0], 32)
    words = sum(len(text.split()) for text in texts)
    assert (response.usage.prompt_tokens, response.usage.total_tokens) == (words, words)
    assert provider.state.requests[-1].body["encoding_format"] == "float"


async def test_embeddings_sdk_default_asks_for_base64(provider: FakeProvider,
                                                      oai: openai.AsyncOpenAI) -> None:
    response = await oai.embeddings.create(model="fake-embedding-model", input="due diligence")

    assert provider.state.requests[-1].body["encoding_format"] == "base64"  # the SDK's silent default
    [item] = response.data
    assert len(item.embedding) == DEFAULT_DIMENSION
    expected = pseudo_embedding("due diligence", DEFAULT_DIMENSION)
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(item.embedding, expected, strict=True))


async def test_embeddings_explicit_base64_is_left_encoded(oai: openai.AsyncOpenAI) -> None:
    response = await oai.embeddings.create(model="e", input=["a b"], encoding_format="base64")
    encoded = response.data[0].embedding
    assert isinstance(encoded, str)  # the SDK only decodes when it chose base64 itself
    decoded = struct.unpack(f"<{DEFAULT_DIMENSION}f", base64.b64decode(encoded))
    assert math.isclose(cosine(decoded, pseudo_embedding("a b", DEFAULT_DIMENSION)), 1.0, rel_tol=1e-6)


async def test_embeddings_honour_requested_dimensions(oai: openai.AsyncOpenAI) -> None:
    response = await oai.embeddings.create(model="e", input="a", dimensions=8, encoding_format="float")
    assert len(response.data[0].embedding) == 8


async def test_models_list(provider: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    page = await oai.models.list()
    assert [model.id for model in page.data] == list(DEFAULT_MODELS)
    assert all(model.owned_by == "test" and model.object == "model" for model in page.data)

    provider.state.models = ["only-one"]
    assert [model.id async for model in oai.models.list()] == ["only-one"]
    assert (await oai.models.retrieve("only-one")).id == "only-one"
    with pytest.raises(openai.NotFoundError):
        await oai.models.retrieve("missing")


# --------------------------------------------------------------------------- Cohere: normal answers


async def test_cohere_rerank_sorted_top_n_and_billing(provider: FakeProvider,
                                                      co: cohere.AsyncClientV2) -> None:
    documents = ["cash deposits are reported", "KYC applies to new customers",
                 "new customers need KYC checks"]
    response = await co.rerank(model="fake-rerank-model", query="do new customers need KYC",
                               documents=documents)

    scores = [result.relevance_score for result in response.results]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    assert [result.index for result in response.results] == [2, 1, 0]
    assert scores[0] == pytest.approx(jaccard("do new customers need KYC", documents[2]))
    assert response.meta is not None and response.meta.billed_units is not None
    assert response.meta.billed_units.search_units == 1
    assert response.meta.api_version is not None and response.meta.api_version.version == "2"

    top = await co.rerank(model="fake-rerank-model", query="do new customers need KYC", documents=documents,
                          top_n=1)
    assert [result.index for result in top.results] == [2]
    request = provider.state.requests[-1]
    assert request.path == "/v2/rerank" and request.body["top_n"] == 1
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["x-fern-sdk-name"] == "cohere"


async def test_cohere_embed_float(provider: FakeProvider, co: cohere.AsyncClientV2) -> None:
    provider.state.dimension = 16
    texts = ["customer due diligence", "due diligence customer review", "volcano"]
    response = await _co_embed(co, texts)

    assert response.response_type == "embeddings_by_type"
    vectors = response.embeddings.float_
    assert vectors is not None and [len(vector) for vector in vectors] == [16, 16, 16]
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert response.texts == texts
    assert response.meta is not None and response.meta.billed_units is not None
    assert response.meta.billed_units.input_tokens == 8
    body = provider.state.requests[-1].body
    assert body == {"texts": texts, "model": "fake-embed", "input_type": "search_document",
                    "embedding_types": ["float"]}


async def test_cohere_check_api_key(provider: FakeProvider, co: cohere.AsyncClientV2) -> None:
    with pytest.raises(ValueError, match="deprecated"):  # the v5+ client refuses before any request
        await co.check_api_key()
    assert provider.state.requests == []

    base = AsyncBaseCohere(base_url=provider.cohere_url, token=KEY, max_retries=0)  # the generated client
    response = await base.check_api_key()
    assert (response.valid, response.organization_id, response.owner_id) == (True, "test-org", "test-owner")
    [request] = provider.state.requests
    assert (request.method, request.path, request.body) == ("POST", "/v1/check-api-key", None)


# --------------------------------------------------------------------------- faults, as the SDKs see them


async def test_openai_429_exposes_retry_after(provider: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    provider.state.add_faults(Fault("429", retry_after="0.2", retry_after_ms=200))
    with pytest.raises(openai.RateLimitError) as info:
        await _chat(oai)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "0.2"
    assert info.value.response.headers["retry-after-ms"] == "200"
    assert info.value.code == "rate_limit_exceeded"
    assert provider.state.pending_faults() == []


@pytest.mark.parametrize(("kind", "error"), [
    ("500", openai.InternalServerError),
    ("503", openai.InternalServerError),
    ("400", openai.BadRequestError),
    ("401", openai.AuthenticationError),
    ("disconnect", openai.APIConnectionError),
    ("malformed", json.JSONDecodeError),  # not wrapped in an openai error
])
async def test_openai_fault_errors(provider: FakeProvider, oai: openai.AsyncOpenAI, kind: str,
                                   error: type[Exception]) -> None:
    provider.state.add_faults(kind)
    with pytest.raises(error):
        await _chat(oai)
    with pytest.raises(error):
        provider.state.add_faults(Fault(kind))
        await oai.embeddings.create(model="e", input="a", encoding_format="float")
    assert (await _chat(oai)).choices  # one fault, one request


async def test_openai_slow_times_out(provider: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    provider.state.add_faults(Fault("slow", delay_s=5.0))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await oai.with_options(timeout=0.2).chat.completions.create(model="m", messages=MESSAGES)
    assert time.monotonic() - started < 1.0


async def test_slow_answers_normally_and_release_wakes_it(provider: FakeProvider,
                                                          oai: openai.AsyncOpenAI) -> None:
    provider.state.add_faults(Fault("slow", delay_s=0.3))
    started = time.monotonic()
    assert (await _chat(oai)).choices[0].message.content == "KYC applies to new customers [1]."
    assert time.monotonic() - started >= 0.3

    provider.state.add_faults(Fault("slow", delay_s=30.0))
    asyncio.get_running_loop().call_later(0.1, provider.state.release.set)
    started = time.monotonic()
    await _chat(oai)
    assert time.monotonic() - started < 2.0


async def test_requests_are_served_concurrently(provider: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    provider.state.add_faults(Fault("slow", delay_s=0.4), Fault("slow", delay_s=0.4))
    started = time.monotonic()
    await asyncio.gather(_chat(oai), _chat(oai))
    assert time.monotonic() - started < 0.75


async def test_openai_empty_and_wrong_dimension(provider: FakeProvider, oai: openai.AsyncOpenAI) -> None:
    provider.state.add_faults("empty")
    assert (await _chat(oai)).choices == []

    provider.state.add_faults("empty")
    assert (await oai.embeddings.create(model="e", input="a", encoding_format="float")).data == []
    provider.state.add_faults("empty")
    with pytest.raises(ValueError, match="No embedding data"):  # the SDK's base64 post-parser
        await oai.embeddings.create(model="e", input="a")
    provider.state.add_faults("empty")
    assert (await oai.models.list()).data == []

    provider.state.add_faults("wrong_dimension", "wrong_dimension")
    default = await oai.embeddings.create(model="e", input=["a", "b"])
    assert {len(item.embedding) for item in default.data} == {DEFAULT_DIMENSION + 1}
    floats = await oai.embeddings.create(model="e", input="a", encoding_format="float")
    assert len(floats.data[0].embedding) == DEFAULT_DIMENSION + 1


async def test_cohere_429_headers_and_status(provider: FakeProvider, co: cohere.AsyncClientV2) -> None:
    provider.state.add_faults(Fault("429", retry_after="0.2"))
    with pytest.raises(cohere.TooManyRequestsError) as info:
        await _rerank(co)
    assert info.value.status_code == 429
    assert info.value.headers is not None and info.value.headers["retry-after"] == "0.2"
    assert info.value.body == {"message": "Rate limit reached (injected fault)."}


@pytest.mark.parametrize(("kind", "error"), [
    ("500", cohere.InternalServerError),
    ("503", cohere.ServiceUnavailableError),
    ("400", cohere.BadRequestError),
    ("401", cohere.UnauthorizedError),
    ("disconnect", httpx.RemoteProtocolError),  # raw httpx error, not retried by default
])
async def test_cohere_fault_errors(provider: FakeProvider, co: cohere.AsyncClientV2, kind: str,
                                   error: type[Exception]) -> None:
    provider.state.add_faults(Fault(kind, path="/v2/rerank"), Fault(kind, path="/v2/embed"))
    with pytest.raises(error):
        await _rerank(co)
    with pytest.raises(error):
        await _co_embed(co, ["a"])
    assert (await _rerank(co)).results


async def test_cohere_malformed_is_api_error(co: cohere.AsyncClientV2, provider: FakeProvider) -> None:
    provider.state.add_faults("malformed")
    with pytest.raises(ApiError) as info:
        await _rerank(co)
    assert type(info.value) is ApiError
    assert info.value.status_code == 200 and info.value.body == MALFORMED_BODY.decode()


async def test_cohere_slow_times_out(provider: FakeProvider, co: cohere.AsyncClientV2) -> None:
    provider.state.add_faults(Fault("slow", delay_s=5.0))
    with pytest.raises(httpx.ReadTimeout):  # cohere does not wrap httpx timeouts
        await _rerank(co, request_options={"timeout_in_seconds": 0.2})


async def test_cohere_empty_and_wrong_dimension(provider: FakeProvider, co: cohere.AsyncClientV2) -> None:
    provider.state.add_faults("empty", "empty")
    assert (await _rerank(co)).results == []
    empty = await _co_embed(co, ["a"])
    assert empty.embeddings.float_ == [] and empty.texts == []

    provider.state.add_faults("wrong_dimension")
    wrong = await _co_embed(co, ["a", "b"])
    assert wrong.embeddings.float_ is not None
    assert {len(vector) for vector in wrong.embeddings.float_} == {DEFAULT_DIMENSION + 1}


# --------------------------------------------------------------------------- fault routing, auth, retries


async def test_path_keyed_faults_are_fifo_and_skip_other_paths(
        provider: FakeProvider, oai: openai.AsyncOpenAI, co: cohere.AsyncClientV2) -> None:
    provider.state.add_faults(Fault("500", path="/v2/rerank"), Fault("400", path="/v2/rerank"))
    assert (await _chat(oai)).choices  # not keyed to chat: untouched
    assert len(provider.state.pending_faults()) == 2
    with pytest.raises(cohere.InternalServerError):
        await _rerank(co)
    with pytest.raises(cohere.BadRequestError):
        await _rerank(co)
    assert (await _rerank(co)).results


async def test_always_fails_until_cleared(provider: FakeProvider, oai: openai.AsyncOpenAI,
                                          co: cohere.AsyncClientV2) -> None:
    provider.state.always = "503"
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            await _chat(oai)
    with pytest.raises(cohere.ServiceUnavailableError):
        await _rerank(co)

    provider.state.always = Fault("500", path="/v1/embeddings")
    assert (await _chat(oai)).choices
    with pytest.raises(openai.InternalServerError):
        await oai.embeddings.create(model="e", input="a")
    provider.state.always = None
    assert (await oai.embeddings.create(model="e", input="a")).data


async def test_require_key(provider: FakeProvider, oai: openai.AsyncOpenAI, co: cohere.AsyncClientV2) -> None:
    provider.state.require_key = "secret"
    with pytest.raises(openai.AuthenticationError) as oai_info:
        await _chat(oai)
    assert oai_info.value.body == {"message": "Missing or invalid API key.", "type": "invalid_request_error",
                                   "param": None, "code": "invalid_api_key"}
    with pytest.raises(cohere.UnauthorizedError) as co_info:
        await _rerank(co)
    assert co_info.value.body == {"message": "Missing or invalid API key."}

    good = openai.AsyncOpenAI(base_url=provider.openai_url, api_key="secret", max_retries=0)
    try:
        assert (await _chat(good)).choices
    finally:
        await good.close()
    async with cohere.AsyncClientV2(api_key="secret", base_url=provider.cohere_url, max_retries=0) as good_co:
        assert (await _rerank(good_co)).results


async def test_openai_sdk_retry_honours_fractional_retry_after(provider: FakeProvider) -> None:
    provider.state.add_faults(Fault("429", retry_after="0.2"))
    client = openai.AsyncOpenAI(base_url=provider.openai_url, api_key=KEY, max_retries=1)
    try:
        assert (await _chat(client)).choices
    finally:
        await client.close()
    first, second = provider.state.requests
    assert [first.headers["x-stainless-retry-count"], second.headers["x-stainless-retry-count"]] == ["0", "1"]
    assert 0.2 <= second.time - first.time < 0.6


async def test_cohere_sdk_retry_reads_ms_but_not_fractional_seconds(provider: FakeProvider) -> None:
    async with cohere.AsyncClientV2(api_key=KEY, base_url=provider.cohere_url, max_retries=1) as client:
        provider.state.add_faults(Fault("429", retry_after=None, retry_after_ms=200))
        assert (await _rerank(client)).results
        first, second = provider.state.requests
        assert 0.2 <= second.time - first.time < 0.6  # retry-after-ms is honoured

        provider.state.requests.clear()
        provider.state.add_faults(Fault("429", retry_after="0.2"))
        assert (await _rerank(client)).results
        first, second = provider.state.requests
        assert second.time - first.time >= 0.8  # "0.2" is not an integer: ~1 s exponential backoff
    assert "x-stainless-retry-count" not in first.headers


# --------------------------------------------------------------------------- plumbing and stand-ins


def test_unknown_path_and_bad_json_are_provider_errors(provider: FakeProvider) -> None:
    def status_and_body(url: str, data: bytes | None) -> tuple[int, Any]:
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    assert status_and_body(f"{provider.openai_url}/nope", b"{}") == (404, {"error": {
        "message": "Unknown request URL: POST /v1/nope.", "type": "invalid_request_error", "param": None,
        "code": None}})
    assert status_and_body(f"{provider.cohere_url}/v2/nope", b"{}") == (
        404, {"message": "Unknown request URL: POST /v2/nope."})
    status, body = status_and_body(f"{provider.cohere_url}/v2/rerank", b"{not json")
    assert status == 400 and "not valid JSON" in body["message"]
    assert [request.path for request in provider.state.requests] == ["/v1/nope", "/v2/nope", "/v2/rerank"]


def test_reset_restores_defaults(provider: FakeProvider) -> None:
    state = provider.state
    old_release = state.release
    state.dimension, state.models, state.require_key, state.always = 3, [], "x", "500"
    state.chat_text = lambda body: "x"
    state.add_faults("400")
    provider.reset()
    assert old_release.is_set() and not state.release.is_set()
    fresh = ProviderState()
    assert (state.dimension, state.models, state.require_key, state.always) == (
        fresh.dimension, fresh.models, fresh.require_key, fresh.always)
    assert state.chat_text is fresh.chat_text and state.faults == [] and state.requests == []


def test_fault_kind_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("502")


def test_stand_ins_are_deterministic() -> None:
    vector = pseudo_embedding("Due diligence", 64)
    assert vector == pseudo_embedding("due   DILIGENCE", 64)
    assert math.isclose(math.sqrt(sum(value * value for value in vector)), 1.0)
    assert math.isclose(math.sqrt(sum(value * value for value in pseudo_embedding("", 64))), 1.0)
    assert jaccard("a b", "b c") == pytest.approx(1 / 3)
    assert jaccard("", "b") == 0.0


def test_context_manager_frees_the_port() -> None:
    with FakeProvider() as server:
        url = server.openai_url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    with pytest.raises(RuntimeError):
        _ = server.port
