"""Payouts through WeChat's merchant transfer (SPEC §2 flow 6), the part of `WeChatServices` that
settles approved withdrawals (`server/wechat_services.py` mixes it in).

A payout ends only on WeChat's word (the bill is SUCCESS → paid; FAIL or CANCELLED → A returned) or
an operator's. WeChat's rule for its merchant transfer: an error answer says nothing about the bill;
never give up on an out_bill_no until a query says the bill failed, and repeat the same request
("原单重试") on unknown errors. So every step here is "ask WeChat, record what it said":
  - no bill yet, or ACCEPTED / PROCESSING → create the bill (the same request each time);
  - WAIT_USER_CONFIRM / TRANSFERING / CANCELING → query it until it is final;
  - timeouts, 5xx, SYSTEM_ERROR, BANK_ERROR, rate limits, NOT_ENOUGH → the same again later;
  - a definite refusal → query: a bill exists → follow it; none → hold for an operator.
Each round is claimed by moving the withdrawal's payout_check_at deadline and taking its lease
(`payout_lease_until`): two checkers, the checker and the admin's approve, or the checker and an
operator's re-query never run one round twice or side by side; and every record is a conditional
UPDATE on 'paying', so a notification racing a round can only lose quietly. Nothing here runs
inside a database transaction while WeChat is being called.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Mapping

from models import audit, clock, reconciliation
from models import withdrawals as withdrawal_rules
from models.errors import AlreadyDecided
from models.users import User
from models.withdrawals import Withdrawal, WithdrawalStatus
from server import metrics
from server.wechat_errors import PayoutStillAtWeChat, WeChatUnavailable, fail_answer, read_notification
from wechat.errors import PayApiError, PayError
from wechat.pay import TRANSFER_USER_NAME_REQUIRED_FEN

log = logging.getLogger("market.wechat")

PAYOUT_CHECK_BATCH = 50  # withdrawals handled per round
PAYOUT_LEASE_S = 120  # a round claims its payout for this long (a checker that dies lets it come back)
PAYOUT_BACKOFF_S = (30, 60, 120, 300, 600, 1800, 3600)  # between rounds of one payout; the last repeats
TRANSFER_REMARK = "任务佣金提现"  # shown to the user with the transfer (≤ 32 characters)
FINAL_BILL_STATES = ("SUCCESS", "FAIL", "CANCELLED")
RECREATE_STATES = ("ACCEPTED", "PROCESSING")  # WeChat's answer: repeat the same request until it moves on
# Not final and not the request's fault: 商户运营账户余额不足 — "请充值后原单重试".
RETRY_SAME_BILL_CODES = frozenset({"NOT_ENOUGH"})
# Refusals only a person can cure, by what WeChat's message says (checked in order).
REFUSAL_HINTS = (
    ("IP", "在商户平台「商家转账 → 产品设置 → API发起 → 接口安全」添加服务器的出口 IP（含 IPv6），然后重试"),
    ("额度", "商户单日转账额度不足：在商户平台「商家转账 → 产品设置」调整转账日限额，或次日重试"),
    ("感知", "该转账场景不支持所填的用户收款感知：检查 wechat.pay.transfer_user_recv_perception"),
    ("场景", "转账场景未开通或不可用：检查 wechat.pay.transfer_scene_id 与场景报备信息"),
    ("NO_AUTH", "商户号无权限：确认商家转账已开通、AppID 已关联商户号"),
    ("PARAM_ERROR", "请求参数被拒绝：检查配置（场景报备信息、备注等）后重试"),
)
# WeChat's fail_reason codes as the user reads them.
FAIL_REASON_TEXT = {
    "OVERDUE_CLOSE": "超过24小时未确认收款", "TRANSFER_RISK": "微信风控拦截", "ACCOUNT_FROZEN": "微信账户已冻结",
    "REAL_NAME_CHECK_FAIL": "微信账户未实名", "NAME_NOT_CORRECT": "姓名与微信实名不一致",
    "ID_CARD_NOT_CORRECT": "身份信息与微信实名不一致", "OPENID_INVALID": "收款账户无效",
    "ACCOUNT_NOT_EXIST": "微信账户不存在", "TRANSFER_QUOTA_EXCEED": "超出微信收款限额",
    "DAY_RECEIVED_QUOTA_EXCEED": "超出当日收款限额", "MONTH_RECEIVED_QUOTA_EXCEED": "超出当月收款限额",
    "DAY_RECEIVED_COUNT_EXCEED": "超出当日收款次数", "PAYEE_ACCOUNT_ABNORMAL": "收款账户异常",
    "RECEIVE_ACCOUNT_NOT_PERMMIT": "该微信账户暂不能收款", "MERCHANT_REJECT": "商户已撤销",
}


def _ending_own_round(w: Withdrawal, values: dict[str, Any]) -> dict[str, Any]:
    """`note_payout`'s arguments for what a round learnt. A round (it carries `round_lease`, set
    where it was claimed) writes only under its own lease and ends it; a round that outlived its
    lease, the payout claimed by another round since, writes nothing. A write outside any round (a
    notification, an operator's query) never ends the lease of a round in flight."""
    lease = getattr(w, "round_lease", None)
    if lease is None:
        return values
    return {**values, "payout_lease_until": None, "lease": lease}


class PayoutServices:
    """Mixed into WeChatServices, which provides `cfg` (WeChatConfig) and `pay` (PayClient)."""

    async def start_payout(self, withdrawal: Withdrawal | int) -> Withdrawal:
        """The first round of an approved withdrawal's payout (the admin panel calls it right after
        approving; the checker would do the same a moment later). Safe to call again."""
        wid = withdrawal if isinstance(withdrawal, int) else withdrawal.id
        w = await Withdrawal.get(id=wid)
        if w.status != WithdrawalStatus.PAYING or not w.out_bill_no or w.hold_reason or w.payout_check_at is None:
            return w
        lease = await withdrawal_rules.claim_payout_check(w.id, w.payout_check_at, PAYOUT_LEASE_S)
        if lease is None:
            return await Withdrawal.get(id=wid)  # a checker holds this round
        w.round_lease = lease
        return await self._payout_round(w)

    async def requery_payout(self, wid: int) -> Withdrawal:
        """An operator's "ask WeChat now" (the admin panel's re-query): one round, as the checker's,
        whether or not the next check is due — under the same lease, so never beside a round in
        flight (PayoutCheckUnderWay). A payout settled or held meanwhile is returned as it is."""
        lease = await withdrawal_rules.claim_payout_round(wid, PAYOUT_LEASE_S)
        if lease is None:
            w = await withdrawal_rules.get_withdrawal(wid)
            if w.status == WithdrawalStatus.PAYING and not w.hold_reason:
                raise withdrawal_rules.PayoutCheckUnderWay()
            return w
        w = await Withdrawal.get(id=wid)
        w.round_lease = lease
        return await self._payout_round(w)

    async def check_payouts(self, batch: int = PAYOUT_CHECK_BATCH) -> int:
        """The payouts' sweeper: every 'paying' withdrawal not held for an operator whose
        payout_check_at is due gets one round (`_payout_round`). Returns how many were due."""
        due = await Withdrawal.filter(status=WithdrawalStatus.PAYING, hold_reason__isnull=True,
                                      payout_check_at__lte=clock.now()).order_by("payout_check_at").limit(batch)
        for w in due:
            lease = await withdrawal_rules.claim_payout_check(w.id, w.payout_check_at, PAYOUT_LEASE_S)
            if lease is None:
                continue  # another checker took it
            w.round_lease = lease
            try:
                await self._payout_round(w)
            except Exception:  # noqa: BLE001 - one bad row must not stop the round; its lease brings it back
                log.exception("withdrawal %s: payout round failed; it comes back when its lease ends", w.id)
        return len(due)

    async def _payout_round(self, w: Withdrawal) -> Withdrawal:
        user = await User.get(id=w.user_id)
        if w.transfer_bill_no is None or w.transfer_state in RECREATE_STATES:
            return await self._request_bill(w, user)
        try:
            bill = await self.pay.query_transfer_bill(w.out_bill_no)
        except PayApiError as exc:
            if exc.not_found:  # no bill under this number after all: asking for it is safe
                return await self._request_bill(w, user)
            return await self._retry_later(w, exc)
        except PayError as exc:
            return await self._retry_later(w, exc)
        return await self._apply_bill(w, user, bill, source="query")

    async def _request_bill(self, w: Withdrawal, user: User) -> Withdrawal:
        """Create the bill — or repeat the very same request for it (identical parameters)."""
        amount = w.amount_fen - w.fee_fen
        real_name = None
        if amount >= TRANSFER_USER_NAME_REQUIRED_FEN:
            if not w.payee_real_name:  # a request made before real names were collected
                return await self._hold(w, "转账金额达到 2000 元，微信要求收款人实名，但提现申请未提供姓名："
                                           "请手动打款后标记，或退回余额")
            real_name = w.payee_real_name
        try:
            bill = await self.pay.create_transfer_bill(
                self.cfg.app(user.end.value).appid, w.out_bill_no, user.openid, amount, TRANSFER_REMARK,
                notify_url=self.cfg.pay.transfer_notify_url, user_name=real_name)
        except PayApiError as exc:
            if exc.retryable or exc.code in RETRY_SAME_BILL_CODES:
                return await self._retry_later(w, exc)
            # A definite refusal says nothing about a bill an earlier request may have created.
            try:
                bill = await self.pay.query_transfer_bill(w.out_bill_no)
            except PayApiError as query_exc:
                if not query_exc.not_found:
                    return await self._retry_later(w, query_exc)
                return await self._hold(w, _refusal_reason(exc))
            except PayError as query_exc:
                return await self._retry_later(w, query_exc)
        except PayError as exc:  # timeout, connection, an answer we cannot believe: the bill may exist
            return await self._retry_later(w, exc)
        return await self._apply_bill(w, user, bill, source="create")

    async def _apply_bill(self, w: Withdrawal, user: User, bill: Mapping[str, Any], *, source: str) -> Withdrawal:
        """Act on what WeChat says of the bill: final states move the money; others are recorded."""
        problems = self._bill_problems(w, user, bill, strict=False)
        if problems:
            await audit.record("wechat", None, "withdrawal.bill_mismatch", "withdrawal", w.id,
                               data={"problems": problems, "source": source})
            return await self._hold(w, "微信转账单与提现记录不符（" + "；".join(problems) + "）：请核对后处理")
        state = str(bill.get("state") or "")
        try:
            if state == "SUCCESS":
                return await withdrawal_rules.payout_succeeded(w.id, transfer_bill_no=bill.get("transfer_bill_no")
                                                               or w.transfer_bill_no)
            if state in ("FAIL", "CANCELLED"):
                reason = _payout_failure_reason(state, bill.get("fail_reason"))
                log.warning("withdrawal %s: WeChat says the transfer ended %s (%s)", w.id, state, bill.get("fail_reason"))
                return await withdrawal_rules.payout_failed(w.id, reason=reason)
        except AlreadyDecided:
            return await Withdrawal.get(id=w.id)  # a notification and a round (or two notifications) raced
        checks = w.payout_checks + 1
        values: dict[str, Any] = {"transfer_state": state or None, "payout_error": None, "payout_checks": checks,
                                  "payout_check_at": clock.now() + dt.timedelta(seconds=_backoff_s(checks))}
        if bill.get("transfer_bill_no"):
            values["transfer_bill_no"] = bill["transfer_bill_no"]
        if bill.get("package_info"):  # only the create answer carries it, in WAIT_USER_CONFIRM
            values["package_info"] = bill["package_info"]
        await withdrawal_rules.note_payout(w.id, **_ending_own_round(w, values))
        return await Withdrawal.get(id=w.id)

    async def _retry_later(self, w: Withdrawal, exc: Exception) -> Withdrawal:
        """Unknown outcome or transient trouble: the same request again after a backoff."""
        trouble = (f"{exc.code} {exc.message}" if isinstance(exc, PayApiError) else exc.__class__.__name__)[:200]
        checks = w.payout_checks + 1
        delay = _backoff_s(checks)
        log.warning("withdrawal %s: payout not settled yet (%s); again in %s s", w.id, trouble, delay)
        await withdrawal_rules.note_payout(w.id, **_ending_own_round(w, {
            "payout_error": trouble, "payout_checks": checks, "payout_check_at": clock.now() + dt.timedelta(seconds=delay)}))
        return await Withdrawal.get(id=w.id)

    async def _hold(self, w: Withdrawal, reason: str) -> Withdrawal:
        if await withdrawal_rules.hold_payout(w.id, reason):
            log.error("withdrawal %s: payout held for an operator: %s", w.id, reason)
        return await Withdrawal.get(id=w.id)

    def _bill_problems(self, w: Withdrawal, user: User, bill: Mapping[str, Any], *, strict: bool) -> list[str]:
        """How a bill WeChat describes differs from this withdrawal (empty: it is this payout's bill).
        `strict` (notifications) requires the fields every final bill carries; an answer to our own
        create call carries fewer. Values are never put in the result: openids stay out of logs."""
        problems = []
        mchid = bill.get("mch_id", bill.get("mchid"))
        if (mchid is not None or strict) and mchid != self.cfg.pay.mchid:
            problems.append("mchid")
        if "appid" in bill and bill["appid"] != self.cfg.app(user.end.value).appid:
            problems.append("appid")
        if ("openid" in bill or strict) and bill.get("openid") != user.openid:
            problems.append("openid")
        amount = bill.get("transfer_amount")
        if ("transfer_amount" in bill or strict) and (
                not isinstance(amount, int) or isinstance(amount, bool) or amount != w.amount_fen - w.fee_fen):
            problems.append("transfer_amount")
        if bill.get("out_bill_no", w.out_bill_no) != w.out_bill_no:
            problems.append("out_bill_no")
        if strict and not bill.get("transfer_bill_no"):
            problems.append("transfer_bill_no missing")
        elif w.transfer_bill_no and bill.get("transfer_bill_no") and bill["transfer_bill_no"] != w.transfer_bill_no:
            problems.append("transfer_bill_no")
        return problems

    async def handle_transfer_notification(self, headers: Mapping[str, str], raw_body: bytes) -> tuple[int, dict | None]:
        """MCHTRANSFER.BILL.FINISHED → paid (SUCCESS) or returned (FAIL / CANCELLED) → 204.

        Same answers as the payment callback. The bill must be this withdrawal's, field by field, as
        a payment must be its recharge's: merchant id (`mch_id`, or `mchid`), appid when given, openid,
        amount (required) and `transfer_bill_no` (the stored one, once we know it). One that does
        not fit moves nothing, is audited and answered 204 (a retry would repeat the same facts).
        Repeats are harmless (conditional transitions)."""
        note, refusal = await read_notification(self.pay, headers, raw_body, "transfer")
        if refusal is not None:
            return refusal
        bill = note["resource"]
        try:
            w = await Withdrawal.get_or_none(out_bill_no=str(bill.get("out_bill_no") or ""))
            if w is None:
                log.error("transfer notification %s for unknown bill %r", note.get("id"), str(bill.get("out_bill_no"))[:40])
                return 204, None
            user = await User.get(id=w.user_id)
            problems = self._bill_problems(w, user, bill, strict=True)
            if problems:
                log.error("transfer notification %s does not fit withdrawal %s (%s): nothing moved",
                          note.get("id"), w.id, ", ".join(problems))
                await audit.record("wechat", None, "withdrawal.notification_mismatch", "withdrawal", w.id,
                                   data={"problems": problems, "notification_id": note.get("id"), "state": bill.get("state")})
                return 204, None
            if w.status != WithdrawalStatus.PAYING:
                if w.status == WithdrawalStatus.FAILED and bill.get("state") == "SUCCESS":
                    # Only an operator returns money without WeChat's word: if WeChat paid after all,
                    # the user holds it twice and an operator must recover it.
                    log.critical("withdrawal %s: WeChat reports SUCCESS after the money was returned", w.id)
                    await audit.record("wechat", None, "withdrawal.paid_after_return", "withdrawal", w.id,
                                       data={"transfer_bill_no": bill.get("transfer_bill_no")})
                    # In the reconciliation room at once (and on the dashboard, the withdrawal's line and the
                    # metrics), counted once however often WeChat repeats the notification.
                    if await reconciliation.paid_after_return(w, bill.get("transfer_bill_no"), bill.get("transfer_amount")):
                        metrics.PAID_AFTER_RETURN.inc()
                return 204, None
            await self._apply_bill(w, user, bill, source=f"notification {note.get('id')}")
        except Exception:  # noqa: BLE001 - the database failed: WeChat must try again
            log.exception("transfer notification %s could not be recorded", note.get("id"))
            return 500, fail_answer("temporarily unable to record the transfer")
        return 204, None

    # ---- an operator's decisions on a held payout -------------------------------------------------
    async def retry_held_payout(self, wid: int, operator_id: int) -> Withdrawal:
        """The cause is fixed (IP allowlisted, scene enabled, quota raised): ask for the same bill again."""
        await withdrawal_rules.release_hold(wid, operator_id)
        return await self.start_payout(wid)

    async def return_held_payout(self, wid: int, operator_id: int, *, reason: str) -> Withdrawal:
        """Give a held payout's money back — only once WeChat holds no bill that could still pay:
        none → returned now; a final bill → WeChat's word applies; a live one → cancelled at WeChat
        first (the money returns when WeChat says CANCELLED, through the notification or the checker)."""
        w = await self._held(wid)
        bill = await self._bill_at_wechat(w)
        if bill is None:
            return await withdrawal_rules.return_held(wid, operator_id, reason=reason)
        user = await User.get(id=w.user_id)
        if bill.get("state") in FINAL_BILL_STATES:
            return await self._apply_bill(w, user, bill, source="operator query")
        try:
            answer = await self.pay.cancel_transfer_bill(w.out_bill_no)
        except PayError as exc:
            raise WeChatUnavailable() from exc
        await audit.record("operator", operator_id, "withdrawal.payout_cancel", "withdrawal", wid, reason=reason)
        await withdrawal_rules.release_hold(wid, operator_id)
        await withdrawal_rules.note_payout(wid, transfer_state=answer.get("state") or "CANCELING")
        return await Withdrawal.get(id=wid)

    async def paid_held_payout_by_hand(self, wid: int, operator_id: int, *, reference: str) -> Withdrawal:
        """A held payout paid outside WeChat's transfer: allowed only while WeChat has no bill that
        could pay it too (none, FAIL or CANCELLED)."""
        w = await self._held(wid)
        bill = await self._bill_at_wechat(w)
        if bill is not None and bill.get("state") not in ("FAIL", "CANCELLED"):
            raise PayoutStillAtWeChat(state=bill.get("state"))
        return await withdrawal_rules.paid_by_hand(wid, operator_id, reference=reference)

    async def _held(self, wid: int) -> Withdrawal:
        w = await withdrawal_rules.get_withdrawal(wid)
        if w.status != WithdrawalStatus.PAYING or not w.hold_reason:
            raise withdrawal_rules.PayoutNotHeld(status=w.status.value)
        return w

    async def _bill_at_wechat(self, w: Withdrawal) -> dict[str, Any] | None:
        try:
            return await self.pay.query_transfer_bill(w.out_bill_no)
        except PayApiError as exc:
            if exc.not_found:
                return None
            raise WeChatUnavailable() from exc
        except PayError as exc:
            raise WeChatUnavailable() from exc


def _backoff_s(checks: int) -> int:
    return PAYOUT_BACKOFF_S[min(max(checks, 1), len(PAYOUT_BACKOFF_S)) - 1]


def _refusal_reason(exc: PayApiError) -> str:
    """For the operator: what WeChat said, and where that is fixed."""
    text = f"{exc.code} {exc.message}"
    hint = next((h for needle, h in REFUSAL_HINTS if needle in text), "查看错误信息，在商户平台或配置中处理后重试")
    return f"微信拒绝转账（{exc.status} {text[:120]}）：{hint}"[:255]


def _payout_failure_reason(state: str, fail_reason: Any) -> str:
    """For the user (it is in their message and app): why the money came back."""
    if state == "CANCELLED":
        return "转账已撤销，金额已退回余额"
    code = str(fail_reason or "")
    return f"微信转账失败：{FAIL_REASON_TEXT.get(code, '请稍后重试或联系客服')}（{code or 'FAIL'}）"[:255]
