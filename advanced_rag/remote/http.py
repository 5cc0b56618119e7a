"""What the provider adapters share: API keys from the environment, status codes to error
kinds, ``Retry-After`` parsing (pure functions), importing an SDK, and the :class:`Endpoint`
base of the OpenAI and Cohere endpoints."""

from __future__ import annotations

import datetime
import email.utils
import importlib
import os
import time
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, MissingDependencyError

__all__ = ["NO_KEY", "Endpoint", "api_key_from_env", "import_sdk", "parse_retry_after", "scrub",
           "status_kind"]

NO_KEY = "not-needed"
"""Sent to a self-hosted server without authentication (the SDKs insist on some key)."""


def api_key_from_env(env: str, *, required: bool, setting: str) -> str:
    """The API key in ``$env``. Missing: :class:`ConfigError` when ``required`` (a hosted
    API), else :data:`NO_KEY` (a self-hosted server given by ``base_url``)."""
    key = os.environ.get(env) or None
    if key is not None:
        return key
    if required:
        raise ConfigError(f"environment variable {env} is not set; the hosted API needs a key "
                          "(set base_url for a self-hosted server without authentication)",
                          key=setting)
    return NO_KEY


def scrub(text: str, key: str | None) -> str:
    """``text`` with the API key masked (a server may echo the Authorization header)."""
    return text.replace(key, "***") if key and key != NO_KEY else text


def status_kind(status: int) -> str:
    """The :class:`~advanced_rag.errors.ProviderError` kind of an HTTP error status."""
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    if status >= 500 or status in (408, 409):
        return "server"
    return "client"


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date);
    ``None`` when absent or unreadable.

    Example::

        >>> parse_retry_after({"Retry-After": "2"})
        2.0
        >>> parse_retry_after({"retry-after-ms": "250"})
        0.25
    """
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = -1.0
        if 0.0 <= value < float("inf"):
            return value
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if parsed.tzinfo is None:  # an HTTP date is GMT
            parsed = parsed.replace(tzinfo=datetime.UTC)
        seconds = parsed.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds == float("inf"):
        return None
    return max(seconds, 0.0)


def import_sdk(package: str) -> Any:
    """The provider SDK module, or :class:`MissingDependencyError` naming the extra."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise MissingDependencyError(package, package) from None


class Endpoint:
    """One provider endpoint and model: the key (read from ``$api_key_env`` and handed only
    to the SDK client; never logged, never in ``repr``, masked in error text), the base URL
    and the resilience :class:`~advanced_rag.remote.resilience.Target`. Without ``base_url``
    (the provider's public API) a missing key is a :class:`ConfigError`; a self-hosted server
    without authentication needs none. Subclasses build the SDK client."""

    provider = ""
    default_url = ""

    def __init__(self, model: str, *, base_url: str | None, api_key_env: str, timeout_s: float,
                 setting: str) -> None:
        from .resilience import Target

        self._key = api_key_from_env(api_key_env, required=base_url is None,
                                     setting=f"{setting}.api_key_env")
        self.model = model
        self.api_key_env = api_key_env
        self.endpoint = base_url or self.default_url
        self.target = Target(self.provider, self.endpoint, model, timeout_s)

    @property
    def where(self) -> str:
        """``model 'm' at https://...``, for error messages."""
        return f"model {self.model!r} at {self.endpoint}"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model!r}, endpoint={self.endpoint!r}, "
                f"api_key_env={self.api_key_env!r})")
