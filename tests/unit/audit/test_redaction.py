"""Regex redaction of personal data before it is written to the audit log: exact outputs per kind."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from advanced_rag.errors import ConfigError
from compliance.audit.redaction import REDACTION_KINDS, Redaction, redact_payload, redact_text


def test_kinds_are_listed_in_application_order() -> None:
    assert REDACTION_KINDS == ("email", "iban", "card", "us_ssn", "uk_nino", "phone")


POSITIVE = [
    # email
    ("email", "contact jane.doe@example.com today", "contact [REDACTED:email] today"),
    ("email", "From: John.Smith+kyc@mail.example.co.uk,", "From: [REDACTED:email],"),
    ("email", "<ops_team-1@bank-x.de>", "<[REDACTED:email]>"),
    ("email", "write to a.b@c.io.", "write to [REDACTED:email]."),
    # iban
    ("iban", "IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN [REDACTED:iban] please"),
    ("iban", "DE89370400440532013000", "[REDACTED:iban]"),
    ("iban", "pay NL91 ABNA 0417 1643 00.", "pay [REDACTED:iban]."),
    ("iban", "BE68 5390 0754 7034 EUR", "[REDACTED:iban] EUR"),
    ("iban", "FR1420041010050500013M02606", "[REDACTED:iban]"),
    # card
    ("card", "card 4111 1111 1111 1111 exp 12/27", "card [REDACTED:card] exp 12/27"),
    ("card", "4111-1111-1111-1111", "[REDACTED:card]"),
    ("card", "pan=5555555555554444;", "pan=[REDACTED:card];"),
    ("card", "Amex 3782 822463 10005", "Amex [REDACTED:card]"),
    # us_ssn
    ("us_ssn", "SSN 123-45-6789.", "SSN [REDACTED:us_ssn]."),
    ("us_ssn", "ssn:078-05-1120", "ssn:[REDACTED:us_ssn]"),
    ("us_ssn", "(899-99-9999)", "([REDACTED:us_ssn])"),
    # uk_nino
    ("uk_nino", "NINO AB 12 34 56 C on file", "NINO [REDACTED:uk_nino] on file"),
    ("uk_nino", "AB123456C", "[REDACTED:uk_nino]"),
    ("uk_nino", "lower ce123456d", "lower [REDACTED:uk_nino]"),
    ("uk_nino", "JG 103759 A", "[REDACTED:uk_nino]"),
    # phone
    ("phone", "call +44 20 7946 0958 now", "call [REDACTED:phone] now"),
    ("phone", "+1 (555) 123-4567", "[REDACTED:phone]"),
    ("phone", "tel +49-30-1234567", "tel [REDACTED:phone]"),
    ("phone", "+33.1.23.45.67.89", "[REDACTED:phone]"),
    ("phone", "+44 (0)20 7946 0958", "[REDACTED:phone]"),
    ("phone", "+447700900123", "[REDACTED:phone]"),
    ("phone", "office (555) 123-4567", "office [REDACTED:phone]"),
    ("phone", "555-123-4567", "[REDACTED:phone]"),
    ("phone", "555.123.4567", "[REDACTED:phone]"),
    ("phone", "London 020 7946 0958.", "London [REDACTED:phone]."),
    ("phone", "mobile 07700 900123", "mobile [REDACTED:phone]"),
    ("phone", "07700900123", "[REDACTED:phone]"),
    ("phone", "0161 496 0000", "[REDACTED:phone]"),
    ("phone", "Paris 01 23 45 67 89", "Paris [REDACTED:phone]"),
]


@pytest.mark.parametrize(("kind", "text", "expected"), POSITIVE)
def test_masks_each_kind(kind: str, text: str, expected: str) -> None:
    result = redact_text(text)
    assert result.text == expected
    assert dict(result.counts) == {kind: 1}
    assert result.changed is True


NEGATIVE = [
    "GB82 WEST 1234 5698 7654 33",  # IBAN, wrong check digits
    "DE89370400440532013001",  # IBAN, wrong check digits
    "de89370400440532013000",  # lower-case IBANs are not recognised
    "4111 1111 1111 1112",  # Luhn-invalid card
    "1234567890123",  # Luhn-invalid 13 digits
    "ID4111111111111111X",  # digits inside a longer token
    "000-12-3456",  # SSN area 000
    "666-12-3456",  # SSN area 666
    "912-34-5678",  # SSN area 900-999
    "123-00-6789",  # SSN group 00
    "123-45-0000",  # SSN serial 0000
    "QQ123456C",  # NINO first letter Q
    "DA123456A",  # NINO first letter D
    "AO123456A",  # NINO second letter O
    "GB123456A",  # NINO prefix GB
    "ZZ 12 34 56 A",  # NINO prefix ZZ
    "AB123456E",  # NINO suffix outside A-D
    "5551234567",  # bare digits without + or leading 0
    "+1234567",  # too few digits
    "in 2024 we reviewed it",
    "2024-01-15",
    "on 15.01.2024",
    "2024-01-15 10:30:00",
    "05-06-2024 10:30",
    "01-02-2024 1234",
    "USD 1,250,000.00",
    "$12,500",
    "3.14159265",
    "+3.14159265",
    "version 3.2.2",
    "Section 4.2.1",
    "KYC-104",
    "meet at 10:30",
    "host 192.168.100.200",
    "order ABC5551234567",
    "Article 5(1)(e) GDPR",
    "no personal data here",
    "",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_leaves_non_personal_text_alone(text: str) -> None:
    result = redact_text(text)
    assert result.text == text
    assert dict(result.counts) == {}
    assert result.changed is False


def test_counts_every_match_per_kind() -> None:
    text = (
        "a@x.com and b@y.org; SSN 123-45-6789 / 234-56-7890; card 4111 1111 1111 1111; "
        "call 555-123-4567, +44 20 7946 0958 or 07700 900123; NINO AB123456C; "
        "IBAN DE89370400440532013000 for USD 1,250,000.00 under KYC-104 on 2024-01-15"
    )
    result = redact_text(text)
    assert result.text == (
        "[REDACTED:email] and [REDACTED:email]; SSN [REDACTED:us_ssn] / [REDACTED:us_ssn]; "
        "card [REDACTED:card]; call [REDACTED:phone], [REDACTED:phone] or [REDACTED:phone]; "
        "NINO [REDACTED:uk_nino]; IBAN [REDACTED:iban] for USD 1,250,000.00 under KYC-104 on 2024-01-15"
    )
    assert dict(result.counts) == {"email": 2, "iban": 1, "card": 1, "us_ssn": 2, "uk_nino": 1, "phone": 3}
    assert list(result.counts) == ["email", "iban", "card", "us_ssn", "uk_nino", "phone"]


def test_counts_cannot_be_mutated() -> None:
    result = redact_text("a@x.com")
    with pytest.raises(TypeError):
        result.counts["email"] = 5  # type: ignore[index]


@pytest.mark.parametrize(
    ("kinds", "expected", "counts"),
    [
        (["email"], "[REDACTED:email] 123-45-6789 555-123-4567", {"email": 1}),
        (("us_ssn", "phone"), "a@x.com [REDACTED:us_ssn] [REDACTED:phone]", {"us_ssn": 1, "phone": 1}),
        ("phone", "a@x.com 123-45-6789 [REDACTED:phone]", {"phone": 1}),
        ([], "a@x.com 123-45-6789 555-123-4567", {}),
        (None, "[REDACTED:email] [REDACTED:us_ssn] [REDACTED:phone]", {"email": 1, "us_ssn": 1, "phone": 1}),
    ],
)
def test_kinds_restricts_what_is_masked(kinds: Any, expected: str, counts: dict[str, int]) -> None:
    result = redact_text("a@x.com 123-45-6789 555-123-4567", kinds=kinds)
    assert result.text == expected
    assert dict(result.counts) == counts


def test_kinds_order_given_by_caller_does_not_change_precedence() -> None:
    # A Luhn-valid number starting with 0 whose first three groups also look like a phone number.
    text = "0123 4567 8901 2347"
    assert redact_text(text, kinds=["phone"]).text == "[REDACTED:phone] 2347"
    assert redact_text(text, kinds=["phone", "card"]).text == "[REDACTED:card]"


@pytest.mark.parametrize("kinds", [["email", "passport"], ["EMAIL"], "ssn"])
def test_unknown_kind_is_a_config_error(kinds: Any) -> None:
    with pytest.raises(ConfigError, match="unknown redaction kind") as info:
        redact_text("a@x.com", kinds=kinds)
    assert info.value.key == "audit.redact_kinds"
    assert str(info.value).startswith("audit.redact_kinds: unknown redaction kind")


def test_unknown_kind_is_refused_by_redact_payload_even_without_strings() -> None:
    with pytest.raises(ConfigError) as info:
        redact_payload({"n": 1}, kinds=["nope"])
    assert info.value.key == "audit.redact_kinds"


def test_redact_payload_walks_nested_structures() -> None:
    payload: dict[str, Any] = {
        "query": "Why was jane.doe@example.com refused? Call 555-123-4567",
        "jane.doe@example.com": "dict keys are never touched",
        "filters": {"ssn": "123-45-6789", "top_k": 20, "score": 0.5, "ok": True, "none": None},
        "history": ["AB123456C", ("4111 1111 1111 1111", 7), [["b@y.org"]]],
        "error": "KYC-104 failed at 10:30 on 2024-01-15",
    }
    redacted, counts = redact_payload(payload)
    assert redacted == {
        "query": "Why was [REDACTED:email] refused? Call [REDACTED:phone]",
        "jane.doe@example.com": "dict keys are never touched",
        "filters": {"ssn": "[REDACTED:us_ssn]", "top_k": 20, "score": 0.5, "ok": True, "none": None},
        "history": ["[REDACTED:uk_nino]", ["[REDACTED:card]", 7], [["[REDACTED:email]"]]],
        "error": "KYC-104 failed at 10:30 on 2024-01-15",
    }
    assert counts == {"email": 2, "phone": 1, "us_ssn": 1, "uk_nino": 1, "card": 1}
    assert type(redacted["history"][1]) is list
    # The input is not modified.
    assert payload["filters"]["ssn"] == "123-45-6789"
    assert payload["history"][1] == ("4111 1111 1111 1111", 7)


def test_redact_payload_converts_mappings_to_dicts_and_respects_kinds() -> None:
    redacted, counts = redact_payload(MappingProxyType({"q": "a@x.com 555-123-4567"}), kinds=["phone"])
    assert type(redacted) is dict
    assert redacted == {"q": "a@x.com [REDACTED:phone]"}
    assert counts == {"phone": 1}


@pytest.mark.parametrize("value", [None, 3, 2.5, True, b"a@x.com", "plain"])
def test_redact_payload_scalars(value: Any) -> None:
    assert redact_payload(value) == (value, {})


def test_redact_payload_top_level_string() -> None:
    assert redact_payload("SSN 123-45-6789") == ("SSN [REDACTED:us_ssn]", {"us_ssn": 1})


@pytest.mark.parametrize(("kind", "text", "expected"), POSITIVE)
def test_redaction_is_idempotent(kind: str, text: str, expected: str) -> None:
    once = redact_text(text)
    twice = redact_text(once.text)
    assert twice.text == once.text == expected
    assert dict(twice.counts) == {}
    assert twice.changed is False


def test_redaction_value_object() -> None:
    result = Redaction("x", {})
    assert result.changed is False
    assert Redaction("[REDACTED:email]", {"email": 1}).changed is True
    with pytest.raises(AttributeError):
        result.text = "y"  # type: ignore[misc]
