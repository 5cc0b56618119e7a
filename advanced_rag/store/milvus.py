"""Milvus vector store: schema with a tenant partition key and the built-in BM25 function,
dense / keyword / hybrid search, capability checks.

The same code serves Milvus Lite (``uri`` is a path) and a Milvus server (``http(s)://``).
DDL goes through a sync :class:`pymilvus.MilvusClient` (Lite refuses async DDL); data calls
go through :class:`pymilvus.AsyncMilvusClient`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..batching import MicroBatcher
from ..config import Bm25Settings, MilvusSettings
from ..errors import ConfigError, UnsupportedBackendError, VectorStoreError
from ..protocols import SearchRequest, StoredChunk, StoredVersion
from ..types import Fusion, Hit, HitScores, SearchType
from .filters import check_tenant, in_list, string_literal

MAX_TEXT_CHARS = 65_535
_OUTPUT_FIELDS = ["chunk_id", "doc_id", "doc_version", "text", "metadata", "source",
                  "classification", "tenant_id"]  # tenant_id: checked again by the pipeline
_BM25_MIN_VERSION = (2, 5, 0)
_RELIABLE_UPSERT_VERSION = (2, 4, 0)  # see ServerInfo.reliable_upsert
_MAX_IDLE_BATCHERS = 256  # search shapes kept between calls (one per tenant x filter, say)

# Milvus Lite runs an in-process server per database folder and holds a lock on it until
# released; stores of this process that share a folder release it when the last one closes.
_lite_users: dict[str, int] = {}
_lite_guard = threading.Lock()


def _lite_acquire(path: str) -> None:
    with _lite_guard:
        _lite_users[path] = _lite_users.get(path, 0) + 1


def _locked_elsewhere(path: str) -> bool:
    """Whether another process holds the Lite database folder's lock. Asked only after
    opening failed (pymilvus then reports just "Open local milvus failed"): a folder this
    process uses is shared within it, so the question is meaningful only then. POSIX only."""
    lock = Path(path) / "LOCK"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    try:
        with open(lock, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def _locked_error(path: str) -> VectorStoreError:
    return VectorStoreError(
        f"Milvus Lite database {path} is locked by another process (Lite serves one process "
        f"per folder). To share it, run `milvus-lite server --data-dir {path} --host 127.0.0.1 "
        "--port 19530 --max-workers 1` and set milvus.uri to http://127.0.0.1:19530 in every "
        "process (docs/lite_server.md)", retriable=False)


def _lite_release(path: str) -> None:
    with _lite_guard:
        remaining = _lite_users.get(path, 1) - 1
        if remaining > 0:
            _lite_users[path] = remaining
            return
        _lite_users.pop(path, None)
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(path)


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """One document as the index holds it: ``created_at`` is its newest chunk's (epoch
    seconds, UTC: when its current version was ingested)."""

    tenant: str
    doc_id: str
    classification: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the connected Milvus is, and what it can do."""

    version: str
    is_lite: bool
    supports_bm25: bool
    # Milvus before 2.4 hashes the wrong field to pick an upserted row's partition when the
    # collection has a partition key (milvus-io/milvus#30607, fixed by #30772): the row lands
    # where a tenant-filtered read never looks. There, write() deletes and inserts instead.
    reliable_upsert: bool = True


def parse_version(raw: str) -> tuple[int, int, int] | None:
    """``"v2.5.4"`` / ``"2.3.5-dev"`` → (2, 5, 4); Lite's ``"milvus_lite-3.2.2"`` → (3, 2, 2)."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", raw)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def server_info(raw_version: str) -> ServerInfo:
    # Only milvus-lite (3.x, "milvus_lite-3.2.2") is Lite. The PyPI ``milvus`` package's
    # embedded standalone server reports "v2.3.5-lite" but is a real 2.3 server: no BM25.
    is_lite = raw_version.lower().startswith("milvus_lite")
    parsed = parse_version(raw_version)
    supports = is_lite or (parsed is not None and parsed >= _BM25_MIN_VERSION)
    upsert = is_lite or parsed is None or parsed >= _RELIABLE_UPSERT_VERSION
    return ServerInfo(version=raw_version, is_lite=is_lite, supports_bm25=supports,
                      reliable_upsert=upsert)


def bm25_score(raw: float, *, is_lite: bool) -> float:
    """BM25 as a positive relevance score: Lite returns it negated, a server does not."""
    return -raw if is_lite else raw


def summarize_versions(rows: Iterable[Mapping[str, Any]]) -> dict[str, StoredVersion]:
    """Per document, what its stored rows add up to (see :class:`StoredVersion`).

    ``rows`` are query results with ``doc_id``, ``doc_version``, ``content_hash`` and, except in
    collections created before chunk counts were stored, ``chunk_count``. A version is complete
    when it has exactly ``chunk_count`` rows; a row without the field counts as complete (such
    a legacy collection cannot tell). Pure, so the rule is testable without a store.
    """
    counts: dict[tuple[str, int], int] = {}
    expected: dict[tuple[str, int], set[int | None]] = {}
    hashes: dict[tuple[str, int], str] = {}
    for row in rows:
        key = (str(row["doc_id"]), int(row["doc_version"]))
        counts[key] = counts.get(key, 0) + 1
        raw = row.get("chunk_count")
        expected.setdefault(key, set()).add(None if raw is None else int(raw))
        hashes.setdefault(key, str(row["content_hash"]))
    complete: dict[str, list[int]] = {}
    partial: dict[str, list[int]] = {}
    for (doc_id, version), count in counts.items():
        wanted = expected[(doc_id, version)]
        whole = len(wanted) == 1 and next(iter(wanted)) in (None, count)
        complete.setdefault(doc_id, [])
        (complete if whole else partial).setdefault(doc_id, []).append(version)
    out: dict[str, StoredVersion] = {}
    for doc_id, versions in complete.items():
        latest = max(versions, default=0)
        out[doc_id] = StoredVersion(doc_id, latest, hashes[(doc_id, latest)] if latest else "",
                                    stale=len(versions) > 1,
                                    partial=tuple(sorted(partial.get(doc_id, ()))))
    return out


# Lucene's EnglishAnalyzer stop set. Spelled out because Milvus Lite takes the "_english_"
# shorthand of a Milvus server literally, as the one stop word "_english_".
ENGLISH_STOP_WORDS = (
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with")


def analyzer_params(settings: Bm25Settings) -> dict[str, Any]:
    """The BM25 field's analyzer. Stop words matter for speed on Milvus Lite, which scores
    BM25 in Python posting by posting: "the" alone has a posting in nearly every chunk."""
    if settings.analyzer != "standard":
        return {"type": settings.analyzer}
    stop = (ENGLISH_STOP_WORDS if settings.stop_words == "english" else
            () if settings.stop_words == "none" else tuple(settings.stop_words))
    filters: list[Any] = ["lowercase"]
    if stop:
        filters.append({"type": "stop", "stop_words": list(stop)})
    return {"tokenizer": "standard", "filter": filters}


def _shape(request: SearchRequest) -> tuple[Hashable, ...]:
    """What searches must share to run as one multi-query Milvus call: the compiled
    expression (tenant, clearance, filters), the kind, the limits and the fusion."""
    return (request.expr, request.search_type, request.limit, request.candidate_limit,
            str(request.fusion), request.alpha, request.rrf_k)


def _wrap(action: str, exc: Exception) -> VectorStoreError:
    text = str(exc)
    retriable = any(s in text.lower() for s in ("unavailable", "timeout", "deadline", "connection"))
    return VectorStoreError(f"Milvus {action} failed: {text}", retriable=retriable)


class MilvusStore:
    """Chunks of one index (collection), partitioned by tenant.

    Example::

        store = MilvusStore(MilvusSettings(uri="./.advanced-rag/milvus.db"), dimension=384)
        await store.open()
    """

    def __init__(self, settings: MilvusSettings, *, dimension: int) -> None:
        self._settings = settings
        self._dimension = dimension
        self._name = settings.collection
        self._sync: Any = None
        self._client: Any = None
        self.info: ServerInfo | None = None
        self._lite_path: str | None = None
        # False for a collection created before rows carried ``chunk_count`` (see _check_existing)
        self._chunk_counts = True
        self._batchers: dict[tuple[Hashable, ...], MicroBatcher[SearchRequest, list[Hit]]] = {}
        self.search_calls = 0  # Milvus search calls made (fewer than searches when coalesced)

    # -- connection -----------------------------------------------------------------------

    def _connection_kwargs(self) -> dict[str, Any]:
        s = self._settings
        if s.is_lite:
            path = Path(s.uri).expanduser().absolute()
            path.parent.mkdir(parents=True, exist_ok=True)
            return {"uri": str(path)}
        kwargs: dict[str, Any] = {"uri": s.uri, "timeout": s.timeout_s}
        if os.environ.get(s.token_env):
            kwargs["token"] = os.environ[s.token_env]
        elif os.environ.get(s.user_env):
            kwargs["user"] = os.environ[s.user_env]
            kwargs["password"] = os.environ.get(s.password_env, "")
        if s.db_name:
            kwargs["db_name"] = s.db_name
        return kwargs

    async def open(self) -> None:
        """Connect, create the collection if missing (DDL, sync), and load it."""
        from pymilvus import AsyncMilvusClient, MilvusClient

        kwargs = self._connection_kwargs()
        if self._settings.is_lite:
            _lite_acquire(kwargs["uri"])
            self._lite_path = kwargs["uri"]
        try:
            self._sync = await asyncio.to_thread(MilvusClient, **kwargs)
            self.info = server_info(await asyncio.to_thread(self._sync.get_server_version))
            exists = await asyncio.to_thread(self._sync.has_collection, self._name)
            if not exists:
                try:
                    await asyncio.to_thread(self._create)
                except Exception as exc:  # another process created it between the two calls
                    if "already exist" not in str(exc).lower():
                        raise
                    exists = True
            if exists:
                await asyncio.to_thread(self._check_existing)
            await asyncio.to_thread(self._sync.load_collection, self._name)
            self._client = AsyncMilvusClient(**kwargs)
        except (UnsupportedBackendError, ConfigError):
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            if self._settings.is_lite and _locked_elsewhere(kwargs["uri"]):
                raise _locked_error(kwargs["uri"]) from exc
            raise _wrap(f"connection to {self._settings.uri}", exc) from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._sync is not None:
            await asyncio.to_thread(self._sync.close)
            self._sync = None
        if self._lite_path is not None:
            await asyncio.to_thread(_lite_release, self._lite_path)
            self._lite_path = None

    @property
    def collection(self) -> str:
        return self._name

    def _require(self) -> Any:
        if self._client is None:
            raise VectorStoreError("the store is not open: call open() (or use 'async with')")
        return self._client

    # -- schema ---------------------------------------------------------------------------

    def _create(self) -> None:
        from pymilvus import DataType, Function, FunctionType

        assert self.info is not None
        s = self._settings
        schema = self._sync.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("chunk_id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=512)
        schema.add_field("doc_version", DataType.INT64)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("tenant_id", DataType.VARCHAR, max_length=64, is_partition_key=True)
        analyzer = analyzer_params(s.bm25)
        if self.info.supports_bm25:
            schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_CHARS,
                             enable_analyzer=True, analyzer_params=analyzer)
        else:
            schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_CHARS)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self._dimension)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("source", DataType.VARCHAR, max_length=256)
        schema.add_field("classification", DataType.VARCHAR, max_length=32)
        schema.add_field("created_at", DataType.INT64)
        schema.add_field("chunk_count", DataType.INT64)  # chunks of the version: completeness
        index = self._sync.prepare_index_params()
        params: dict[str, Any] = {}
        if s.index.type == "HNSW":
            params = {"M": s.index.M, "efConstruction": s.index.efConstruction}
        index.add_index("dense", index_type=s.index.type, metric_type=s.index.metric, params=params)
        if self.info.supports_bm25:
            schema.add_field("sparse_bm25", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(Function(name="text_bm25", function_type=FunctionType.BM25,
                                         input_field_names=["text"],
                                         output_field_names=["sparse_bm25"]))
            index.add_index("sparse_bm25", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                            params={"bm25_k1": s.bm25.k1, "bm25_b": s.bm25.b})
        self._sync.create_collection(self._name, schema=schema, index_params=index,
                                     num_shards=s.num_shards, num_partitions=s.num_partitions,
                                     consistency_level=s.consistency_level)

    def _check_existing(self) -> None:
        """Refuse a collection of another dimension; note whether rows carry ``chunk_count``
        (collections created before it was added do not: there every stored version counts
        as complete and writes leave the field out)."""
        described = self._sync.describe_collection(self._name)
        names = {field.get("name") for field in described.get("fields", [])}
        self._chunk_counts = "chunk_count" in names
        for field in described.get("fields", []):
            if field.get("name") == "dense":
                dim = int(field.get("params", {}).get("dim", self._dimension))
                if dim != self._dimension:
                    raise ConfigError(
                        f"collection {self._name!r} holds {dim}-d vectors but the embedder makes "
                        f"{self._dimension}-d ones; use another milvus.collection or re-ingest",
                        key="milvus.collection")

    # -- writes ---------------------------------------------------------------------------

    async def write(self, rows: Sequence[StoredChunk]) -> int:
        if not rows:
            return 0
        data = [
            {
                "chunk_id": r.chunk.chunk_id,
                "doc_id": r.chunk.doc_id,
                "doc_version": r.chunk.doc_version,
                "content_hash": r.content_hash,
                "tenant_id": check_tenant(r.tenant),
                "text": r.text,
                "dense": r.vector.tolist(),
                "metadata": dict(r.metadata),
                "source": r.source,
                "classification": r.classification,
                "created_at": r.created_at,
            }
            for r in rows
        ]
        if self._chunk_counts:
            for row, r in zip(data, rows, strict=True):
                row["chunk_count"] = r.chunk_count
        client = self._require()
        timeout = self._settings.timeout_s
        try:
            if self.info is None or self.info.reliable_upsert:
                result = await client.upsert(self._name, data, timeout=timeout)
                return int(result.get("upsert_count", len(data)))
            # An older server's upsert misroutes partition-key rows (ServerInfo.reliable_upsert):
            # replace the rows by primary key, then insert (which routes them correctly).
            ids = [row["chunk_id"] for row in data]
            for start in range(0, len(ids), 1000):
                await client.delete(self._name, filter=in_list("chunk_id", ids[start:start + 1000]),
                                    timeout=timeout)
            result = await client.insert(self._name, data, timeout=timeout)
        except Exception as exc:
            raise _wrap("upsert", exc) from exc
        return int(result.get("insert_count", len(data)))

    async def _delete(self, expr: str) -> int:
        try:
            result = await self._require().delete(self._name, filter=expr,
                                                  timeout=self._settings.timeout_s)
        except Exception as exc:
            raise _wrap("delete", exc) from exc
        if isinstance(result, dict):
            return int(result.get("delete_count", 0))
        return len(result)

    async def delete_versions(self, tenant: str, doc_id: str, *, below: int | None = None,
                              versions: Sequence[int] = ()) -> int:
        """Delete the chunks of ``doc_id`` whose version is below ``below`` or in ``versions``."""
        clauses = [] if below is None else [f"doc_version < {int(below)}"]
        if versions:
            clauses.append(f"doc_version in [{', '.join(str(int(v)) for v in versions)}]")
        if not clauses:
            return 0
        expr = (f"tenant_id == {string_literal(check_tenant(tenant))} and "
                f"doc_id == {string_literal(doc_id)} and ({' or '.join(clauses)})")
        return await self._delete(expr)

    async def delete_documents(self, tenant: str, doc_ids: Sequence[str]) -> int:
        expr = f"tenant_id == {string_literal(check_tenant(tenant))} and {in_list('doc_id', doc_ids)}"
        return await self._delete(expr)

    # -- reads ----------------------------------------------------------------------------

    async def stored_versions(self, tenant: str, doc_ids: Sequence[str]) -> dict[str, StoredVersion]:
        """Per document, its latest complete version, whether older ones remain and which
        versions are only partly stored (one row per chunk is read: see summarize_versions)."""
        if not doc_ids:
            return {}
        expr = f"tenant_id == {string_literal(check_tenant(tenant))} and {in_list('doc_id', doc_ids)}"
        fields = ["doc_id", "doc_version", "content_hash"]
        if self._chunk_counts:
            fields.append("chunk_count")
        try:
            rows = await self._require().query(
                self._name, filter=expr, output_fields=fields,
                consistency_level="Strong", timeout=self._settings.timeout_s)
        except Exception as exc:
            raise _wrap("query", exc) from exc
        return summarize_versions(rows)

    async def documents_created_before(self, created_before: int, *,
                                       classification: str | None = None,
                                       batch: int = 1000) -> list[StoredDocument]:
        """Documents whose every chunk was created before ``created_before`` (epoch seconds),
        optionally of one ``classification``: what a retention rule may delete. Reads through a
        query iterator (no result-window limit), ``batch`` chunks at a time.

        Example::

            old = await store.documents_created_before(int(cutoff.timestamp()),
                                                       classification="restricted")
        """
        self._require()
        clause = f"created_at < {int(created_before)}"
        if classification is not None:
            clause = f"classification == {string_literal(classification)} and {clause}"
        fields = ["tenant_id", "doc_id", "classification", "created_at"]
        try:
            rows = await asyncio.to_thread(self._iterate, clause, fields, batch)
            found: dict[tuple[str, str], StoredDocument] = {}
            for row in rows:
                key = (row["tenant_id"], row["doc_id"])
                newest = max(int(row["created_at"]), found[key].created_at if key in found else 0)
                found[key] = StoredDocument(key[0], key[1], row["classification"], newest)
            # A document with any newer chunk (a version being replaced) is not old yet.
            by_tenant: dict[str, list[str]] = {}
            for tenant, doc_id in found:
                by_tenant.setdefault(tenant, []).append(doc_id)
            for tenant, doc_ids in by_tenant.items():
                for start in range(0, len(doc_ids), 500):
                    expr = (f"tenant_id == {string_literal(tenant)} and "
                            f"{in_list('doc_id', doc_ids[start:start + 500])} and "
                            f"created_at >= {int(created_before)}")
                    for row in await asyncio.to_thread(self._iterate, expr, ["doc_id"], batch):
                        found.pop((tenant, row["doc_id"]), None)
        except Exception as exc:
            raise _wrap("query", exc) from exc
        return sorted(found.values(), key=lambda d: (d.tenant, d.created_at, d.doc_id))

    def _iterate(self, expr: str, fields: list[str], batch: int) -> list[dict[str, Any]]:
        iterator = self._sync.query_iterator(self._name, batch_size=batch, filter=expr,
                                             output_fields=fields, consistency_level="Strong",
                                             timeout=self._settings.timeout_s)
        rows: list[dict[str, Any]] = []
        try:
            while page := iterator.next():
                rows.extend(page)
        finally:
            iterator.close()
        return rows

    async def probe(self) -> str:
        """Health check: the server answers and the collection is loaded (searchable)."""
        client = self._require()
        try:
            state = await client.get_load_state(self._name, timeout=self._settings.timeout_s)
        except Exception as exc:
            raise _wrap("load state check", exc) from exc
        label = str(state.get("state", "") if isinstance(state, dict) else state)
        if "loaded" not in label.lower() or "notload" in label.lower().replace(" ", ""):
            raise VectorStoreError(f"collection {self._name!r} is not loaded (state {label!r})",
                                   retriable=True)
        version = self.info.version if self.info is not None else "unknown"
        # What answered, not what the uri looks like: `milvus-lite server` is Lite over http.
        kind = "Lite" if self._settings.is_lite else "server"
        if self.info is not None and self.info.is_lite and not self._settings.is_lite:
            kind = "Lite server"
        return f"collection {self._name!r} loaded (Milvus {kind} {version})"

    async def count(self, tenant: str | None = None) -> int:
        expr = "" if tenant is None else f"tenant_id == {string_literal(check_tenant(tenant))}"
        try:
            rows = await self._require().query(self._name, filter=expr, output_fields=["count(*)"],
                                               consistency_level="Strong",
                                               timeout=self._settings.timeout_s)
        except Exception as exc:
            raise _wrap("count", exc) from exc
        return int(rows[0]["count(*)"])

    async def search(self, request: SearchRequest) -> list[Hit]:
        """One search. Concurrent searches of the same shape (same compiled expression, so the
        same tenant, clearance and filters; same kind, limits and fusion) go to Milvus together
        as one multi-query call (``milvus.search_micro_batch``; see :mod:`..batching`)."""
        assert self.info is not None
        self._require()
        if request.search_type is not SearchType.DENSE and not self.info.supports_bm25:
            raise UnsupportedBackendError(f"{request.search_type.value} search (BM25)",
                                          self.info.version, "2.5")
        if self._settings.search_micro_batch <= 1:
            return (await self._search_many([request]))[0]
        key = _shape(request)
        batcher = self._batchers.get(key)
        if batcher is None:
            if len(self._batchers) >= _MAX_IDLE_BATCHERS:
                for old in [k for k, b in self._batchers.items() if b.idle]:
                    del self._batchers[old]
            batcher = self._batchers[key] = MicroBatcher(
                self._search_many, max_batch=self._settings.search_micro_batch,
                error_type=VectorStoreError, name="milvus-search")
        return await batcher.submit(request)

    async def _search_many(self, requests: list[SearchRequest]) -> list[list[Hit]]:
        """Requests of one shape (see :func:`_shape`) in one Milvus call, one result each."""
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        assert self.info is not None
        client = self._require()
        first = requests[0]
        dense_params = {"metric_type": self._settings.index.metric,
                        "params": {"ef": max(self._settings.index.ef, first.candidate_limit)}}
        common: dict[str, Any] = {"output_fields": _OUTPUT_FIELDS,
                                  "timeout": self._settings.timeout_s,
                                  "consistency_level": self._settings.consistency_level}
        vectors = [r.query_vector.tolist() for r in requests if r.query_vector is not None]
        texts = [r.query_text for r in requests]
        self.search_calls += 1
        try:
            if first.search_type is SearchType.DENSE:
                assert len(vectors) == len(requests)
                raw = await client.search(self._name, data=vectors, anns_field="dense",
                                          filter=first.expr, limit=first.limit,
                                          search_params=dense_params, **common)
                return [[self._hit(h, dense=float(h["distance"])) for h in one] for one in raw]
            if first.search_type is SearchType.KEYWORD:
                raw = await client.search(self._name, data=texts, anns_field="sparse_bm25",
                                          filter=first.expr, limit=first.limit,
                                          search_params={"metric_type": "BM25", "params": {}},
                                          **common)
                lite = self.info.is_lite
                return [[self._hit(h, bm25=bm25_score(float(h["distance"]), is_lite=lite))
                         for h in one] for one in raw]
            assert len(vectors) == len(requests)
            reqs = [
                AnnSearchRequest(data=vectors, anns_field="dense", param=dense_params,
                                 limit=first.candidate_limit, expr=first.expr),
                AnnSearchRequest(data=texts, anns_field="sparse_bm25",
                                 param={"metric_type": "BM25", "params": {}},
                                 limit=first.candidate_limit, expr=first.expr),
            ]
            ranker = (RRFRanker(first.rrf_k) if Fusion(first.fusion) is Fusion.RRF
                      else WeightedRanker(first.alpha, 1.0 - first.alpha))
            raw = await client.hybrid_search(self._name, reqs, ranker, limit=first.limit,
                                             **common)
            return [[self._hit(h, fused=float(h["distance"])) for h in one] for one in raw]
        except Exception as exc:
            raise _wrap(f"{first.search_type.value} search", exc) from exc

    @staticmethod
    def _hit(raw: dict[str, Any], **scores: float) -> Hit:
        entity = raw.get("entity", raw)
        metadata = entity.get("metadata") or {}
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        return Hit(
            chunk_id=str(entity.get("chunk_id", raw.get("id"))),
            doc_id=entity["doc_id"],
            doc_version=int(entity["doc_version"]),
            text=entity["text"],
            metadata=metadata,
            source=entity.get("source", ""),
            classification=entity.get("classification", ""),
            scores=HitScores(**scores),
            tenant=entity.get("tenant_id"),
        )
