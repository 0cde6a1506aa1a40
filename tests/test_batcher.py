"""The dynamic batcher on its own event loop, with a real (numpy) model: requests sent together run together
up to max_batch, each gets its own rows back, a request that does not fit opens the next batch, a lone one
waits no longer than max_delay, and a request that times out or is cancelled does not fail the others."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from infersearch.serve.batcher import Batcher, QueueFull
from infersearch.serve.metrics import make_metrics


class Model:
    """Doubles its input; records each batch's size; can be held until released (a slow batch)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.threads: set[int | None] = set()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.gate.wait(5)
        self.sizes.append(len(x))
        self.threads.add(threading.get_ident())
        return 2 * x


def _batcher(model: Model, max_batch: int = 8, delay_s: float = 0.05, queue: int = 64, workers: int = 1) -> Batcher:
    return Batcher(model, make_metrics(None, max_batch), max_batch, delay_s, workers=workers, queue_limit=queue)


@pytest.mark.parametrize("workers", [0, 1, 2])  # 0: batches run on the event loop's thread
def test_requests_sent_together_share_batches_and_get_their_own_rows(workers):
    model = Model()

    async def go():
        b = _batcher(model, workers=workers)
        b.start()
        xs = [np.full((n, 2), i, np.float32) for i, n in enumerate([1, 3, 2, 1, 4, 1])]  # 12 samples, max 8
        outs = await asyncio.gather(*(b.submit(x, 5.0) for x in xs))
        await b.stop()
        return xs, outs

    xs, outs = asyncio.run(go())
    for x, y in zip(xs, outs):
        np.testing.assert_array_equal(y, 2 * x)
    if workers <= 1:  # one collector: 1+3+2+1 = 7; the 4 did not fit and opened the next batch
        assert model.sizes == [7, 5]
    assert sum(model.sizes) == 12 and max(model.sizes) <= 8
    assert (model.threads == {threading.main_thread().ident}) == (workers == 0)


def test_a_lone_request_waits_about_max_delay():
    model = Model()

    async def go():
        b = _batcher(model, delay_s=0.05)
        b.start()
        t = time.perf_counter()
        await b.submit(np.ones((1, 2), np.float32), 5.0)
        took = time.perf_counter() - t
        await b.stop()
        return took

    assert 0.04 < asyncio.run(go()) < 0.5
    assert model.sizes == [1]


def test_a_timed_out_or_cancelled_request_leaves_the_others_answered():
    model = Model()
    model.gate.clear()  # the first batch is held: the requests behind it wait

    async def go():
        b = _batcher(model, max_batch=2, delay_s=0.001)
        b.start()
        first = b.submit(np.ones((2, 2), np.float32), 5.0)  # a full batch, held in the model
        await asyncio.sleep(0.05)
        late = b.submit(np.ones((1, 2), np.float32), 0.05)  # times out while queued
        gone = b.submit(np.ones((1, 2), np.float32), 5.0)
        kept = b.submit(np.full((1, 2), 3, np.float32), 5.0)
        gone.cancel()  # its client went away
        with pytest.raises(TimeoutError):
            await late
        model.gate.set()
        results = await first, await kept
        await b.stop()
        return results

    first, kept = asyncio.run(go())
    np.testing.assert_array_equal(kept, np.full((1, 2), 6, np.float32))
    assert model.sizes == [2, 1]  # the timed-out and cancelled requests never ran


def test_a_full_queue_refuses_at_once():
    model = Model()
    model.gate.clear()

    async def go():
        b = _batcher(model, max_batch=1, queue=2)
        b.start()
        held = [b.submit(np.ones((1, 2), np.float32), 5.0)]
        await asyncio.sleep(0.05)  # the first is in the model now; two more fill the queue
        held += [b.submit(np.ones((1, 2), np.float32), 5.0) for _ in range(2)]
        with pytest.raises(QueueFull, match="serve.queue_size"):
            b.submit(np.ones((1, 2), np.float32), 5.0)
        model.gate.set()
        await asyncio.gather(*held)
        await b.stop()

    asyncio.run(go())
    assert model.sizes == [1, 1, 1]
