"""The core's use of WeChat: login, recharges (WeChat Pay), payouts (merchant transfers).

`WeChatServices` bundles the clients of `wechat/` (one set per process) with the service functions
that join them to the domain in `models/`. Two rules shape every function here:

- Nothing runs inside a database transaction while WeChat is being called (STYLE habit 8): each
  function calls WeChat, then hands the result to one domain function that owns its transaction.
- Money moves only through idempotent domain calls (`recharges.credit` keyed by WeChat's
  transaction_id, `withdrawals.payout_*` as conditional UPDATEs), so a repeated notification, a
  notification racing the checker, or two schedulers checking at once can only lose quietly.

Notification handlers return `(status, body)` for the route to send: 204 = recorded (or nothing
to record, retrying would not help); 4xx/5xx with `{"code": "FAIL", "message"}` = WeChat should retry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from typing import Any, Mapping

from models import clock
from models import recharges as recharge_rules
from models import withdrawals as withdrawal_rules
from models.errors import AlreadyDecided, Conflict, DomainError, RechargeNotFound
from models.recharges import AmountMismatch, Recharge, RechargeStatus
from models.users import End, User
from models.withdrawals import Withdrawal, WithdrawalStatus
from server.config import Config
from wechat.config import WeChatConfig
from wechat.errors import (BadPayload, BadSignature, InvalidCode, PayApiError, PayError, Retryable,
                           StaleNotification, WeChatError)
from wechat.miniprogram import MiniProgramClient
from wechat.pay import TRANSFER_USER_NAME_REQUIRED_FEN, PayClient
from wechat.token_store import MemoryTokenStore, RedisTokenStore

log = logging.getLogger("market.wechat")

PAY_NOTIFY_PATH = "/api/wechat/pay/notify"
TRANSFER_NOTIFY_PATH = "/api/wechat/transfer/notify"

LOGIN_ATTEMPTS = 3  # code2Session tries on a retryable answer (busy, rate limit, timeout)
LOGIN_BACKOFF_S = (0.2, 0.6)  # waits between those tries
RECHARGE_CHECK_AGE_S = 60  # a notification usually arrives within seconds; query after a minute
RECHARGE_CHECK_BATCH = 50  # recharges queried per round
PAYOUT_CHECK_AGE_S = 300  # a bill with no notification after this long is queried
PAYOUT_CHECK_BATCH = 50  # withdrawals handled per round
TRANSFER_REMARK = "任务佣金提现"  # shown to the user with the transfer (≤ 32 characters)
FINAL_BILL_STATES = ("SUCCESS", "FAIL", "CANCELLED")


# --- errors the API renders (server/errors.py renders every DomainError) ---------------------------
class InvalidLoginCode(DomainError):
    code, status, message = "invalid_login_code", 400, "The login code is invalid or expired; call wx.login again."


class LoginRefused(DomainError):
    code, status, message = "login_refused", 403, "WeChat refused this login."


class WeChatUnavailable(DomainError):
    code, status, message = "wechat_unavailable", 503, "WeChat is not answering right now; try again shortly."


class RechargeNotPending(Conflict):
    code, message = "recharge_not_pending", "This recharge is no longer waiting for payment."


# --- configuration -------------------------------------------------------------------------------
def wechat_config(config: Config) -> WeChatConfig:
    """The `wechat:` section as a validated WeChatConfig, with the values derived from the server's
    own address filled in:

    - the notify URLs, when not set: `public_base_url` (else http://host:port) + our routes;
    - in sandbox mode without an explicit `sandbox_base`: the sandbox on this very server.

    Raises WeChatConfigError (e.g. production with the sandbox on) — so the app refuses to start.
    """
    section = dict(config.wechat or {})
    own = _own_base(config)
    pay = dict(section.get("pay") or {})
    pay["notify_url"] = pay.get("notify_url") or own + PAY_NOTIFY_PATH
    pay["transfer_notify_url"] = pay.get("transfer_notify_url") or own + TRANSFER_NOTIFY_PATH
    section["pay"] = pay
    cfg = WeChatConfig.from_dict(section)
    if cfg.sandbox and not section.get("sandbox_base") and not (section.get("api_base") or section.get("pay_base")):
        cfg = cfg.with_sandbox_base(own + "/sandbox")
    cfg.validate(production=config.production)
    return cfg


def _own_base(config: Config) -> str:
    if config.public_base_url:
        return config.public_base_url.rstrip("/")
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    return f"http://{host}:{config.port}"


# --- the services ----------------------------------------------------------------------------------
@dataclasses.dataclass
class WeChatServices:
    config: Config
    cfg: WeChatConfig
    mp: MiniProgramClient
    pay: PayClient
    sandbox: Any = None  # wechat.sandbox.SandboxState when the sandbox is mounted in this process

    @classmethod
    async def start(cls, config: Config, redis=None, *, cfg: WeChatConfig | None = None,
                    sandbox_state: Any = None) -> "WeChatServices":
        """One per process. Access tokens go to Redis when given (shared by every process)."""
        cfg = cfg or wechat_config(config)
        store = RedisTokenStore(redis) if redis is not None else MemoryTokenStore()
        return cls(config=config, cfg=cfg, mp=MiniProgramClient.from_config(cfg, store),
                   pay=PayClient.from_config(cfg), sandbox=sandbox_state)

    async def aclose(self) -> None:
        await self.pay.aclose()
        self.mp.close()

    # ---- login ------------------------------------------------------------------------------------
    async def login(self, end: str | End, code: str, *, invite_code: str | None = None,
                    nickname: str = "") -> tuple[User, bool]:
        """`wx.login` code → the account for that end (created at first login, inviter bound once)."""
        from models.users import login_or_register

        end = End(end)
        for attempt in range(LOGIN_ATTEMPTS):
            try:
                openid, unionid = await self.mp.code2session(end.value, code)
                break
            except InvalidCode as exc:
                raise InvalidLoginCode() from exc
            except Retryable as exc:
                if attempt + 1 == LOGIN_ATTEMPTS:
                    log.warning("code2Session still failing after %s tries: %s", LOGIN_ATTEMPTS, exc)
                    raise WeChatUnavailable() from exc
                await asyncio.sleep(LOGIN_BACKOFF_S[min(attempt, len(LOGIN_BACKOFF_S) - 1)])
            except WeChatError as exc:
                if exc.errcode == 40226:  # high-risk user blocked by WeChat
                    raise LoginRefused() from exc
                log.error("code2Session failed: %s", exc)
                raise WeChatUnavailable() from exc
        return await login_or_register(end, openid, unionid=unionid, invite_code=invite_code, nickname=nickname)

    # ---- recharges (SPEC §2 flow 1) ----------------------------------------------------------------
    async def start_recharge(self, user: User, amount_fen: int, request_id: str) -> dict[str, Any]:
        """Create (or find, for a repeated request_id) the recharge and its WeChat prepayment; return
        what `wx.requestPayment` needs. The prepay_id is stored, so a repeat reuses it."""
        recharge = await recharge_rules.create(user.id, amount_fen, request_id=request_id)
        if recharge.status != RechargeStatus.PENDING:
            raise RechargeNotPending(status=recharge.status.value, recharge_id=recharge.id)
        if recharge.expires_at <= clock.now():
            raise RechargeNotPending("This recharge has expired; start a new one.", status="expired", recharge_id=recharge.id)
        appid = self.cfg.app(End.PUBLISHER.value).appid
        prepay_id = recharge.prepay_id
        if not prepay_id:
            try:
                # WeChat treats a repeated out_trade_no with the same parameters as the same order,
                # so a retry after a timeout (or two concurrent requests) gets the same prepay_id.
                prepay_id = await self.pay.jsapi_prepay(
                    appid, recharge.out_trade_no, f"账户充值 {amount_fen // 100}.{amount_fen % 100:02d} 元",
                    recharge.amount_fen, user.openid, notify_url=self.cfg.pay.notify_url,
                    time_expire=recharge.expires_at)
            except PayApiError as exc:
                if exc.retryable:
                    raise WeChatUnavailable() from exc
                log.error("prepay for recharge %s refused: %s", recharge.id, exc)
                raise RechargeNotPending(f"WeChat Pay refused the payment ({exc.code}).", status=exc.code,
                                         recharge_id=recharge.id) from exc
            except PayError as exc:
                raise WeChatUnavailable() from exc
            await Recharge.filter(id=recharge.id, prepay_id=None).update(prepay_id=prepay_id)
        return {
            "recharge_id": recharge.id,
            "out_trade_no": recharge.out_trade_no,
            "amount_fen": recharge.amount_fen,
            "expires_at": recharge.expires_at.isoformat(),
            "payment": self.pay.request_payment_params(appid, prepay_id),
        }

    async def handle_payment_notification(self, headers: Mapping[str, str], raw_body: bytes) -> tuple[int, dict | None]:
        """A WeChat Pay payment callback → credit once → 204.

        Answers: bad signature (or a SIGNTEST probe) → 401 FAIL; stale timestamp or undecryptable →
        400 FAIL (WeChat re-signs every retry, so a retry can pass if the delay was in transit); a
        database failure → 500 FAIL (retry). A notification that verifies but does not fit our
        recharge (unknown out_trade_no, other mchid/appid, wrong amount or currency) credits nothing
        and is answered 204: WeChat would send the very same facts again, so a retry cannot help —
        it is logged as an error and audited (amount mismatch) for an operator instead.
        """
        try:
            note = self.pay.parse_notification(headers, raw_body)
        except BadSignature as exc:
            log.warning("payment notification refused: %s", exc)
            return 401, _fail("signature verification failed")
        except StaleNotification as exc:
            log.warning("payment notification refused: %s", exc)
            return 400, _fail("timestamp outside the allowed window")
        except BadPayload as exc:
            log.error("payment notification unreadable: %s", exc)
            return 400, _fail("resource cannot be decrypted")
        tx = note["resource"]
        if note.get("event_type") != "TRANSACTION.SUCCESS" or tx.get("trade_state") != "SUCCESS":
            log.info("payment notification %s ignored: %s / %s", note.get("id"), note.get("event_type"), tx.get("trade_state"))
            return 204, None
        try:
            await self._credit_transaction(tx, source=f"notification {note.get('id')}")
        except Exception:  # noqa: BLE001 - the database failed: WeChat must try again
            log.exception("payment notification %s could not be recorded", note.get("id"))
            return 500, _fail("temporarily unable to record the payment")
        return 204, None

    async def _credit_transaction(self, tx: Mapping[str, Any], *, source: str) -> bool:
        """Credit a verified SUCCESS transaction (from a notification or a query). True if credited now."""
        out_trade_no = str(tx.get("out_trade_no") or "")
        amount = tx.get("amount") or {}
        problems = []
        if tx.get("mchid") != self.cfg.pay.mchid:
            problems.append(f"mchid {tx.get('mchid')!r}")
        if tx.get("appid") != self.cfg.publisher.appid:
            problems.append(f"appid {tx.get('appid')!r}")
        if amount.get("currency", "CNY") != "CNY":
            problems.append(f"currency {amount.get('currency')!r}")
        if not tx.get("transaction_id") or not isinstance(amount.get("total"), int):
            problems.append("no transaction_id or amount")
        if problems:
            log.error("payment %s (%s) not credited: not ours (%s)", out_trade_no, source, ", ".join(problems))
            return False
        try:
            recharge, credited = await recharge_rules.credit(
                out_trade_no, transaction_id=str(tx["transaction_id"]), amount_fen=amount["total"])
        except RechargeNotFound:
            log.error("payment %s (%s) not credited: no such recharge", out_trade_no, source)
            return False
        except AmountMismatch as exc:
            log.error("payment %s (%s) not credited: %s %s", out_trade_no, source, exc.message, exc.details)
            return False
        if credited:
            log.info("recharge %s credited %s fen (%s)", recharge.id, recharge.amount_fen, source)
        return credited

    async def check_recharges(self, batch: int = RECHARGE_CHECK_BATCH) -> int:
        """The fallback when notifications do not come (SPEC §7).

        1. Take up to `batch` pending recharges created more than a minute ago, soonest expiry first.
        2. Ask WeChat Pay for each: SUCCESS → credit (idempotent with the notification path).
        3. Unpaid and past expires_at → close at WeChat first (so it can no longer be paid), then
           close ours. If WeChat answers ORDERPAID the payment won the race: query again and credit.
        Returns how many recharges it looked at."""
        now = clock.now()
        due = await Recharge.filter(status=RechargeStatus.PENDING,
                                    created_at__lte=now - dt.timedelta(seconds=RECHARGE_CHECK_AGE_S)
                                    ).order_by("expires_at").limit(batch)
        for r in due:
            try:
                await self._check_recharge(r, now)
            except Exception:  # noqa: BLE001 - one bad row must not stop the round
                log.exception("recharge %s: check failed; will retry next round", r.id)
        return len(due)

    async def _check_recharge(self, r: Recharge, now: dt.datetime) -> None:
        try:
            tx = await self.pay.query_by_out_trade_no(r.out_trade_no)
        except PayApiError as exc:
            if exc.code != "ORDER_NOT_EXIST":
                raise
            tx = None  # the prepayment never reached WeChat
        if tx is not None and tx.get("trade_state") == "SUCCESS":
            await self._credit_transaction(tx, source="query")
            return
        if r.expires_at > now:
            return  # the user may still pay
        if tx is not None and tx.get("trade_state") not in ("CLOSED", "REVOKED", "PAYERROR"):
            try:
                await self.pay.close(r.out_trade_no)
            except PayApiError as exc:
                if exc.code == "ORDERPAID":
                    tx = await self.pay.query_by_out_trade_no(r.out_trade_no)
                    if tx.get("trade_state") == "SUCCESS":
                        await self._credit_transaction(tx, source="query after ORDERPAID")
                    return
                if exc.code not in ("ORDER_CLOSED", "ORDERCLOSED", "ORDER_NOT_EXIST"):
                    raise
        if await recharge_rules.close(r.out_trade_no):
            log.info("recharge %s closed unpaid", r.id)

    # ---- payouts (SPEC §2 flow 6) ----------------------------------------------------------------
    async def start_payout(self, withdrawal: Withdrawal | int) -> Withdrawal:
        """Create the WeChat transfer bill of an approved withdrawal ('paying').

        Safe to call again: the bill is keyed by the withdrawal's out_bill_no, which WeChat (and the
        sandbox) dedupes. Stores transfer_bill_no and package_info (the Mini Program needs it for
        `wx.requestMerchantTransfer`). A bill WeChat refuses outright fails the payout (A returns to
        the user); transient trouble leaves it 'paying' for check_payouts to retry."""
        wid = withdrawal if isinstance(withdrawal, int) else withdrawal.id
        w = await Withdrawal.get(id=wid)
        if w.status != WithdrawalStatus.PAYING or not w.out_bill_no:
            return w
        user = await User.get(id=w.user_id)
        amount = w.amount_fen - w.fee_fen
        if amount >= TRANSFER_USER_NAME_REQUIRED_FEN:
            # WeChat requires the payee's real name from 2000 CNY on, and we do not collect names.
            return await self._fail_payout(w, "amount needs the payee's real name; pay by hand")
        try:
            bill = await self.pay.create_transfer_bill(
                self.cfg.app(user.end.value).appid, w.out_bill_no, user.openid, amount, TRANSFER_REMARK,
                notify_url=self.cfg.pay.transfer_notify_url)
        except PayApiError as exc:
            if exc.retryable or exc.code == "NOT_ENOUGH":
                # NOT_ENOUGH: the merchant's operating account is short. Someone must top it up;
                # the user's withdrawal stays 'paying' and is retried by check_payouts.
                log.error("withdrawal %s: transfer not created yet (%s); will retry", w.id, exc)
                return w
            # A refusal — unless a bill already exists under this out_bill_no (e.g. created by an
            # earlier call with other parameters): never fail locally what WeChat may still pay.
            existing = await self._query_bill(w.out_bill_no)
            if existing is None:
                return await self._fail_payout(w, f"WeChat refused the transfer: {exc.code}")
            bill = existing
        except PayError as exc:  # timeout / connection: the bill may or may not exist; retry later
            log.warning("withdrawal %s: transfer request failed (%s); will retry", w.id, exc)
            return w
        await Withdrawal.filter(id=w.id, status=WithdrawalStatus.PAYING).update(
            transfer_bill_no=bill.get("transfer_bill_no"),
            **({"package_info": bill["package_info"]} if bill.get("package_info") else {}))
        return await self._apply_bill_state(w, bill)

    async def _query_bill(self, out_bill_no: str) -> dict[str, Any] | None:
        try:
            return await self.pay.query_transfer_bill(out_bill_no)
        except PayApiError as exc:
            if exc.code in ("NOT_FOUND", "ORDER_NOT_EXIST"):
                return None
            raise

    async def _apply_bill_state(self, w: Withdrawal, bill: Mapping[str, Any]) -> Withdrawal:
        state = bill.get("state")
        try:
            if state == "SUCCESS":
                return await withdrawal_rules.payout_succeeded(w.id, transfer_bill_no=bill.get("transfer_bill_no"))
            if state in ("FAIL", "CANCELLED"):
                return await self._fail_payout(w, f"transfer {state.lower()}: {bill.get('fail_reason') or ''}".strip(": "))
        except AlreadyDecided:
            pass  # a notification and the checker (or two notifications) raced; the first one won
        return await Withdrawal.get(id=w.id)

    async def _fail_payout(self, w: Withdrawal, reason: str) -> Withdrawal:
        log.warning("withdrawal %s: payout failed: %s", w.id, reason)
        try:
            return await withdrawal_rules.payout_failed(w.id, reason=reason)
        except AlreadyDecided:
            return await Withdrawal.get(id=w.id)

    async def handle_transfer_notification(self, headers: Mapping[str, str], raw_body: bytes) -> tuple[int, dict | None]:
        """MCHTRANSFER.BILL.FINISHED → paid (SUCCESS) or returned (FAIL / CANCELLED) → 204.
        Same answers as the payment callback; repeats are harmless (conditional transitions)."""
        try:
            note = self.pay.parse_notification(headers, raw_body)
        except BadSignature as exc:
            log.warning("transfer notification refused: %s", exc)
            return 401, _fail("signature verification failed")
        except StaleNotification as exc:
            log.warning("transfer notification refused: %s", exc)
            return 400, _fail("timestamp outside the allowed window")
        except BadPayload as exc:
            log.error("transfer notification unreadable: %s", exc)
            return 400, _fail("resource cannot be decrypted")
        bill = note["resource"]
        try:
            w = await Withdrawal.get_or_none(out_bill_no=str(bill.get("out_bill_no") or ""))
            if w is None:
                log.error("transfer notification %s for unknown bill %r", note.get("id"), bill.get("out_bill_no"))
                return 204, None
            if bill.get("mch_id", self.cfg.pay.mchid) != self.cfg.pay.mchid or (
                    "transfer_amount" in bill and bill["transfer_amount"] != w.amount_fen - w.fee_fen):
                log.error("transfer notification %s does not match withdrawal %s: %s", note.get("id"), w.id, bill)
                return 204, None
            if w.status == WithdrawalStatus.FAILED and bill.get("state") == "SUCCESS":
                # We gave the money back, yet WeChat paid it: an operator must recover it by hand.
                log.critical("withdrawal %s: WeChat reports SUCCESS after we failed it locally", w.id)
            await self._apply_bill_state(w, bill)
        except Exception:  # noqa: BLE001 - the database failed: WeChat must try again
            log.exception("transfer notification %s could not be recorded", note.get("id"))
            return 500, _fail("temporarily unable to record the transfer")
        return 204, None

    async def check_payouts(self, batch: int = PAYOUT_CHECK_BATCH) -> int:
        """The payouts' sweeper.

        1. 'paying' withdrawals with no transfer bill yet (the call after approve never happened,
           failed or timed out) → start_payout (idempotent by out_bill_no).
        2. 'paying' withdrawals with a bill, approved more than a few minutes ago → query the bill
           and apply a final state (SUCCESS / FAIL / CANCELLED) the notification did not bring.
        Returns how many withdrawals it looked at."""
        now = clock.now()
        unsent = await Withdrawal.filter(status=WithdrawalStatus.PAYING, transfer_bill_no=None).order_by("id").limit(batch)
        stale = await Withdrawal.filter(
            status=WithdrawalStatus.PAYING, transfer_bill_no__isnull=False,
            decided_at__lte=now - dt.timedelta(seconds=PAYOUT_CHECK_AGE_S)).order_by("decided_at").limit(batch)
        for w in unsent:
            try:
                await self.start_payout(w)
            except Exception:  # noqa: BLE001
                log.exception("withdrawal %s: start_payout failed; will retry next round", w.id)
        for w in stale:
            try:
                bill = await self._query_bill(w.out_bill_no)
                if bill is not None:
                    await self._apply_bill_state(w, bill)
            except Exception:  # noqa: BLE001
                log.exception("withdrawal %s: payout check failed; will retry next round", w.id)
        return len(unsent) + len(stale)


def _fail(message: str) -> dict[str, str]:
    return {"code": "FAIL", "message": message}
