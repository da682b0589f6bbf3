"""One process of tests/server/test_sqlite_writers.py: write to a shared SQLite file as fast as the
domain allows, as the server ("server") or as the scheduler ("scheduler") does, and report every
database error as JSON on stdout.

    python -m tests.server.sqlite_hammer <sqlite path> server|scheduler <rounds> <alice id> <bob id>

The server role publishes, takes, submits, adjusts balances and changes the settings (transactions
that read before they write); the scheduler role moves its clock a day ahead, so everything the
server creates is overdue, and sweeps timers, settles referral rewards and drains subscription
messages — the scheduler's jobs, side by side with the server as in `make run`. The scheduler keeps
going until the server has finished (it touches `<path>.server-done`), at least `rounds` rounds: a
scheduler that finished first would have contended with nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback


class _Sent:
    """Stands in for the WeChat client: every subscription message is accepted."""

    async def send_event(self, end, event, openid, payload) -> bool:
        return True


async def main(path: str, role: str, rounds: int, alice_id: int, bob_id: int) -> dict:
    from models import clock, db, ledger, orders, referrals, tasks
    from models import settings as market_settings
    from models.errors import DomainError
    from models.users import End, login_or_register
    from scheduler import outbox, sweeper

    await db.init_db(f"sqlite://{path}", migrate=False)
    errors: list[str] = []
    done = 0
    worked = 0  # rows the scheduler's jobs moved: proof that the two processes really contended
    started = time.monotonic()

    async def attempt(name, make):
        nonlocal done, worked
        try:
            result = await make()
            done += 1
            worked += result if role == "scheduler" and name != "adjust" and isinstance(result, int) else 0
        except DomainError:
            done += 1  # a rule said no (somebody got there first): not a database failure
        except Exception as exc:  # noqa: BLE001 - the point is to count every database error
            errors.append(f"{role} {name}: {type(exc).__name__}: {exc}")

    from pathlib import Path

    server_done = Path(f"{path}.server-done")
    if role == "scheduler":
        clock.advance(86_400)
    i = 0
    while i < rounds or (role == "scheduler" and not server_done.exists() and i < 20 * rounds):
        if role == "server":
            state: dict = {}

            async def publish():
                state["task"] = await tasks.publish(alice_id, title=f"t{i}", instructions="x", unit_price_fen=100, quantity=2)

            async def take_and_submit():
                worker, _ = await login_or_register(End.WORKER, f"hammer-{i}")
                order = await orders.take(state["task"].id, worker.id)
                await orders.submit(order.id, worker.id, proof_text="done")

            await attempt("publish", publish)
            if "task" in state:
                await attempt("take+submit", take_and_submit)
            await attempt("adjust", lambda: ledger.adjust(bob_id, 1, operator_id=1, reason="r", request_id=f"h{i}"))
            await attempt("settings", lambda: market_settings.update({"countdown_s": 300 + i % 2}, operator_id=1))
        else:
            await attempt("sweep", lambda: sweeper.sweep_all(20))
            await attempt("referrals", lambda: referrals.settle(100))
            await attempt("subscriptions", lambda: outbox.drain_subscriptions(_Sent(), batch=50))
            await attempt("adjust", lambda: ledger.adjust(bob_id, 1, operator_id=1, reason="r", request_id=f"s{i}"))
        i += 1
    if role == "server":
        server_done.touch()
    else:  # one more pass over what the server's last rounds left
        await attempt("sweep", lambda: sweeper.sweep_all(20))
        await attempt("subscriptions", lambda: outbox.drain_subscriptions(_Sent(), batch=50))
    await db.close_db()
    return {"role": role, "rounds": i, "done": done, "worked": worked, "errors": errors,
            "seconds": round(time.monotonic() - started, 2)}


if __name__ == "__main__":
    try:
        report = asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
    except Exception:  # noqa: BLE001
        report = {"role": sys.argv[2], "done": 0, "errors": [traceback.format_exc()], "seconds": 0}
    print(json.dumps(report))
