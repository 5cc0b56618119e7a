"""The local sentence-transformers embedder run by ONNX Runtime (fp32, or int8 weights).

sentence-transformers' own ONNX path needs ``optimum-onnx``, whose only release pins
``transformers<4.58``: it cannot be installed next to the transformers this library uses.
So the model is loaded once with torch (tokenizer, pipeline checks, export) and its
transformer exported here with ``torch.onnx.export``; pooling and normalisation are done in
numpy, exactly as the model's own modules do them. A model whose pipeline is anything but
Transformer → mean Pooling → (Normalize) is refused rather than silently embedded differently.

Exported files are kept in ``cache_dir`` as ``<weights sha256>-<fp32|int8>.onnx``, written to
a temporary file and renamed, so a crash never leaves half a model under the final name.

Example::

    embedder = OnnxEmbedder(cache_dir=".advanced-rag/onnx", quantize=True)
    vectors = await embedder.embed_documents(["KYC applies to ..."])
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import EmbedderError, MissingDependencyError
from ..types import ModelIdentity
from .sentence_transformers import SentenceTransformerEmbedder

EXTRA = "onnx"
"""The pip extra that installs this backend's dependencies."""

_OUTPUT = "token_embeddings"
_OPSET = 17
# The inputs a text encoder may take, in the order the exported graph declares them.
_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxEmbedder(SentenceTransformerEmbedder):
    """:class:`SentenceTransformerEmbedder` whose encodes run in an ONNX Runtime session.

    Everything but ``encode`` is inherited: the async API, micro-batched queries, prefixes,
    token counting. ``quantize`` stores the weights as int8 (``quantize_dynamic``): about a
    quarter of the size, faster on CPU, vectors slightly different (docs/benchmarks.md,
    "onnx"). The identity names the precision and hashes the ONNX file that runs, so an int8
    index never passes for an fp32 one in the audit trail.

    ``threads`` sets ONNX Runtime's intra-op threads (default: the CPUs this process may
    use). Inference runs on CPU only (``CPUExecutionProvider``).
    """

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, cache_dir: str | os.PathLike[str],
                 quantize: bool = False, device: str = "cpu", batch_size: int = 32,
                 query_prefix: str = "", document_prefix: str = "", query_micro_batch: int = 32,
                 threads: int | None = None) -> None:
        ort = _import("onnxruntime")
        if device != "cpu":
            raise EmbedderError(f"the onnx backend runs on CPU only, not {device!r}; use "
                                "backend 'torch' for another device")
        # query_threads=None: the parent then leaves torch's threads alone for queries;
        # ONNX Runtime's threads are fixed per session (``threads``).
        super().__init__(model, device="cpu", batch_size=batch_size, backend="torch",
                         query_prefix=query_prefix, document_prefix=document_prefix,
                         query_micro_batch=query_micro_batch, query_threads=None)
        try:
            self._prepare(ort, model, Path(cache_dir), quantize, threads)
        except BaseException:
            self.close()
            raise

    def _prepare(self, ort: Any, model: str, cache_dir: Path, quantize: bool,
                 threads: int | None) -> None:
        """Check the pipeline, export (or find) the ONNX file, open its session."""
        check_pipeline(self._model, model)
        source_sha = self._identity.sha256
        if source_sha == "unknown":
            raise EmbedderError(f"{model!r}: the onnx backend needs a local model folder (its "
                                "weights' SHA-256 keys the exported file); save the model to a "
                                "folder and configure that path")
        self._input_names = input_names(self._model)
        self._onnx_path = cached_export(self._model, cache_dir, source_sha,
                                        quantize=quantize, inputs=self._input_names)
        self._session = _session(ort, self._onnx_path, threads)
        self._source_sha256 = source_sha
        precision = "int8" if quantize else "fp32"
        self._identity = ModelIdentity(name=f"{model} (onnx {precision})",
                                       sha256=file_sha256(self._onnx_path),
                                       dimension=self._identity.dimension)

    @property
    def onnx_path(self) -> Path:
        """The cached ONNX file this embedder runs."""
        return self._onnx_path

    @property
    def source_sha256(self) -> str:
        """SHA-256 of the original weight files (the identity hashes the ONNX file instead)."""
        return self._source_sha256

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Tokenise, run the session in batches, mean-pool and L2-normalise: float32 (n, dim).

        Texts are batched longest first, as sentence-transformers does, so a batch pads to
        similar lengths; results come back in the input order."""
        items = list(texts)
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in items], kind="stable")
        try:
            for start in range(0, len(items), self._batch_size):
                rows = order[start:start + self._batch_size]
                out[rows] = self._encode_batch([items[int(i)] for i in rows])
        except Exception as exc:
            raise EmbedderError(f"encoding failed with {self._identity.name}: {exc}") from exc
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer(texts, max_length=self.max_tokens, truncation=True,
                                  padding=True, return_tensors="np")
        feeds = {name: np.asarray(encoded[name], dtype=np.int64) for name in self._input_names}
        (hidden,) = self._session.run([_OUTPUT], feeds)
        return mean_pool_normalise(np.asarray(hidden, dtype=np.float32),
                                   np.asarray(encoded["attention_mask"]))


def mean_pool_normalise(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean Pooling then Normalize: the mean of the unmasked token
    vectors (count clamped at 1e-9), divided by its L2 norm (clamped at 1e-12)."""
    mask = attention_mask.astype(np.float32)
    summed: np.ndarray = np.einsum("bsd,bs->bd", hidden, mask)
    counts = np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
    pooled = summed / counts
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    normalised: np.ndarray = pooled / np.maximum(norms, 1e-12)
    return normalised.astype(np.float32)


def check_pipeline(model: Any, name: str) -> None:
    """Refuse a model whose output :meth:`OnnxEmbedder.encode` would not reproduce: only a
    plain text Transformer, then mean Pooling, then an optional Normalize (the embedder
    normalises anyway), with no default prompt and no truncated dimension."""
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    modules = list(model)
    kinds = " → ".join(type(m).__name__ for m in modules)
    refused = f"{name!r} ({kinds}) cannot run on the onnx backend: "
    if len(modules) not in (2, 3) or type(modules[0]) is not Transformer \
            or type(modules[1]) is not Pooling \
            or (len(modules) == 3 and type(modules[2]) is not Normalize):
        raise EmbedderError(refused + "only Transformer → Pooling → [Normalize] is supported")
    transformer, pooling = modules[0], modules[1]
    text = transformer.modality_config.get("text", {})
    if (set(transformer.modality_config) != {"text"} or text.get("method") != "forward"
            or text.get("method_output_name") != "last_hidden_state"
            or transformer.module_output_name != _OUTPUT
            or getattr(transformer, "query_expansion", None) is not None):
        raise EmbedderError(refused + "its transformer is not a plain text encoder "
                                      f"(modalities {transformer.modality_config})")
    if pooling.pooling_mode != "mean":
        raise EmbedderError(refused + f"pooling is {pooling.pooling_mode!r}; only mean pooling "
                                      "is reproduced (use backend 'torch')")
    if getattr(model, "default_prompt_name", None) or getattr(model, "truncate_dim", None):
        raise EmbedderError(refused + "a default prompt or truncate_dim is not reproduced")


def input_names(model: Any) -> tuple[str, ...]:
    """The tokenizer outputs the transformer reads (BERT: ids, mask and token types)."""
    produced = set(model.tokenizer.model_input_names)
    unknown = produced - set(_KNOWN_INPUTS)
    if unknown or not {"input_ids", "attention_mask"} <= produced:
        raise EmbedderError(f"the onnx backend cannot feed tokenizer inputs {sorted(produced)}")
    return tuple(n for n in _KNOWN_INPUTS if n in produced)


def cached_export(model: Any, cache_dir: Path, source_sha: str, *, quantize: bool,
                  inputs: tuple[str, ...]) -> Path:
    """The ONNX file for these weights, exported (and quantized) only when not yet cached.
    The int8 file is made from the cached fp32 one."""
    fp32 = cache_dir / f"{source_sha}-fp32.onnx"
    if not fp32.exists():
        _write_atomically(fp32, lambda tmp: export_onnx(model, tmp, inputs))
    if not quantize:
        return fp32
    int8 = cache_dir / f"{source_sha}-int8.onnx"
    if not int8.exists():
        _write_atomically(int8, lambda tmp: quantize_int8(fp32, tmp))
    return int8


class _TokenEmbeddings(torch.nn.Module):
    """The Hugging Face model as a graph of named tensors in, token embeddings out."""

    def __init__(self, auto_model: torch.nn.Module, inputs: tuple[str, ...]) -> None:
        super().__init__()
        self.auto_model = auto_model
        self.inputs = inputs

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        output = self.auto_model(**dict(zip(self.inputs, tensors, strict=True)), return_dict=True)
        hidden: torch.Tensor = output.last_hidden_state
        return hidden


def export_onnx(model: Any, target: Path, inputs: tuple[str, ...]) -> None:
    """Export the transformer with dynamic batch and sequence axes. The sample batch is
    padded (two lengths), so the traced graph keeps the attention-mask path.

    The legacy (TorchScript) exporter is tried first: no extra dependency, fast. If torch
    no longer has it, the dynamo exporter (needs ``onnxscript``) is used."""
    wrapper = _TokenEmbeddings(model[0].auto_model, inputs).eval()
    sample = model.tokenizer(["a short sample", "a somewhat longer sample sentence to export"],
                             padding=True, return_tensors="pt")
    args = tuple(sample[name] for name in inputs)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*inputs, _OUTPUT)}
    options: dict[str, Any] = {"input_names": list(inputs), "output_names": [_OUTPUT],
                               "dynamic_axes": axes, "opset_version": _OPSET}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        try:
            torch.onnx.export(wrapper, args, str(target), dynamo=False, **options)
        except Exception as legacy:
            try:
                _import("onnxscript")
                torch.onnx.export(wrapper, args, str(target), dynamo=True, external_data=False,
                                  **options)
            except MissingDependencyError as exc:
                raise exc from legacy
            except Exception as exc:
                raise EmbedderError(f"ONNX export failed: {exc}") from legacy


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic quantization: int8 weights (QInt8, one scale per output channel), activations
    quantized per batch at run time. The feed-forward down-projections stay fp32: their
    inputs (after GELU) carry the outliers that one uint8 scale per tensor clips. Chosen ad
    hoc on MiniLM-L6 with the texts of tests/integration/test_onnx_embedder.py (min cosine
    with torch: all weights per tensor 0.90, per channel 0.967, per channel without the
    down-projections 0.984); the test keeps the bar (> 0.98), benchmarks/onnx_backend.py
    measures SciFact."""
    onnx = _import("onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_exclude=down_projections(onnx.load(str(source)).graph))


def down_projections(graph: Any) -> list[str]:
    """MatMul nodes whose constant weight maps a wider input to a narrower output (in BERT:
    each layer's intermediate → hidden projection)."""
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul"
            and len(shape := shapes.get(node.input[1], ())) == 2 and shape[0] > shape[1]]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """``write`` fills a temporary file beside ``target``, which is then renamed into place:
    concurrent builders and crashes never leave a partial file under the final name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".onnx.tmp",
                                    dir=target.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp's 0600 would hide the cache from other service accounts
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _session(ort: Any, path: Path, threads: int | None) -> Any:
    """A CPU session with ``threads`` intra-op threads that do not spin when idle: spinning
    threads take the CPU that Milvus Lite (a thread of this process when embedded) needs,
    as torch's idle OpenMP threads do (see ``query_threads`` of the parent)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or _usable_cpus()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # a corrupt or foreign file in the cache folder
        raise EmbedderError(f"ONNX Runtime cannot load {path}: {exc}; delete it to re-export") \
            from exc


def _usable_cpus() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def _import(package: str) -> Any:
    """Import an optional dependency of the ``onnx`` extra, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise MissingDependencyError(package, EXTRA) from exc
