"""Tests for the answer → claims splitter (advanced_rag.scoring.claims)."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advanced_rag.scoring.base import Claim
from advanced_rag.scoring.claims import split_claims, split_sentences

_FRAGMENTS = [
    "The",
    "fee",
    "is",
    "Dr.",
    "e.g.",
    "U.S.",
    "J.",
    "No.",
    "3.5",
    "1,250.00",
    "4.2.1",
    "approved",
    "signed",
    "applies",
    "and",
    "but",
    "while",
    "KYC",
    "Yes",
    ".",
    "!",
    "?",
    "?!",
    "...",
    "…",
    ",",
    ";",
    ":",
    "[1]",
    "[2][3]",
    "[1, 3]",
    "[12]",
    "[",
    "]",
    "(",
    ")",
    '"',
    "“",
    "”",
    "'",
    "’",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\n- ",
    "\n* ",
    "\n• ",
    "\n1. ",
    "\n2) ",
    "\t",
    "\r\n",
    "\u00a0",
    "\u2028",
    "\x1c",
]
_texts = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.sampled_from(list(" \n\t.!?,;:[]()\"'-*•1a")), max_size=80),
    st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map(lambda parts: " ".join(parts)),
    st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map(lambda parts: "".join(parts)),
)


def _texts_of(answer: str, **kwargs: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(c.text, c.citations) for c in split_claims(answer, **kwargs)]


def _sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(_texts)
def test_sentence_spans_are_ordered_trimmed_and_cover_all_non_whitespace(text: str) -> None:
    spans = split_sentences(text)
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end <= len(text)
        assert text[start:end] == text[start:end].strip()
        previous_end = end
    covered = set().union(*(range(a, b) for a, b in spans)) if spans else set()
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


@settings(max_examples=400, deadline=None)
@given(_texts, st.integers(min_value=0, max_value=5))
def test_claims_have_valid_ordered_offsets_and_words_from_their_span(text: str, min_words: int) -> None:
    claims = split_claims(text, min_words=min_words)
    if not text.strip():
        assert claims == []
    else:
        assert claims, "non-blank answers always give at least one claim"
    previous_end = 0
    for i, claim in enumerate(claims):
        assert isinstance(claim, Claim) and claim.index == i
        assert previous_end <= claim.start < claim.end <= len(text)
        span = text[claim.start : claim.end]
        assert all(word in span for word in re.findall(r"\w+", claim.text))
        assert claim.text == claim.text.strip() and "  " not in claim.text
        assert len(set(claim.citations)) == len(claim.citations)
        previous_end = claim.end


@settings(max_examples=200, deadline=None)
@given(_texts)
def test_splitting_is_deterministic(text: str) -> None:
    assert split_sentences(text) == split_sentences(text)
    assert split_claims(text) == split_claims(text)


# --- sentences ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Section 4.2.1 applies. See Art. 5 GDPR.", ["Section 4.2.1 applies.", "See Art. 5 GDPR."]),
        (
            "The rate is 3.5 percent. The total is 1,250.00 EUR.",
            ["The rate is 3.5 percent.", "The total is 1,250.00 EUR."],
        ),
        (
            "Dr. Smith and Mrs. Jones met J. Smith, e.g. on Monday.",
            ["Dr. Smith and Mrs. Jones met J. Smith, e.g. on Monday."],
        ),
        (
            "See No. 5 and Fig. 2 vs. Sec. 3, approx. ten pages.",
            ["See No. 5 and Fig. 2 vs. Sec. 3, approx. ten pages."],
        ),
        (
            "Acme Inc. is based in the U.S. It has 3 branches.",
            ["Acme Inc. is based in the U.S.", "It has 3 branches."],
        ),
        ("He waited... Then he left.", ["He waited...", "Then he left."]),
        ("He waited… and then left.", ["He waited… and then left."]),
        ("Is it due? Yes! It is.", ["Is it due?", "Yes!", "It is."]),
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ("It is due (see annex.) Then pay.", ["It is due (see annex.)", "Then pay."]),
        (
            "Payment is due in 30 days. [2] Next comes review.",
            ["Payment is due in 30 days. [2]", "Next comes review."],
        ),
        ("Payment is due in 30 days.[2][3] Next.", ["Payment is due in 30 days.[2][3]", "Next."]),
        ("line one\ncontinues here.", ["line one\ncontinues here."]),
        ("First paragraph\n\nSecond paragraph", ["First paragraph", "Second paragraph"]),
        (
            "Steps:\n1. Open the account.\n2) Sign it\n- check\n* done\n• filed",
            ["Steps:", "1. Open the account.", "2) Sign it", "- check", "* done", "• filed"],
        ),
        ("  \n ", []),
    ],
)
def test_sentence_examples(text: str, expected: list[str]) -> None:
    assert _sentences(text) == expected


# --- claims -------------------------------------------------------------------------------------


def test_citation_is_stripped_from_text_and_recorded() -> None:
    answer = "The fee is 2.5% of the amount. It applies from 1 Jan 2025 [1]."
    claims = split_claims(answer)
    assert [(c.index, c.text, c.citations) for c in claims] == [
        (0, "The fee is 2.5% of the amount.", ()),
        (1, "It applies from 1 Jan 2025.", (1,)),
    ]
    assert answer[claims[1].start : claims[1].end] == "It applies from 1 Jan 2025 [1]."


def test_comma_and_between_two_clauses_splits() -> None:
    answer = "Dr. Smith approved the file on 3.4.2024, and the committee signed it the next day [2][3]."
    claims = split_claims(answer)
    assert _texts_of(answer) == [
        ("Dr. Smith approved the file on 3.4.2024", ()),
        ("the committee signed it the next day.", (2, 3)),
    ]
    assert answer[claims[1].start : claims[1].end] == "the committee signed it the next day [2][3]."


@pytest.mark.parametrize(
    "answer",
    [
        "Customers need KYC, AML and sanctions checks.",
        "Customers need KYC, AML, and enhanced sanctions screening checks.",
        "The loan was reviewed and approved by the branch.",
        "The fee (which is low; see annex) applies to all loans.",
        'The clause reads "payments are due; interest accrues daily" in full.',
        "The fee is waived for students, but not for other customers.",
    ],
)
def test_noun_lists_and_nested_separators_are_not_split(answer: str) -> None:
    assert _texts_of(answer) == [(answer, ())]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            "Loans above 250,000 euros go to the credit committee; smaller loans are approved by the branch.",
            [
                "Loans above 250,000 euros go to the credit committee",
                "smaller loans are approved by the branch.",
            ],
        ),
        (
            "The bank verifies the identity and the branch approves the loan.",
            ["The bank verifies the identity", "the branch approves the loan."],
        ),
        (
            "The fee is waived for students, but other customers must pay it.",
            ["The fee is waived for students", "other customers must pay it."],
        ),
        (
            "Retail clients get a cooling-off period, whereas professional clients waive it.",
            ["Retail clients get a cooling-off period", "professional clients waive it."],
        ),
        (
            "Interest accrues daily; and the bank charges it monthly [1]; fees apply [2].",
            ["Interest accrues daily", "the bank charges it monthly; fees apply."],
        ),
        ("- item one is required\n- item two is optional", ["item one is required", "item two is optional"]),
        (
            "1. Open the account first.\n2) Then sign the contract.",
            ["Open the account first.", "Then sign the contract."],
        ),
    ],
)
def test_clause_examples(answer: str, expected: list[str]) -> None:
    assert [text for text, _ in _texts_of(answer)] == expected


def test_semicolon_splits_keep_citations_with_their_clause() -> None:
    answer = "Interest accrues daily [1]; the bank charges it monthly [2, 3]."
    assert _texts_of(answer) == [("Interest accrues daily", (1,)), ("the bank charges it monthly.", (2, 3))]


def test_duplicate_citations_are_recorded_once_in_order() -> None:
    assert _texts_of("The fee is 2% [3][1] of the amount [3].") == [("The fee is 2% of the amount.", (3, 1))]


def test_single_short_answer_is_kept_and_blank_answer_gives_nothing() -> None:
    assert _texts_of("Paris.") == [("Paris.", ())]
    assert split_claims("") == []
    assert split_claims(" \n\t ") == []


def test_leading_short_sentence_is_kept_and_later_ones_are_merged_back() -> None:
    answer = "Yes. The limit is 10,000 EUR [4]."
    assert _texts_of(answer) == [("Yes.", ()), ("The limit is 10,000 EUR.", (4,))]
    merged = split_claims("The limit is 10,000 EUR [4]. Yes, indeed.")
    assert [(c.text, c.citations, c.start, c.end) for c in merged] == [
        ("The limit is 10,000 EUR. Yes, indeed.", (4,), 0, 41)
    ]


def test_wordless_leading_piece_joins_the_next_claim() -> None:
    answer = "[1]\n\nThe limit is 10,000 EUR."
    assert [(c.text, c.citations, c.start) for c in split_claims(answer)] == [
        ("The limit is 10,000 EUR.", (1,), 0)
    ]
    assert _texts_of("[1]") == [("", (1,))]


def test_min_words_controls_merging_and_splitting() -> None:
    answer = "Fees apply. Yes. Interest accrues; rates vary."
    assert _texts_of(answer, min_words=1) == [
        ("Fees apply.", ()),
        ("Yes.", ()),
        ("Interest accrues", ()),
        ("rates vary.", ()),
    ]
    assert _texts_of(answer, min_words=3) == [("Fees apply. Yes.", ()), ("Interest accrues; rates vary.", ())]
    with pytest.raises(ValueError):
        split_claims(answer, min_words=-1)


def test_splitting_a_five_sentence_answer_is_fast() -> None:
    answer = (
        "The fee is 2.5% of the amount [1]. Dr. Smith approved the file on 3.4.2024, and the committee "
        "signed it the next day [2][3]. Customers need KYC, AML and sanctions checks. Loans above 250,000 "
        "euros go to the credit committee; smaller loans are approved by the branch. See Art. 5 GDPR [4]."
    )
    split_claims(answer)
    runs = 200
    started = time.perf_counter()
    for _ in range(runs):
        split_claims(answer)
    assert (time.perf_counter() - started) / runs < 1e-3
