"""Read documents from files: ``.txt``, ``.md`` (optional YAML front matter), ``.jsonl``.

A ``.jsonl`` row is either this library's shape (``id``, ``text``, optional ``metadata``,
``source``, ``classification``) or BEIR's ``corpus.jsonl`` shape (``_id``, ``title``,
``text``); a BEIR title is kept in ``metadata["title"]``, which ingestion puts at the
head of every chunk (``chunking.title_prefix``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .errors import DocumentError, InputError
from .types import Classification, Document

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".jsonl")
_FRONT_MATTER_KEYS = {"id", "title", "classification", "source", "metadata"}


def iter_paths(paths: list[str | Path]) -> Iterator[Path]:
    """Files named, and supported files under folders named (sorted, recursive)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*")
                              if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise InputError(f"{path}: unsupported file type (use {', '.join(SUPPORTED_SUFFIXES)})")
            yield path
        else:
            raise InputError(f"{path}: no such file or folder")


def _split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---", 4)
    if end < 0:
        return {}, text
    try:
        header = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as exc:
        raise DocumentError(path.stem, f"invalid front matter in {path}: {exc}") from None
    if not isinstance(header, dict):
        raise DocumentError(path.stem, f"front matter in {path} must be a mapping")
    body_start = text.find("\n", end + 4)
    return header, text[body_start + 1:] if body_start >= 0 else ""


def read_text_document(path: Path, *, source: str | None = None) -> Document:
    """A ``.txt``/``.md`` file as one document; id = file stem unless the front matter sets one."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(path.stem, f"{path} is not valid UTF-8 (byte {exc.start})") from None
    header, body = _split_front_matter(text, path)
    unknown = set(header) - _FRONT_MATTER_KEYS
    metadata = dict(header.get("metadata") or {})
    for key in unknown:  # extra front-matter keys become metadata
        metadata[key] = header[key]
    if "title" in header:
        metadata["title"] = str(header["title"])
    return Document(
        id=str(header.get("id", path.stem)),
        text=body,
        metadata=metadata,
        source=str(header.get("source", source or path.parent.name)),
        classification=Classification(str(header.get("classification", "internal"))),
    )


def _row_document(row: dict[str, Any], where: str) -> Document:
    if "_id" in row:  # BEIR corpus row
        title = str(row.get("title") or "")
        text = str(row.get("text") or "")
        return Document(id=str(row["_id"]), text=text or title,
                        metadata={"title": title} if title else {}, source="beir")
    if "id" not in row or "text" not in row:
        raise DocumentError(str(row.get("id", "?")), f"{where}: a row needs 'id' and 'text' (or BEIR '_id')")
    return Document(id=str(row["id"]), text=row["text"], metadata=row.get("metadata") or {},
                    source=str(row.get("source", "")),
                    classification=row.get("classification", Classification.INTERNAL))


def read_jsonl(path: Path) -> Iterator[Document | DocumentError]:
    """Documents of a JSON-lines file; a bad line yields a DocumentError instead of stopping."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line.decode("utf-8"))
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                yield _row_document(row, where)
            except DocumentError as exc:
                yield exc
            except (UnicodeDecodeError, ValueError) as exc:
                yield DocumentError(where, f"unreadable line: {exc}")


def read_documents(paths: list[str | Path]) -> Iterator[Document | DocumentError]:
    """Every document under ``paths``; unreadable ones come back as DocumentError values."""
    for path in iter_paths(paths):
        if path.suffix.lower() == ".jsonl":
            yield from read_jsonl(path)
            continue
        try:
            yield read_text_document(path)
        except (DocumentError, ValueError) as exc:
            yield exc if isinstance(exc, DocumentError) else DocumentError(path.stem, str(exc))
