"""MicroBatcher: concurrent single requests share batched calls; errors and cancellations
stay with their own callers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from advanced_rag.batching import MicroBatcher
from advanced_rag.errors import EmbedderError


class Model:
    """An encode that takes time and records every batch it was given."""

    def __init__(self, *, fail_on: str | None = None, short_by: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.short_by = short_by

    async def encode(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        await asyncio.sleep(0.02)
        if self.fail_on in texts:
            raise RuntimeError("model crashed")
        return np.array([[float(len(t)), float(i)] for i, t in enumerate(texts)])[
            :len(texts) - self.short_by]


async def test_a_lone_caller_is_encoded_at_once_and_alone() -> None:
    model = Model()
    batcher = MicroBatcher(model.encode)
    vector = await batcher.submit("abc")
    assert vector.tolist() == [3.0, 0.0] and model.batches == [["abc"]]


async def test_callers_arriving_while_the_model_is_busy_share_the_next_call() -> None:
    model = Model()
    batcher = MicroBatcher(model.encode, max_batch=4)
    texts = ["a" * (i + 1) for i in range(9)]
    vectors = await asyncio.gather(*(batcher.submit(t) for t in texts))
    # each caller gets the row of its own text
    assert [v[0] for v in vectors] == [float(len(t)) for t in texts]
    assert [len(b) for b in model.batches] == [4, 4, 1]  # never more than max_batch
    assert sorted(t for b in model.batches for t in b) == sorted(texts)
    assert (batcher.batches, batcher.requests) == (3, 9)


async def test_a_failed_batch_fails_only_its_callers() -> None:
    model = Model(fail_on="bad")
    batcher = MicroBatcher(model.encode, max_batch=2)
    results = await asyncio.gather(*(batcher.submit(t) for t in ["bad", "b", "cc"]),
                                   return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], RuntimeError)
    assert isinstance(results[2], np.ndarray) and results[2][0] == 2.0
    assert await batcher.submit("dd") is not None  # the batcher keeps working


async def test_a_short_reply_is_an_embedder_error() -> None:
    batcher = MicroBatcher(Model(short_by=1).encode, error_type=EmbedderError)
    with pytest.raises(EmbedderError, match="returned 0 results for 1"):
        await batcher.submit("a")


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    model = Model()
    batcher = MicroBatcher(model.encode)
    first = asyncio.ensure_future(batcher.submit("first"))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(batcher.submit(t)) for t in ("x", "yy")]
    await asyncio.sleep(0)
    waiting[0].cancel()
    assert (await first)[0] == 5.0
    assert (await waiting[1])[0] == 2.0
    assert model.batches == [["first"], ["yy"]]  # the cancelled text was never encoded


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(Model().encode, max_batch=0)
