"""The Mini Programs' flows through HTTP, end to end against the live server and the WeChat sandbox."""

from __future__ import annotations

import uuid

import pytest

from models import clock, orders, referrals, withdrawals
from scheduler import sweeper
from tests.api._support import png_bytes

PNG = png_bytes(4, 4)  # a whole image: uploads are decoded and re-encoded (this one survives byte for byte)

pytestmark = pytest.mark.asyncio


async def publish(c, **body):
    r = await c.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "Scan the code", "unit_price_fen": 1_000, "request_id": uuid.uuid4().hex} | body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_whole_day_of_a_worker_and_a_publisher_with_invitations(live):
    carol = await live.login("publisher", "carol")
    alice = await live.login("publisher", "alice", invite_code=carol.user["invite_code"])
    dave = await live.login("worker", "dave")
    bob = await live.login("worker", "bob", invite_code=dave.user["invite_code"])
    assert alice.user["inviter_id"] == carol.id and bob.user["inviter_id"] == dave.id
    again = await live.login("worker", "bob", invite_code=None)  # a later login keeps the binding
    assert again.id == bob.id and again.user["inviter_id"] == dave.id

    await live.recharge(alice, 20_000)
    async with live.client(alice.token) as a, live.client(bob.token) as b, live.client(dave.token) as d, live.client(carol.token) as cc:
        # the publisher attaches a QR code image; the worker may see it
        up = await a.post("/api/v1/publisher/uploads", files={"file": ("qr.png", PNG, "image/png")})
        assert up.status_code == 201, up.text
        task = await publish(a, attachment_kind="image", attachment=up.json()["ref"], quantity=2)
        assert task["held_fen"] == 2 * 1_100 and task["funnel"]["taken"] == 0
        assert (await b.get(f"/api/v1/worker/uploads/{up.json()['ref']}")).content == PNG

        hall = (await b.get("/api/v1/worker/hall", params={"min_price_fen": 1_000})).json()
        assert [t["id"] for t in hall["items"]] == [task["id"]]
        assert (await b.get("/api/v1/worker/hall", params={"min_price_fen": 1_001})).json()["items"] == []

        order = (await b.post(f"/api/v1/worker/tasks/{task['id']}/take")).json()
        assert order["status"] == "in_progress" and order["deadline_at"] == order["submit_deadline_at"]
        assert order["task"]["attachment"] == up.json()["ref"]
        proof = (await b.post("/api/v1/worker/uploads", files={"file": ("p.png", PNG, "image/png")})).json()["ref"]
        r = await b.post(f"/api/v1/worker/orders/{order['id']}/submit", json={"proof_text": "done", "proof_image": proof})
        assert r.json()["status"] == "awaiting_review" and r.json()["deadline_at"] == r.json()["review_deadline_at"]
        assert (await a.get(f"/api/v1/publisher/uploads/{proof}")).content == PNG  # the publisher sees the proof

        detail = (await a.get(f"/api/v1/publisher/tasks/{task['id']}")).json()
        assert detail["task"]["funnel"]["awaiting_review"] == 1 and detail["orders"][0]["proof_image"] == proof
        assert (await a.post(f"/api/v1/publisher/orders/{order['id']}/approve")).json()["status"] == "completed"

        wallet = (await b.get("/api/v1/worker/wallet")).json()
        assert wallet == wallet | {"available_fen": 1_000, "withdrawing_fen": 0, "total_earned_fen": 1_000}
        # the inviters' rewards arrive when they read their wallets (or the settle job runs)
        # TEST_SETTINGS: worker_invite_bp 500 (of P), publisher_invite_bp 2000 (of F = 100)
        assert (await d.get("/api/v1/worker/wallet")).json()["available_fen"] == 1_000 * 500 // 10_000
        assert (await cc.get("/api/v1/publisher/wallet")).json()["available_fen"] == 100 * 2_000 // 10_000
        invites = (await d.get("/api/v1/worker/invitations")).json()
        assert invites["invitees"] == [invites["invitees"][0] | {"id": bob.id, "earned_fen": 50}]

        ledger = (await a.get("/api/v1/publisher/ledger", params={"limit": 1})).json()
        assert ledger["items"][0]["kind"] == "publish" and ledger["items"][0]["balance_after_fen"] == 20_000 - 2_200
        older = (await a.get("/api/v1/publisher/ledger", params={"cursor": ledger["next_cursor"]})).json()
        assert [i["kind"] for i in older["items"]] == ["recharge"] and older["next_cursor"] is None

        # the publisher cancels the second slot: refunded
        cancelled = (await a.post(f"/api/v1/publisher/tasks/{task['id']}/cancel")).json()
        assert cancelled["status"] == "cancelled" and cancelled["funnel"]["refunded_slots"] == 1
        assert (await a.get("/api/v1/publisher/wallet")).json()["available_fen"] == 20_000 - 1_100


async def test_a_rejection_is_appealed_with_evidence_and_the_deadlines_are_absolute(live):
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    async with live.client(alice.token) as a, live.client(bob.token) as b:
        task = await publish(a)
        order = (await b.post(f"/api/v1/worker/tasks/{task['id']}/take")).json()
        await b.post(f"/api/v1/worker/orders/{order['id']}/submit", json={})
        rejected = (await a.post(f"/api/v1/publisher/orders/{order['id']}/reject", json={"reason": "blurry"})).json()
        assert rejected["status"] == "rejected" and rejected["deadline_at"] == rejected["appeal_deadline_at"]
        seen = (await b.get(f"/api/v1/worker/orders/{order['id']}")).json()
        assert seen["reject_reason"] == "blurry" and seen["now"] < seen["appeal_deadline_at"]
        evidence = (await b.post("/api/v1/worker/uploads", files={"file": ("e.png", PNG, "image/png")})).json()["ref"]
        appealed = (await b.post(f"/api/v1/worker/orders/{order['id']}/appeal", json={"reason": "it is sharp", "evidence": evidence})).json()
        assert appealed["status"] == "appealing" and appealed["deadline_at"] is None
        mine = (await b.get("/api/v1/worker/orders", params={"status": "appealing"})).json()
        assert [o["id"] for o in mine["items"]] == [order["id"]]


async def test_reads_show_timers_applied_even_before_the_sweeper_runs(live):
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    async with live.client(alice.token) as a, live.client(bob.token) as b:
        task = await publish(a)
        order = (await b.post(f"/api/v1/worker/tasks/{task['id']}/take")).json()
        clock.advance(300 + 1_200 + 5)  # countdown and review window both over; no sweep ran
        seen = (await a.get(f"/api/v1/publisher/orders/{order['id']}")).json()
        # The countdown's end is applied by this read, late: Alice's review window opens now, whole.
        assert seen["status"] == "awaiting_review" and seen["deadline_at"] > seen["submit_deadline_at"]
        clock.advance(1_200 + 1)  # and ends unreviewed; still no sweep
        seen = (await a.get(f"/api/v1/publisher/orders/{order['id']}")).json()
        assert (seen["status"], seen["finished_by"]) == ("completed", "review_timeout")
        r = await a.post(f"/api/v1/publisher/orders/{order['id']}/reject", json={"reason": "too late"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "deadline_passed"
        assert (await b.get("/api/v1/worker/wallet")).json()["available_fen"] == 1_000


async def test_an_untaken_task_expires_and_is_refunded(live):
    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 10_000)
    async with live.client(alice.token) as a:
        task = await publish(a, quantity=3)
        clock.advance(181)
        await sweeper.sweep_all()
        mine = (await a.get("/api/v1/publisher/tasks", params={"status": "expired"})).json()
        assert [t["id"] for t in mine["items"]] == [task["id"]] and mine["items"][0]["funnel"]["refunded_slots"] == 3
        assert (await a.get("/api/v1/publisher/wallet")).json()["available_fen"] == 10_000


async def test_a_withdrawal_paid_through_wechat_shows_the_confirmation_arguments(live):
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    async with live.client(alice.token) as a, live.client(bob.token) as b:
        task = await publish(a, unit_price_fen=5_000)
        order = (await b.post(f"/api/v1/worker/tasks/{task['id']}/take")).json()
        await b.post(f"/api/v1/worker/orders/{order['id']}/submit", json={})
        await a.post(f"/api/v1/publisher/orders/{order['id']}/approve")
        w = (await b.post("/api/v1/worker/withdrawals", json={"amount_fen": 4_000, "request_id": "w-1"})).json()
        assert (w["status"], w["fee_fen"], w["payout_fen"], w["transfer"]) == ("pending", 40, 3_960, None)
        assert (await b.get("/api/v1/worker/wallet")).json()["withdrawing_fen"] == 4_000
        await withdrawals.approve(w["id"], operator_id=1)  # an operator approves in the admin panel
        await live.app.ctx.wechat.start_payout(w["id"])
        paying = (await b.get(f"/api/v1/worker/withdrawals/{w['id']}")).json()
        assert paying["status"] == "paying"
        transfer = paying["transfer"]
        assert transfer["package"] and transfer["openId"] and transfer["appId"] and transfer["mchId"]
        async with live.client() as c:  # the worker confirms in WeChat
            r = await c.post("/sandbox/pay/_simulate/confirm_transfer", json={"out_bill_no": f"W{w['id']:012d}", "result": "SUCCESS"})
            assert r.status_code == 200, r.text
        await live.app.ctx.wechat.sandbox.drain()
        done = (await b.get(f"/api/v1/worker/withdrawals/{w['id']}")).json()
        assert (done["status"], done["transfer"]) == ("paid", None)
        wallet = (await b.get("/api/v1/worker/wallet")).json()
        assert (wallet["available_fen"], wallet["withdrawing_fen"]) == (1_000, 0)
