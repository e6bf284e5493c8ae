"""Micro-batching of concurrent searches: requests arriving within a few ms run as one batch.

As Triton's dynamic batcher and Ray Serve's `@serve.batch` do: a batch holds at most `max_size`,
at most `concurrency` batches run at once (Triton's instance count), each on its own inference
thread, and with nothing running a request waits at most `max_wait_s` for others to join. Each
batch takes a fair share of the work, the waiting and the running requests split evenly over the
concurrent batches, and while another batch runs it waits until its share has arrived. Greedy
batching on two cores fell into a convoy under closed-loop load: one batch of 13 ran for a second
while the other core ran the few remaining requests one by one (a batch of one costs 2x a batch
of eight per image), and the requests of the big batch made the tail; fair shares keep batches even
(docs/benchmarks.md). One bad request never fails its neighbours: a batch that raises is re-run one
request at a time, each getting its own answer or error.
"""

from __future__ import annotations

import asyncio
from collections import deque
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
        self._pending: deque[tuple[Item, asyncio.Future[Answer]]] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._running_items = 0

    def start(self) -> None:
        self._wake = asyncio.Event()
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
        if self._wake is None:
            raise RuntimeError("the batcher is not started")
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wake.set()
        return await future

    def _waiting(self) -> int:
        """How many requests wait (those whose caller went away are dropped)."""
        if any(future.cancelled() for _, future in self._pending):
            self._pending = deque(entry for entry in self._pending if not entry[1].cancelled())
        return len(self._pending)

    def _share(self, waiting: int) -> int:
        """The fair size of the next batch: what waits and what runs, split evenly over the concurrent batches."""
        return max(1, min(self.policy.max_size, -(-(waiting + self._running_items) // self.policy.concurrency)))

    async def _until_woken(self, timeout: float | None) -> None:
        """Until a request arrives or a batch finishes (or `timeout` seconds pass)."""
        assert self._wake is not None
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _gather(self) -> list[tuple[Item, asyncio.Future[Answer]]]:
        """The oldest waiting requests, as many as a fair share. While other batches run, wait for a share to
        arrive (their requests come back as they finish); with nothing running, wait at most `max_wait_s`."""
        loop = asyncio.get_running_loop()
        while not self._waiting():
            await self._until_woken(None)
        deadline = loop.time() + self.policy.max_wait_s
        while True:
            waiting = self._waiting()
            if self._running_items:
                if waiting >= self._share(waiting):
                    break
                await self._until_woken(None)
                continue
            left = deadline - loop.time()
            if waiting >= self.policy.max_size or left <= 0:
                break
            await self._until_woken(left)
        return [self._pending.popleft() for _ in range(self._share(waiting))]

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.policy.concurrency)
        while True:
            await slots.acquire()  # gather only when a batch can start: meanwhile the queue fills
            batch = await self._gather()
            self._running_items += len(batch)
            task = loop.create_task(self._answer(batch))
            self._running.add(task)
            task.add_done_callback(lambda done, size=len(batch): self._finished(done, size, slots))

    def _finished(self, task: asyncio.Task[None], size: int, slots: asyncio.Semaphore) -> None:
        self._running.discard(task)
        self._running_items -= size
        slots.release()
        if self._wake is not None:
            self._wake.set()

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
