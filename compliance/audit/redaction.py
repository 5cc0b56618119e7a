"""Mask personal data in free text before it reaches the audit log: pure functions, no I/O.

What is masked, in this order (:data:`REDACTION_KINDS`), each match replaced by ``[REDACTED:<kind>]``:

* ``email``    ``local@domain.tld``
* ``iban``     2 letters, 2 digits, 11-30 upper-case alphanumerics (optionally in groups of 4), and
  only when the ISO 7064 mod-97 check passes
* ``card``     13-19 digits, optionally split by single spaces or hyphens, and only when Luhn-valid
* ``us_ssn``   ``123-45-6789`` without the never-issued areas 000, 666, 900-999, group 00, serial 0000
* ``uk_nino``  ``AB 12 34 56 C`` / ``ab123456c`` with the official prefix-letter exclusions
* ``phone``    ``+`` and 8-15 digits (``+44 20 7946 0958``, ``+1 (555) 123-4567``); national forms
  ``(555) 123-4567``, ``555-123-4567``, ``555.123.4567``, ``020 7946 0958``, ``07700 900123``,
  ``01 23 45 67 89``; always at least 9 digits in total

Precision is preferred over recall: years, dates, amounts (``1,250,000.00``), decimals, versions
(``3.2.2``), ids such as ``KYC-104``, times and digits inside longer words are left alone. A bare run
of digits counts as a phone number only when it starts with ``+`` or ``0``, so ``5551234567`` is
kept while ``07700900123`` is masked; conversely an order number starting with 0 and 9-15 digits
long is masked. Lower-case IBANs are not recognised.

Not masked: names, postal addresses, dates of birth, free-text descriptions of a person, or
identifiers of other countries. Regex redaction is a safety net, not anonymisation: text that
passed through it can still identify a person and must be treated as personal data.

Example::

    >>> r = redact_text("Mail jane.doe@example.com or call +44 20 7946 0958 about KYC-104")
    >>> r.text
    'Mail [REDACTED:email] or call [REDACTED:phone] about KYC-104'
    >>> dict(r.counts), r.changed
    ({'email': 1, 'phone': 1}, True)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from advanced_rag.errors import ConfigError

__all__ = ["REDACTION_KINDS", "Redaction", "redact_payload", "redact_text"]

# Not preceded by a word character, nor by a digit followed by a number separator (so no match
# starts inside "2024-01-15", "1,250" or "3.2"); the mirror image after the match.
_LB = r"(?<![\w+])(?<![0-9][-.,:/])"
_LA = r"(?!\w)(?![-.,:/][0-9])"

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}(?![\w-])"
)
_IBAN = re.compile(r"(?<!\w)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?!\w)")
_CARD = re.compile(_LB + r"[0-9](?:[ -]?[0-9]){12,18}" + _LA)
_US_SSN = re.compile(
    r"(?<![\w-])(?!000|666|9[0-9]{2})[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![\w-])"
)
_UK_NINO = re.compile(
    r"(?<!\w)(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?[0-9]{2}( ?)[0-9]{2}\1[0-9]{2} ?[A-D](?!\w)",
    re.IGNORECASE,
)
_PHONE = re.compile(
    _LB + r"(?:"
    r"\+[0-9](?:[ .()-]{0,2}[0-9]){7,14}"  # +44 20 7946 0958, +1 (555) 123-4567
    r"|\([0-9]{2,5}\) ?[0-9]{3,4}[-. ]?[0-9]{3,4}"  # (555) 123-4567, (020) 7946 0958
    r"|[0-9]{3}(?P<sep>[-. ])[0-9]{3}(?P=sep)[0-9]{4}"  # 555-123-4567, 555.123.4567
    r"|0[1-9](?P<fr>[ .-]?)[0-9]{2}(?:(?P=fr)[0-9]{2}){3}"  # 01 23 45 67 89
    r"|0[0-9]{2,4}(?:[ -]?[0-9]{3,6}){1,2}"  # 020 7946 0958, 07700 900123, 07700900123
    r")" + _LA
)
_DECIMAL = re.compile(r"\+?[0-9]+[.,][0-9]+")
_DIGIT = re.compile(r"[0-9]")


def _digits(s: str) -> str:
    return "".join(_DIGIT.findall(s))


def _iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban(match: str) -> str | None:
    # A trailing upper-case word ("... 7034 EUR") may have been swallowed as a last group: retry
    # without the trailing space-separated chunks before giving up.
    candidate = match
    while not _iban_ok(candidate):
        candidate, sep, _ = candidate.rpartition(" ")
        if not sep:
            return None
    return candidate


def _card(match: str) -> str | None:
    digits = _digits(match)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return match if 13 <= len(digits) <= 19 and total % 10 == 0 else None


def _phone(match: str) -> str | None:
    if _DECIMAL.fullmatch(match):
        return None
    return match if 9 <= len(_digits(match)) <= 15 else None


def _whole(match: str) -> str:
    return match


# kind -> (pattern, validator returning the leading part of the match to mask, or None to keep it)
_RULES: dict[str, tuple[re.Pattern[str], Callable[[str], str | None]]] = {
    "email": (_EMAIL, _whole),
    "iban": (_IBAN, _iban),
    "card": (_CARD, _card),
    "us_ssn": (_US_SSN, _whole),
    "uk_nino": (_UK_NINO, _whole),
    "phone": (_PHONE, _phone),
}

REDACTION_KINDS: tuple[str, ...] = tuple(_RULES)


@dataclass(frozen=True, slots=True)
class Redaction:
    """The masked text and how many matches of each kind were masked (only kinds with > 0)."""

    text: str
    counts: Mapping[str, int]

    @property
    def changed(self) -> bool:
        """True when at least one match was masked."""
        return any(self.counts.values())


def _resolve(kinds: Collection[str] | None) -> tuple[str, ...]:
    if kinds is None:
        return REDACTION_KINDS
    wanted = {kinds} if isinstance(kinds, str) else set(kinds)
    unknown = sorted(wanted - set(REDACTION_KINDS))
    if unknown:
        raise ConfigError(
            f"unknown redaction kind {unknown[0]!r}; expected some of {', '.join(REDACTION_KINDS)}",
            key="audit.redact_kinds",
        )
    return tuple(k for k in REDACTION_KINDS if k in wanted)


_CANDIDATE = re.compile(r"[0-9@]")  # every kind needs a digit (or, for e-mail, an @)
_NOTHING: Mapping[str, int] = MappingProxyType({})


def _apply(text: str, kinds: tuple[str, ...]) -> Redaction:
    if _CANDIDATE.search(text) is None:  # most queries: one C scan instead of six patterns
        return Redaction(text, _NOTHING)
    counts: dict[str, int] = {}
    for kind in kinds:
        pattern, validate = _RULES[kind]
        token = f"[REDACTED:{kind}]"
        n = 0

        def repl(m: re.Match[str], validate: Callable[[str], str | None] = validate,
                 token: str = token) -> str:
            nonlocal n
            found = m.group(0)
            span = validate(found)
            if span is None:
                return found
            n += 1
            return token + found[len(span):]

        text = pattern.sub(repl, text)
        if n:
            counts[kind] = n
    return Redaction(text, MappingProxyType(counts))


def redact_text(text: str, *, kinds: Collection[str] | None = None) -> Redaction:
    """Mask the personal data of ``kinds`` (default: all of :data:`REDACTION_KINDS`) in ``text``.

    Raises :class:`~advanced_rag.errors.ConfigError` (key ``audit.redact_kinds``) for an unknown kind.
    """
    return _apply(text, _resolve(kinds))


def redact_payload(value: Any, *, kinds: Collection[str] | None = None) -> tuple[Any, dict[str, int]]:
    """Redact every string value in a JSON-like structure; return a new structure and summed counts.

    Mappings become dicts (keys untouched), lists and tuples become lists, other values are kept.
    """
    resolved = _resolve(kinds)
    totals: dict[str, int] = {}

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            r = _apply(v, resolved)
            for kind, n in r.counts.items():
                totals[kind] = totals.get(kind, 0) + n
            return r.text
        if isinstance(v, Mapping):
            return {k: walk(item) for k, item in v.items()}
        if isinstance(v, list | tuple):
            return [walk(item) for item in v]
        return v

    return walk(value), totals
