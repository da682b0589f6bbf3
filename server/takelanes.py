"""Take lanes: a task's takes go from each server process to PostgreSQL one call at a time, several
takes per call when several wait (issue 12 item 5, the flash crowd).

Every take of a task updates that task's one row, so PostgreSQL runs them one after another
whatever their number. Sent all at once (a flash crowd: hundreds of connections clicking one
task), they queue inside PostgreSQL on the row's lock, and that queue moves far slower than the
same takes sent one by one: measured on this 2-core machine, 100 takes of one task over 40
connections took 500–800 ms, over one connection 160–200 ms (each waiter wakes, re-checks the
row, takes the lock queue's next turn), and a busy server adds an event-loop turn to every step.
So each process keeps one lane per task:

1. A take whose task has nothing in flight from this process goes straight to the database as
   itself (`orders.take`): an uncontended take pays nothing, no wait, no extra round trip.
2. Takes that arrive while the lane's call is in flight wait in the lane (FIFO). When the call
   returns, all of them (up to `orders.TAKE_BATCH_MAX`) go as ONE call, `orders.take_batch`: one
   commit for all, each take its own subtransaction, so each wins or loses exactly as alone.
   With N processes at most N calls wait on the task's row, and a crowd of 100 takes is a few
   calls, not 100 lock hand-overs.
3. A call whose result says the task is now full (a take emptied it, or lost because it was full)
   answers every take still waiting in the lane `slot_taken` at once, without the database: they
   asked before the last slot went. An abandon in this process lets them through instead.
4. Once a call has said how many slots are left (L), the lane keeps at most L takes waiting or in
   flight: a take arriving behind them, or waiting beyond them when a call returns, is answered
   `slots_being_taken` (409, Retry-After: 1) at once — the slots left are being taken by workers
   who clicked before it; if one of them fails, a retry can still win. L is what PostgreSQL said
   last (other processes' takes since only make it smaller: the lane keeps at least as many takes
   as can win); an abandon in this process forgets it.
5. A lane is forgotten as soon as it is empty: no state outlives a burst.

The database decides every winner: a lane only orders and groups this process's takes of a task,
and turns away early the takes that would meet a full task or wait behind as many takes as
there are slots. Other tasks' takes never wait for it.
A take whose request is cancelled while it waits leaves the lane; once its call is sent it runs
(as a take whose client hung up always did) and its result is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from models import orders
from models.errors import DomainError, SlotsBeingTaken, SlotTaken
from models.orders import Order

log = logging.getLogger("market.takelanes")


class _Lane:
    __slots__ = ("waiting", "running", "in_flight", "left", "returned")

    def __init__(self) -> None:
        self.waiting: deque[tuple[int, int | None, asyncio.Future]] = deque()
        self.running = False
        self.in_flight = 0  # takes in the call now running
        self.left: int | None = None  # slots left after the last call (None: not known yet)
        self.returned = False  # a slot came back while the call was in flight


def _full(result: Order | BaseException) -> bool:
    if isinstance(result, Order):
        return result.slots_left == 0
    return isinstance(result, SlotTaken) and getattr(result, "sold_out", False)


def _slots_left(results: list, before: int | None) -> int | None:
    """The slots left after a call, as its results say (the last winner's count, 0 if a take met
    the task full); `before` if they do not say."""
    left = before
    for r in results:
        if isinstance(r, Order) and r.slots_left is not None:
            left = r.slots_left if left is None else min(left, r.slots_left)
        elif _full(r):
            left = 0
    return left


def _sold_out() -> SlotTaken:
    lost = SlotTaken()
    lost.sold_out, lost.in_lane = True, True  # in_lane: no database call, the caller need not mark it again
    return lost


class TakeLanes:
    def __init__(self, batch_max: int = orders.TAKE_BATCH_MAX) -> None:
        self._lanes: dict[int, _Lane] = {}
        self._batch_max = batch_max
        self._drivers: set[asyncio.Task] = set()  # referenced while they run
        self.calls = 0  # database calls made (for tests and the benchmark)

    def waiting(self, task_id: int) -> int:
        """Takes of the task waiting in this process's lane (not counting the call in flight)."""
        lane = self._lanes.get(task_id)
        return 0 if lane is None else len(lane.waiting)

    async def take(self, task_id: int, worker_id: int, token_version: int | None) -> Order:
        """`orders.take(task_id, worker_id, token_version=...)`, through the task's lane."""
        lane = self._lanes.get(task_id)
        if lane is None:
            lane = self._lanes[task_id] = _Lane()
        if lane.left is not None and lane.in_flight + len(lane.waiting) >= lane.left > 0:
            raise SlotsBeingTaken()  # as many takes as there are slots left are ahead of this one
        future = asyncio.get_running_loop().create_future()
        lane.waiting.append((worker_id, token_version, future))
        if not lane.running:
            lane.running = True
            driver = asyncio.ensure_future(self._drive(task_id, lane))
            self._drivers.add(driver)
            driver.add_done_callback(self._drivers.discard)
        return await future  # cancelled: the future is, and the lane skips it

    def slot_returned(self, task_id: int) -> None:
        """A slot of the task came back (an abandon in this process): waiting takes go to the database."""
        lane = self._lanes.get(task_id)
        if lane is not None:
            lane.returned, lane.left = True, None

    async def _drive(self, task_id: int, lane: _Lane) -> None:
        batch: list = []
        try:
            while lane.waiting:
                batch = []
                while lane.waiting and len(batch) < self._batch_max:
                    item = lane.waiting.popleft()
                    if not item[2].done():  # not cancelled meanwhile
                        batch.append(item)
                if not batch:
                    continue
                lane.returned, lane.in_flight = False, len(batch)
                try:
                    results = await self._call(task_id, batch)
                finally:
                    lane.in_flight = 0
                for (_, _, future), result in zip(batch, results):
                    if not future.done():
                        if isinstance(result, BaseException):
                            future.set_exception(result)
                        else:
                            future.set_result(result)
                if lane.returned:
                    continue  # a slot came back meanwhile: what the call said may be stale
                lane.left = _slots_left(results, lane.left)
                if lane.left == 0:
                    while lane.waiting:  # they asked before the last slot went
                        _, _, future = lane.waiting.popleft()
                        if not future.done():
                            future.set_exception(_sold_out())
                while lane.left is not None and len(lane.waiting) > lane.left:
                    _, _, future = lane.waiting.pop()  # the latest: the first `left` are ahead of it
                    if not future.done():
                        future.set_exception(SlotsBeingTaken())
        except BaseException as e:  # noqa: BLE001 - cancelled (shutdown) or a bug: nobody is left waiting
            pending = [future for _, _, future in batch] + [future for _, _, future in lane.waiting]
            lane.waiting.clear()
            for future in pending:
                if not future.done():
                    future.set_exception(e if isinstance(e, Exception) else RuntimeError("take lane stopped"))
            if not isinstance(e, Exception):
                raise
            log.exception("take lane of task %s failed", task_id)
        finally:
            lane.running = False
            if self._lanes.get(task_id) is lane and not lane.waiting:
                del self._lanes[task_id]

    async def _call(self, task_id: int, batch: list) -> list[Order | BaseException]:
        """One database call for the batch; an error of the call is every take's answer."""
        self.calls += 1
        try:
            if len(batch) == 1:
                worker_id, token_version, _ = batch[0]
                try:
                    return [await orders.take(task_id, worker_id, token_version=token_version)]
                except DomainError as lost:
                    return [lost]
            return list(await orders.take_batch(task_id, [(w, v) for w, v, _ in batch]))
        except Exception as e:  # noqa: BLE001 - the database failed: each take fails as it would alone
            return [e] * len(batch)


def lanes_of(app) -> TakeLanes | None:
    return getattr(app.ctx, "take_lanes", None)
