"""Answers from an OpenAI chat model, or any server that speaks the OpenAI chat-completions API.

The ``openai`` package is an optional extra (``pip install 'advanced-rag[openai]'``); this
module imports without it, and :class:`OpenAIChatGenerator` raises
:class:`~advanced_rag.errors.MissingDependencyError` when constructed without it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError
from ..remote.identity import remote_identity
from ..remote.openai_sdk import OpenAIEndpoint, openai_usage
from ..remote.resilience import Resilience
from ..types import Hit, ModelIdentity
from .base import REFUSAL, Citation, Generation

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ["DEFAULT_SYSTEM_PROMPT", "OpenAIChatGenerator", "build_messages", "parse_citations"]

DEFAULT_SYSTEM_PROMPT = (
    "You answer questions for a compliance team using ONLY the numbered context passages in "
    "the user message. Do not use any other knowledge. End every sentence of your answer with "
    "the citation markers of the passages it relies on, for example [1] or [2][3]; never cite "
    "a passage number that is not listed. If the passages do not contain the answer, reply "
    f"with exactly this sentence and nothing else: {REFUSAL}"
)
"""The system message used when ``system_prompt`` is not given."""

_MARKER = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")


def build_messages(question: str, hits: Sequence[Hit], system_prompt: str) -> list[dict[str, str]]:
    """The chat messages for one question: the system prompt, then numbered passages and question.

    Example::

        >>> from advanced_rag.types import Hit, HitScores
        >>> hit = Hit("c1", "kyc-001", 2, "KYC applies to new customers.", {}, "", "internal",
        ...           HitScores())
        >>> build_messages("Who needs KYC?", [hit], "SYSTEM")[1]["content"]
        'Context passages:\\n[1] (kyc-001 v2) KYC applies to new customers.\\n\\nQuestion: Who needs KYC?'
    """
    passages = "\n\n".join(
        f"[{number}] ({hit.doc_id} v{hit.doc_version}) {hit.text}"
        for number, hit in enumerate(hits, start=1)
    )
    user = f"Context passages:\n{passages}\n\nQuestion: {question}"
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


def parse_citations(text: str, hits: Sequence[Hit]) -> tuple[Citation, ...]:
    """Citations for the markers ``[n]`` (also ``[n, m]``) of a reply, in order of first use.

    Numbers outside ``1..len(hits)`` are ignored (they stay in the text but get no citation).

    Example::

        >>> from advanced_rag.types import Hit, HitScores
        >>> hit = Hit("c1", "kyc-001", 2, "text", {}, "", "internal", HitScores())
        >>> parse_citations("Yes [1]. Also [7] and [1, 1].", [hit])
        (Citation(number=1, chunk_id='c1', doc_id='kyc-001', doc_version=2),)
    """
    seen: dict[int, Citation] = {}
    for match in _MARKER.finditer(text):
        for part in match.group(1).split(","):
            number = int(part)
            if 1 <= number <= len(hits) and number not in seen:
                hit = hits[number - 1]
                seen[number] = Citation(number, hit.chunk_id, hit.doc_id, hit.doc_version)
    return tuple(seen.values())


def _is_refusal(text: str) -> bool:
    return REFUSAL in " ".join(text.lower().split())


class OpenAIChatGenerator:
    """Cited answers from a chat-completions model, numbered passages in the prompt.

    The prompt numbers the hits ``[1] (doc_id v{version}) text`` and asks for answers only from
    them, every sentence ending with the markers of the passages it uses, and exactly
    :data:`~advanced_rag.generate.base.REFUSAL` when they do not contain the answer. Markers in
    the reply become :class:`Citation` objects (unknown numbers are ignored);
    ``refused`` is true when the reply contains the refusal sentence. With no hits at all the
    model is not called: the answer is the refusal.

    The API key is read from the environment variable ``api_key_env`` at construction and handed
    to the SDK client only; it is never logged and never appears in ``repr``. A local
    OpenAI-compatible server without authentication (vLLM, llama.cpp, Ollama...) needs no key:
    when ``base_url`` is given and the variable is unset, the placeholder ``"not-needed"`` is
    sent. Without ``base_url`` (the OpenAI API) a missing key is a :class:`ConfigError`.

    The request asks for ``max_tokens`` (not ``max_completion_tokens``), which OpenAI and the
    common local servers all accept. Calls go through the shared
    :class:`~advanced_rag.remote.resilience.Resilience` policy (the SDK's own retries are off):
    timeouts, connection failures, 429 and 5xx are retried with back-off; other 4xx and
    malformed responses (not JSON, no choices, no content) fail at once with a
    :class:`~advanced_rag.errors.ProviderError`. Messages name the base URL and model, never
    the key.

    Example::

        generator = OpenAIChatGenerator("gpt-4o-mini")            # key from $OPENAI_API_KEY
        local = OpenAIChatGenerator("qwen2.5-7b-instruct", base_url="http://127.0.0.1:8000/v1")
        generation = await generator.generate("Who needs enhanced due diligence?", hits)
        generation.text, generation.citations, generation.refused
        await generator.aclose()
    """

    def __init__(self, model: str, *, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", temperature: float = 0.0,
                 max_tokens: int = 512, timeout_s: float = 30.0,
                 system_prompt: str | None = None, resilience: Resilience | None = None) -> None:
        self._endpoint = OpenAIEndpoint(model, base_url=base_url, api_key_env=api_key_env,
                                        timeout_s=timeout_s, setting="generator")
        self._model = model
        self._base_url = base_url
        self._api_key_env = api_key_env
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._timeout_s = timeout_s
        self._system_prompt = system_prompt if system_prompt is not None else DEFAULT_SYSTEM_PROMPT
        self._resilience = resilience or Resilience()

    @property
    def name(self) -> str:
        return "openai-chat"

    @property
    def identity(self) -> ModelIdentity:
        """The hosted model and its endpoint (recorded as ``model_loaded``)."""
        return remote_identity("openai", self.endpoint, self._model)

    @property
    def model(self) -> str:
        return self._model

    @property
    def endpoint(self) -> str:
        """The base URL requests go to (the OpenAI API unless ``base_url`` was given)."""
        return self._endpoint.endpoint

    def __repr__(self) -> str:
        return (f"OpenAIChatGenerator(model={self._model!r}, base_url={self.endpoint!r}, "
                f"api_key_env={self._api_key_env!r}, temperature={self._temperature!r}, "
                f"max_tokens={self._max_tokens!r}, timeout_s={self._timeout_s!r})")

    def _where(self) -> str:
        return self._endpoint.where

    async def generate(self, question: str, hits: Sequence[Hit]) -> Generation:
        started = time.perf_counter()
        if not hits:
            return Generation(REFUSAL, (), self._model, True, None, None,
                              (time.perf_counter() - started) * 1000.0)
        system, user = build_messages(question, hits, self._system_prompt)
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system["content"]},
            {"role": "user", "content": user["content"]},
        ]
        text, model, prompt_tokens, completion_tokens = await self._complete(messages)
        return Generation(
            text=text,
            citations=parse_citations(text, hits),
            model=model,
            refused=_is_refusal(text),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )

    async def _complete(self, messages: list[ChatCompletionMessageParam]
                        ) -> tuple[str, str, int | None, int | None]:
        endpoint = self._endpoint

        async def attempt() -> tuple[tuple[str, str, int | None, int | None], Any]:
            try:
                response = await endpoint.client.chat.completions.create(
                    model=self._model, messages=messages, temperature=self._temperature,
                    max_tokens=self._max_tokens)
            except endpoint.sdk_errors as exc:
                raise endpoint.error(exc, "chat completion") from exc
            return self._read(response), response

        result, _ = await self._resilience.call(endpoint.target, "chat", attempt,
                                                usage=lambda r: openai_usage(r[1]))
        return result

    def _read(self, response: Any) -> tuple[str, str, int | None, int | None]:
        """Reply text, served model name and token usage; ProviderError when malformed."""
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise ProviderError(f"malformed chat completion from {self._where()}: no choices",
                                provider="openai", kind="malformed")
        message = getattr(choices[0], "message", None)
        content = getattr(message, "content", None)
        if not isinstance(content, str) or not content.strip():
            raise ProviderError(f"malformed chat completion from {self._where()}: no message "
                                "content", provider="openai", kind="malformed")
        served = getattr(response, "model", None)
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        return (
            content.strip(),
            served if isinstance(served, str) and served else self._model,
            prompt_tokens if isinstance(prompt_tokens, int) else None,
            completion_tokens if isinstance(completion_tokens, int) else None,
        )

    async def probe(self) -> str:
        """A cheap authenticated call (``GET /models``), for health checks."""
        return await self._endpoint.probe()

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        await self._endpoint.aclose()
