"""Take lanes: one take of a task at a time from each server process (issue 12 item 5).

Every take of a task updates that task's one row, so PostgreSQL runs them one after another
whatever their number. Sent all at once (a flash crowd: hundreds of connections clicking one
task), they queue inside PostgreSQL on the row's lock, and that queue moves far slower than the
same takes sent one by one: measured on this 2-core machine, 100 takes of one task over 40
connections took 500–800 ms, over one connection 160–200 ms (each waiter wakes, re-checks the
row, takes the lock queue's next turn). So each process keeps its own queue per task:

1. A take whose task has no take in flight from this process goes straight to the database (an
   uncontended take pays nothing: no wait, no Redis, no extra query).
2. Otherwise it waits for its turn in this process's lane for the task (FIFO); at most one take
   per task per process is in PostgreSQL, so with N processes at most N wait on the row.
3. A take whose result says it emptied the task (or that PostgreSQL refused because the task was
   full) answers every take queued behind it in the lane `slot_taken` at once, without the
   database: they asked while the last slot was being taken. Only takes queued at that moment,
   and only for `SOLD_OUT_S` seconds: a slot that comes back (an abandon) is seen by the next
   take that reaches the database. An abandon in this process also clears it at once.
4. A lane is forgotten as soon as nobody is in it: no state outlives a burst.

The database still decides every winner: a lane only orders this process's takes of a task and
turns away, early, takes that would meet a full task. Other tasks' takes never wait for a lane.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from models.errors import SlotTaken

T = TypeVar("T")
SOLD_OUT_S = 3.0  # as the sold-out mark's TTL (server/soldout.py)


class _Lane:
    __slots__ = ("lock", "users", "sold_out_at", "sold_out_turn", "turns")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()  # FIFO: waiters get the lock in the order they asked
        self.users = 0  # takes queued or running
        self.turns = 0  # takes that entered the lane so far
        self.sold_out_at = 0.0  # monotonic time of the last "task emptied" result, 0 = none
        self.sold_out_turn = 0  # takes that entered before that result are answered by it


class TakeLanes:
    def __init__(self) -> None:
        self._lanes: dict[int, _Lane] = {}

    def queued(self, task_id: int) -> int:
        """Takes of the task queued or running in this process (for tests and metrics)."""
        lane = self._lanes.get(task_id)
        return 0 if lane is None else lane.users

    async def take(self, task_id: int, call: Callable[[], Awaitable[T]], emptied: Callable[[T], bool]) -> T:
        """Run `call` (the take) in the task's lane. `emptied(result)` says whether it took the
        task's last slot; a SlotTaken with `sold_out` says the task was full."""
        lane = self._lanes.get(task_id)
        if lane is None:
            lane = self._lanes[task_id] = _Lane()
        lane.users += 1
        lane.turns += 1
        my_turn = lane.turns
        try:
            async with lane.lock:
                if my_turn <= lane.sold_out_turn and time.monotonic() - lane.sold_out_at < SOLD_OUT_S:
                    lost = SlotTaken()
                    lost.sold_out, lost.in_lane = True, True  # no database call: the caller need not mark it again
                    raise lost
                try:
                    result = await call()
                except SlotTaken as lost:
                    if getattr(lost, "sold_out", False):
                        self._sold_out(lane)
                    raise
                if emptied(result):
                    self._sold_out(lane)
                return result
        finally:
            lane.users -= 1
            if lane.users == 0 and self._lanes.get(task_id) is lane:
                del self._lanes[task_id]

    @staticmethod
    def _sold_out(lane: _Lane) -> None:
        lane.sold_out_at = time.monotonic()
        lane.sold_out_turn = lane.turns  # everybody queued now

    def slot_returned(self, task_id: int) -> None:
        """A slot of the task came back (an abandon in this process): queued takes go to the database."""
        lane = self._lanes.get(task_id)
        if lane is not None:
            lane.sold_out_turn = 0


def lanes_of(app) -> TakeLanes | None:
    return getattr(app.ctx, "take_lanes", None)
