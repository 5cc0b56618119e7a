"""The ``cohere`` SDK behind the Cohere adapters: client construction and error mapping.

Used by :class:`~advanced_rag.rerank.cohere.CohereReranker` and
:class:`~advanced_rag.embed.remote.CohereEmbedder` (Cohere API v2: ``/v2/rerank``,
``/v2/embed``). ``base_url`` may point at a private deployment. The SDK's own retries are
off (``max_retries=0``): :class:`~advanced_rag.remote.resilience.Resilience` retries.
"""

from __future__ import annotations

from typing import Any

from ..errors import ProviderError
from .http import Endpoint, import_sdk, parse_retry_after, scrub, status_kind
from .resilience import usage_numbers

__all__ = ["COHERE_BASE_URL", "CohereEndpoint", "cohere_error", "cohere_usage"]

COHERE_BASE_URL = "https://api.cohere.com"


def _sdk() -> Any:
    return import_sdk("cohere")


class CohereEndpoint(Endpoint):
    """An ``AsyncClientV2`` for one endpoint and model, and its resilience target (see
    :class:`~advanced_rag.remote.http.Endpoint` for how the key, default ``CO_API_KEY``, is
    handled)."""

    provider = "cohere"
    default_url = COHERE_BASE_URL

    def __init__(self, model: str, *, base_url: str | None, api_key_env: str, timeout_s: float,
                 setting: str) -> None:
        cohere = _sdk()
        import httpx
        from cohere.core.api_error import ApiError

        super().__init__(model, base_url=base_url, api_key_env=api_key_env, timeout_s=timeout_s,
                         setting=setting)
        self._http = httpx.AsyncClient(timeout=timeout_s)  # ours, so aclose() can close it
        self.client = cohere.AsyncClientV2(api_key=self._key, base_url=self.endpoint,
                                           timeout=timeout_s, max_retries=0,
                                           httpx_client=self._http)
        self.sdk_errors: tuple[type[BaseException], ...] = (ApiError, httpx.HTTPError, ValueError)
        """What the SDK raises for a failed call (transport errors are httpx's)."""

    def error(self, exc: BaseException, operation: str) -> ProviderError:
        return cohere_error(exc, operation=operation, where=self.where, key=self._key)

    async def probe(self) -> str:
        """A cheap authenticated call (``POST /v1/check-api-key``, no billed units)."""
        # AsyncClientV2.check_api_key refuses client-side (deprecated in the SDK); the raw
        # client still calls the endpoint, which costs no billed units.
        raw: Any = self.client.with_raw_response
        try:
            response = (await raw.check_api_key()).data
        except self.sdk_errors as exc:
            raise self.error(exc, "health check") from exc
        if getattr(response, "valid", None) is False:
            raise ProviderError(f"cohere at {self.endpoint} says the API key in "
                                f"{self.api_key_env} is not valid", provider="cohere",
                                kind="auth")
        return "API key valid"

    async def aclose(self) -> None:
        await self._http.aclose()


def cohere_error(exc: BaseException, *, operation: str, where: str,
                 key: str | None = None) -> ProviderError:
    """A :class:`ProviderError` for an exception raised by the ``cohere`` SDK (or httpx)."""
    import httpx
    from cohere.core.api_error import ApiError

    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(f"cohere {operation} timed out ({where})", provider="cohere",
                             kind="timeout")
    if isinstance(exc, httpx.TransportError):
        return ProviderError(f"cannot reach {where} for {operation}: "
                             f"{type(exc).__name__}: {scrub(str(exc), key)[:200]}",
                             provider="cohere", kind="connection")
    if isinstance(exc, ApiError):
        status = exc.status_code
        if status is None or 200 <= status < 300:  # a 2xx whose body was not JSON
            return ProviderError(f"malformed {operation} response from {where}",
                                 provider="cohere", kind="malformed", status=status)
        body = scrub(str(exc.body), key)[:300]
        return ProviderError(f"cohere {operation} failed with HTTP {status} ({where}): {body}",
                             provider="cohere", kind=status_kind(status), status=status,
                             retry_after_s=parse_retry_after(exc.headers))
    return ProviderError(f"malformed {operation} response from {where}: {type(exc).__name__}: "
                         f"{scrub(str(exc), key)[:200]}", provider="cohere", kind="malformed")


def cohere_usage(response: Any) -> dict[str, float]:
    """The billed units Cohere reports (``search_units`` for rerank, ``input_tokens``...)."""
    meta = getattr(response, "meta", None)
    billed = getattr(meta, "billed_units", None)
    if billed is None:
        return {}
    raw = billed.model_dump() if hasattr(billed, "model_dump") else dict(vars(billed))
    return usage_numbers(raw)
