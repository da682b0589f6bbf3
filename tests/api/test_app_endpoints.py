"""What the Mini Programs need (issue 10): the market's settings, profile (nickname, avatar), image
links an <image src> can load, the invitation's Mini Program code, replays told from creations, and
the documented rules (a worker who abandons cannot retake; what the wallet's totals mean)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import pytest

from models import clock
from scheduler import sweeper
from tests.api import _support as S
from tests.conftest import TEST_SETTINGS

pytestmark = pytest.mark.asyncio


async def publish(c, **body):
    r = await c.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "Scan the code", "unit_price_fen": 1_000,
                                                      "request_id": uuid.uuid4().hex} | body)
    assert r.status_code == 201, r.text
    return r.json()


# --- GET /config -------------------------------------------------------------------------------------
@pytest.mark.parametrize("end", ["worker", "publisher"])
async def test_the_config_gives_the_settings_in_force_the_templates_and_the_time(live, end):
    who = await live.login(end, "alice")
    async with live.client(who.token) as c:
        r = await c.get(f"/api/v1/{end}/config")
    assert r.status_code == 200, r.text
    cfg = r.json()
    assert {k: cfg[k] for k in TEST_SETTINGS} == TEST_SETTINGS  # the database row, not config.yaml
    assert cfg["end"] == end and cfg["appid"] == live.app.ctx.wechat_config.app(end).appid
    assert cfg["now"].endswith("Z") and cfg["image_link_ttl_s"] >= 1800
    templates = live.app.ctx.wechat_config.subscription_templates[end]
    assert {s["event"]: (s["template_id"], s["page"]) for s in cfg["subscriptions"]} == {
        e: (t.template_id, t.page) for e, t in templates.items()}
    if end == "publisher":
        assert {s["event"] for s in cfg["subscriptions"]} >= {"order_taken", "order_awaiting_review", "task_expired_refunded"}
    else:
        assert {s["event"] for s in cfg["subscriptions"]} >= {"order_approved", "order_rejected", "appeal_decided"}


async def test_a_settings_change_shows_in_the_config_at_once(live):
    from models import settings as market_settings

    bob = await live.login("worker", "bob")
    await market_settings.update({"max_orders_in_progress": 5, "publish_fee_bp": 1_500}, operator_id=1)
    async with live.client(bob.token) as c:
        cfg = (await c.get("/api/v1/worker/config")).json()
    assert (cfg["max_orders_in_progress"], cfg["publish_fee_bp"]) == (5, 1_500)


# --- profile -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("end", ["worker", "publisher"])
async def test_a_user_sets_a_nickname_and_an_avatar_that_an_image_tag_can_load(live, end):
    who = await live.login(end, "alice")
    other = await live.login(end, "mallory")
    ref = await S.upload(live, who)
    theirs = await S.upload(live, other)
    async with live.client(who.token) as c, live.client() as anonymous:
        r = await c.patch(f"/api/v1/{end}/me", json={"nickname": "  小王  "})
        assert r.status_code == 200 and r.json()["nickname"] == "小王"
        S.assert_error(await c.patch(f"/api/v1/{end}/me", json={"nickname": " "}), 400, "invalid_input")
        S.assert_error(await c.patch(f"/api/v1/{end}/me", json={"nickname": "x" * 65}), 400, "invalid_input")
        S.assert_error(await c.put(f"/api/v1/{end}/me/avatar", json={"ref": theirs}), 400, "invalid_input")  # not mine
        me = (await c.get(f"/api/v1/{end}/me")).json()
        assert me["avatar"] is None and me["avatar_url"] is None
        r = await c.put(f"/api/v1/{end}/me/avatar", json={"ref": ref})
        assert r.status_code == 200 and r.json()["avatar"] == ref
        me = (await c.get(f"/api/v1/{end}/me")).json()
        assert me["nickname"] == "小王" and me["avatar"] == ref
        image = await anonymous.get(me["avatar_url"])  # no Authorization header, as <image src>
        assert image.status_code == 200 and image.content == S.png_bytes() and image.headers["content-type"] == "image/png"


async def test_inviters_see_their_invitees_avatars(live):
    dave = await live.login("worker", "dave")
    bob = await live.login("worker", "bob", invite_code=dave.user["invite_code"])
    ref = await S.upload(live, bob)
    async with live.client(bob.token) as b, live.client(dave.token) as d, live.client() as anonymous:
        await b.put("/api/v1/worker/me/avatar", json={"ref": ref})
        [invitee] = (await d.get("/api/v1/worker/invitations")).json()["invitees"]
        assert invitee["id"] == bob.id and (await anonymous.get(invitee["avatar_url"])).status_code == 200


async def test_the_invitation_totals_cover_every_invitee_also_beyond_the_ones_listed(live, monkeypatch):
    from miniprogram_api import account
    from models import orders, tasks
    from models.users import User
    from tests import personas as p

    monkeypatch.setattr(account, "INVITEES_LISTED", 2)
    dave = await live.login("worker", "dave")
    bob, carl, erin = [await live.login("worker", n, invite_code=dave.user["invite_code"]) for n in ("bob", "carl", "erin")]
    alice = await live.login("publisher", "alice")
    await p.fund(await User.get(id=alice.id), 10_000)
    task = await tasks.publish(alice.id, title="Scan", instructions="Scan the code", unit_price_fen=1_000, quantity=2)
    for who in (bob, erin):  # each completes an order: dave earns 5 % of 10 yuan from each
        o = await orders.take(task.id, who.id)
        await orders.submit(o.id, who.id, proof_text="done")
        await orders.approve(o.id, alice.id)
    async with live.client(dave.token) as d:
        inv = (await d.get("/api/v1/worker/invitations")).json()
    assert [i["id"] for i in inv["invitees"]] == [erin.id, carl.id]  # the newest two
    assert inv["invitees_count"] == 3
    assert inv["referral_earned_fen"] == 2 * 1_000 * TEST_SETTINGS["worker_invite_bp"] // 10_000  # bob's too, though not listed
    assert sum(i["earned_fen"] for i in inv["invitees"]) == 1_000 * TEST_SETTINGS["worker_invite_bp"] // 10_000


# --- signed image links ------------------------------------------------------------------------------
async def test_every_view_that_carries_an_image_carries_a_link_that_loads_without_a_token(live):
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    qr, proof, evidence = await S.upload(live, alice), await S.upload(live, bob), await S.upload(live, bob)
    async with live.client(alice.token) as a, live.client(bob.token) as b, live.client() as anonymous:
        task = await publish(a, attachment_kind="image", attachment=qr)
        hall = (await b.get("/api/v1/worker/hall")).json()["items"][0]
        order = (await b.post(f"/api/v1/worker/tasks/{task['id']}/take")).json()
        await b.post(f"/api/v1/worker/orders/{order['id']}/submit", json={"proof_image": proof})
        await a.post(f"/api/v1/publisher/orders/{order['id']}/reject", json={"reason": "blurry"})
        appealed = (await b.post(f"/api/v1/worker/orders/{order['id']}/appeal", json={"reason": "sharp", "evidence": evidence})).json()
        detail = (await a.get(f"/api/v1/publisher/tasks/{task['id']}")).json()
        links = {
            "publish": (task["attachment_url"], qr), "hall": (hall["attachment_url"], qr),
            "order.task": (order["task"]["attachment_url"], qr), "proof": (appealed["proof_image_url"], proof),
            "evidence": (appealed["appeal_evidence_url"], evidence),
            "task detail proof": (detail["orders"][0]["proof_image_url"], proof),
            "publisher order": ((await a.get(f"/api/v1/publisher/orders/{order['id']}")).json()["appeal_evidence_url"], evidence),
        }
        for name, (url, ref) in links.items():
            assert url and f"/api/v1/images/{ref}?" in url, name
            r = await anonymous.get(url)
            assert r.status_code == 200 and r.content == S.png_bytes(), name
        assert order["proof_image_url"] is None  # nothing to show yet: null, not a broken link


async def test_an_altered_or_old_image_link_is_refused(live):
    bob = await live.login("worker", "bob")
    async with live.client(bob.token) as b, live.client() as anonymous:
        up = (await b.post("/api/v1/worker/uploads", files={"file": ("p.png", S.png_bytes(), "image/png")})).json()
        url = up["url"]
        assert (await anonymous.get(url)).status_code == 200
        parts = urlsplit(url)
        other = await S.upload(live, bob)
        S.assert_error(await anonymous.get(url.replace(up["ref"], other)), 403, "image_link_invalid")  # another image
        exp = int(parts.query.split("exp=")[1].split("&")[0])
        S.assert_error(await anonymous.get(url.replace(f"exp={exp}", f"exp={exp + 600}")), 403, "image_link_invalid")
        S.assert_error(await anonymous.get(parts.path), 403, "image_link_invalid")
        clock.advance(exp - clock.now().timestamp() + 1)
        S.assert_error(await anonymous.get(url), 403, "image_link_expired")
        fresh = (await b.get(f"/api/v1/worker/uploads/{up['ref']}")).status_code
        assert fresh == 200  # the owner still reads it with the token, and new views carry new links


async def test_links_stay_the_same_for_a_while_and_live_at_least_the_documented_time(live):
    from miniprogram_api.common import LINK_TTL_S, LINK_WINDOW_S, ImageLinks

    from server.keys import KeyRing, new_secret

    links = ImageLinks(KeyRing(new_secret()), "https://api.example.com")
    first = links.url("up_abc")
    exp = int(first.split("exp=")[1].split("&")[0])
    assert LINK_TTL_S <= exp - clock.now().timestamp() <= LINK_TTL_S + LINK_WINDOW_S
    assert links.url("up_abc") == first and first.startswith("https://api.example.com/api/v1/images/up_abc?")


async def test_behind_https_the_links_use_the_public_address(database, tmp_path):
    from tests.api.conftest import start_live, stop_live

    live, server = await start_live(database, tmp_path, public_base_url="https://api.example.com")
    try:
        bob = await live.login("worker", "bob")
        async with live.client(bob.token) as b:
            up = (await b.post("/api/v1/worker/uploads", files={"file": ("p.png", S.png_bytes(), "image/png")})).json()
        assert up["url"].startswith("https://api.example.com/api/v1/images/")
    finally:
        await stop_live(server)


# --- the invitation's Mini Program code -------------------------------------------------------------
@pytest.mark.parametrize("end", ["worker", "publisher"])
async def test_the_invitation_code_is_a_png_made_once_through_wechat(live, end):
    who = await live.login(end, "alice")
    sandbox = live.app.ctx.wechat.sandbox
    async with live.client(who.token) as c:
        first = await c.get(f"/api/v1/{end}/invitations/qrcode")
        again = await c.get(f"/api/v1/{end}/invitations/qrcode")
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert first.content.startswith(b"\x89PNG\r\n\x1a\n") and first.content == again.content
    calls = [c for c in sandbox.wxacode_calls if c["scene"] == who.user["invite_code"]]
    assert calls == [{"appid": live.app.ctx.wechat_config.app(end).appid, "scene": who.user["invite_code"],
                      "page": "pages/index/index"}]  # cached: WeChat was asked once


async def test_a_wechat_failure_on_the_invitation_code_is_503(live):
    bob = await live.login("worker", "bob")
    async def broken(*args, **kwargs):
        from wechat.errors import Retryable

        raise Retryable(-1, "system busy")

    live.app.ctx.wechat.mp.unlimited_code = broken
    async with live.client(bob.token) as c:
        S.assert_error(await c.get("/api/v1/worker/invitations/qrcode"), 503, "wechat_unavailable")


# --- replays ----------------------------------------------------------------------------------------
async def test_a_repeated_request_id_is_answered_200_replayed_everywhere(live):
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    async with live.client(alice.token) as a, live.client(bob.token) as b:
        body = {"title": "Scan", "instructions": "x", "unit_price_fen": 1_000, "quantity": 2, "request_id": "t-1"}
        first, second = await a.post("/api/v1/publisher/tasks", json=body), await a.post("/api/v1/publisher/tasks", json=body)
        assert (first.status_code, first.json()["replayed"], second.status_code, second.json()["replayed"]) == (201, False, 200, True)
        assert first.json()["id"] == second.json()["id"]
        assert (await a.get("/api/v1/publisher/wallet")).json()["available_fen"] == 10_000 - 2 * 1_100  # held once
        S.assert_error(await a.post("/api/v1/publisher/tasks", json=body | {"unit_price_fen": 2_000}), 409, "idempotency_conflict")
        S.assert_error(await a.post("/api/v1/publisher/tasks", json={k: v for k, v in body.items() if k != "request_id"}), 400, "invalid_input")

        rc = {"amount_fen": 500, "request_id": "r-1"}
        r1, r2 = await a.post("/api/v1/publisher/recharges", json=rc), await a.post("/api/v1/publisher/recharges", json=rc)
        assert (r1.status_code, r1.json()["replayed"], r2.status_code, r2.json()["replayed"]) == (201, False, 200, True)
        assert r1.json()["payment"]["package"] == r2.json()["payment"]["package"]  # the same prepayment, signed afresh
        assert r1.json()["recharge_id"] == r2.json()["recharge_id"] and r1.json()["expires_at"].endswith("Z")

        order = (await b.post(f"/api/v1/worker/tasks/{first.json()['id']}/take")).json()
        await b.post(f"/api/v1/worker/orders/{order['id']}/submit", json={})
        await a.post(f"/api/v1/publisher/orders/{order['id']}/approve")
        w = {"amount_fen": 500, "request_id": "w-1"}
        w1, w2 = await b.post("/api/v1/worker/withdrawals", json=w), await b.post("/api/v1/worker/withdrawals", json=w)
        assert (w1.status_code, w1.json()["replayed"], w2.status_code, w2.json()["replayed"]) == (201, False, 200, True)
        assert (await b.get("/api/v1/worker/wallet")).json()["withdrawing_fen"] == 500


async def test_a_recharge_shows_its_payment_until_it_is_paid(live):
    alice = await live.login("publisher", "alice")
    async with live.client(alice.token) as a:
        started = (await a.post("/api/v1/publisher/recharges", json={"amount_fen": 700, "request_id": "r"})).json()
        pending = (await a.get(f"/api/v1/publisher/recharges/{started['recharge_id']}")).json()
        assert pending["status"] == "pending" and pending["payment"]["package"] == started["payment"]["package"]
        assert pending["expires_at"] == started["expires_at"]
        await live.pay(started["out_trade_no"])
        paid = (await a.get(f"/api/v1/publisher/recharges/{started['recharge_id']}")).json()
        assert paid["status"] == "paid" and paid["payment"] is None


# --- documented rules ---------------------------------------------------------------------------------
async def test_a_worker_who_abandons_cannot_take_the_task_again(live):
    alice, bob, carol = await live.login("publisher", "alice"), await live.login("worker", "bob"), await live.login("worker", "carol")
    await live.recharge(alice, 10_000)
    async with live.client(alice.token) as a, live.client(bob.token) as b, live.client(carol.token) as c:
        task = await publish(a)
        order = (await b.post(f"/api/v1/worker/tasks/{task['id']}/take")).json()
        assert (await b.post(f"/api/v1/worker/orders/{order['id']}/abandon")).json()["status"] == "abandoned"
        assert (await b.get(f"/api/v1/worker/tasks/{task['id']}")).json()["slots_untaken"] == 1  # back in the hall
        S.assert_error(await b.post(f"/api/v1/worker/tasks/{task['id']}/take"), 409, "already_took_task")
        assert (await c.post(f"/api/v1/worker/tasks/{task['id']}/take")).status_code == 201  # someone else may


async def test_what_the_wallet_totals_mean(live):
    """total_spent_fen: publish holds minus refunds (expired/cancelled slots, failed orders), including
    what is still held; total_earned_fen: commissions (P) of completed orders, referral rewards apart."""
    dave = await live.login("worker", "dave")
    alice = await live.login("publisher", "alice")
    bob = await live.login("worker", "bob", invite_code=dave.user["invite_code"])
    await live.recharge(alice, 20_000)
    async with live.client(alice.token) as a, live.client(bob.token) as b, live.client(dave.token) as d:
        done = await publish(a, quantity=3)  # 3 × (1000 + 100) held
        failed = await publish(a, unit_price_fen=2_000)  # 2200 held
        live_one = await publish(a, unit_price_fen=500)  # 550 held, stays live
        o1 = (await b.post(f"/api/v1/worker/tasks/{done['id']}/take")).json()
        await b.post(f"/api/v1/worker/orders/{o1['id']}/submit", json={})
        await a.post(f"/api/v1/publisher/orders/{o1['id']}/approve")
        o2 = (await b.post(f"/api/v1/worker/tasks/{failed['id']}/take")).json()
        await b.post(f"/api/v1/worker/orders/{o2['id']}/submit", json={})
        await a.post(f"/api/v1/publisher/orders/{o2['id']}/reject", json={"reason": "no"})
        await b.post(f"/api/v1/worker/orders/{o2['id']}/accept-rejection")  # 2200 back
        await a.post(f"/api/v1/publisher/tasks/{done['id']}/cancel")  # 2 untaken slots: 2200 back
        wallet = (await a.get("/api/v1/publisher/wallet")).json()
        assert wallet["total_spent_fen"] == 1_100 + 550  # the completed order + the live task's hold
        assert wallet["total_recharged_fen"] == 20_000 and wallet["available_fen"] == 20_000 - 1_100 - 550
        assert live_one["held_fen"] == 550
        worker = (await b.get("/api/v1/worker/wallet")).json()
        assert (worker["total_earned_fen"], worker["available_fen"]) == (1_000, 1_000)
        inviter = (await d.get("/api/v1/worker/wallet")).json()
        assert (inviter["total_earned_fen"], inviter["referral_earned_fen"]) == (0, 1_000 * TEST_SETTINGS["worker_invite_bp"] // 10_000)


async def test_expiry_and_cancel_refunds_are_told_on_the_wallet(live):
    """Every move of an available balance sends wallet.changed with the ledger kind (checked for every
    API test by tests/api/contract.py); here the two refunds that used to be silent."""
    from models.outbox import Outbox

    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 10_000)
    async with live.client(alice.token) as a:
        cancelled = await publish(a, quantity=2)
        await a.post(f"/api/v1/publisher/tasks/{cancelled['id']}/cancel")
        expired = await publish(a)
    clock.advance(TEST_SETTINGS["take_window_s"] + 1)
    await sweeper.sweep_all()
    rows = await Outbox.filter(event="wallet.changed", user_id=alice.id).order_by("id")
    assert [(r.payload["reason"], r.payload["amount_fen"], r.payload["task_id"]) for r in rows] == [
        ("recharge", 10_000, None), ("publish", -2_200, cancelled["id"]), ("slot_refund", 2_200, cancelled["id"]),
        ("publish", -1_100, expired["id"]), ("slot_refund", 1_100, expired["id"])]


async def test_concurrent_repeats_of_one_request_id_create_one_thing_and_say_which(live):
    """The losing side of the idempotency race: of five identical publishes (and withdrawals) sent at
    once, exactly one creates (201, replayed false); the others get that same object (200, replayed
    true); the money moves once. On PostgreSQL the requests really run at the same time."""
    import asyncio

    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 10_000)
    async with live.client(alice.token) as a:
        body = {"title": "Scan", "instructions": "x", "unit_price_fen": 1_000, "request_id": "same-task"}
        answers = await asyncio.gather(*(a.post("/api/v1/publisher/tasks", json=body) for _ in range(5)))
        assert sorted((r.status_code, r.json()["replayed"]) for r in answers) == [(200, True)] * 4 + [(201, False)]
        assert len({r.json()["id"] for r in answers}) == 1
        w = {"amount_fen": 1_000, "request_id": "same-withdrawal"}
        answers = await asyncio.gather(*(a.post("/api/v1/publisher/withdrawals", json=w) for _ in range(5)))
        assert sorted((r.status_code, r.json()["replayed"]) for r in answers) == [(200, True)] * 4 + [(201, False)]
        wallet = (await a.get("/api/v1/publisher/wallet")).json()
    assert (wallet["available_fen"], wallet["withdrawing_fen"]) == (10_000 - 1_100 - 1_000, 1_000)
