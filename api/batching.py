"""Micro-batching of concurrent searches: requests arriving within a few ms run as one batch.

As Triton's dynamic batcher and Ray Serve's `@serve.batch` do: a request waits at most
`max_wait_s` for others to join, a batch holds at most `max_size`, and at most `concurrency`
batches run at once (Triton's instance count), each on its own inference thread; while they run
the next one gathers, so under load batches fill up by themselves. On a CPU a batch of convolutions
costs about as much per image as single images do, so throughput comes from keeping every core
busy with its own batch rather than from bigger batches. One bad request never fails its
neighbours: a batch that raises is re-run one request at a time, each getting its own answer or
error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class BatchPolicy:
    max_size: int = 16
    max_wait_s: float = 0.005
    concurrency: int = 1

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.max_wait_s < 0 or self.concurrency < 1:
            raise ValueError("a batch holds at least one request, waits a non-negative time, and at least one runs")


class MicroBatcher(Generic[Item, Answer]):
    """`await submit(item)` -> `run([items])`'s answer for it, `run` called on `executor` with whole batches
    (the executor needs `policy.concurrency` threads for that many batches to run at once)."""

    def __init__(self, run: Callable[[list[Item]], list[Answer]], policy: BatchPolicy, executor: Executor,
                 on_batch: Callable[[int], None] = lambda size: None) -> None:
        self.run, self.policy, self.executor, self.on_batch = run, policy, executor, on_batch
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Answer]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        for task in list(self._running):
            task.cancel()
        self._running.clear()

    async def submit(self, item: Item) -> Answer:
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _gather(self) -> list[tuple[Item, asyncio.Future[Answer]]]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.policy.max_wait_s
        while len(batch) < self.policy.max_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
        return [(item, future) for item, future in batch if not future.cancelled()]

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.policy.concurrency)
        while True:
            await slots.acquire()  # gather only when a batch can start: meanwhile the queue fills
            batch = await self._gather()
            if not batch:
                slots.release()
                continue
            task = loop.create_task(self._answer(batch))
            self._running.add(task)
            task.add_done_callback(lambda done: (self._running.discard(done), slots.release()))

    async def _answer(self, batch: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        loop = asyncio.get_running_loop()
        self.on_batch(len(batch))
        items = [item for item, _ in batch]
        try:
            answers: list[Answer | BaseException] = list(await loop.run_in_executor(self.executor, self.run, items))
        except Exception as error:  # noqa: BLE001 (each request gets its own outcome below)
            answers = [error] if len(items) == 1 else [await loop.run_in_executor(self.executor, self._alone, item) for item in items]
        for (_, future), answer in zip(batch, answers):
            if future.done():
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    def _alone(self, item: Item) -> "Answer | BaseException":
        try:
            return self.run([item])[0]
        except Exception as error:  # noqa: BLE001 (handed to the request's future)
            return error
