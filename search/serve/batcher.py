"""Dynamic batching: requests wait in a bounded queue and run together, up to ``max_batch`` samples or
``max_delay_s`` after the first one arrived, whichever comes first. Inference runs in a thread pool,
off the event loop; each request gets its own rows of the output back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from infersearch.serve.metrics import ServeMetrics


class QueueFull(RuntimeError):
    """The queue holds ``queue_limit`` requests already: the caller should retry later (HTTP 503)."""


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        metrics: ServeMetrics,
        max_batch: int,
        max_delay_s: float,
        workers: int,
        queue_limit: int,
    ) -> None:
        self.predict, self.metrics = predict, metrics
        self.max_batch, self.max_delay_s, self.queue_limit = max_batch, max_delay_s, queue_limit
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="infersearch-infer")
        self._workers = workers
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._collect()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=True)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        if self._queue.qsize() >= self.queue_limit:
            raise QueueFull(f"{self._queue.qsize()} requests queued (serve.queue_size)")
        item = _Item(x, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(item)
        return await item.future  # cancelled with the request (timeout): the batch then skips it

    async def _collect(self) -> None:
        held: _Item | None = None  # the request that did not fit the last batch opens the next one
        while True:
            first = held or await self._queue.get()
            held = None
            items, n = [first], len(first.x)
            deadline = first.enqueued + self.max_delay_s
            while n < self.max_batch and (wait := deadline - time.perf_counter()) > 0:
                try:
                    item = await asyncio.wait_for(self._queue.get(), wait)
                except TimeoutError:
                    break
                if n + len(item.x) > self.max_batch:
                    held = item
                    break
                items.append(item)
                n += len(item.x)
            await self._run([i for i in items if not i.future.done()])

    async def _run(self, items: list[_Item]) -> None:
        if not items:
            return
        start, totals = time.perf_counter(), self.metrics.totals
        for item in items:
            self.metrics.queue.observe(start - item.enqueued)
            totals.queue_ns += int((start - item.enqueued) * 1e9)
        totals.queued += len(items)
        batch = items[0].x if len(items) == 1 else np.concatenate([i.x for i in items])
        try:
            out = await asyncio.get_running_loop().run_in_executor(self._pool, self.predict, batch)
        except Exception as exc:  # noqa: BLE001 - the model's failure goes to each waiting request
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        took = time.perf_counter() - start
        self.metrics.compute.observe(took)
        self.metrics.batch.observe(len(batch))
        totals.executions, totals.compute_ns = totals.executions + 1, totals.compute_ns + int(took * 1e9)
        totals.inferences, totals.last_ms = totals.inferences + len(batch), int(time.time() * 1000)
        offset = 0
        for item in items:
            rows = out[offset : offset + len(item.x)]
            offset += len(item.x)
            if not item.future.done():
                item.future.set_result(rows)
