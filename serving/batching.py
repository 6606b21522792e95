"""How a model version executes requests: one by one, or in dynamic batches (Triton's
dynamic batcher).

    requests ──► queue ──► [rows ≤ max_batch_size, waited ≤ max_queue_delay] ──► one ONNX
                                                                                 Runtime call
    caller k ◄── rows a_k..b_k of every output ◄──────────────────────────────────┘

Everything but the ONNX Runtime call happens on the server's event loop, so the queue needs no
lock. A batch is gathered from the requests queued when the executor is free: under load the
requests that arrive while one batch computes form the next. Without a delay
(`max_queue_delay_microseconds` 0, Triton's default) the batcher only lets the loop read and
parse what has already arrived, turn after turn while that brings more (at most
`GATHER_SECONDS`), as Triton's batcher sees what its parsing threads queued meanwhile; a lone
request skips the queue. With a delay, a batch that is not full waits
for more until its oldest request has waited that long (the event loop's clock counts in
milliseconds, so shorter delays round up to one). Requests are never split, and only requests
whose non-batch axes agree share a batch. At most `instances` batches run at once.

A call runs on the event loop itself when the last call of its size took under
`INLINE_SECONDS` (a thread hand-off costs about that much), or under `ALONE_SECONDS` when
it answers the only request in progress (no other request to read meanwhile); otherwise on
the model's threads, so that the loop keeps reading requests while ONNX Runtime computes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from serving.model_config import BatchPolicy
from serving.statistics import Execution, VersionStats

Arrays = dict[str, np.ndarray]
INLINE_SECONDS = 50e-6
GATHER_SECONDS = 1e-3  # the longest a batch goes on gathering requests that keep coming
ALONE_SECONDS = 2e-3  # beyond this even a lone request leaves the loop free (health checks)


@dataclass
class Pending:
    inputs: Arrays
    rows: int
    future: asyncio.Future[Arrays] | None = None  # None: run at once, not queued
    alone: bool = False  # the only request in progress when it came
    arrived_ns: int = field(default_factory=time.perf_counter_ns)

    def key(self) -> tuple[tuple[int, ...], ...]:
        """What must agree between requests of one batch: every axis but the first."""
        return tuple(a.shape[1:] for a in self.inputs.values())


def execute(run: Callable[[Arrays], Arrays],
            batch: list[Pending]) -> tuple[list[Arrays], Execution]:
    """Run a batch as one call; every request's rows of every output, and the timings."""
    start = time.perf_counter_ns()
    if len(batch) == 1:
        inputs = batch[0].inputs
    else:
        inputs = {name: np.concatenate([p.inputs[name] for p in batch])
                  for name in batch[0].inputs}
    gathered = time.perf_counter_ns()
    outputs = run(inputs)
    computed = time.perf_counter_ns()
    rows = sum(p.rows for p in batch)
    if len(batch) == 1:
        parts = [outputs]
    else:
        for name, array in outputs.items():
            if array.shape[:1] != (rows,):
                raise ValueError(f"output {name!r} of a batch of {rows} has shape "
                                 f"{list(array.shape)}: its first axis is not the batch")
        ends = np.cumsum([p.rows for p in batch])
        parts = [{name: array[end - p.rows:end] for name, array in outputs.items()}
                 for p, end in zip(batch, ends, strict=True)]
    done = time.perf_counter_ns()
    return parts, Execution(rows, len(batch), [start - p.arrived_ns for p in batch],
                            gathered - start, computed - gathered, done - computed)


class Executor:
    """Runs one model version's requests; `policy` None runs each request on its own."""

    def __init__(self, run: Callable[[Arrays], Arrays], stats: VersionStats,
                 policy: BatchPolicy | None, instances: int) -> None:
        self.run, self.stats, self.policy, self.instances = run, stats, policy, instances
        self.threads = ThreadPoolExecutor(instances, thread_name_prefix=stats.name[:16])
        self.queue: deque[Pending] = deque()
        self.queued_rows = 0
        self.busy = 0  # batches running
        self.pumping = False
        self.arrival = asyncio.Event()
        self.seconds: dict[int, float] = {}  # last call's duration by batch size class

    async def infer(self, inputs: Arrays, rows: int, alone: bool = False) -> Arrays:
        """Every output of the model for these inputs (`rows` examples); `alone`: no other
        request is in progress."""
        if self._at_once(rows, alone):
            parts, run = execute(self.run, [Pending(inputs, rows)])
            self._record(run)
            return parts[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Arrays] = loop.create_future()
        self.queue.append(Pending(inputs, rows, future, alone))
        self.queued_rows += rows
        self.arrival.set()
        self._pump_soon(loop)
        return await future

    def _at_once(self, rows: int, alone: bool) -> bool:
        """Whether to run a request on the loop now, past the queue: it must be cheap, and
        either nothing batches, or nothing could join it (it is alone, nothing queued, no
        delay asked for)."""
        if self.policy is not None and not (
                alone and self.policy.max_queue_delay_s == 0 and not self.queue
                and not self.busy):
            return False
        return self._inline(rows, alone)

    def _inline(self, rows: int, alone: bool) -> bool:
        limit = ALONE_SECONDS if alone else INLINE_SECONDS
        return self.seconds.get(rows.bit_length(), 1.0) < limit

    def _pump_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.pumping and self.busy < self.instances and self.queue:
            self.pumping = True
            loop.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while self.queue and self.busy < self.instances:
                if self.policy is not None and self.policy.max_queue_delay_s > 0:
                    await self._wait_for_more(self.policy)
                elif self.policy is not None:
                    await self._turn_loop(self.policy)
                batch = self._take()
                alone = len(batch) == 1 and batch[0].alone and not self.queue
                if self._inline(sum(p.rows for p in batch), alone):
                    self._run_inline(batch)
                else:
                    self.busy += 1
                    asyncio.get_running_loop().create_task(self._run_threaded(batch))
        finally:
            self.pumping = False

    async def _turn_loop(self, policy: BatchPolicy) -> None:
        """Let the event loop read and parse what has arrived (two turns), again while that
        brings more requests (for at most GATHER_SECONDS), so that requests already received
        join this batch: Triton parses requests in threads beside its batcher, this server on
        the batcher's own loop."""
        deadline = time.perf_counter() + GATHER_SECONDS
        while self.queued_rows < policy.max_batch_size:
            before = self.queued_rows
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if self.queued_rows == before or time.perf_counter() > deadline:
                return

    async def _wait_for_more(self, policy: BatchPolicy) -> None:
        deadline = self.queue[0].arrived_ns / 1e9 + policy.max_queue_delay_s
        while self.queued_rows < policy.max_batch_size and self.queued_rows not in policy.preferred:
            left = deadline - time.perf_counter_ns() / 1e9
            if left <= 0:
                return
            self.arrival.clear()
            try:
                await asyncio.wait_for(self.arrival.wait(), left)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[Pending]:
        """The oldest request and the later ones that fit in its batch (same non-batch axes,
        rows within the limit); the others keep their order in the queue."""
        first = self.queue.popleft()
        batch, rows, left = [first], first.rows, deque[Pending]()
        limit = self.policy.max_batch_size if self.policy is not None else 0
        while self.queue and rows < limit:
            pending = self.queue.popleft()
            if rows + pending.rows <= limit and pending.key() == first.key():
                batch.append(pending)
                rows += pending.rows
            else:
                left.append(pending)
        left.extend(self.queue)
        self.queue = left
        self.queued_rows -= rows
        return batch

    def _run_inline(self, batch: list[Pending]) -> None:
        try:
            self._finish(batch, *execute(self.run, batch))
        except Exception as err:
            self._fail(batch, err)

    async def _run_threaded(self, batch: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._finish(batch, *await loop.run_in_executor(self.threads, execute, self.run,
                                                            batch))
        except Exception as err:
            self._fail(batch, err)
        finally:
            self.busy -= 1
            self._pump_soon(loop)

    def _record(self, run: Execution) -> None:
        self.seconds[run.rows.bit_length()] = run.infer_ns / 1e9
        self.stats.executed(run)

    def _finish(self, batch: list[Pending], parts: list[Arrays], run: Execution) -> None:
        self._record(run)
        for pending, part in zip(batch, parts, strict=True):
            if pending.future is not None and not pending.future.done():
                pending.future.set_result(part)

    @staticmethod
    def _fail(batch: list[Pending], err: Exception) -> None:
        for pending in batch:
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(err)

    def close(self) -> None:
        self.threads.shutdown(wait=False)
