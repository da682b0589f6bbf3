"""The core's use of WeChat: login, recharges (WeChat Pay), payouts (merchant transfers).

`WeChatServices` bundles the clients of `wechat/` (one set per process) with the service functions
that join them to the domain in `models/`; the payouts live in `server/wechat_payouts.py`
(`PayoutServices`, mixed in here), the errors the API renders in `server/wechat_errors.py`. Two
rules shape every function:

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
from models.errors import RechargeNotFound
from models.recharges import AmountMismatch, Recharge, RechargeStatus, TransactionIdReused
from models.users import End, User
from server.config import Config
from server.wechat_errors import (InvalidLoginCode, LoginRefused, PayoutStillAtWeChat, RechargeNotPending,
                                  WeChatUnavailable, fail_answer, read_notification)
from server.wechat_content import ContentSecurityServices
from server.wechat_payouts import PayoutServices
from wechat.config import WeChatConfig
from wechat.errors import InvalidCode, PayApiError, PayError, Retryable, WeChatError
from wechat.miniprogram import MiniProgramClient
from wechat.pay import PayClient
from wechat.token_store import MemoryTokenStore, RedisTokenStore

log = logging.getLogger("market.wechat")

PAY_NOTIFY_PATH = "/api/wechat/pay/notify"
TRANSFER_NOTIFY_PATH = "/api/wechat/transfer/notify"

LOGIN_ATTEMPTS = 3  # code2Session tries on a retryable answer (busy, rate limit, timeout)
LOGIN_BACKOFF_S = (0.2, 0.6)  # waits between those tries
RECHARGE_CHECK_AGE_S = 60  # a notification usually arrives within seconds; query after a minute
RECHARGE_CHECK_BATCH = 50  # recharges queried per round
CLOSED_TRADE_STATES = ("CLOSED", "REVOKED", "PAYERROR")  # an order that can no longer be paid


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
__all__ = ["WeChatServices", "wechat_config", "PAY_NOTIFY_PATH", "TRANSFER_NOTIFY_PATH", "InvalidLoginCode",
           "LoginRefused", "WeChatUnavailable", "RechargeNotPending", "PayoutStillAtWeChat"]


@dataclasses.dataclass
class WeChatServices(PayoutServices, ContentSecurityServices):
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
        store = (RedisTokenStore(redis, prefix=f"{config.redis_namespace}:wechat:token:") if redis is not None
                 else MemoryTokenStore())
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

    # ---- invitations ------------------------------------------------------------------------------
    async def invitation_code(self, end: str, scene: str, page: str, storage) -> bytes:
        """The PNG of the Mini Program code for an invitation (wxacode.getUnlimited), made once per
        (AppID, scene, page) and kept in the upload storage: the code never changes, and WeChat
        limits how often it may be asked."""
        import hashlib

        appid = self.cfg.app(end).appid
        key = "wxacode_" + hashlib.sha256(f"{appid}|{scene}|{page}".encode()).hexdigest()[:32]
        cached = await storage.open_bytes(key)
        if cached is not None:
            return cached
        try:
            # check_path off outside the formal version: the page may not be published yet.
            png = await self.mp.unlimited_code(end, scene, page, check_path=self.cfg.miniprogram_state == "formal")
        except WeChatError as exc:
            log.warning("Mini Program code for %s not made: %s", end, exc)
            raise WeChatUnavailable() from exc
        await storage.save(key, png)
        return png

    # ---- recharges (SPEC §2 flow 1) ----------------------------------------------------------------
    async def start_recharge(self, user: User, amount_fen: int, request_id: str) -> dict[str, Any]:
        """Create (or find, for a repeated request_id) the recharge and its WeChat prepayment; return
        what `wx.requestPayment` needs. The prepay_id is stored, so a repeat reuses it."""
        recharge = await recharge_rules.create(user.id, amount_fen, request_id=request_id)
        if recharge.status != RechargeStatus.PENDING:
            raise RechargeNotPending(status=recharge.status.value, recharge_id=recharge.id)
        if recharge.expires_at <= clock.now():
            raise RechargeNotPending("This recharge has expired; start a new one.", zh="这笔充值已过期，请重新发起。",
                                     status="expired", recharge_id=recharge.id)
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
                raise RechargeNotPending("WeChat Pay refused the payment ({status}).", zh="微信支付拒绝了这笔付款（{status}）。", status=exc.code,
                                         recharge_id=recharge.id) from exc
            except PayError as exc:
                raise WeChatUnavailable() from exc
            await Recharge.filter(id=recharge.id, prepay_id=None).update(prepay_id=prepay_id)
        return {
            "recharge_id": recharge.id,
            "out_trade_no": recharge.out_trade_no,
            "amount_fen": recharge.amount_fen,
            "expires_at": clock.iso_us(recharge.expires_at),
            "payment": self.pay.request_payment_params(appid, prepay_id),
            "replayed": recharge.replayed,
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
        note, refusal = await read_notification(self.pay, headers, raw_body, "payment")
        if refusal is not None:
            return refusal
        tx = note["resource"]
        if note.get("event_type") != "TRANSACTION.SUCCESS" or tx.get("trade_state") != "SUCCESS":
            log.info("payment notification %s ignored: %s / %s", note.get("id"), note.get("event_type"), tx.get("trade_state"))
            return 204, None
        try:
            await self._credit_transaction(tx, source=f"notification {note.get('id')}")
        except Exception:  # noqa: BLE001 - the database failed: WeChat must try again
            log.exception("payment notification %s could not be recorded", note.get("id"))
            return 500, fail_answer("temporarily unable to record the payment")
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
        except (AmountMismatch, TransactionIdReused) as exc:  # audited by the domain; an operator must look
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
            if not exc.not_found:  # ORDER_NOT_EXIST / ORDERNOTEXIST; anything else: next round
                raise
            tx = None  # the prepayment never reached WeChat
        if tx is not None and tx.get("trade_state") == "SUCCESS":
            await self._credit_transaction(tx, source="query")
            return
        if r.expires_at > now:
            return  # the user may still pay
        if tx is not None and tx.get("trade_state") not in CLOSED_TRADE_STATES:
            try:
                await self.pay.close(r.out_trade_no)
            except PayError as close_exc:
                # Whatever the close answered (ORDERPAID, ORDER_CLOSED, a timeout ...), only a query
                # says what the order is now: paid → credit; closed → close ours; else next round.
                tx = await self.pay.query_by_out_trade_no(r.out_trade_no)
                if tx.get("trade_state") == "SUCCESS":
                    await self._credit_transaction(tx, source=f"query after close answered {close_exc}")
                    return
                if tx.get("trade_state") not in CLOSED_TRADE_STATES:
                    raise
        if await recharge_rules.close(r.out_trade_no):
            log.info("recharge %s closed unpaid", r.id)
