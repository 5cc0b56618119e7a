"""Administration of Milvus collections (the seed's ``MilvusIndexManager``).

Synchronous on purpose: it is for operators' scripts and the CLI, not the request path.

Example::

    manager = MilvusIndexManager(enable_sharding=True, num_shards=8)
    stats = manager.get_collection_stats("documents")
    stats["row_count"], stats.num_shards
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import MilvusSettings
from .errors import VectorStoreError
from .store.milvus import server_info
from .types import _ItemAccess


@dataclass(frozen=True, slots=True)
class CollectionStats(_ItemAccess):
    """Row count and layout of one collection."""

    name: str
    row_count: int
    num_shards: int | None
    num_partitions: int | None
    consistency_level: str | None
    server_version: str


class MilvusIndexManager:
    """Inspect collections, and carry the sharding settings new collections are created with.

    ``enable_sharding=False`` forces one shard. Milvus Lite ignores ``num_shards``; a server
    honours it (set it before the first ingest: it cannot change afterwards).
    """

    def __init__(self, uri: str | None = None, *, enable_sharding: bool = True,
                 num_shards: int = 1, settings: MilvusSettings | None = None) -> None:
        base = settings or MilvusSettings()
        updates: dict[str, Any] = {"num_shards": num_shards if enable_sharding else 1}
        if uri is not None:
            updates["uri"] = uri
        self.settings = base.model_copy(update=updates)
        self._client: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            from pymilvus import MilvusClient

            uri = self.settings.uri
            if self.settings.is_lite:
                Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
            try:
                self._client = MilvusClient(uri=uri)
            except Exception as exc:
                raise VectorStoreError(f"cannot connect to Milvus at {uri}: {exc}") from exc
        return self._client

    def list_collections(self) -> list[str]:
        return list(self._connect().list_collections())

    def get_collection_stats(self, name: str | None = None) -> CollectionStats:
        """Statistics of ``name`` (default: the configured collection)."""
        client = self._connect()
        name = name or self.settings.collection
        try:
            if not client.has_collection(name):
                raise VectorStoreError(f"collection {name!r} does not exist at {self.settings.uri}")
            stats = client.get_collection_stats(name)
            described = client.describe_collection(name)
            version = server_info(client.get_server_version()).version
        except VectorStoreError:
            raise
        except Exception as exc:
            raise VectorStoreError(f"cannot read statistics of {name!r}: {exc}") from exc
        return CollectionStats(
            name=name,
            row_count=int(stats.get("row_count", 0)),
            num_shards=described.get("num_shards"),
            num_partitions=described.get("num_partitions"),
            consistency_level=str(described.get("consistency_level_name")
                                  or described.get("consistency_level")),
            server_version=version,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
