"""ExtractiveGenerator with the real packaged MiniLM embedder (session fixture ``embedder``)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import pytest

from advanced_rag.embed.sentence_transformers import SentenceTransformerEmbedder
from advanced_rag.errors import ConfigError
from advanced_rag.generate import REFUSAL, Citation, ExtractiveGenerator, Generator
from advanced_rag.generate.extractive import content_words
from advanced_rag.scoring.claims import split_claims
from advanced_rag.types import Hit, HitScores, ModelIdentity

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_MARKER = re.compile(r" \[\d+\]")


def _hit(rank: int, doc: str, version: int, text: str) -> Hit:
    return Hit(chunk_id=f"{doc}:v{version}:{rank}", doc_id=doc, doc_version=version, text=text,
               metadata={}, source="handbook", classification="internal",
               scores=HitScores(fused=1.0 / rank))


LOAN_HITS = [
    _hit(1, "loans-001", 3,
         "Personal loans are capped at 50,000 EUR per customer. Interest rates on mortgages are "
         "fixed for ten years. The office is closed on public holidays."),
    _hit(2, "loans-002", 1,
         "Loan applications require two recent payslips. Applicants must be at least 18 years old."),
    _hit(3, "kyc-001", 2,
         "Customers with a risk score above 0.7 need enhanced due diligence. Enhanced due diligence "
         "includes verifying the source of funds. The KYC team reviews accounts every year."),
]


@pytest.fixture(scope="module")
def generator(embedder: SentenceTransformerEmbedder) -> ExtractiveGenerator:
    return ExtractiveGenerator(embedder)


def _sentences(text: str) -> list[tuple[str, int]]:
    """(sentence, marker number) pairs of an extractive answer."""
    return [(m.group(1), int(m.group(2))) for m in re.finditer(r"(.+?) \[(\d+)\](?: |$)", text)]


async def test_is_a_generator(generator: ExtractiveGenerator) -> None:
    assert isinstance(generator, Generator)
    assert generator.name == "extractive"


async def test_deterministic(generator: ExtractiveGenerator) -> None:
    question = "What documents does a loan application need?"
    first = await generator.generate(question, LOAN_HITS)
    second = await generator.generate(question, LOAN_HITS)
    assert (first.text, first.citations, first.refused, first.model) == \
           (second.text, second.citations, second.refused, second.model)


async def test_answer_is_verbatim_and_cited(generator: ExtractiveGenerator) -> None:
    generation = await generator.generate("What are the rules for loans and due diligence?", LOAN_HITS)
    assert not generation.refused
    assert generation.model == "extractive:all-MiniLM-L6-v2"
    assert generation.prompt_tokens is None and generation.completion_tokens is None
    assert generation.latency_ms > 0
    pairs = _sentences(generation.text)
    assert pairs and " ".join(f"{s} [{n}]" for s, n in pairs) == generation.text
    by_number = {c.number: c for c in generation.citations}
    # numbers are 1..k in order of first use, each citation once
    first_use = list(dict.fromkeys(n for _, n in pairs))
    assert first_use == list(range(1, len(first_use) + 1))
    assert [c.number for c in generation.citations] == first_use
    for sentence, number in pairs:
        hit = next(h for h in LOAN_HITS if h.chunk_id == by_number[number].chunk_id)
        assert sentence in hit.text  # verbatim from the cited hit
        assert by_number[number] == Citation(number, hit.chunk_id, hit.doc_id, hit.doc_version)
    # nothing but hit text and markers
    assert all(s in " ".join(h.text for h in LOAN_HITS) for s in _MARKER.split(generation.text) if s)


async def test_hit_order_and_numbering(generator: ExtractiveGenerator) -> None:
    question = "Which customers need enhanced due diligence, and what does a loan application require?"
    generation = await generator.generate(question, LOAN_HITS)
    # best-scored is the kyc-001 sentence, but the answer follows hit rank: loans-002 comes first
    assert generation.text == (
        "Loan applications require two recent payslips. [1] "
        "Customers with a risk score above 0.7 need enhanced due diligence. [2] "
        "Enhanced due diligence includes verifying the source of funds. [2]"
    )
    assert generation.citations == (
        Citation(1, "loans-002:v1:2", "loans-002", 1),
        Citation(2, "kyc-001:v2:3", "kyc-001", 2),
    )


class _ConstantEmbedder:
    """Every text maps to the same unit vector, so every sentence ties on cosine."""

    def __init__(self) -> None:
        self.document_calls = 0

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity("constant", "0" * 64, 4)

    @property
    def dimension(self) -> int:
        return 4

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.document_calls += 1
        return np.tile(np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32), (len(texts), 1))

    async def embed_query(self, text: str) -> np.ndarray:
        return np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)


async def test_ties_break_by_hit_rank_then_position_with_one_encode_call() -> None:
    stub = _ConstantEmbedder()
    generator = ExtractiveGenerator(stub, max_sentences=2)
    hits = [
        _hit(1, "a", 1, "Loans need payslips first. Payslips need loans second. Loans payslips third."),
        _hit(2, "b", 1, "Payslips and loans fourth."),
    ]
    generation = await generator.generate("loans payslips", hits)
    assert generation.text == "Loans need payslips first. [1] Payslips need loans second. [1]"
    assert generation.model == "extractive:constant"
    assert stub.document_calls == 1
    generator = ExtractiveGenerator(stub, max_sentences=4)
    generation = await generator.generate("loans payslips", hits)
    assert generation.text.endswith("Loans payslips third. [1] Payslips and loans fourth. [2]")
    assert [c.doc_id for c in generation.citations] == ["a", "b"]
    assert stub.document_calls == 2


async def test_picks_most_relevant_sentence(embedder: SentenceTransformerEmbedder) -> None:
    generator = ExtractiveGenerator(embedder, max_sentences=1)
    generation = await generator.generate("What is the maximum amount of a personal loan?", LOAN_HITS)
    assert generation.text == "Personal loans are capped at 50,000 EUR per customer. [1]"
    assert generation.citations == (Citation(1, "loans-001:v3:1", "loans-001", 3),)

    generation = await generator.generate("What documents does a loan application need?", LOAN_HITS)
    assert generation.text == "Loan applications require two recent payslips. [1]"
    assert generation.citations == (Citation(1, "loans-002:v1:2", "loans-002", 1),)


async def test_max_sentences_respected(embedder: SentenceTransformerEmbedder) -> None:
    question = "loans customers due diligence payslips mortgages accounts"
    for limit in (1, 2, 4):
        generator = ExtractiveGenerator(embedder, max_sentences=limit, min_similarity=-1.0)
        generation = await generator.generate(question, LOAN_HITS)
        assert len(_sentences(generation.text)) == limit


async def test_refuses_unrelated_question(generator: ExtractiveGenerator) -> None:
    generation = await generator.generate("When did the volcano Vesuvius erupt?", LOAN_HITS[:2])
    assert generation.refused is True
    assert generation.text == REFUSAL
    assert generation.citations == ()


async def test_refuses_without_hits(generator: ExtractiveGenerator) -> None:
    generation = await generator.generate("What is the maximum personal loan?", [])
    assert (generation.text, generation.citations, generation.refused) == (REFUSAL, (), True)


async def test_duplicate_sentence_in_overlapping_chunks_is_cited_once(
        generator: ExtractiveGenerator) -> None:
    overlap = [
        _hit(1, "loans-001", 3, "Personal loans are capped at 50,000 EUR per customer."),
        _hit(2, "loans-001", 3, "Personal loans are capped at 50,000 EUR per customer. "
                                "Loan applications require two recent payslips."),
    ]
    generation = await generator.generate("What is the maximum amount of a personal loan?", overlap)
    assert generation.text.count("Personal loans are capped") == 1
    assert generation.text.startswith("Personal loans are capped at 50,000 EUR per customer. [1]")


async def test_answer_splits_into_claims_with_their_citations(generator: ExtractiveGenerator) -> None:
    generation = await generator.generate("What are the rules for loans and due diligence?", LOAN_HITS)
    claims = split_claims(generation.text)
    assert all(c.citations for c in claims)
    assert {n for c in claims for n in c.citations} == {c.number for c in generation.citations}


def test_content_words() -> None:
    assert content_words("What are the loan limits for new Customers?") == \
        frozenset({"loan", "limit", "new", "customer"})
    assert content_words("") == frozenset()


def test_rejects_bad_settings(embedder: SentenceTransformerEmbedder) -> None:
    with pytest.raises(ConfigError, match="max_sentences"):
        ExtractiveGenerator(embedder, max_sentences=0)
    with pytest.raises(ConfigError, match="min_similarity"):
        ExtractiveGenerator(embedder, min_similarity=1.5)


@pytest.mark.parametrize(("sentence", "heading"), [
    ("Loan approval", True), ("# Politically Exposed Persons", True),
    ("Credit Approval Authority Limits", True), ("Customer Due Diligence (KYC)", True),
    ("- Core banking: RTO 4 hours, RPO 15 minutes.", False),
    ("- Regional Credit Manager: up to $1,000,000 per loan", False),
    ("Loans are approved weekly.", False)])
def test_headings_are_recognised(sentence: str, heading: bool) -> None:
    from advanced_rag.generate.extractive import is_heading

    assert is_heading(sentence) is heading


async def test_the_chunk_title_is_never_quoted(embedder) -> None:  # type: ignore[no-untyped-def]
    from advanced_rag.generate import ExtractiveGenerator
    from advanced_rag.types import Hit, HitScores

    hit = Hit("loans#0", "loans", 1, "Loan approval\n\nLoans above 250,000 euros are approved by "
              "the credit committee.", {}, "", "internal", HitScores(fused=1.0))
    generation = await ExtractiveGenerator(embedder).generate("Who approves loan approval?", [hit])
    assert generation.text == ("Loans above 250,000 euros are approved by the credit committee. "
                               "[1]")
