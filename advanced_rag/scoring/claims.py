"""Split a RAG answer into atomic claims with exact character offsets.

A *claim* is the smallest stretch of an answer that can be checked against the contexts on
its own: a sentence, or one clause of a compound sentence. Each :class:`Claim` keeps its span
in the original answer (``answer[start:end]``, citation markers included), its text without
markers, and the numbers of the markers (``[1]``, ``[1, 3]``, ``[1][2]``) it carries.

Sentences (:func:`split_sentences`, also used for context passages):

* a sentence ends at ``.``, ``!``, ``?``, ``...`` or ``…`` followed by whitespace or the end of
  the text; closing quotes/brackets and citation markers right after the punctuation belong to
  it (``"... days. [2] Next"``). Punctuation followed by a lowercase word never ends one;
* a ``.`` does not end a sentence after a title-like abbreviation (``Dr.``, ``e.g.``, ``Art.``,
  ``Fig.``, ``vs.``, ``approx.``, ...), after a single letter (``J. Smith``), or in ``No.`` before
  a number. ``etc.``, ``Inc.``, ``U.S.`` end one only before a capitalised word. Decimals and
  section numbers (``1,250.00``, ``4.2.1``) never do, as no whitespace follows their dots;
* a blank line, or a line starting with ``-``, ``*``, ``•``, ``1.`` or ``1)``, starts a new
  sentence (the list marker stays in the sentence span, but not in the claim).

Claims (:func:`split_claims`):

* a sentence is split at top level (outside brackets and quotes) at ``;`` (also ``; and``,
  ``; but``), ``, while``, ``, whereas``, ``, and``, ``, but``, `` and `` and `` but ``, when both
  sides have ``min_words`` words and one that is not a stopword. ``and``/``but`` splits also need
  a verb-ish word after the first word of each side (a subject before a verb): an auxiliary or
  common verb from a small list, or a word ending in ``-ed``. So "Customers need KYC, AML and
  sanctions checks" stays whole. A side reaches to the next separator of the same or a
  stronger kind (``;`` > ``, conj`` > `` conj ``);
* the separator belongs to neither claim; ``text`` drops markers, collapses whitespace and
  drops a trailing ``,``/``;``/``:``/conjunction;
* a piece with fewer than ``min_words`` words is merged into the previous claim; a leading
  one stays a claim of its own ("Yes. The limit is 10,000 EUR." gives two claims, "Paris."
  one), unless it has no word at all (a lone ``[1]``): that one joins the following piece.

Example::

    >>> [(c.text, c.citations) for c in split_claims(
    ...     "Dr. Smith approved the file, and the committee signed it the next day [2][3].")]
    [('Dr. Smith approved the file', ()), ('the committee signed it the next day.', (2, 3))]

Limitations: English, rule-based. "Plan B. The" is one sentence (single letter), "the U.S.
Treasury" two; verbs outside the list and not ending in ``-ed`` do not license an ``and``
split, while ``-ed`` adjectives after a subject ("the signed form") can license a wrong one.
An answer of markers only ("[1]") gives one claim with empty text. Time is linear in the
input; only the first 32 separators of a sentence are considered.
"""

from __future__ import annotations

import re

from advanced_rag.scoring.base import Claim

__all__ = ["split_claims", "split_sentences"]

_MARKER = r"\[\s*\d{1,4}(?:\s*,\s*\d{1,4})*\s*\]"
_MARKER_RE = re.compile(_MARKER)
# Lookbehinds make each pattern start only once per run of whitespace/punctuation (linear time).
_MARKER_RUN = re.compile(rf"(?=[\s\[])(?:(?<!\s)\s+)?{_MARKER}(?:\s*{_MARKER})*")
_END = re.compile(rf"(?=[.!?…])(?<![.!?…])([.!?…]+)[\"'”’)\]]*(?:\s*{_MARKER})*(?=\s|\Z)")
_NEXT = re.compile(r"\s*(\S)")
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n")
_LIST_ITEM = re.compile(r"^[^\S\n]*((?:[-*•]|\d{1,3}[.)])[^\S\n]+)", re.M)
_SEP = re.compile(
    r"(?=[\s,;])(?:(?P<semi>(?<!\s)\s*;\s*(?:(?:and|but)\s+)?)|(?P<comma>,\s+(?P<cw>and|but|while|whereas)\s+)"
    r"|(?P<plain>(?<!\s)\s+(?P<pw>and|but)\s+))"
)
_WORD = re.compile(r"(?<!\S)[^\s\w]*\w")  # one match per whitespace-separated token with a \w
_TOKEN = re.compile(r"\w+")
_NESTING = re.compile(r"[()\[\]{}\"“”]")
_CONJUNCTIONS = ("and", "but", "or", "while", "whereas")
_NO_SPACE_AFTER = frozenset(".,;:!?)]}\"'”’")
_MAX_SEPARATORS = 32  # per sentence; bounds the work on degenerate input

_NEVER_END = frozenset("dr mr mrs ms prof st art sec fig figs vs cf approx e.g i.e nr para pp ca".split())
_STOPWORDS = frozenset(
    """a an the and or but nor of to in on at for by with from as into than then so if not no yes
    it its this that these those there here he she we you i they them me my our your their his her
    us which who whom what when where why how is are was were be been am do does did has have had
    can may will would should could must shall also too very all any some""".split()
)
_VERBISH = frozenset(
    """am is are was were be been being has have had do does did can could may might must shall should
    will would cannot apply applies require requires approve approves need needs include includes cover
    covers contain contains mean means take takes get gets make makes give gives pay pays receive receives
    sign signs send sends allow allows permit permits prohibit prohibits expire expires exceed exceeds
    remain remains become becomes provide provides keep keeps go goes come comes say says accept accepts
    reject rejects follow follows verify verifies deny denies decide decides made took gave got went
    came said held kept paid sent became began put met found told""".split()
)


def _ends_sentence(text: str, m: re.Match[str]) -> bool:
    """Whether the terminator match ``m`` really ends a sentence."""
    nxt_match = _NEXT.match(text, m.end())
    if nxt_match is None:
        return True
    nxt = nxt_match.group(1)
    if nxt.islower():
        return False
    if m.group(1) != ".":
        return True
    window = text[max(0, m.start() - 12) : m.start()]  # abbreviations are short
    parts = window.split() if window and not window[-1].isspace() else []
    token = parts[-1].lstrip("([{\"'“‘").lower() if parts else ""
    if token in _NEVER_END or (len(token) == 1 and token.isalpha()):
        return False
    return not (token == "no" and nxt.isdigit())


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` into ``text``, whitespace-trimmed, in order.

    The spans partition the text up to whitespace: every non-whitespace character is in one."""
    cuts = {0, len(text)}
    cuts.update(m.end() for m in _PARAGRAPH.finditer(text))
    in_marker: set[int] = set()
    for m in _LIST_ITEM.finditer(text):
        cuts.add(m.start())
        in_marker.update(range(m.start(1), m.end(1)))
    cuts.update(
        m.end() for m in _END.finditer(text) if m.start() not in in_marker and _ends_sentence(text, m)
    )
    ordered = sorted(cuts)
    spans: list[tuple[int, int]] = []
    for a, b in zip(ordered, ordered[1:], strict=False):
        seg = text[a:b]
        start, end = a + len(seg) - len(seg.lstrip()), b - len(seg) + len(seg.rstrip())
        if start < end:
            spans.append((start, end))
    return spans


def _without_markers(span: str) -> str:  # for counting words only
    return _MARKER_RUN.sub(" ", span) if "[" in span else span


def _strip_markers(span: str) -> str:
    """``span`` without citation markers, whitespace collapsed, trailing ``,;:``/conjunction dropped."""

    def repl(m: re.Match[str]) -> str:
        nxt = m.string[m.end() : m.end() + 1]
        return "" if not nxt or nxt.isspace() or nxt in _NO_SPACE_AFTER else " "

    text = " ".join((_MARKER_RUN.sub(repl, span) if "[" in span else span).split())
    end = _content_end(text, 0, len(text))
    return text[:end] if end else text


def _content_end(text: str, start: int, end: int) -> int:
    """End of ``text[start:end]`` without trailing whitespace, ``,;:`` and conjunctions."""
    while True:
        while end > start and (text[end - 1].isspace() or text[end - 1] in ",;:"):
            end -= 1
        if end == start or not text[end - 1].isalpha():
            return end
        word = next((w for w in _CONJUNCTIONS if text.endswith(w, start, end)), "")
        if not word or end - len(word) == start or not text[end - len(word) - 1].isspace():
            return end
        end -= len(word)


def _is_clause(side: str, min_words: int, needs_verb: bool) -> bool:
    """Whether ``side`` can stand as a claim: enough words, a content word, and (for and/but
    splits) a verb-ish word after its first word."""
    text = _without_markers(side)
    tokens = _TOKEN.findall(text.lower())
    if len(_WORD.findall(text)) < min_words or all(t in _STOPWORDS for t in tokens):
        return False
    return not needs_verb or any(
        t in _VERBISH or (len(t) > 4 and t.endswith("ed") and not t.endswith("eed")) for t in tokens[1:]
    )


def _top_level(text: str, positions: list[int]) -> list[bool]:
    """For each of the ascending ``positions``: whether it is outside brackets and double quotes."""
    flags: list[bool] = []
    depth, quoted = 0, False
    nesting = _NESTING.finditer(text)
    mark = next(nesting, None)
    for pos in positions:
        while mark is not None and mark.start() < pos:
            ch = mark.group()
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth = max(0, depth - 1)
            else:
                quoted = ch == "“" or (ch == '"' and not quoted)
            mark = next(nesting, None)
        flags.append(depth == 0 and not quoted)
    return flags


def _split_sentence(text: str, min_words: int) -> list[tuple[int, int]]:
    """Clause spans of one sentence (relative offsets, separators excluded)."""
    found = [m for _, m in zip(range(_MAX_SEPARATORS), _SEP.finditer(text), strict=False)]
    if not found:
        return [(0, len(text))]
    top = _top_level(text, [m.start() for m in found])
    cands = [
        (
            m.start(),
            m.end(),
            2 if m["semi"] else 1 if m["comma"] else 0,
            (m["cw"] or m["pw"]) in ("and", "but"),
        )
        for m, flag in zip(found, top, strict=True)
        if flag
    ]
    pieces: list[tuple[int, int]] = []
    cur = 0
    for i, (a, b, rank, needs_verb) in enumerate(cands):
        stop = next((c[0] for c in cands[i + 1 :] if c[2] >= rank), len(text))
        if _is_clause(text[cur:a], min_words, needs_verb) and _is_clause(text[b:stop], min_words, needs_verb):
            pieces.append((cur, a))
            cur = b
    pieces.append((cur, len(text)))
    return pieces


def _trim(answer: str, a: int, b: int) -> tuple[int, int]:
    """Drop surrounding whitespace and trailing ``,;:``/conjunctions (unless nothing would be left)."""
    while a < b and answer[a].isspace():
        a += 1
    end = _content_end(answer, a, b)
    return (a, end) if end > a else (a, b)


def split_claims(answer: str, *, min_words: int = 3) -> list[Claim]:
    """Split ``answer`` into claims, in order, with offsets into ``answer`` (see module doc)."""
    if min_words < 0:
        raise ValueError(f"min_words must be >= 0, got {min_words}")
    bullets = {m.start(1): m.end(1) for m in _LIST_ITEM.finditer(answer)}
    pieces: list[tuple[int, int]] = []
    for s, e in split_sentences(answer):
        body = bullets.get(s, s) if bullets.get(s, s) < e else s
        for a, b in _split_sentence(answer[body:e], min_words):
            a, b = _trim(answer, body + a, body + b)
            if a < b:
                pieces.append((a, b))
    spans: list[list[int]] = []
    pending: int | None = None
    for a, b in pieces:
        if pending is not None:
            a, pending = pending, None
        words = len(_WORD.findall(_without_markers(answer[a:b])))
        if words >= min_words or (not spans and words > 0):
            spans.append([a, b])
        elif spans:
            spans[-1][1] = b
        else:
            pending = a
    if pending is not None:
        spans.append([pending, pieces[-1][1]])
    claims: list[Claim] = []
    for index, (a, b) in enumerate(spans):
        numbers = (int(n) for m in _MARKER_RE.finditer(answer, a, b) for n in _TOKEN.findall(m.group()))
        claims.append(Claim(index, _strip_markers(answer[a:b]), a, b, tuple(dict.fromkeys(numbers))))
    return claims
