"""The ``openai`` SDK behind the OpenAI adapters: client construction and error mapping.

Used by :class:`~advanced_rag.generate.openai_chat.OpenAIChatGenerator`,
:class:`~advanced_rag.embed.remote.OpenAIEmbedder` and
:class:`~advanced_rag.scoring.openai_judge.OpenAIJudge`. ``base_url`` points at the OpenAI
API (default), Azure OpenAI (``https://<resource>.openai.azure.com/openai/v1/``) or any
OpenAI-compatible server (vLLM, llama.cpp, Ollama...). The SDK's own retries are off
(``max_retries=0``): :class:`~advanced_rag.remote.resilience.Resilience` retries.
"""

from __future__ import annotations

from typing import Any

from ..errors import ProviderError
from .http import Endpoint, import_sdk, parse_retry_after, scrub, status_kind
from .resilience import usage_numbers

__all__ = ["OPENAI_BASE_URL", "OpenAIEndpoint", "openai_error", "openai_usage"]

OPENAI_BASE_URL = "https://api.openai.com/v1"


def _sdk() -> Any:
    return import_sdk("openai")


class OpenAIEndpoint(Endpoint):
    """An ``AsyncOpenAI`` client for one endpoint and model, and its resilience target (see
    :class:`~advanced_rag.remote.http.Endpoint` for how the key is handled)."""

    provider = "openai"
    default_url = OPENAI_BASE_URL

    def __init__(self, model: str, *, base_url: str | None, api_key_env: str, timeout_s: float,
                 setting: str) -> None:
        openai = _sdk()
        super().__init__(model, base_url=base_url, api_key_env=api_key_env, timeout_s=timeout_s,
                         setting=setting)
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=self._key, timeout=timeout_s,
                                         max_retries=0)
        self.sdk_errors: tuple[type[BaseException], ...] = (openai.OpenAIError, ValueError)
        """What the SDK raises for a failed call (a body that is not JSON: ValueError)."""

    def error(self, exc: BaseException, operation: str) -> ProviderError:
        return openai_error(exc, operation=operation, where=self.where, key=self._key)

    async def probe(self) -> str:
        """A cheap authenticated call (``GET /models``): the number of models listed."""
        try:
            page = await self.client.models.list()
        except self.sdk_errors as exc:
            raise self.error(exc, "health check") from exc
        return f"{len(getattr(page, 'data', []) or [])} models listed"

    async def aclose(self) -> None:
        await self.client.close()


def openai_error(exc: BaseException, *, operation: str, where: str,
                 key: str | None = None) -> ProviderError:
    """A :class:`ProviderError` for an exception raised by the ``openai`` SDK."""
    openai = _sdk()
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(f"openai {operation} timed out ({where})", provider="openai",
                             kind="timeout")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(f"cannot reach {where} for {operation}: {scrub(str(exc), key)}",
                             provider="openai", kind="connection")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        headers = getattr(getattr(exc, "response", None), "headers", None)
        return ProviderError(f"openai {operation} failed with HTTP {status} ({where}): "
                             f"{scrub(str(exc), key)[:500]}", provider="openai",
                             kind=status_kind(status), status=status,
                             retry_after_s=parse_retry_after(headers))
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return ProviderError(f"malformed {operation} response from {where}: "
                             f"{scrub(str(exc), key)[:200]}", provider="openai", kind="malformed")
    return ProviderError(f"openai {operation} failed ({where}): {type(exc).__name__}: "
                         f"{scrub(str(exc), key)[:500]}", provider="openai", kind="malformed")


def openai_usage(response: Any) -> dict[str, float]:
    """Token usage (and ``cost``, when an OpenAI-compatible gateway reports one)."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return {}
    raw = usage.model_dump() if hasattr(usage, "model_dump") else dict(vars(usage))
    return usage_numbers(raw)
