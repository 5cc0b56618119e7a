"""Size and shape limits of what callers hand the pipeline (pure functions).

Every refusal is an :class:`~advanced_rag.errors.InputError` naming the limit and the config
key that sets it, raised before any model, store or provider is called — so a hostile or
broken input costs nothing and is recorded as a failed call, never a crash.
"""

from __future__ import annotations

from typing import Any

from .errors import InputError

__all__ = ["check_text", "check_top_k"]


def check_text(value: Any, *, name: str, max_chars: int, setting: str,
               allow_empty: bool = False) -> str:
    """``value`` if it is a string (non-empty unless ``allow_empty``) of at most
    ``max_chars`` characters that UTF-8 can encode, without NUL.

    Example::

        >>> check_text("KYC?", name="the query", max_chars=10, setting="pipeline.max_query_chars")
        'KYC?'
    """
    if not isinstance(value, str) or not (allow_empty or value.strip()):
        raise InputError(f"{name} must be a {'' if allow_empty else 'non-empty '}string")
    if len(value) > max_chars:
        raise InputError(f"{name} has {len(value):,} characters; the limit is {max_chars:,} "
                         f"({setting})")
    if "\x00" in value:
        raise InputError(f"{name} contains NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{name} is not encodable as UTF-8 (position {exc.start}: a lone "
                         "surrogate)") from None
    return value


def check_top_k(top_k: Any, default: int, maximum: int) -> int:
    """The number of hits to return: ``top_k`` (an int in ``[1, maximum]``) or ``default``."""
    if top_k is None:
        return default
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise InputError(f"top_k must be an integer, got {type(top_k).__name__}")
    if not 1 <= top_k <= maximum:
        raise InputError(f"top_k must be between 1 and {maximum:,} (pipeline.max_top_k), "
                         f"got {top_k}")
    return top_k
