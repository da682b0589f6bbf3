"""Nobody sees a stale state while the scheduler is down (SPEC §3; issue 17 item 18): every read of
money or state applies the reader's overdue timers first.

The scheduler never runs in these tests. A small market is set up, the clock moves past every
deadline (take window, countdown, review window, appeal window), and then ONE read path is called,
as the first reader of that state: the answer must already be the settled one. Each read path is its
own test case, so one path settling the state cannot hide another that does not.

Cast: Carol invited publisher Alice; Dave invited worker Bob; workers Wu and Xi have no inviter.
Alice's task T1 (3 slots): Bob's order awaits review, Wu's is in progress, one slot untaken.
Alice's task T2 (1 slot): Xi's order was rejected. Wu also has a pending withdrawal.
After the clock moves: T1's untaken slot is refunded (+1 100 to Alice); Bob's order is auto-approved
(+1 000 to Bob, R_w 50 to Dave, R_p 20 to Carol); Wu's countdown ends, and since nobody applied that
in time, Alice's review window of his order opens when it is applied, whole (docs/timers.md: no money
yet); Xi's appeal window ends and the order fails (+1 100 to Alice).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from models import clock, ledger, orders, tasks, withdrawals
from models.users import User
from tests import personas as p
from tests.admin.conftest import Panel, make_operator
from tests.conftest import TEST_SETTINGS

pytestmark = pytest.mark.asyncio

PRICE, FEE, R_W, R_P = 1_000, 100, 50, 20
ALICE_FUNDS = 10_000
ALICE_SETTLED = ALICE_FUNDS - 3 * (PRICE + FEE) - (PRICE + FEE) + (PRICE + FEE) + (PRICE + FEE)  # 7 800
PAST_EVERY_DEADLINE = TEST_SETTINGS["countdown_s"] + TEST_SETTINGS["review_window_s"] + 1  # 1 501 s


async def market(live) -> SimpleNamespace:
    m = SimpleNamespace()
    m.carol = await live.login("publisher", "carol")
    m.alice = await live.login("publisher", "alice", invite_code=m.carol.user["invite_code"])
    m.dave = await live.login("worker", "dave")
    m.bob = await live.login("worker", "bob", invite_code=m.dave.user["invite_code"])
    m.wu = await live.login("worker", "wu")
    m.xi = await live.login("worker", "xi")
    await p.fund(await User.get(id=m.alice.id), ALICE_FUNDS)
    m.t1 = (await tasks.publish(m.alice.id, title="Scan", instructions="Scan it", unit_price_fen=PRICE, quantity=3)).id
    m.bob_order = (await orders.take(m.t1, m.bob.id)).id
    await orders.submit(m.bob_order, m.bob.id, proof_text="done")
    m.wu_order = (await orders.take(m.t1, m.wu.id)).id
    m.t2 = (await tasks.publish(m.alice.id, title="Follow", instructions="Follow", unit_price_fen=PRICE)).id
    m.xi_order = (await orders.take(m.t2, m.xi.id)).id
    await orders.submit(m.xi_order, m.xi.id, proof_text="done")
    await orders.reject(m.xi_order, m.alice.id, reason="blurry")
    await ledger.adjust(m.wu.id, 500, operator_id=1, reason="bonus", request_id="wu-bonus")
    await withdrawals.request(m.wu.id, 200, request_id="wu-w1")
    clock.advance(PAST_EVERY_DEADLINE)  # the scheduler is down: nothing has been applied yet
    return m


async def get(live, who, path: str, **params) -> dict:
    async with live.client(who.token) as c:
        r = await c.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


# --- the Mini Program API ----------------------------------------------------------------------------
async def alice_wallet(live, m):
    w = await get(live, m.alice, "/api/v1/publisher/wallet")
    assert w["available_fen"] == ALICE_SETTLED, w


async def alice_ledger(live, m):
    items = (await get(live, m.alice, "/api/v1/publisher/ledger", limit=50))["items"]
    assert items[0]["balance_after_fen"] == ALICE_SETTLED, items[:3]
    kinds = [i["kind"] for i in items]
    assert "slot_refund" in kinds and "order_fail" in kinds, kinds


async def bob_wallet(live, m):
    w = await get(live, m.bob, "/api/v1/worker/wallet")
    assert (w["available_fen"], w["total_earned_fen"]) == (PRICE, PRICE), w


async def bob_ledger(live, m):
    items = (await get(live, m.bob, "/api/v1/worker/ledger"))["items"]
    assert [(i["kind"], i["amount_fen"], i["order_id"]) for i in items] == [("order_complete", PRICE, m.bob_order)], items


async def wu_wallet_after_his_countdown(live, m):
    w = await get(live, m.wu, "/api/v1/worker/wallet")  # countdown end: his order awaits review
    assert (w["available_fen"], w["withdrawing_fen"]) == (300, 200), w
    (o,) = (await get(live, m.wu, "/api/v1/worker/orders"))["items"]
    assert o["status"] == "awaiting_review" and o["deadline_at"] > o["submit_deadline_at"], o


async def dave_wallet_as_inviter(live, m):
    w = await get(live, m.dave, "/api/v1/worker/wallet")
    assert (w["available_fen"], w["referral_earned_fen"]) == (R_W, R_W), w


async def dave_ledger_as_inviter(live, m):
    items = (await get(live, m.dave, "/api/v1/worker/ledger"))["items"]
    assert [(i["kind"], i["amount_fen"]) for i in items] == [("referral_settle", R_W)], items


async def dave_invitations(live, m):
    inv = await get(live, m.dave, "/api/v1/worker/invitations")
    assert inv["referral_earned_fen"] == R_W and [(i["id"], i["earned_fen"]) for i in inv["invitees"]] == [(m.bob.id, R_W)], inv


async def carol_invitations(live, m):
    inv = await get(live, m.carol, "/api/v1/publisher/invitations")
    assert [(i["id"], i["earned_fen"]) for i in inv["invitees"]] == [(m.alice.id, R_P)], inv


async def alice_task_list(live, m):
    items = {t["id"]: t for t in (await get(live, m.alice, "/api/v1/publisher/tasks"))["items"]}
    t1, t2 = items[m.t1], items[m.t2]
    assert (t1["status"], t1["slots_refunded"], t1["orders_live"], t1["held_fen"]) == ("expired", 1, 1, PRICE + FEE), t1
    assert (t1["funnel"]["completed"], t1["funnel"]["in_progress"], t1["funnel"]["awaiting_review"]) == (1, 0, 1), t1["funnel"]
    assert (t2["funnel"]["failed"], t2["funnel"]["rejected"], t2["orders_live"], t2["status"]) == (1, 0, 0, "finished"), t2


async def alice_task_detail(live, m):
    d = await get(live, m.alice, f"/api/v1/publisher/tasks/{m.t1}")
    assert sorted(o["status"] for o in d["orders"]) == ["awaiting_review", "completed"], d["orders"]
    assert (d["task"]["status"], d["task"]["orders_live"], d["task"]["held_fen"], d["task"]["funnel"]["completed"]) == ("expired", 1, PRICE + FEE, 1), d["task"]


async def wu_orders_filtered_by_state(live, m):
    done = (await get(live, m.wu, "/api/v1/worker/orders", status="awaiting_review"))["items"]
    assert [o["id"] for o in done] == [m.wu_order], done
    assert (await get(live, m.wu, "/api/v1/worker/orders", status="in_progress"))["items"] == []


async def xi_orders(live, m):
    (o,) = (await get(live, m.xi, "/api/v1/worker/orders"))["items"]
    assert o["status"] == "failed", o


API_READS = [alice_wallet, alice_ledger, bob_wallet, bob_ledger, wu_wallet_after_his_countdown, dave_wallet_as_inviter,
             dave_ledger_as_inviter, dave_invitations, carol_invitations, alice_task_list, alice_task_detail,
             wu_orders_filtered_by_state, xi_orders]


@pytest.mark.parametrize("read", API_READS, ids=[f.__name__ for f in API_READS])
async def test_the_first_api_read_after_the_deadlines_shows_the_settled_state(live, read):
    m = await market(live)
    await read(live, m)


# --- the admin panel ---------------------------------------------------------------------------------
def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def customer_page(panel, m):
    html = (await panel.get(f"/admin/customers/{m.alice.id}?lang=en")).text
    assert re.search(r'id="balance-available">¥78\.00<', html), text_of(html)[:2000]


async def task_page(panel, m):
    text = text_of((await panel.get(f"/admin/tasks/{m.t1}?lang=en")).text)
    assert "live orders 1" in text and "refunded 1" in text and "awaiting review" in text, text[:3000]


async def order_page(panel, m):
    html = (await panel.get(f"/admin/orders/{m.wu_order}?lang=en")).text
    assert 'class="state s-awaiting_review"' in html.split("</h1>")[0], html[:2000]


async def order_list(panel, m):
    html = (await panel.get("/admin/orders?lang=en")).text
    row = re.search(rf'<a href="/admin/orders/{m.wu_order}">.*?</tr>', html, re.S).group()
    assert "s-awaiting_review" in row, row


async def task_list(panel, m):
    html = (await panel.get("/admin/tasks?lang=en")).text
    row = re.search(rf'<a href="/admin/tasks/{m.t1}">.*?</tr>', html, re.S).group()
    assert "s-expired" in row, row


async def withdrawals_queue(panel, m):
    text = text_of((await panel.get("/admin/withdrawals?lang=en")).text)
    assert "available ¥3.00" in text, text[:3000]


ADMIN_READS = [customer_page, task_page, order_page, order_list, task_list, withdrawals_queue]


@pytest.mark.parametrize("read", ADMIN_READS, ids=[f.__name__ for f in ADMIN_READS])
async def test_the_first_admin_read_after_the_deadlines_shows_the_settled_state(live, read, monkeypatch):
    from models import operators
    from models.operators import Role

    monkeypatch.setattr(operators, "SCRYPT_N", 2**10)
    op = await make_operator(Role.OWNER, "boss")
    panel = Panel(live.base)
    try:
        assert (await panel.login(op.username)).status_code == 303
        m = await market(live)
        await read(panel, m)
    finally:
        await panel.aclose()
