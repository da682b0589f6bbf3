"""WeChat Pay's daily bills (API v3 "下载账单"): ask for them, download them, read them — and write
them, for the sandbox.

Two bills per day (Beijing time), ready from about 10:00 the next day:

- the **trade bill** (交易账单, `GET /v3/bill/tradebill?bill_date=&bill_type=ALL`): one row per
  payment or refund of the merchant's orders;
- the **fund-flow bill** (资金账单, `GET /v3/bill/fundflowbill?bill_date=&account_type=`): one row per
  movement of one of the merchant's accounts; merchant transfers (payouts) leave the OPERATION
  account (运营账户), which is therefore the default here.

Each answer is `{"hash_type": "SHA1", "hash_value", "download_url"}`. The download is a signed GET of
`download_url` (on WeChat Pay's own host) whose answer is the file itself, **not signed**: its
integrity is checked against `hash_value` instead. The file is CSV text: a header line, detail rows
whose every field starts with a backquote (so spreadsheets keep long numbers), then a summary header
and one summary row. Money is in yuan with two decimals; we turn it into integer fen exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable
from urllib.parse import urlsplit

from wechat import crypto
from wechat.config import CHINA_TZ
from wechat.errors import BadPayload, PayApiError, PayConnectionError, PayTimeout

TRADE_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
                "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注").split(",")
TRADE_SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额".split(",")
FUND_HEADER = ("记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,"
               "资金变更提交申请人,备注,业务凭证号").split(",")
FUND_SUMMARY_HEADER = "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额".split(",")
BILL_NOT_READY = frozenset({"NO_STATEMENT_EXIST", "STATEMENT_CREATING"})  # try again later
MAX_BILL_BYTES = 64 * 1024 * 1024  # a day's bill larger than this is refused, not read into memory


@dataclasses.dataclass(frozen=True)
class TradeRow:
    """One row of the trade bill. `state` SUCCESS = a payment, REFUND = a refund, REVOKED = revoked."""

    traded_at: dt.datetime
    appid: str
    mchid: str
    transaction_id: str
    out_trade_no: str
    openid: str
    trade_type: str
    state: str
    amount_fen: int  # 应结订单金额 (what the payment settles)
    refund_id: str = ""
    out_refund_no: str = ""
    refund_fen: int = 0
    refund_status: str = ""


@dataclasses.dataclass(frozen=True)
class FundRow:
    """One movement of a fund account. `direction` is 收入 (in) or 支出 (out)."""

    booked_at: dt.datetime
    wechat_no: str  # 微信支付业务单号 (for a transfer: its transfer_bill_no)
    flow_no: str  # 资金流水单号
    business_name: str
    business_type: str
    direction: str
    amount_fen: int
    balance_fen: int
    applicant: str = ""
    remark: str = ""
    voucher_no: str = ""  # 业务凭证号 (for a transfer: the merchant's out_bill_no)

    @property
    def is_out(self) -> bool:
        return self.direction == "支出"


@dataclasses.dataclass
class Bill:
    rows: list[Any]
    summary: dict[str, str]


# ---- reading -------------------------------------------------------------------------------------

def fen(text: str) -> int:
    """'12.30' yuan → 1230 fen, exactly (no float ever)."""
    try:
        value = Decimal(text.strip().lstrip("`") or "0") * 100
    except InvalidOperation as exc:
        raise BadPayload(f"bill amount {text!r} is not a number") from exc
    if value != value.to_integral_value():
        raise BadPayload(f"bill amount {text!r} has fractions of a fen")
    return int(value)


def _cells(line: list[str]) -> list[str]:
    return [c.strip().removeprefix("`") for c in line]


def _time(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA_TZ)
    except ValueError as exc:
        raise BadPayload(f"bill time {text!r} is not yyyy-MM-dd HH:mm:ss") from exc


def _split(text: str, header: list[str], summary_header: list[str]) -> tuple[list[dict[str, str]], dict[str, str]]:
    lines = [row for row in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if any(c.strip() for c in row)]
    if not lines or _cells(lines[0])[0] != header[0]:
        raise BadPayload(f"the bill does not start with the expected header line ({header[0]}...)")
    names = _cells(lines[0])
    rows: list[dict[str, str]] = []
    summary: dict[str, str] = {}
    body = lines[1:]
    for i, line in enumerate(body):
        cells = _cells(line)
        if cells[0] == summary_header[0]:
            if i + 1 < len(body):
                summary = dict(zip(cells, _cells(body[i + 1])))
            break
        rows.append(dict(zip(names, cells)))
    return rows, summary


def parse_trade_bill(text: str) -> Bill:
    raw, summary = _split(text, TRADE_HEADER, TRADE_SUMMARY_HEADER)
    rows = [TradeRow(
        traded_at=_time(r["交易时间"]), appid=r.get("公众账号ID", ""), mchid=r.get("商户号", ""),
        transaction_id=r.get("微信订单号", ""), out_trade_no=r.get("商户订单号", ""), openid=r.get("用户标识", ""),
        trade_type=r.get("交易类型", ""), state=r.get("交易状态", ""), amount_fen=fen(r.get("应结订单金额", "0")),
        refund_id=r.get("微信退款单号", "") if r.get("微信退款单号", "") not in ("0", "") else "",
        out_refund_no=r.get("商户退款单号", "") if r.get("商户退款单号", "") not in ("0", "") else "",
        refund_fen=fen(r.get("退款金额", "0")), refund_status=r.get("退款状态", ""),
    ) for r in raw]
    _check_total(rows and sum(r.amount_fen for r in rows if r.state != "REFUND"), summary.get("应结订单总金额"), "trade")
    return Bill(rows, summary)


def parse_fund_bill(text: str) -> Bill:
    raw, summary = _split(text, FUND_HEADER, FUND_SUMMARY_HEADER)
    rows = [FundRow(
        booked_at=_time(r["记账时间"]), wechat_no=r.get("微信支付业务单号", ""), flow_no=r.get("资金流水单号", ""),
        business_name=r.get("业务名称", ""), business_type=r.get("业务类型", ""), direction=r.get("收支类型", ""),
        amount_fen=fen(r.get("收支金额（元）", "0")), balance_fen=fen(r.get("账户结余（元）", "0")),
        applicant=r.get("资金变更提交申请人", ""), remark=r.get("备注", ""), voucher_no=r.get("业务凭证号", ""),
    ) for r in raw]
    if summary.get("资金流水总笔数") not in (None, "") and int(summary["资金流水总笔数"]) != len(rows):
        raise BadPayload(f"fund bill: {len(rows)} rows but the summary counts {summary['资金流水总笔数']}")
    return Bill(rows, summary)


def _check_total(computed, stated: str | None, what: str) -> None:
    """A bill whose rows do not add up to its own summary was cut or garbled: refuse it."""
    if stated not in (None, "") and int(computed or 0) != fen(stated):
        raise BadPayload(f"{what} bill: rows sum to {computed} fen but the summary says {stated}")


# ---- writing (the sandbox serves bills built from what it processed) ---------------------------------

def _line(values: Iterable[Any], tick: bool = True) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([("`" if tick else "") + str(v) for v in values])
    return out.getvalue()


def yuan(amount_fen: int) -> str:
    sign = "-" if amount_fen < 0 else ""
    return f"{sign}{abs(amount_fen) // 100}.{abs(amount_fen) % 100:02d}"


def render_trade_bill(rows: list[TradeRow]) -> str:
    text = _line(TRADE_HEADER, tick=False)
    for r in rows:
        text += _line([
            r.traded_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S"), r.appid, r.mchid, "0", "", r.transaction_id,
            r.out_trade_no, r.openid, r.trade_type, r.state, "OTHERS", "CNY", yuan(r.amount_fen), "0.00",
            r.refund_id or "0", r.out_refund_no or "0", yuan(r.refund_fen), "0.00", "ORIGINAL" if r.refund_id else "",
            r.refund_status, "账户充值", "", "0.00000", "0.60%", yuan(r.amount_fen), yuan(r.refund_fen), ""])
    settled = sum(r.amount_fen for r in rows if r.state != "REFUND")
    refunded = sum(r.refund_fen for r in rows)
    text += _line(TRADE_SUMMARY_HEADER, tick=False)
    text += _line([len(rows), yuan(settled), yuan(refunded), "0.00", "0.00000", yuan(settled), yuan(refunded)])
    return text


def render_fund_bill(rows: list[FundRow]) -> str:
    text = _line(FUND_HEADER, tick=False)
    for r in rows:
        text += _line([
            r.booked_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S"), r.wechat_no, r.flow_no, r.business_name,
            r.business_type, r.direction, yuan(r.amount_fen), yuan(r.balance_fen), r.applicant, r.remark, r.voucher_no])
    ins = [r for r in rows if not r.is_out]
    outs = [r for r in rows if r.is_out]
    text += _line(FUND_SUMMARY_HEADER, tick=False)
    text += _line([len(rows), len(ins), yuan(sum(r.amount_fen for r in ins)), len(outs), yuan(sum(r.amount_fen for r in outs))])
    return text


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# ---- asking WeChat Pay ---------------------------------------------------------------------------------

async def trade_bill(pay, bill_date: dt.date) -> Bill:
    """Download and read the trade bill of `bill_date` (a PayClient). PayApiError with a code in
    BILL_NOT_READY means: not generated yet, try later."""
    info = await pay._request("GET", "/v3/bill/tradebill", query={"bill_date": bill_date.isoformat(), "bill_type": "ALL"})
    return parse_trade_bill(await download(pay, info))


async def fund_bill(pay, bill_date: dt.date, account_type: str = "OPERATION") -> Bill:
    info = await pay._request("GET", "/v3/bill/fundflowbill",
                              query={"bill_date": bill_date.isoformat(), "account_type": account_type})
    return parse_fund_bill(await download(pay, info))


async def download(pay, info: dict[str, Any]) -> str:
    """The signed GET of a bill's download_url; the file is checked against the stated SHA1.

    The URL must be on the configured WeChat Pay host: a signed request is never sent elsewhere."""
    url = str(info.get("download_url") or "")
    base = urlsplit(pay.base_url)
    target = urlsplit(url)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc) or not target.path.startswith(base.path + "/v3/"):
        raise BadPayload(f"download_url is not on the WeChat Pay host {base.netloc}")
    path_q = target.path[len(base.path):] + (f"?{target.query}" if target.query else "")
    ts, nonce_str = str(int(pay._clock())), crypto.nonce(32)
    sig = crypto.rsa_sign(pay.cfg.private_key_pem, crypto.request_message("GET", path_q, ts, nonce_str, b""))
    headers = {"Authorization": crypto.authorization_header(pay.cfg.mchid, pay.cfg.merchant_serial_no, nonce_str, ts, sig),
               "Accept": "*/*", "User-Agent": "task-market-wechat/1"}
    import httpx

    try:
        resp = await pay._http.request("GET", url, headers=headers)
    except httpx.TimeoutException as exc:
        raise PayTimeout("bill download timed out") from exc
    except httpx.TransportError as exc:
        raise PayConnectionError(f"bill download: {exc.__class__.__name__}") from exc
    if resp.status_code != 200:
        try:
            err = resp.json()
            raise PayApiError(resp.status_code, str(err.get("code") or f"HTTP_{resp.status_code}"), str(err.get("message") or ""))
        except ValueError:
            raise PayApiError(resp.status_code, f"HTTP_{resp.status_code}", "") from None
    data = resp.content
    if len(data) > MAX_BILL_BYTES:
        raise BadPayload("bill larger than MAX_BILL_BYTES")
    if str(info.get("hash_type", "SHA1")).upper() != "SHA1" or sha1_hex(data) != str(info.get("hash_value", "")).lower():
        raise BadPayload("the downloaded bill does not match its SHA1 hash_value")
    return data.decode("utf-8-sig")
