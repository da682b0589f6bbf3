"""The whole integration against a WeChat that signs with platform certificates, or is in the middle
of its 7-day switch to the 微信支付公钥 (issue 16.1): recharges are credited and payouts paid."""

from __future__ import annotations

import pytest

from models import withdrawals as w_rules
from models.users import End
from models.withdrawals import WithdrawalStatus
from tests import personas as p
from tests.wechat_integration.conftest import WECHAT_TEST_SECTION, make_config, running_app


@pytest.mark.asyncio
@pytest.mark.parametrize("platform_key", ["certificate", "switching"])
async def test_a_day_of_recharges_and_payouts_verifies_every_message(database, platform_key):
    section = {**WECHAT_TEST_SECTION,
               "sandbox_options": {**WECHAT_TEST_SECTION["sandbox_options"], "platform_key": platform_key}}
    async with running_app(make_config(wechat=section)) as live:
        assert (live.services.cfg.pay.key_mode == "certificate") == (platform_key == "certificate")
        alice, _ = await live.services.login(End.PUBLISHER, "alice-1")
        for n in range(4):
            started = await live.services.start_recharge(alice, 10_000, f"r-{n}")
            r = await live.http.post("/sandbox/pay/_simulate/pay", json={"out_trade_no": started["out_trade_no"], "wait": True})
            assert r.json()["notification"]["status"] == 204
        assert await p.available(alice) == 40_000
        for n in range(3):
            w = await w_rules.approve((await w_rules.request(alice.id, 5_000, request_id=f"w-{n}")).id, 9_001)
            w = await live.services.start_payout(w)
            assert w.transfer_state == "WAIT_USER_CONFIRM", w.payout_error
            r = await live.http.post("/sandbox/pay/_simulate/confirm_transfer",
                                     json={"out_bill_no": w.out_bill_no, "result": "SUCCESS", "wait": True})
            assert r.json()["notification"]["status"] == 204
            assert (await w_rules.get_withdrawal(w.id)).status == WithdrawalStatus.PAID
        assert live.services.pay.certificate_downloads == 1
        await p.assert_books_clean()
